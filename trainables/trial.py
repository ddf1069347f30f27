"""One trial: load the start checkpoint, train on English, select on English dev, evaluate per language.

The driver passes a plain dict (``TrialConfig`` fields). ``run_trial`` works inside a Ray Tune
trial (``trainables.tune_entry``) and outside one (benchmarks, tests), reporting through a
callback. Everything it writes goes under ``output_dir``: the selected model, a resume state
while it runs, and ``result.json`` last — its presence means the trial is complete.
"""
from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import datasets
import numpy as np
import torch
import transformers
from transformers import AutoModel

from trainables.families import get_family
from trainables.families.base import set_feature_cache
from trainables.model import build_model, resolve_model_path, save_model
from trainables.records import ERROR_FILE, RESULT_FILE, read_result, write_json_atomic
from trainables.tasks import build_task
from trainables.tasks.base import Task, TaskOptions
from trainables.train import Mixing, TrainSettings, seed_everything, train

log = logging.getLogger(__name__)

STAGES = ("intermediate", "target", "eval")


@dataclass(frozen=True)
class TrialConfig:
    trial_id: str
    job_id: str
    stage: str
    model: str
    tasks: tuple[str, ...]          # intermediate: the task set; target/eval: (target,)
    seed: int
    output_dir: str
    hparams: dict = field(default_factory=dict)
    languages: tuple[str, ...] = ()  # target/eval: languages to evaluate
    init_from: str | None = None     # the intermediate job's model directory, if any
    task_options: dict = field(default_factory=dict)
    cache_dir: str = "~/.cache/xstilts"
    num_threads: int | None = None
    # how to run: {"deepspeed": {...}, "workers": n, "adversarial": {name: config},
    # "perturbations": [...], "perturbation_seed": s} (see sweep.plan._settings)
    settings: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict) -> "TrialConfig":
        data = dict(data)
        for key in ("tasks", "languages"):
            data[key] = tuple(data.get(key, ()))
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def run_trial(config: dict | TrialConfig, report: Callable[[dict], None] | None = None) -> dict:
    """Run one trial to completion and return its result (also written to result.json)."""
    cfg = config if isinstance(config, TrialConfig) else TrialConfig.from_dict(config)
    report = report or (lambda metrics: None)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    done = read_result(out)
    if done is not None:  # a retry after completion: nothing to do
        report({**done["metrics"], "done": True})
        return done
    (out / ERROR_FILE).unlink(missing_ok=True)
    try:
        result = _run(cfg, out, report)
    except BaseException as exc:
        # Ray stops a trial (scheduler pruning, Ctrl-C) with SystemExit / KeyboardInterrupt:
        # that is not a failure of the trial, so it leaves no error behind.
        if not isinstance(exc, (KeyboardInterrupt, SystemExit)):
            (out / ERROR_FILE).write_text(f"{type(exc).__name__}: {exc}".splitlines()[0] + "\n")
        raise
    write_json_atomic(out / RESULT_FILE, result)
    shutil.rmtree(out / "resume", ignore_errors=True)
    report({**result["metrics"], "done": True})
    return result


def _run(cfg: TrialConfig, out: Path, report: Callable[[dict], None]) -> dict:
    if cfg.stage not in STAGES:
        raise ValueError(f"unknown stage {cfg.stage!r}")
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    datasets.disable_progress_bars()
    set_feature_cache(Path(cfg.cache_dir).expanduser() / "features")
    transformers.logging.set_verbosity_error()
    started = time.time()
    seed_everything(cfg.seed)
    tasks = {name: build_task(name, TaskOptions.from_dict(cfg.task_options.get(name, {}), cfg.cache_dir))
             for name in cfg.tasks}
    start = cfg.init_from or resolve_model_path(cfg.model, cfg.cache_dir)
    model, tokenizer = build_model(start, list(tasks.values()))
    hp = cfg.hparams
    summary: dict = {"best_epoch": None, "steps": 0}
    if cfg.stage != "eval":
        summary = _train_phase(cfg, tasks, model, tokenizer, out, report)
        best_dir = out / "model"
        if best_dir.is_dir():  # evaluate the model selected on English dev, not the last epoch
            model.heads.load_state_dict(torch.load(best_dir / "heads.pt", weights_only=True))
            model.encoder = AutoModel.from_pretrained(best_dir, add_pooling_layer=False)
    metrics: dict[str, float] = {}
    if cfg.stage in ("target", "eval"):
        (target,) = tasks.values()
        metrics.update(_evaluate_languages(target, model, tokenizer, cfg.languages, hp))
    if summary.get("best") is not None:
        metrics["dev/score"] = summary["best"]
    return {
        "trial_id": cfg.trial_id, "job_id": cfg.job_id, "stage": cfg.stage, "metrics": metrics,
        "hparams": hp, "best_epoch": summary.get("best_epoch"), "steps": summary.get("steps"),
        "model_dir": str(out / "model") if (out / "model").is_dir() else None,
        "elapsed_s": time.time() - started, "config": asdict(cfg),
    }


def _dev_score(tasks: dict[str, Task], dev: dict, model, tokenizer, hp: dict) -> float:
    """Mean of each task's main metric on its English dev split (one task: just that metric).

    Tasks that only support the others (masked-LM mixing) do not take part unless alone.
    """
    scores = []
    selected = {n: t for n, t in tasks.items() if t.info.selection} or tasks
    for name, task in selected.items():
        family = get_family(task.info.family)
        result = family.evaluate(task, model, dev[name], tokenizer, batch_size=hp["eval_batch_size"],
                                 max_length=hp["max_length"])
        scores.append(result[task.info.main_metric])
    return float(np.mean(scores))


def _train_phase(cfg: TrialConfig, tasks: dict[str, Task], model, tokenizer, out: Path,
                 report: Callable[[dict], None]) -> dict:
    settings = TrainSettings.from_dict(cfg.hparams, seed=cfg.seed)
    features = {name: get_family(t.info.family).featurize(t, t.load_train(), tokenizer, settings.max_length)
                for name, t in tasks.items()}
    dev = {name: t.load("dev", t.info.train_language) for name, t in tasks.items()}  # once, not per epoch
    resume_file = out / "resume" / "state.pt"
    resume = torch.load(resume_file, weights_only=False) if resume_file.is_file() else None
    meta = {"trial_id": cfg.trial_id, "job_id": cfg.job_id, "stage": cfg.stage,
            "tasks": list(cfg.tasks), "seed": cfg.seed, "hparams": cfg.hparams}

    def on_epoch_end(epoch: int, metrics: dict, improved: bool, state: dict) -> None:
        if improved:
            tmp = out / "model.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            save_model(model, tokenizer, tmp, {**meta, "epoch": epoch + 1, "dev_score": metrics["dev/score"]})
            shutil.rmtree(out / "model", ignore_errors=True)
            os.replace(tmp, out / "model")
        resume_file.parent.mkdir(exist_ok=True)
        torch.save(state, resume_file.with_suffix(".tmp"))
        os.replace(resume_file.with_suffix(".tmp"), resume_file)
        report(metrics)

    mixing = {name: Mixing(t.options.examples_cap, t.options.probability) for name, t in tasks.items()}
    return train(model, tasks, features, tokenizer, settings,
                 dev_score=lambda: _dev_score(tasks, dev, model, tokenizer, cfg.hparams),
                 on_epoch_end=on_epoch_end, resume=resume, mixing=mixing)


def _evaluate_languages(task: Task, model, tokenizer, languages: tuple[str, ...], hp: dict) -> dict:
    """Zero-shot metrics per language as ``<task>/<metric>/<lang>`` plus ``/avg`` over languages."""
    family = get_family(task.info.family)
    model.eval()
    per_metric: dict[str, list[float]] = {}
    metrics: dict[str, float] = {}
    for lang in languages:
        data = task.load("test", lang)
        result = family.evaluate(task, model, data, tokenizer, batch_size=hp.get("eval_batch_size", 64),
                                 max_length=hp.get("max_length", 128))
        n = result.pop("n", None)
        if n is not None:
            metrics[f"{task.name}/n/{lang}"] = n
        for name, value in result.items():
            metrics[f"{task.name}/{name}/{lang}"] = value
            per_metric.setdefault(name, []).append(value)
        log.info("%s %s: %s", task.name, lang, {k: round(v, 4) for k, v in result.items()})
    for name, values in per_metric.items():
        metrics[f"{task.name}/{name}/avg"] = float(np.mean(values))
    return metrics
