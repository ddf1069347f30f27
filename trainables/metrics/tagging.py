"""Span F1 of tag sequences as seqeval 0.0.12 computes it (the version behind XTREME's POS/NER).

Published XTREME UD-POS and PAN-X numbers come from ``seqeval.metrics.f1_score`` 0.0.12. Its
chunker reads every label as a *prefix* (the first character) and a *type* (the text after the
last ``-``; the whole label when there is none), so a UPOS tag such as ``CCONJ`` is prefix ``C``,
type ``CCONJ``, and ``SCONJ`` is prefix ``S``, type ``SCONJ``: two types. (seqeval 1.x takes the
type from ``label[1:]``, which makes ``CCONJ`` and ``SCONJ`` both ``CONJ``.) The rules, as read
in seqeval v0.0.12 ``seqeval/metrics/sequence_labeling.py`` (``get_entities``, ``end_of_chunk``,
``start_of_chunk``):

* sentences are joined into one sequence with an ``O`` after each;
* a chunk ends before position i when the previous prefix is ``E`` or ``S``; or the previous
  prefix is ``B``/``I`` and the current one is ``B``, ``S`` or ``O``; or the previous prefix is
  not ``O``/``.`` and the type changes;
* a chunk starts at i when the prefix is ``B`` or ``S``; or ``E``/``I`` follows ``E``, ``S`` or
  ``O``; or the prefix is not ``O``/``.`` and the type changes.

So with plain UPOS tags a run of equal tags is one chunk (``NOUN NOUN``), except tags whose first
letter is ``S`` (``SCONJ``, ``SYM``: every token a chunk of its own) and ``INTJ`` (prefix ``I``).
F1 is micro: matched chunks (type, first, last) over predicted and gold chunk sets. On IOB/IOBES
labels (``B-PER``) this is exactly what seqeval 1.x computes.
"""
from __future__ import annotations

from typing import Sequence

Chunk = tuple[str, int, int]
_OUTSIDE = ("O", ".")


def _parse(label: str) -> tuple[str, str]:
    """(prefix, type) as seqeval 0.0.12 reads a label."""
    return label[0], label.split("-")[-1]


def _ends(prev: str, cur: str, prev_type: str, cur_type: str) -> bool:
    if prev in ("E", "S"):
        return True
    if prev in ("B", "I") and cur in ("B", "S", "O"):
        return True
    return prev not in _OUTSIDE and prev_type != cur_type


def _starts(prev: str, cur: str, prev_type: str, cur_type: str) -> bool:
    if cur in ("B", "S"):
        return True
    if cur in ("E", "I") and prev in ("E", "S", "O"):
        return True
    return cur not in _OUTSIDE and prev_type != cur_type


def chunks(sentences: Sequence[Sequence[str]]) -> set[Chunk]:
    """The (type, first, last) chunks of a list of labelled sentences (positions count over the
    joined sequence, separators included, so equal chunks of gold and prediction coincide)."""
    flat: list[str] = []
    for sentence in sentences:
        flat.extend(sentence)
        flat.append("O")
    out: set[Chunk] = set()
    prev, prev_type, begin = "O", "", 0
    for i, label in enumerate(flat + ["O"]):
        cur, cur_type = _parse(label)
        if _ends(prev, cur, prev_type, cur_type):
            out.add((prev_type, begin, i - 1))
        if _starts(prev, cur, prev_type, cur_type):
            begin = i
        prev, prev_type = cur, cur_type
    return out


def span_f1(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> dict[str, float]:
    """Micro precision, recall and F1 over chunks (0 where undefined, as seqeval 0.0.12)."""
    if len(gold) != len(pred) or any(len(g) != len(p) for g, p in zip(gold, pred)):
        raise ValueError("span_f1: gold and predicted sentences differ in number or length")
    true, found = chunks(gold), chunks(pred)
    correct = len(true & found)
    p = correct / len(found) if found else 0.0
    r = correct / len(true) if true else 0.0
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0}
