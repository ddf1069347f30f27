"""A trial's training phase: featurize, train on English, keep the best epoch on English dev.

What it writes lives in the trial's folder: ``model/`` (the best validation's weights, through
the ``Optimization``'s ``save_model``) and ``resume/state.pt`` (the latest resume state),
mirrored to object storage when the trial's folder is there.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from trainables import storage
from trainables.adversarial import build_step
from trainables.contract import TrialConfig
from trainables.distributed import StopRequested
from trainables.families import get_family
from trainables.optimization import OptimizationFactory
from trainables.tasks.base import Task
from trainables.train import Mixing, TrainSettings, train
from trainables.trial.staging import Mirror, load_resume_state


def train_phase(cfg: TrialConfig, tasks: dict[str, Task], model, tokenizer, out: Path,
                report: Callable[[dict], None], ctx=None, *, factory: OptimizationFactory,
                device: torch.device) -> dict:
    """Train, keeping the best epoch on English dev in ``out/model``; returns ``train``'s summary.

    ``ctx`` (a ``trainables.distributed.DistributedContext``) makes it one rank of a
    data-parallel trial: its shard of the data, its part of the batch, files from rank 0 only.
    """
    settings = replace(TrainSettings.from_dict(cfg.hparams, seed=cfg.seed),
                       checkpoint_every_steps=cfg.settings.get("checkpoint_every_steps"))
    if settings.freeze_embeddings:  # before the optimizer and any DDP wrapper see the parameters
        model.freeze_input_embeddings()
    lengths = task_lengths(cfg, settings.max_length)
    features = {name: get_family(t.info.family).featurize(t, t.load_train(), tokenizer, lengths[name])
                for name, t in tasks.items()}
    is_main = ctx is None or ctx.is_main
    if ctx is not None and ctx.world_size > 1:
        from trainables.distributed import shard, worker_settings

        settings = worker_settings(settings, ctx.world_size)
        features = {name: shard(f, ctx) for name, f in features.items()}
        factory.distribute(model, ctx)

    dev = {name: t.load("dev", t.info.train_language) for name, t in tasks.items()}  # once, not per epoch
    if settings.eval_examples:  # validation on the first examples of each dev split (jiant's subset)
        dev = {name: d.select(range(min(settings.eval_examples, len(d)))) for name, d in dev.items()}
    resume_file = out / "resume" / "state.pt"
    resume = load_resume_state(resume_file, device)
    meta = {"trial_id": cfg.trial_id, "job_id": cfg.job_id, "stage": cfg.stage,
            "tasks": list(cfg.tasks), "seed": cfg.seed, "hparams": cfg.hparams}
    mirror = (Mirror(cfg.output_dir, out, is_main, ranks=ctx.world_size if ctx is not None else 1)
              if storage.is_remote(cfg.output_dir) else None)

    unsent = {"model": False}  # a better model saved since the last upload (object storage)

    def save_best(epoch: int, score: float) -> None:
        tmp = out / "model.tmp"
        if is_main:
            shutil.rmtree(tmp, ignore_errors=True)
        # a collective (ZeRO partitions the weights): every rank calls it, rank 0 writes
        factory.optimization.save_model(tokenizer, tmp, {**meta, "epoch": epoch + 1, "dev_score": score})
        if is_main:
            shutil.rmtree(out / "model", ignore_errors=True)
            os.replace(tmp, out / "model")
        unsent["model"] = True

    def save_state(state: dict) -> None:
        if is_main:  # only the latest state is kept
            resume_file.parent.mkdir(exist_ok=True)
            torch.save(state, resume_file.with_suffix(".tmp"))
            os.replace(resume_file.with_suffix(".tmp"), resume_file)

    def on_checkpoint(state: dict) -> None:
        """A resume state within an epoch: saved, and mirrored to object storage (with the
        better model, if one was saved since the last upload) so a lost trial loses minutes."""
        save_state(state)
        if mirror:
            mirror.checkpoint(unsent["model"])
        unsent["model"] = False

    def on_epoch_end(epoch: int, metrics: dict, improved: bool, state: dict) -> None:
        if improved:
            save_best(epoch, metrics["dev/score"])
        save_state(state)
        if mirror:
            mirror.before_report(unsent["model"])
        unsent["model"] = False
        stop = None
        try:
            report(metrics)  # with several ranks: a barrier, so rank 0's files exist after it
        except StopRequested as exc:  # every rank got past the barrier: this epoch's state is complete
            stop = exc
        if mirror:
            mirror.after_report()
        if stop is not None:
            raise stop

    # examples_cap and probability mix the tasks of a multi-task entry; a task trained alone
    # uses all of its examples
    mixing = ({name: Mixing(t.options.examples_cap, t.options.probability) for name, t in tasks.items()}
              if len(tasks) > 1 else None)
    try:
        return train(model, tasks, features, tokenizer, settings,
                     dev_score=lambda: english_dev_score(tasks, dev, model, tokenizer, cfg.hparams, lengths),
                     on_epoch_end=on_epoch_end, on_improved=save_best, on_checkpoint=on_checkpoint,
                     agree=lambda value: _from_rank0(value, ctx), resume=resume, mixing=mixing,
                     step_fn=build_step(adversarial_config(cfg)), optimization=factory, device=device)
    finally:
        factory.close()


def task_lengths(cfg: TrialConfig, default: int) -> dict[str, int]:
    """Each task's ``max_length``: a multi-task entry's own per-task lengths, else the job's."""
    given = cfg.settings.get("task_max_length") or {}
    return {name: int(given.get(name, default)) for name in cfg.tasks}


def english_dev_score(tasks: dict[str, Task], dev: dict, model, tokenizer, hp: dict,
                      lengths: dict[str, int] | None = None) -> float:
    """Mean of each task's main metric on its English dev split (one task: just that metric).

    Tasks that only support the others (masked-LM mixing) do not take part unless alone.
    """
    scores = []
    selected = {n: t for n, t in tasks.items() if t.info.selection} or tasks
    for name, task in selected.items():
        family = get_family(task.info.family)
        with model.autocast():
            result = family.evaluate(task, model, dev[name], tokenizer, batch_size=hp["eval_batch_size"],
                                     max_length=(lengths or {}).get(name, hp["max_length"]))
        scores.append(result[task.info.main_metric])
    return float(np.mean(scores))


def _from_rank0(value: int, ctx) -> int:
    """Rank 0's ``value`` on every rank of a multi-worker trial (a broadcast); as is otherwise."""
    if ctx is None or ctx.world_size == 1:
        return value
    flag = torch.tensor([int(value)], device=ctx.device)
    torch.distributed.broadcast(flag, src=0)
    return int(flag.item())


def adversarial_config(cfg: TrialConfig) -> dict | None:
    """The adversarial-training config a trial's ``adversarial`` hyperparameter names.

    A built-in method name uses that method's defaults; other names are the spec's named
    configurations (passed in ``settings["adversarial"]``); absent or ``none`` = plain training.
    """
    name = cfg.hparams.get("adversarial")
    if name in (None, "none"):
        return None
    named = cfg.settings.get("adversarial", {})
    return dict(named[name]) if name in named else {"method": name}
