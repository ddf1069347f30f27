"""Word-order noise: shuffle the words inside consecutive windows of ``window`` words.

A word moves at most ``window - 1`` places. For tagging, tokens and their tags move together.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from trainables.perturb import register
from trainables.perturb.base import Perturbation, split_words


@dataclass(frozen=True)
class WordOrderSettings:
    window: int = 3

    def __post_init__(self) -> None:
        if self.window < 2:
            raise ValueError(f"window: must be >= 2, got {self.window}")


def window_permutation(n: int, window: int, rng: random.Random) -> list[int]:
    order: list[int] = []
    for start in range(0, n, window):
        block = list(range(start, min(start + window, n)))
        rng.shuffle(block)
        order += block
    return order


@register
class WordOrder(Perturbation):
    name = "word_order"
    Settings = WordOrderSettings

    def text(self, text, rng):
        pieces = split_words(text)
        slots = [i for i in range(0, len(pieces), 2) if pieces[i]]
        order = window_permutation(len(slots), self.settings.window, rng)
        out = list(pieces)
        for slot, source in zip(slots, order):
            out[slot] = pieces[slots[source]]
        return "".join(out)

    def tokens(self, tokens, tags, rng):
        order = window_permutation(len(tokens), self.settings.window, rng)
        return [tokens[i] for i in order], [tags[i] for i in order]
