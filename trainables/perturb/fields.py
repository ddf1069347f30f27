"""Which fields of an example a (text-editing) perturbation changes, per task family.

Each function returns the changed fields of one example, edited through the perturbation's
``text`` (each text field) or ``tokens`` (tagging); see ``trainables.perturb`` for the schemas.
"""
from __future__ import annotations

from typing import Callable

from trainables.tasks.base import TaskDataError


def _require(example: dict, fields: tuple[str, ...], family: str) -> None:
    missing = [f for f in fields if f not in example]
    if missing:
        raise TaskDataError(f"perturb: {family} example has no field {missing[0]!r} "
                            f"(fields: {', '.join(example)})")


def _classification(p, example, rng, index):
    _require(example, ("text_a",), "classification")
    return {f: p.text(example[f], rng) for f in ("text_a", "text_b") if isinstance(example.get(f), str)}


def _multiple_choice(p, example, rng, index):
    _require(example, ("context", "choices"), "multiple_choice")
    out = {f: p.text(example[f], rng) for f in ("context", "question") if isinstance(example.get(f), str)}
    out["choices"] = [p.text(c, rng) for c in example["choices"]]
    return out


def _tagging(p, example, rng, index):
    _require(example, ("tokens", "tags"), "tagging")
    tokens, tags = p.tokens(list(example["tokens"]), list(example["tags"]), rng)
    return {"tokens": tokens, "tags": tags}


def _qa(p, example, rng, index):
    _require(example, ("context", "question", "answers"), "qa")
    context, answers = example["context"], example["answers"]
    spans = []
    for text, start in zip(answers["text"], answers["answer_start"]):
        if context[start:start + len(text)] != text:
            raise TaskDataError(f"perturb: qa example {example.get('id', index)}: answers.answer_start "
                                f"{start} does not point at {text!r}")
        spans.append((start, start + len(text)))
    merged: list[list[int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    pieces, moved, pos = [], [], 0
    for start, end in merged:
        pieces.append(p.text(context[pos:start], rng))
        moved.append(sum(map(len, pieces)) - start)  # shift of this protected span
        pieces.append(context[start:end])
        pos = end
    pieces.append(p.text(context[pos:], rng))
    new_starts = []
    for start, _ in spans:
        span = next(i for i, (a, b) in enumerate(merged) if a <= start < b or a == start == b)
        new_starts.append(start + moved[span])
    return {"question": p.text(example["question"], rng), "context": "".join(pieces),
            "answers": {**answers, "answer_start": new_starts}}


APPLY: dict[str, Callable] = {"classification": _classification, "multiple_choice": _multiple_choice,
                              "qa": _qa, "tagging": _tagging}
