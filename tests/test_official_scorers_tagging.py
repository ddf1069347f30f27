"""Tagging F1 as seqeval 0.0.12, the version behind XTREME's published POS numbers (issue 13, 3).

seqeval 0.0.12 (``seqeval/metrics/sequence_labeling.py``, tag v0.0.12 of chakki-works/seqeval)
reads a label as prefix ``label[0]`` and type ``label.split('-')[-1]``; seqeval 1.2.2 (installed)
reads the type from ``label[1:]`` but chunks with the same ``end_of_chunk`` / ``start_of_chunk``
rules. So 1.2.2 on labels rewritten as ``f"{t[0]}-{t}"`` (prefix ``t[0]``, type ``t``) is the
0.0.12 computation, done by the installed official library: the real-data comparisons use that.
"""
from __future__ import annotations

import random
import warnings
from pathlib import Path

import pytest
from seqeval.metrics import f1_score as seqeval_f1

from trainables.formats import read_conllu
from trainables.metrics.tagging import chunks, span_f1
from trainables.tasks.udpos import UPOS

UD = Path(__file__).resolve().parents[2] / "shared" / "data" / "ud"


def seqeval_1x(gold, pred, relabel: bool = False) -> float:
    """Installed seqeval's F1; ``relabel`` makes it parse labels as 0.0.12 did."""
    if relabel:
        gold = [[f"{t[0]}-{t}" for t in s] for s in gold]
        pred = [[f"{t[0]}-{t}" for t in s] for s in pred]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*seems not to be NE tag")
        return float(seqeval_f1(gold, pred))


def test_cconj_and_sconj_are_different_types():
    # the case: 0.0.12 finds PRON, SCONJ, VERB vs PRON, CCONJ, VERB -> 2 of 3 right
    gold, pred = [["PRON", "SCONJ", "VERB"]], [["PRON", "CCONJ", "VERB"]]
    assert span_f1(gold, pred)["f1"] == pytest.approx(2 / 3)
    assert seqeval_1x(gold, pred) == 1.0          # 1.2.2 reads both as type "CONJ"


def test_runs_of_one_tag_are_one_chunk_except_s_prefixed_tags():
    # prefix "N" is no IOBES prefix: NOUN NOUN is one chunk (type change or O ends it)
    assert chunks([["NOUN", "NOUN", "VERB"]]) == {("NOUN", 0, 1), ("VERB", 2, 2)}
    # prefix "S" (SCONJ, SYM) ends a chunk after every token
    assert chunks([["SYM", "SYM"]]) == {("SYM", 0, 0), ("SYM", 1, 1)}
    # the sentence separator (an O) ends a chunk: positions count it
    assert chunks([["NOUN"], ["NOUN"]]) == {("NOUN", 0, 0), ("NOUN", 2, 2)}
    # so a merged run scores as one unit: gold NOUN NOUN vs NOUN VERB has no chunk in common
    assert span_f1([["NOUN", "NOUN"]], [["NOUN", "VERB"]]) == {"precision": 0.0, "recall": 0.0,
                                                                "f1": 0.0}


def test_equals_seqeval_on_random_iob_and_iobes_sequences():
    rng = random.Random(0)
    labels = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "E-LOC", "S-ORG", "I-ORG"]
    for _ in range(200):
        gold = [[rng.choice(labels) for _ in range(rng.randint(1, 9))] for _ in range(3)]
        pred = [[rng.choice(labels) for _ in s] for s in gold]
        assert span_f1(gold, pred)["f1"] == pytest.approx(seqeval_1x(gold, pred))


def test_equals_the_0_0_12_parse_on_random_upos_sequences():
    rng = random.Random(1)
    for _ in range(200):
        gold = [[rng.choice(UPOS) for _ in range(rng.randint(1, 9))] for _ in range(3)]
        pred = [[rng.choice(UPOS) for _ in s] for s in gold]
        assert span_f1(gold, pred)["f1"] == pytest.approx(seqeval_1x(gold, pred, relabel=True))


def _corrupt(sentences: list[list[str]], seed: int) -> list[list[str]]:
    """A tagger's errors: CCONJ<->SCONJ swaps, and a random tag for about 1 word in 10."""
    rng = random.Random(seed)
    swap = {"CCONJ": "SCONJ", "SCONJ": "CCONJ"}
    out = []
    for sentence in sentences:
        tags = [swap.get(t, t) if rng.random() < 0.5 else t for t in sentence]
        out.append([rng.choice(UPOS) if rng.random() < 0.1 else t for t in tags])
    return out


@pytest.mark.skipif(not UD.is_dir(), reason="no shared UD data")
@pytest.mark.parametrize("name", ["en_ewt-ud-dev.conllu", "de_gsd-ud-test.conllu"])
def test_real_ud_file_against_the_0_0_12_parse(name):
    gold = [s["tags"] for s in read_conllu(UD / name)]
    pred = _corrupt(gold, seed=len(gold))
    ours = span_f1(gold, pred)["f1"]
    assert ours == pytest.approx(seqeval_1x(gold, pred, relabel=True), abs=1e-12)
    assert span_f1(gold, gold)["f1"] == 1.0
    # the conjunction swaps are errors here but not for seqeval 1.2.2's "CONJ" type
    assert seqeval_1x(gold, pred) > ours
