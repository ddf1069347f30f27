"""The training loop: AdamW, linear warmup/decay, clipping, accumulation, multi-task sampling.

Model selection is on the English dev score at the end of every epoch; the loop keeps a resume
state so a retried or restarted trial continues from its last finished epoch.
"""
from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from trainables.families import get_family
from trainables.model import MultiTaskModel
from trainables.steps import Optimization, PlainOptimization, TrainingStep, plain_step
from trainables.tasks.base import Task

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainSettings:
    learning_rate: float
    batch_size: int
    eval_batch_size: int
    epochs: int
    max_length: int
    warmup_ratio: float
    weight_decay: float
    max_grad_norm: float
    grad_accumulation: int
    max_steps: int | None
    seed: int

    @classmethod
    def from_dict(cls, values: dict, seed: int) -> "TrainSettings":
        fields = {f for f in cls.__dataclass_fields__ if f != "seed"}
        return cls(seed=seed, **{k: values[k] for k in fields})


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


class MultiTaskBatches:
    """Batches of several tasks interleaved, each task sampled in proportion to its size.

    One epoch visits every example of every task once; the order is fixed by the seed and
    epoch so a resumed run replays the same sequence.
    """

    def __init__(self, features: dict[str, object], collators: dict[str, Callable], batch_size: int):
        self.features = features
        self.collators = collators
        self.batch_size = batch_size

    def steps_per_epoch(self) -> int:
        return sum(math.ceil(len(f) / self.batch_size) for f in self.features.values())

    def epoch(self, seed: int, epoch: int):
        rng = np.random.default_rng([seed, epoch])
        orders = {name: rng.permutation(len(f)) for name, f in self.features.items()}
        remaining = {name: [o[i:i + self.batch_size] for i in range(0, len(o), self.batch_size)]
                     for name, o in orders.items()}
        while any(remaining.values()):
            names = [n for n, b in remaining.items() if b]
            weights = np.array([len(remaining[n]) for n in names], dtype=float)
            name = names[rng.choice(len(names), p=weights / weights.sum())]
            idx = remaining[name].pop(0)
            rows = self.features[name].select(idx.tolist())
            yield name, self.collators[name]([rows[i] for i in range(len(rows))])


def train(model: MultiTaskModel, tasks: dict[str, Task], features: dict[str, object], tokenizer,
          settings: TrainSettings, *, dev_score: Callable[[], float],
          on_epoch_end: Callable[[int, dict, bool, dict], None], resume: dict | None = None,
          step_fn: TrainingStep = plain_step,
          optimization: Callable[[MultiTaskModel, TrainSettings, int], Optimization] = PlainOptimization,
          ) -> dict:
    """Train for ``settings.epochs``; ``on_epoch_end(epoch, metrics, improved, state)`` after each.

    ``state`` is everything needed to resume (weights, optimizer, scheduler, best score); the
    caller decides where to keep it. ``step_fn`` is what one micro-batch does (plain or an
    adversarial method), ``optimization`` builds the optimizer side (plain AdamW or DeepSpeed).
    Returns the final summary (best dev score and epoch).
    """
    collators = {n: get_family(tasks[n].info.family).collator(tokenizer) for n in features}
    batches = MultiTaskBatches(features, collators, settings.batch_size)
    updates_per_epoch = math.ceil(batches.steps_per_epoch() / settings.grad_accumulation)
    total = updates_per_epoch * settings.epochs
    if settings.max_steps:
        total = min(total, settings.max_steps)
    opt = optimization(model, settings, total)
    start_epoch, best, best_epoch, step = 0, -math.inf, -1, 0
    if resume:
        opt.load_state_dict(resume["optimization"])
        start_epoch, best, best_epoch, step = (resume["epoch"] + 1, resume["best"],
                                                resume["best_epoch"], resume["step"])
        log.info("resuming at epoch %d (best dev %.4f at epoch %d)", start_epoch, best, best_epoch)
    for epoch in range(start_epoch, settings.epochs):
        if settings.max_steps and step >= settings.max_steps:
            break
        seed_everything(settings.seed * 1000 + epoch)
        model.train()
        started, losses, micro = time.time(), [], 0
        for name, batch in batches.epoch(settings.seed, epoch):
            losses.append(step_fn(model, tasks[name], batch, opt.backward))
            micro += 1
            if micro % settings.grad_accumulation == 0:
                opt.update()
                step += 1
                if settings.max_steps and step >= settings.max_steps:
                    break
        if micro % settings.grad_accumulation:  # flush a partial accumulation at epoch end
            opt.update()
            step += 1
        model.eval()
        score = dev_score()
        improved = score > best
        if improved:
            best, best_epoch = score, epoch
        metrics = {"epoch": epoch + 1, "train/loss": float(np.mean(losses)) if losses else float("nan"),
                   "dev/score": score, "dev/best": best, "train/steps": step,
                   "train/epoch_seconds": time.time() - started}
        log.info("epoch %d: loss %.4f dev %.4f (best %.4f)", epoch + 1, metrics["train/loss"], score, best)
        state = {"optimization": opt.state_dict(), "epoch": epoch, "best": best,
                 "best_epoch": best_epoch, "step": step}
        on_epoch_end(epoch, metrics, improved, state)
    return {"best": best, "best_epoch": best_epoch, "steps": step}
