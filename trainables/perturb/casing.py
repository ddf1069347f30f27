"""Casing noise: lower-, upper-, title- or swap-case a word (how users type)."""
from __future__ import annotations

from dataclasses import dataclass

from trainables.perturb import register
from trainables.perturb.base import WordPerturbation, check_rate, check_tuple

OPS = ("lower", "upper", "title", "swap")


@dataclass(frozen=True)
class CasingSettings:
    #: fraction of the words with a cased letter whose casing changes
    rate: float = 0.1
    ops: tuple[str, ...] = OPS

    def __post_init__(self) -> None:
        check_rate(self.rate)
        check_tuple(self, "ops", OPS)


def recase(word: str, op: str) -> str:
    return {"lower": word.lower, "upper": word.upper, "title": word.capitalize,
            "swap": word.swapcase}[op]()


@register
class Casing(WordPerturbation):
    name = "casing"
    Settings = CasingSettings

    def eligible(self, word):
        return any(recase(word, op) != word for op in self.settings.ops)

    def change(self, word, rng):
        return rng.choice([new for op in self.settings.ops if (new := recase(word, op)) != word])
