"""A greedy budgeted word-substitution attack on a classifier (evaluation only).

Each round tries every single-word substitution (lexicon translations, when a lexicon is given,
and ``typos`` keyboard/character typos per word) on the words not yet changed, scores all
candidates with ``gold_probability`` in one call, and keeps the one that lowers the gold-label
probability most; it stops after ``budget`` words or when no substitution lowers it.

``gold_probability(candidates: list[dict]) -> list[float]`` gets whole candidate examples (the
example with ``text_a`` / ``text_b`` replaced), since the probability of the gold label depends
on the label and on both texts of a pair; ``model_gold_probability`` builds one from a model.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from functools import cached_property
from typing import Callable

from trainables.perturb import register
from trainables.perturb.base import Perturbation, file_digest, read_lexicon, split_words
from trainables.perturb.char_noise import OPS as TYPO_OPS, typo
from trainables.perturb.code_switch import core, lookup, translate

GoldProbability = Callable[[list[dict]], list[float]]
TEXT_FIELDS = ("text_a", "text_b")


@dataclass(frozen=True)
class AttackSettings:
    #: most words changed per example
    budget: int = 3
    #: typo candidates tried per word
    typos: int = 2
    #: optional MUSE lexicon (``{language}`` is filled in) for translation candidates
    lexicon: str = ""
    reverse: bool = False

    def __post_init__(self) -> None:
        if self.budget < 1:
            raise ValueError(f"budget: must be >= 1, got {self.budget}")
        if self.typos < 0:
            raise ValueError(f"typos: must be >= 0, got {self.typos}")
        if self.typos == 0 and not self.lexicon:
            raise ValueError("typos: 0 with no lexicon leaves the attack no substitutions")


@register
class Attack(Perturbation):
    """Model-aware: ``prepare`` builds ``gold_probability`` from the evaluated model (or one is
    given to the constructor, as ``perturb_dataset(..., gold_probability=)`` does)."""

    name = "attack"
    Settings = AttackSettings
    families = ("classification",)
    files = ("lexicon",)
    cacheable = False  # the substitutions depend on the model

    def __init__(self, settings, *, language: str, gold_probability: GoldProbability | None = None) -> None:
        super().__init__(settings, language=language)
        self.gold_probability = gold_probability

    def prepare(self, model, task, tokenizer, *, max_length: int, batch_size: int) -> None:
        self.gold_probability = model_gold_probability(model, task, tokenizer, max_length=max_length,
                                                       batch_size=batch_size)

    def apply(self, example, family, rng, index):
        if self.gold_probability is None:
            raise ValueError("gold_probability: required by the attack perturbation (prepare it with "
                             "a model, or pass gold_probability=)")
        return self.attack(example, rng, self.gold_probability)

    @cached_property
    def table(self) -> dict[str, tuple[str, ...]]:
        if not self.settings.lexicon:
            return {}
        return read_lexicon(self.file("lexicon"), reverse=self.settings.reverse, owner=self.name)

    def fingerprint(self):
        if not self.settings.lexicon:
            return ""
        self.table  # noqa: B018
        return file_digest(self.file("lexicon"))

    def substitutes(self, word: str, rng: random.Random) -> list[str]:
        out = []
        body = core(word)[1]
        key = body if body in self.table else body.lower()
        out += [translate(word, {key: (t,)}, rng) for t in lookup(word, self.table)]
        if any(ch.isalpha() for ch in word):
            out += [typo(word, TYPO_OPS, rng) for _ in range(self.settings.typos)]
        return [w for w in dict.fromkeys(out) if w != word]

    def attack(self, example: dict, rng: random.Random, gold_probability: GoldProbability) -> dict:
        fields = [f for f in TEXT_FIELDS if isinstance(example.get(f), str)]
        pieces = {f: split_words(example[f]) for f in fields}
        options = {(f, i): self.substitutes(pieces[f][i], rng)
                   for f in fields for i in range(0, len(pieces[f]), 2) if pieces[f][i]}

        def build(change: tuple[str, int, str] | None) -> dict:
            out = dict(example)
            for f in fields:
                words = list(pieces[f])
                if change and change[0] == f:
                    words[change[1]] = change[2]
                out[f] = "".join(words)
            return out

        current = float(gold_probability([build(None)])[0])
        for _ in range(self.settings.budget):
            candidates = [(f, i, w) for (f, i), subs in options.items() for w in subs]
            if not candidates:
                break
            scores = [float(p) for p in gold_probability([build(c) for c in candidates])]
            best = min(range(len(scores)), key=scores.__getitem__)
            if scores[best] >= current:
                break
            f, i, w = candidates[best]
            pieces[f][i] = w
            options.pop((f, i))
            current = scores[best]
        return build(None)

    def text(self, text, rng):
        raise ValueError("attack: edits whole examples (apply), not single texts")

    def tokens(self, tokens, tags, rng):
        raise ValueError("family: the attack supports classification only")


def model_gold_probability(model, task, tokenizer, *, max_length: int = 128,
                           batch_size: int = 32) -> GoldProbability:
    """``gold_probability`` of a classification model (a ``MultiTaskModel`` with the task's head)."""
    import torch  # here: the spec check imports this module in the torch-free driver

    from trainables.families import get_family

    family = get_family(task.info.family)

    @torch.no_grad()
    def score(candidates: list[dict]) -> list[float]:
        was_training = model.training
        model.eval()
        out: list[float] = []
        try:
            for start in range(0, len(candidates), batch_size):
                chunk = candidates[start:start + batch_size]
                texts = [[c["text_a"] for c in chunk]]
                if isinstance(chunk[0].get("text_b"), str):
                    texts.append([c["text_b"] for c in chunk])
                batch = dict(tokenizer(*texts, truncation=True, max_length=max_length,
                                       padding=True, return_tensors="pt"))
                logits = family.forward(model, model.heads[task.name], batch)
                probs = logits.float().softmax(-1)
                gold = torch.tensor([int(c["label"]) for c in chunk], device=probs.device)
                out += probs.gather(1, gold[:, None])[:, 0].tolist()
        finally:
            model.train(was_training)
        return out

    return score
