"""The training loop: AdamW, linear warmup/decay, clipping, accumulation, multi-task sampling.

Model selection is on the English dev score at the end of every epoch; the loop keeps a resume
state so a retried or restarted trial continues from its last finished epoch.
"""
from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import MISSING, dataclass, fields
from typing import Callable

import numpy as np
import torch
from trainables.device import Throughput
from trainables.failures import DeterministicError
from trainables.families import get_family
from trainables.families.base import example_lengths
from trainables.model import MultiTaskModel
from trainables.pipeline import training_batches
from trainables.steps import Optimization, PlainOptimization, TrainingStep, plain_step
from trainables.tasks.base import Task

log = logging.getLogger(__name__)


class NonFiniteError(DeterministicError, RuntimeError):
    """Training diverged (a NaN or infinite loss or metric): the trial fails, never scores, and is
    not retried (the same seed diverges again)."""


def check_finite(value: float, what: str, step: int, epoch: int) -> None:
    if not math.isfinite(value):
        raise NonFiniteError(f"{what} became {value} at step {step} (epoch {epoch + 1})")


@dataclass(frozen=True)
class TrainSettings:
    """The loop's typed view of a trial's hyperparameters: one field per entry of
    ``trainables.contract.HYPERPARAMETERS`` (names, types and defaults agree; tests/test_contract.py
    checks it), then the seed and the resume interval, which come from elsewhere."""

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
    # validation within epochs (jiant's X-STILTs runs: every 1000 steps on 500 dev examples,
    # patience 30): None = at the end of each epoch only, on the whole dev split, no early stop
    eval_every_steps: int | None = None
    eval_examples: int | None = None
    patience: int | None = None
    freeze_embeddings: int = 0
    # resume state within epochs every that many optimizer steps (None: every ~5 minutes of work)
    checkpoint_every_steps: int | None = None

    @classmethod
    def from_dict(cls, values: dict, seed: int) -> "TrainSettings":
        """A trial's hyperparameters: a field with a default (an optional hyperparameter of
        ``trainables.contract.HYPERPARAMETERS``, a setting) may be absent, every other is given."""
        return cls(seed=seed, **{f.name: values[f.name] if f.default is MISSING else values.get(f.name, f.default)
                                 for f in fields(cls) if f.name != "seed"})


CHECKPOINT_INTERVAL_S = 300.0  # the default mid-epoch resume interval: a lost trial loses minutes
CALIBRATION_STEPS = 10         # steps timed to turn that interval into a step count


def rng_state() -> dict:
    """Every random generator a training step draws from (dropout, masking, sampling)."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


@dataclass(frozen=True)
class Mixing:
    """How one task takes part in multi-task training: a per-epoch cap or a fixed probability."""

    examples_cap: int | None = None
    probability: float | None = None


class MultiTaskBatches:
    """Batches of several tasks interleaved.

    * Default: each task sampled in proportion to its size, so one epoch visits every example of
      every task once; ``examples_cap`` limits a task to that many (freshly drawn) examples per
      epoch, which is examples-proportional mixing with a cap (Raffel et al., 2020).
    * Given probabilities: each batch's task is drawn with those probabilities (a task that runs
      out starts a new pass over its examples); the epoch has as many batches as the default.
    * Length grouping: examples of similar length share a batch (sorted within chunks of
      ``group_batches`` batches, chunks and batches shuffled), so dynamic padding pads little.

    The order is fixed by seed and epoch, so a resumed run replays the same sequence.
    """

    def __init__(self, features: dict[str, object], collators: dict[str, Callable], batch_size: int,
                 mixing: dict[str, Mixing] | None = None, group_by_length: bool = True,
                 group_batches: int = 50):
        self.features = features
        self.collators = collators
        self.batch_size = batch_size
        self.mixing = {name: (mixing or {}).get(name, Mixing()) for name in features}
        given = [m.probability is not None for m in self.mixing.values()]
        if any(given) and not all(given):
            raise ValueError("multi-task probabilities: give a probability for every task or none")
        self.probabilities = None
        if all(given) and len(features) > 1:
            total = sum(m.probability for m in self.mixing.values())
            self.probabilities = {n: m.probability / total for n, m in self.mixing.items()}
        self.group_batches = group_batches
        self.lengths = ({n: example_lengths(f) for n, f in features.items()} if group_by_length
                        else {n: None for n in features})

    def _per_epoch(self, name: str) -> int:
        cap = self.mixing[name].examples_cap
        n = len(self.features[name])
        return min(n, cap) if cap else n

    def steps_per_epoch(self) -> int:
        return sum(math.ceil(self._per_epoch(n) / self.batch_size) for n in self.features)

    def _batches(self, name: str, rng: np.random.Generator) -> list[np.ndarray]:
        order = rng.permutation(len(self.features[name]))[: self._per_epoch(name)]
        lengths = self.lengths[name]
        if lengths is not None:
            chunk = self.batch_size * self.group_batches
            order = np.concatenate([c[np.argsort(lengths[c], kind="stable")]
                                    for c in np.array_split(order, max(1, math.ceil(len(order) / chunk)))])
        batches = [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        return [batches[i] for i in rng.permutation(len(batches))]

    def plan(self, seed: int, epoch: int):
        """The epoch's (task, row indices) batches in order, without collating them."""
        rng = np.random.default_rng([seed, epoch])
        remaining = {name: self._batches(name, rng) for name in self.features}
        if self.probabilities:
            names = list(self.probabilities)
            p = np.array([self.probabilities[n] for n in names])
            for _ in range(self.steps_per_epoch()):
                name = names[rng.choice(len(names), p=p)]
                if not remaining[name]:
                    remaining[name] = self._batches(name, rng)
                yield name, remaining[name].pop(0)
            return
        while any(remaining.values()):
            names = [n for n, b in remaining.items() if b]
            weights = np.array([len(remaining[n]) for n in names], dtype=float)
            name = names[rng.choice(len(names), p=weights / weights.sum())]
            yield name, remaining[name].pop(0)

    def epoch(self, seed: int, epoch: int, skip: int = 0):
        """Collated batches of the epoch; ``skip`` leaves out (and does not collate) the first
        ones, which a run resumed from a mid-epoch state has trained on already."""
        for i, (name, idx) in enumerate(self.plan(seed, epoch)):
            if i >= skip:
                yield name, self._collate(name, idx)

    def _collate(self, name: str, idx: np.ndarray):
        # one batched read of the rows: a select() and row-by-row reads cost ten times as much
        columns = self.features[name][idx.tolist()]
        return self.collators[name]([dict(zip(columns, values)) for values in zip(*columns.values())])


def train(model: MultiTaskModel, tasks: dict[str, Task], features: dict[str, object], tokenizer,
          settings: TrainSettings, *, dev_score: Callable[[], float],
          on_epoch_end: Callable[[int, dict, bool, dict], None], resume: dict | None = None,
          step_fn: TrainingStep = plain_step,
          optimization: Callable[[MultiTaskModel, TrainSettings, int], Optimization] = PlainOptimization,
          mixing: dict[str, Mixing] | None = None, device: torch.device | None = None,
          on_improved: Callable[[int, float], None] | None = None,
          on_checkpoint: Callable[[dict], None] | None = None,
          agree: Callable[[int], int] = lambda value: value) -> dict:
    """Train for ``settings.epochs``; ``on_epoch_end(epoch, metrics, improved, state)`` after each.

    ``state`` is everything needed to resume (weights, optimizer, scheduler, best score); the
    caller decides where to keep it. ``step_fn`` is what one micro-batch does (plain or an
    adversarial method), ``optimization`` builds the optimizer side (plain AdamW or DeepSpeed).
    ``device`` (where the model computes) turns on prefetching into pinned memory on CUDA and
    the peak-memory metric. A non-finite loss or dev score raises ``NonFiniteError``.

    Validation (``dev_score``) runs at the end of every epoch and, with ``eval_every_steps``,
    every that many optimizer steps; ``on_improved(epoch, score)`` is called when one within an
    epoch improves (the caller saves the model: the epoch end's ``improved`` only says whether
    the end-of-epoch validation did). After ``patience`` validations without improvement,
    training stops (that epoch still ends with ``on_epoch_end``).

    ``on_checkpoint(state)`` receives a resume state within an epoch every
    ``checkpoint_every_steps`` optimizer steps (default: the step count of about
    ``CHECKPOINT_INTERVAL_S``, timed over the first steps and made the same on every rank by
    ``agree``, rank 0's value). Resumed from such a state, the epoch skips the batches it trained
    and restores the random generators, so it goes on as if it had not stopped.
    Returns the final summary: best dev score, its epoch and whether the model in memory holds
    it (``best_is_current``), the last epoch trained, steps, and the epoch a resumed run
    continued from.
    """
    collators = {n: get_family(tasks[n].info.family).collator(tokenizer) for n in features}
    batches = MultiTaskBatches(features, collators, settings.batch_size, mixing)
    updates_per_epoch = math.ceil(batches.steps_per_epoch() / settings.grad_accumulation)
    total = updates_per_epoch * settings.epochs
    if settings.max_steps:
        total = min(total, settings.max_steps)
    opt = optimization(model, settings, total)
    meter = Throughput(device)
    track = {"best": -math.inf, "best_epoch": -1, "best_step": -1, "since_best": 0}
    start_epoch, step = 0, 0
    partial = (resume or {}).get("partial")  # a state saved within an epoch
    if resume:
        opt.load_state_dict(resume["optimization"])
        start_epoch, step = resume["epoch"] + 1, resume["step"]
        track.update(best=resume["best"], best_epoch=resume["best_epoch"],
                     best_step=resume.get("best_step", -1), since_best=resume.get("since_best", 0))
        log.info("resuming at epoch %d%s (best dev %.4f at epoch %d)", start_epoch,
                 f", step {step}" if partial else "", track["best"], track["best_epoch"])
    last_epoch = start_epoch - 1
    every = settings.checkpoint_every_steps if on_checkpoint is not None else None
    calibrate = on_checkpoint is not None and every is None
    per_epoch = batches.steps_per_epoch()
    first_step, timer = step, time.time()

    def validate(epoch: int) -> tuple[float, bool]:
        model.eval()
        score = dev_score()
        check_finite(score, "dev score", step, epoch)
        improved = score > track["best"]
        if improved:
            track.update(best=score, best_epoch=epoch, best_step=step, since_best=0)
        else:
            track["since_best"] += 1
        return score, improved

    def out_of_patience() -> bool:
        return bool(settings.patience) and track["since_best"] >= settings.patience

    stopped_early = False
    for epoch in range(start_epoch, settings.epochs):
        if stopped_early or (settings.max_steps and step >= settings.max_steps):
            break
        seed_everything(settings.seed * 1000 + epoch)
        model.train()
        started, losses, micro, validated_at = time.time(), [], 0, None
        if partial is not None and partial["epoch"] == epoch:
            micro, losses, validated_at = partial["micro"], list(partial["losses"]), partial.get("validated_at")
            set_rng_state(partial["rng"])
        meter.start()
        for name, batch in training_batches(batches.epoch(settings.seed, epoch, skip=micro), device):
            meter.add(batch)
            losses.append(step_fn(model, tasks[name], batch, opt.backward))
            check_finite(losses[-1], "loss", step + 1, epoch)  # the step returned a float: no extra sync
            micro += 1
            if micro % settings.grad_accumulation == 0:
                opt.update()
                step += 1
                if settings.eval_every_steps and step % settings.eval_every_steps == 0:
                    score, improved = validate(epoch)
                    validated_at = (step, score, improved)
                    log.info("step %d: dev %.4f (best %.4f)", step, score, track["best"])
                    if improved and on_improved is not None:
                        on_improved(epoch, score)
                    model.train()
                    if out_of_patience():
                        log.info("no better dev score in %d validations: stopping at step %d", settings.patience, step)
                        stopped_early = True
                        break
                if settings.max_steps and step >= settings.max_steps:
                    break
                if calibrate and step - first_step == CALIBRATION_STEPS:
                    seconds = (time.time() - timer) / CALIBRATION_STEPS
                    every = agree(max(1, round(CHECKPOINT_INTERVAL_S / max(seconds, 1e-6))))
                    calibrate = False
                    log.info("resume state every %d steps (about %.0f s of work)", every, every * seconds)
                if every and step % every == 0 and micro < per_epoch:  # the epoch's end saves its own
                    on_checkpoint({"optimization": opt.state_dict(), "epoch": epoch - 1, "step": step, **track,
                                   "partial": {"epoch": epoch, "micro": micro, "losses": list(losses),
                                               "validated_at": validated_at, "rng": rng_state()}})
        if micro % settings.grad_accumulation:  # flush a partial accumulation at epoch end
            opt.update()
            step += 1
        if meter.cuda:
            torch.cuda.synchronize(device)
        train_seconds = time.time() - started
        if validated_at is not None and validated_at[0] == step:  # just validated: not twice
            score, improved = validated_at[1], False
        else:
            score, improved = validate(epoch)
            stopped_early = stopped_early or out_of_patience()
        metrics = {"epoch": epoch + 1, "train/loss": float(np.mean(losses)) if losses else float("nan"),
                   "dev/score": score, "dev/best": track["best"], "train/steps": step,
                   "train/epoch_seconds": time.time() - started, **meter.metrics(train_seconds)}
        log.info("epoch %d: loss %.4f dev %.4f (best %.4f)", epoch + 1, metrics["train/loss"], score, track["best"])
        state = {"optimization": opt.state_dict(), "epoch": epoch, "step": step, **track}
        on_epoch_end(epoch, metrics, improved, state)
        last_epoch = epoch
    # resumed_from_epoch: how many finished epochs a resumed run continued after (None: not resumed)
    # last_epoch: the epoch whose end state the model holds now (-1: none trained)
    return {"best": track["best"], "best_epoch": track["best_epoch"], "steps": step, "last_epoch": last_epoch,
            "best_is_current": track["best_step"] == step, "stopped_early": stopped_early,
            "resumed_from_epoch": start_epoch if resume else None}
