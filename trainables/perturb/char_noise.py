"""Character noise: adjacent swaps, drops, insertions and QWERTY keyboard typos."""
from __future__ import annotations

import random
from dataclasses import dataclass

from trainables.perturb import register
from trainables.perturb.base import WordPerturbation, check_rate, check_tuple, has_letter

OPS = ("swap", "drop", "insert", "keyboard")
_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
_STAGGER = (0.0, 0.25, 0.75)  # how far each row is shifted right on a keyboard


def _keyboard() -> dict[str, str]:
    """Keys that touch each key on a QWERTY layout (same row +-1, or overlapping above/below)."""
    where = {ch: (r, c + _STAGGER[r]) for r, row in enumerate(_ROWS) for c, ch in enumerate(row)}
    return {a: "".join(b for b, (rb, xb) in where.items()
                       if b != a and ((rb == ra and abs(xb - xa) == 1) or
                                      (abs(rb - ra) == 1 and abs(xb - xa) < 1)))
            for a, (ra, xa) in where.items()}


KEYBOARD = _keyboard()


@dataclass(frozen=True)
class CharNoiseSettings:
    #: fraction of the words (those with a letter) that get one typo
    rate: float = 0.1
    ops: tuple[str, ...] = OPS

    def __post_init__(self) -> None:
        check_rate(self.rate)
        check_tuple(self, "ops", OPS)


def _letters(word: str) -> list[int]:
    return [i for i, ch in enumerate(word) if ch.isalpha()]


def typo(word: str, ops: tuple[str, ...], rng: random.Random) -> str:
    """One typo of a kind from ``ops`` that applies to ``word`` (insertion always does)."""
    letters = _letters(word)
    swaps = [i for i in letters if i + 1 < len(word) and word[i + 1].isalpha() and word[i] != word[i + 1]]
    keys = [i for i in letters if word[i].lower() in KEYBOARD]
    possible = [op for op in ops if (op == "swap" and swaps) or (op == "drop" and len(letters) > 1)
                or (op == "keyboard" and keys) or op == "insert"]
    op = rng.choice(possible or ["insert"])
    if op == "swap":
        i = rng.choice(swaps)
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    if op == "drop":
        i = rng.choice(letters)
        return word[:i] + word[i + 1:]
    if op == "keyboard":
        i = rng.choice(keys)
        new = rng.choice(KEYBOARD[word[i].lower()])
        return word[:i] + (new.upper() if word[i].isupper() else new) + word[i + 1:]
    # insert: a letter of the word itself (works in every script) at a random place
    i = rng.randrange(len(word) + 1)
    return word[:i] + word[rng.choice(letters)] + word[i:]


@register
class CharNoise(WordPerturbation):
    name = "char_noise"
    Settings = CharNoiseSettings

    def eligible(self, word):
        return has_letter(word)

    def change(self, word, rng):
        return typo(word, self.settings.ops, rng)
