"""Evaluation perturbations: seeded noise applied to raw examples of a split, per family.

``perturb_dataset(data, family, {"name": "char_noise", "rate": 0.1}, seed=1, language="de")``
returns the split with its texts perturbed, labels untouched. Family schemas:

* classification ``{text_a, text_b?, label}``: the text fields;
* multiple choice ``{context, question?, choices, label}``: context, question and each choice;
* QA (SQuAD) ``{id, context, question, answers: {text, answer_start}}``: the question and the
  context *outside* the answer spans; ``answer_start`` is recomputed so every answer still
  satisfies ``context[start:start + len(text)] == text``;
* tagging ``{tokens, tags}``: per-token edits that keep the token count; ``word_order`` moves
  tags with their tokens.

Adding a perturbation = one module here with a ``Perturbation`` subclass under ``@register``.
"""
from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
from typing import Callable

from trainables.registry import Registry
from trainables.tasks.base import TaskDataError

PERTURBATIONS = Registry("perturbation", __name__)
#: class decorator: make a perturbation available by its ``name``
register = PERTURBATIONS.register


def perturbation_names() -> list[str]:
    return PERTURBATIONS.names()


def _settings(config: dict):
    from trainables.adversarial.base import did_you_mean, validate_settings

    if not isinstance(config, dict):
        raise ValueError(f"perturbation: expected a mapping with a 'name', got {config!r}")
    if "name" not in config:
        raise ValueError(f"name: missing; choose from {', '.join(perturbation_names())}")
    name = config["name"]
    if name not in PERTURBATIONS:
        raise ValueError(f"name: unknown perturbation {name!r}{did_you_mean(str(name), perturbation_names())}; "
                         f"choose from {', '.join(perturbation_names())}")
    cls = PERTURBATIONS[name]
    settings = validate_settings(cls.Settings, {k: v for k, v in config.items() if k != "name"},
                                 owner=name)
    return cls, settings


def validate_perturbation(config: dict) -> dict:
    """``{"name": ..., **every setting}``; ``ValueError("<field>: <problem>")`` when invalid."""
    cls, settings = _settings(config)
    values = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(settings).items()}
    return {"name": cls.name, **values}


def build_perturbation(config: dict, *, language: str):
    cls, settings = _settings(config)
    return cls(settings, language=language)


def _files(config: dict) -> dict[str, str]:
    """``{setting: path}`` of every file setting a (valid) config gives."""
    cls, settings = _settings(config)
    paths = {field: str(getattr(settings, field) or "") for field in cls.files}
    return {field: path for field, path in paths.items() if path}


def language_files(config: dict) -> dict[str, str]:
    """``{setting: path template}`` of the files a (valid) config names with ``{language}``."""
    return {field: path for field, path in _files(config).items() if "{language}" in path}


def fixed_files(config: dict) -> dict[str, str]:
    """``{setting: path}`` of the files a (valid) config names without ``{language}``: they
    are the same for every language, so a spec check can require that they exist."""
    return {field: path for field, path in _files(config).items() if "{language}" not in path}


# --- per-family application -------------------------------------------------------------------

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


def perturb_dataset(data, family: str, config: dict, *, seed: int, language: str,
                    gold_probability: Callable[[list[dict]], list[float]] | None = None):
    """``data`` with every example perturbed; deterministic for (seed, language, example index).

    ``gold_probability`` is needed by (only) the ``attack`` perturbation; see ``attack.py``.
    """
    normalised = validate_perturbation(config)
    perturbation = build_perturbation(config, language=language)
    if family not in perturbation.families:
        raise ValueError(f"family: perturbation {perturbation.name} does not apply to {family!r} "
                         f"(only {', '.join(perturbation.families)})")
    name = perturbation.name
    if name == "attack":
        if gold_probability is None:
            raise ValueError("gold_probability: required by the attack perturbation")
        from trainables.perturb.base import example_rng

        def apply(example, index):
            rng = example_rng(seed, language, index, name)
            return perturbation.attack(example, rng, gold_probability)
    else:
        from trainables.perturb.base import example_rng

        def apply(example, index):
            return APPLY[family](perturbation, example, example_rng(seed, language, index, name), index)

    key = json.dumps({"data": data._fingerprint, "config": normalised, "seed": seed,
                      "language": language, "family": family, "extra": perturbation.fingerprint(),
                      "v": 1}, sort_keys=True)
    return data.map(apply, with_indices=True, features=data.features,
                    new_fingerprint=hashlib.sha256(key.encode()).hexdigest()[:32],
                    load_from_cache_file=name != "attack", desc=f"perturb ({name})")


# --- measurement --------------------------------------------------------------------------------

def _word_lists(example: dict, family: str) -> list[list[str]]:
    if family == "tagging":
        return [list(example["tokens"])]
    if family == "qa":
        fields = ["question", "context"]
    elif family == "multiple_choice":
        fields = ["context", "question"]
    else:
        fields = ["text_a", "text_b"]
    lists = [example[f].split() for f in fields if isinstance(example.get(f), str)]
    return lists + [c.split() for c in example.get("choices", []) if family == "multiple_choice"]


def changed_words(before: list[str], after: list[str]) -> int:
    """Words changed: position by position when the count is kept, else by alignment."""
    if len(before) == len(after):
        return sum(a != b for a, b in zip(before, after))
    matched = sum(m.size for m in difflib.SequenceMatcher(a=before, b=after, autojunk=False)
                  .get_matching_blocks())
    return len(before) - matched


def changed_fraction(original, perturbed, family: str) -> float:
    """Fraction of the words (tokens for tagging) of ``original`` that the perturbation changed."""
    changed = total = 0
    for a, b in zip(original, perturbed):
        for words_a, words_b in zip(_word_lists(a, family), _word_lists(b, family)):
            changed += changed_words(words_a, words_b)
            total += len(words_a)
    return changed / total if total else 0.0


__all__ = ["PERTURBATIONS", "build_perturbation", "changed_fraction", "fixed_files", "perturb_dataset",
           "perturbation_names", "register", "validate_perturbation"]
