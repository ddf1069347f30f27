"""One trial: load the start checkpoint, train on English, select on English dev, evaluate per language.

This module is the trial's lifecycle (the single-process and Ray Train paths, the OOM retry,
the result and error records); ``staging`` holds the object-storage copies and the resume
state, ``training`` the training phase, ``evaluation`` the per-language metrics.

The driver passes a plain dict (``TrialConfig`` fields). ``run_trial`` works inside a Ray Tune
trial (``trainables.tune_entry``) and outside one (benchmarks, tests), reporting through a
callback. Everything it writes goes under ``output_dir``: the selected model, a resume state
while it runs, and ``result.json`` last — its presence means the trial is complete.

``output_dir`` (and ``init_from``) may be object-storage URIs (``s3://``, ``gs://``; see
``trainables.storage``). The trial then works in a local staging folder under the cache dir:
it starts from a copy of the remote folder (``resume/``, ``model/``), uploads ``model/`` when an
epoch improves and ``resume/`` after every epoch (``resume/state.pt`` last), and at the end
writes ``result.json`` to the remote folder, after everything else; a failure leaves
``error.txt`` there. Any node can so resume any trial.
"""
from __future__ import annotations

import gc
import itertools
import logging
import shutil
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Callable

import datasets
import torch
import transformers

from trainables import storage
from trainables.contract import STAGES, TrialConfig  # noqa: F401 - the trial's input
from trainables.device import configure_matmul, describe_device, resolve_precision, trial_device
from trainables.families.base import set_feature_cache
from trainables.model import build_model, resolve_model_path
from trainables.oom import retry_on_oom, run_once
from trainables.optimization import OptimizationFactory, optimization_factory
from trainables.records import ERROR_FILE, RESULT_FILE, read_result, write_json_atomic
from trainables.tasks import build_task
from trainables.tasks.base import Task, TaskOptions
from trainables.train import seed_everything
from trainables.trial.evaluation import evaluate_languages
from trainables.trial.staging import stage_trial
from trainables.trial.training import train_phase

log = logging.getLogger(__name__)


def run_trial(config: dict | TrialConfig, report: Callable[[dict], None] | None = None) -> dict:
    """Run one trial to completion and return its result (also written to result.json)."""
    cfg = config if isinstance(config, TrialConfig) else TrialConfig.from_dict(config)
    report = report or (lambda metrics: None)
    location = cfg.output_dir
    remote = storage.is_remote(location)
    workers = int(cfg.settings.get("workers", 1))
    if not remote:
        Path(location).mkdir(parents=True, exist_ok=True)
    done = read_result(location)
    if done is not None:  # a retry after completion: nothing to do
        report({**done["metrics"], "done": True})
        return done
    storage.delete_file(storage.join(location, ERROR_FILE))
    if remote:  # a multi-worker trial's ranks stage the remote folder themselves, on their nodes
        out = stage_trial(cfg) if workers <= 1 else None
    else:
        out = Path(location)
    try:
        result = _run(cfg, out, report) if workers <= 1 else _run_distributed(cfg, workers, report)
    except BaseException as exc:
        # Ray stops a trial (scheduler pruning, Ctrl-C) with SystemExit / KeyboardInterrupt:
        # that is not a failure of the trial, so it leaves no error behind.
        if not isinstance(exc, (KeyboardInterrupt, SystemExit)):
            storage.write_text(storage.join(location, ERROR_FILE),
                               f"{type(exc).__name__}: {exc}".splitlines()[0] + "\n")
        raise
    if remote:  # model/ went up with the epoch that selected it: result.json is the last object
        storage.write_json(storage.join(location, RESULT_FILE), result)
        storage.delete_dir(storage.join(location, "resume"))
        if out is not None:
            shutil.rmtree(out, ignore_errors=True)
    else:
        write_json_atomic(out / RESULT_FILE, result)
        shutil.rmtree(out / "resume", ignore_errors=True)
    report({**result["metrics"], "done": True})
    return result


def _run_distributed(cfg: TrialConfig, workers: int, report: Callable[[dict], None]) -> dict:
    """Data-parallel trial on ``workers`` Ray Train workers (DDP, or DeepSpeed when configured);
    rank 0's result comes back and is recorded here like a single-process trial's."""
    from trainables.distributed import run_distributed

    resources = cfg.settings.get("resources", {})
    per_worker = {"CPU": float(resources.get("cpu", 1))}
    if resources.get("gpu"):
        per_worker["GPU"] = float(resources["gpu"])
    train_path, train_fs = storage.for_ray(storage.join(cfg.output_dir, "train"))
    attempts = itertools.count()  # names each worker group apart

    def attempt(hparams: dict) -> dict:
        return run_distributed(_worker_trial, asdict(replace(cfg, hparams=hparams)), num_workers=workers,
                               use_gpu=bool(resources.get("gpu")), resources_per_worker=per_worker,
                               report=report, storage_path=train_path, storage_filesystem=train_fs,
                               name=f"{cfg.trial_id}-{next(attempts)}")

    # the micro-batch is split over the workers, so it cannot shrink below one row each
    ran = retry_on_oom(attempt, dict(cfg.hparams), floor=workers, on_retry=_reporting_retries(report))
    result = ran.value
    if ran.retries:
        result["oom_retries"] = ran.retries
        result["metrics"]["train/oom_retries"] = float(len(ran.retries))
    return result


def _reporting_retries(report: Callable[[dict], None]) -> Callable[[dict, dict], None]:
    """``retry_on_oom``'s ``on_retry``: each retry and its new micro-batch, reported as it starts."""
    def on_retry(record: dict, new_hparams: dict) -> None:
        report({"train/oom_retries": record["attempt"], "train/batch_size": new_hparams["batch_size"],
                "train/grad_accumulation": new_hparams["grad_accumulation"]})
    return on_retry


def _worker_trial(config: dict, ctx) -> dict:
    """One Ray Train worker's part of a trial (every rank trains and evaluates; rank 0 writes)."""
    cfg = TrialConfig.from_dict(config)
    if not storage.is_remote(cfg.output_dir):
        return _run(cfg, Path(cfg.output_dir), ctx.report, ctx=ctx)
    out = stage_trial(cfg, rank=ctx.rank)
    result = _run(cfg, out, ctx.report, ctx=ctx)
    shutil.rmtree(out, ignore_errors=True)  # everything is in the remote folder
    try:  # the trial's staging folder, once no other rank on this node still works in it
        out.parent.rmdir()
    except OSError:
        pass
    return result


def _run(cfg: TrialConfig, out: Path, report: Callable[[dict], None], ctx=None) -> dict:
    if cfg.stage not in STAGES:
        raise ValueError(f"unknown stage {cfg.stage!r}")
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    datasets.disable_progress_bars()
    set_feature_cache(Path(cfg.cache_dir).expanduser() / "features")
    transformers.logging.set_verbosity_error()
    started = time.time()
    device = trial_device(ctx)
    precision = resolve_precision(cfg.settings.get("precision", "auto"), device)
    configure_matmul(device)
    hardware = describe_device(device)
    factory = optimization_factory(cfg.settings, training=cfg.stage != "eval", device=device, precision=precision,
                                   resume_dir=out / "resume")
    log.info("trial %s on %s in %s%s", cfg.trial_id, hardware, precision.name, factory.note)
    seed_everything(cfg.seed)
    tasks = {name: build_task(name, TaskOptions.from_dict(cfg.task_options.get(name, {}), cfg.cache_dir))
             for name in cfg.tasks}
    start = cfg.init_from or resolve_model_path(cfg.model, cfg.cache_dir)
    if storage.is_remote(start):  # an intermediate checkpoint in object storage: once per node
        start = str(storage.stage_model(start, cfg.cache_dir))
    hp = cfg.hparams
    summary: dict = {"best_epoch": None, "steps": 0}
    oom_retries: list[dict] = []

    def placed(model):
        """The model on the trial's device, in the trial's precision (as its Optimization wants it)."""
        factory.place(model)
        if cfg.settings.get("gradient_checkpointing") and cfg.stage != "eval":
            model.encoder.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        return model

    if cfg.stage == "eval":
        model, tokenizer = build_model(start, list(tasks.values()))
        placed(model)
    else:
        def attempt(hparams: dict):
            # a retry starts from fresh weights (or the last finished epoch's resume state)
            seed_everything(cfg.seed)
            model, tokenizer = build_model(start, list(tasks.values()))
            return model, tokenizer, train_phase(replace(cfg, hparams=hparams), tasks, placed(model), tokenizer,
                                                 out, report, ctx, factory=factory, device=device)

        if ctx is not None and ctx.world_size > 1:
            # one rank retrying alone would leave the others waiting in a collective: the whole
            # worker group fails and ``_run_distributed`` retries it with a smaller micro-batch
            ran = run_once(attempt, hp)
        else:
            ran = retry_on_oom(attempt, hp, on_retry=_reporting_retries(report))
        (model, tokenizer, summary), hp, oom_retries = ran.value, ran.hparams, ran.retries
        del ran
        if not factory.keeps_model:  # the engine's (maybe partitioned) module is done with: free it first
            model = None
            _release_memory(device)
        if cfg.stage == "target":
            model = _selected_model(cfg, model, summary, tasks, out, factory)
    metrics: dict[str, float] = {}
    evaluated_by: dict[str, int] = {}
    if cfg.stage in ("target", "eval"):
        (target,) = tasks.values()
        evaluation, evaluated_by = evaluate_languages(
            target, model, tokenizer, cfg.languages, hp, perturbations=cfg.settings.get("perturbations", ()),
            perturbation_seed=cfg.settings.get("perturbation_seed", 0), ctx=ctx)
        metrics.update(evaluation)
    if summary.get("best") is not None:
        metrics["dev/score"] = summary["best"]
    if oom_retries:
        metrics["train/oom_retries"] = float(len(oom_retries))
    return {
        "trial_id": cfg.trial_id, "job_id": cfg.job_id, "stage": cfg.stage, "metrics": metrics,
        "hparams": hp, "best_epoch": summary.get("best_epoch"), "steps": summary.get("steps"),
        "oom_retries": oom_retries,
        # finished epochs this trial continued after, from resume/state.pt (a retry, a restart)
        "resumed_from_epoch": summary.get("resumed_from_epoch"),
        "model_dir": str(storage.join(cfg.output_dir, "model") if storage.is_remote(cfg.output_dir)
                         else out / "model") if (out / "model").is_dir() else None,
        # the hardware it really ran on (an MLflow tag of the job), and who evaluated what
        "device": hardware, "precision": precision.name, "evaluated_by": evaluated_by,
        "eval_device": str(_parameter_device(model)) if model is not None else None,
        "elapsed_s": time.time() - started, "config": asdict(cfg),
    }


def _parameter_device(model) -> torch.device:
    return next(model.parameters()).device


def _release_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _selected_model(cfg: TrialConfig, model, summary: dict, tasks: dict[str, Task], out: Path,
                    factory: OptimizationFactory):
    """The model selected on English dev, on the trial's device, ready to evaluate.

    A trained model still held (plain and DDP paths) is kept when the last validation was the
    best one, else the selected weights come from ``model/`` the way its Optimization factory
    says (loaded into it in place; after DeepSpeed, built straight on the device). Every rank of
    a multi-worker trial gets the model (each evaluates its share of the languages); a rank
    without ``model/`` in its folder (a staging folder of a trial on object storage) downloads
    it: the last report was a barrier after rank 0 had uploaded it.
    """
    if model is not None and summary.get("best_is_current"):
        return model
    best_dir = out / "model"
    if not best_dir.is_dir() and storage.is_remote(cfg.output_dir):
        storage.download_dir(storage.join(cfg.output_dir, "model"), best_dir)
    if not best_dir.is_dir():
        raise FileNotFoundError(f"{best_dir}: the dev-selected model is missing")
    return factory.selected_model(model, best_dir, list(tasks.values()))
