"""What every evaluation perturbation shares: settings, seeded randomness, word handling.

A perturbation edits *words* (maximal runs of non-space characters) and keeps the whitespace
between them, so QA offsets can be rebuilt and tagging keeps one token per tag. Randomness is a
``random.Random`` seeded from (seed, language, example index, perturbation name, field), so a
perturbed split is the same on every machine and in every trial.
"""
from __future__ import annotations

import hashlib
import random
import re
import unicodedata
from pathlib import Path
from typing import Any, ClassVar, Sequence

from trainables.perturb.fields import APPLY
from trainables.tasks.base import TaskDataError

FAMILIES = ("classification", "multiple_choice", "qa", "tagging")
_SPACE = re.compile(r"(\s+)")


def example_rng(seed: int, language: str, index: int, *salt: str) -> random.Random:
    """The random stream of one example (stable across processes, unlike ``hash``)."""
    key = "\x1f".join([str(seed), language, str(index), *salt]).encode()
    return random.Random(int.from_bytes(hashlib.sha256(key).digest()[:8], "big"))


def split_words(text: str) -> list[str]:
    """``text`` as alternating [word, space, word, ...]; words at even indices (maybe '')."""
    return _SPACE.split(text)


def stochastic_round(x: float, rng: random.Random) -> int:
    """floor(x) or ceil(x), with expectation x: a rate is met on average even on short texts."""
    return int(x + rng.random())


def is_punct(ch: str) -> bool:
    return unicodedata.category(ch).startswith("P")


def has_letter(word: str) -> bool:
    return any(ch.isalpha() for ch in word)


def check_tuple(settings: Any, field: str, allowed: Sequence[str]) -> None:
    """Normalise a list setting (YAML gives lists) to a non-empty tuple of allowed names."""
    value = getattr(settings, field)
    if isinstance(value, str):
        value = (value,)
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError(f"{field}: expected a non-empty list of {', '.join(allowed)}, got {value!r}")
    unknown = [v for v in value if v not in allowed]
    if unknown:
        raise ValueError(f"{field}: unknown {unknown[0]!r}; choose from {', '.join(allowed)}")
    object.__setattr__(settings, field, tuple(dict.fromkeys(value)))


def check_rate(rate: float) -> None:
    if not 0 <= rate <= 1:
        raise ValueError(f"rate: must be within [0, 1], got {rate}")


def read_lexicon(path: str | Path, *, reverse: bool = False, owner: str = "lexicon"
                 ) -> dict[str, tuple[str, ...]]:
    """A MUSE bilingual dictionary (``src tgt`` per line; a word may have several translations)
    as source word -> sorted translations, keyed by the source as written and lower-cased.
    ``reverse`` reads it as ``tgt src``. Identity entries (``paris paris``) are left out."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise TaskDataError(f"{owner}: lexicon file {path} not found")
    table: dict[str, set[str]] = {}
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2:
                raise TaskDataError(f"{owner}: lexicon {path} line {number}: expected 'src tgt', "
                                    f"got {line.strip()!r}")
            src, tgt = reversed(parts) if reverse else parts
            if src.lower() != tgt.lower():
                for key in {src, src.lower()}:
                    table.setdefault(key, set()).add(tgt)
    if not table:
        raise TaskDataError(f"{owner}: lexicon {path} has no entries")
    return {k: tuple(sorted(v)) for k, v in table.items()}


def file_digest(path: str | Path) -> str:
    return hashlib.sha256(Path(path).expanduser().read_bytes()).hexdigest()[:16]


class Perturbation:
    """One kind of noise. Subclasses set ``name``, ``Settings`` and implement ``text`` and
    ``tokens``; ``families`` lists the task families it applies to.

    A model-aware perturbation (``attack``) overrides ``prepare``, which the trial calls with the
    model under evaluation, and may override ``apply`` to edit whole examples; it sets
    ``cacheable = False``, since its output then depends on the model.
    """

    name: ClassVar[str]
    Settings: ClassVar[type]
    families: ClassVar[tuple[str, ...]] = FAMILIES
    #: settings that name a file (a lexicon); ``{language}`` in one is the data's language
    files: ClassVar[tuple[str, ...]] = ()
    #: whether a perturbed split may be read back from the datasets cache: only when the output
    #: depends on nothing but the data, the settings and ``fingerprint()``
    cacheable: ClassVar[bool] = True

    def __init__(self, settings: Any, *, language: str) -> None:
        self.settings = settings
        self.language = language

    def file(self, field: str) -> str:
        """The path a file setting names for this language ('' when not set)."""
        return str(getattr(self.settings, field) or "").replace("{language}", self.language)

    def unavailable(self) -> str | None:
        """Why this perturbation cannot run in ``self.language`` (a file it needs, such as the
        ``{language}`` lexicon, does not exist for it), or None. The trial then skips it for
        that language; a bad file that exists still fails when it is read."""
        for field in self.files:
            path = self.file(field)
            if path and not Path(path).expanduser().is_file():
                return f"{field} file {path} not found"
        return None

    def fingerprint(self) -> str:
        """What, besides the settings, decides the output (a lexicon's content)."""
        return ""

    def prepare(self, model, task, tokenizer, *, max_length: int, batch_size: int) -> None:
        """Called once per evaluated task and language, before its split is perturbed, with the
        model being evaluated (``max_length`` and ``batch_size``: its evaluation's). Noise that
        does not look at the model needs nothing."""

    def apply(self, example: dict, family: str, rng: random.Random, index: int) -> dict:
        """The changed fields of one example of ``family`` (by default each text field through
        ``text``, or the tokens through ``tokens``, QA answers kept where they are)."""
        return APPLY[family](self, example, rng, index)

    def text(self, text: str, rng: random.Random) -> str:
        raise NotImplementedError

    def tokens(self, tokens: list[str], tags: list, rng: random.Random) -> tuple[list[str], list]:
        """Tagging: the same number of tokens, tags moved with their tokens."""
        raise NotImplementedError


class WordPerturbation(Perturbation):
    """Changes ``rate`` of the eligible words, each independently, keeping the word count."""

    def eligible(self, word: str) -> bool:
        raise NotImplementedError

    def change(self, word: str, rng: random.Random) -> str:
        """A different word (only called on eligible words)."""
        raise NotImplementedError

    def _apply(self, words: list[str], positions: list[int], rng: random.Random) -> list[str]:
        candidates = [i for i in positions if words[i] and self.eligible(words[i])]
        k = min(len(candidates), stochastic_round(self.settings.rate * len(candidates), rng))
        words = list(words)
        for i in sorted(rng.sample(candidates, k)):
            words[i] = self.change(words[i], rng)
        return words

    def text(self, text, rng):
        pieces = split_words(text)
        return "".join(self._apply(pieces, list(range(0, len(pieces), 2)), rng))

    def tokens(self, tokens, tags, rng):
        return self._apply(list(tokens), list(range(len(tokens))), rng), list(tags)
