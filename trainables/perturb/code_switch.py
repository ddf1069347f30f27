"""Code-switching: replace ``rate`` of the words found in a bilingual lexicon by a translation.

The lexicon is a MUSE dictionary file (``src tgt`` per line); its path may contain
``{language}``, filled with the language of the data (``muse/en-{language}.txt``), and
``reverse: true`` reads it as ``tgt src`` (switch a target-language test set into English).
Words are looked up without surrounding punctuation, which is kept: as written first (German
``Katze``), else lower-cased, and then a capital first letter carries over to the translation
(sentence-initial ``The`` -> ``Der``).
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from functools import cached_property

from trainables.perturb import register
from trainables.perturb.base import (WordPerturbation, check_rate, file_digest, is_punct,
                                     read_lexicon)


@dataclass(frozen=True)
class CodeSwitchSettings:
    lexicon: str = ""
    #: fraction of the words in the lexicon that get translated
    rate: float = 0.5
    reverse: bool = False

    def __post_init__(self) -> None:
        if not self.lexicon:
            raise ValueError("lexicon: required (path of a MUSE 'src tgt' dictionary file)")
        check_rate(self.rate)


def core(word: str) -> tuple[str, str, str]:
    """(leading punctuation, the word, trailing punctuation)."""
    start, end = 0, len(word)
    while start < end and is_punct(word[start]):
        start += 1
    while end > start and is_punct(word[end - 1]):
        end -= 1
    return word[:start], word[start:end], word[end:]


def lookup(word: str, table: dict[str, tuple[str, ...]]) -> tuple[str, ...]:
    body = core(word)[1]
    return table.get(body) or table.get(body.lower(), ())


def translate(word: str, table: dict[str, tuple[str, ...]], rng: random.Random) -> str:
    before, body, after = core(word)
    if body in table:
        return before + rng.choice(table[body]) + after
    new = rng.choice(table[body.lower()])
    if body[:1].isupper() and new[:1].islower():
        new = new[0].upper() + new[1:]
    return before + new + after


@register
class CodeSwitch(WordPerturbation):
    name = "code_switch"
    Settings = CodeSwitchSettings
    files = ("lexicon",)

    @property
    def path(self) -> str:
        return self.file("lexicon")

    @cached_property
    def table(self) -> dict[str, tuple[str, ...]]:
        return read_lexicon(self.path, reverse=self.settings.reverse, owner=self.name)

    def fingerprint(self):
        self.table  # noqa: B018  (fail early, with the path, when the file is missing)
        return file_digest(self.path)

    def eligible(self, word):
        return bool(lookup(word, self.table))

    def change(self, word, rng):
        return translate(word, self.table, rng)
