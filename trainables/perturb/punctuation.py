"""Punctuation noise: drop a punctuation mark from a word, or add one after it."""
from __future__ import annotations

from dataclasses import dataclass

from trainables.perturb import register
from trainables.perturb.base import WordPerturbation, check_rate, check_tuple, is_punct

OPS = ("drop", "insert")
MARKS = ",.;:!?"


@dataclass(frozen=True)
class PunctuationSettings:
    #: fraction of the words that get a mark dropped or added
    rate: float = 0.1
    ops: tuple[str, ...] = OPS

    def __post_init__(self) -> None:
        check_rate(self.rate)
        check_tuple(self, "ops", OPS)


@register
class Punctuation(WordPerturbation):
    name = "punctuation"
    Settings = PunctuationSettings

    @staticmethod
    def _droppable(word: str) -> list[int]:
        # never empty a word: a pure-punctuation token is a token of its own (tagging)
        if not any(ch.isalnum() for ch in word):
            return []
        return [i for i, ch in enumerate(word) if is_punct(ch)]

    def eligible(self, word):
        return "insert" in self.settings.ops or bool(self._droppable(word))

    def change(self, word, rng):
        marks = self._droppable(word)
        ops = [op for op in self.settings.ops if op == "insert" or marks]
        if rng.choice(ops) == "drop":
            i = rng.choice(marks)
            return word[:i] + word[i + 1:]
        return word + rng.choice(MARKS)
