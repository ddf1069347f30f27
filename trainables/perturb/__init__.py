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

Adding a perturbation = one module here with a ``Perturbation`` subclass under ``@register``; a
model-aware one (``attack``) also overrides ``prepare`` (it gets the evaluated model) and
``apply`` (it edits whole examples).
"""
from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json

from trainables.registry import Registry

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
    return _normalised(*_settings(config))


def _normalised(cls, settings) -> dict:
    values = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(settings).items()}
    return {"name": cls.name, **values}


def build_perturbation(config: dict, *, language: str, **inputs):
    """The perturbation a (valid) config names, for ``language``; ``inputs`` go to its constructor."""
    cls, settings = _settings(config)
    return cls(settings, language=language, **inputs)


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


def perturb_dataset(data, family: str, config: dict, *, seed: int, language: str, **inputs):
    """``data`` with every example perturbed; deterministic for (seed, language, example index).

    ``inputs`` go to the perturbation's constructor: what a model-aware perturbation takes in
    place of a prepared model (``attack``'s ``gold_probability``; see ``Perturbation.prepare``).
    """
    return apply_perturbation(data, family, build_perturbation(config, language=language, **inputs), seed=seed)


def apply_perturbation(data, family: str, perturbation, *, seed: int):
    """``data`` with every example perturbed by a built (and, if model-aware, prepared)
    ``perturbation`` in its language."""
    from trainables.perturb.base import example_rng

    if family not in perturbation.families:
        raise ValueError(f"family: perturbation {perturbation.name} does not apply to {family!r} "
                         f"(only {', '.join(perturbation.families)})")
    name, language = perturbation.name, perturbation.language

    def apply(example, index):
        return perturbation.apply(example, family, example_rng(seed, language, index, name), index)

    key = json.dumps({"data": data._fingerprint, "config": _normalised(type(perturbation), perturbation.settings),
                      "seed": seed, "language": language, "family": family, "extra": perturbation.fingerprint(),
                      "v": 1}, sort_keys=True)
    return data.map(apply, with_indices=True, features=data.features,
                    new_fingerprint=hashlib.sha256(key.encode()).hexdigest()[:32],
                    load_from_cache_file=perturbation.cacheable, desc=f"perturb ({name})")


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


__all__ = ["PERTURBATIONS", "apply_perturbation", "build_perturbation", "changed_fraction", "fixed_files",
           "perturb_dataset", "perturbation_names", "register", "validate_perturbation"]
