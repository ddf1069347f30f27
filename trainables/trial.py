"""One trial: load the start checkpoint, train on English, select on English dev, evaluate per language.

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

import logging
import os
import shutil
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Callable

import datasets
import numpy as np
import torch
import transformers

from trainables import storage
from trainables.device import configure_matmul, describe_device, resolve_precision, trial_device
from trainables.families import get_family
from trainables.families.base import set_feature_cache
from trainables.model import build_model, build_on_device, load_saved_weights, resolve_model_path, save_model
from trainables.oom import run_with_oom_retry
from trainables.adversarial import build_step
from trainables.distributed import StopRequested
from trainables.contract import STAGES, TrialConfig  # noqa: F401 - the trial's input
from trainables.records import ERROR_FILE, RESULT_FILE, perturbation_label, read_result, write_json_atomic
from trainables.tasks import build_task
from trainables.tasks.base import Task, TaskOptions
from trainables.steps import PlainOptimization
from trainables.train import Mixing, NonFiniteError, TrainSettings, seed_everything, train

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


def stage_trial(cfg: TrialConfig, rank: int | None = None) -> Path:
    """A fresh local copy of a remote trial folder to work in (``resume/`` and ``model/``).

    The remote folder is the truth (another node may have got further), so a copy left on this
    node by an earlier attempt is replaced. Ranks of a multi-worker trial each take their own
    folder (``rank<r>/``, on whichever node they run); only rank 0 needs ``model/``.
    """
    local = storage.staging_dir(cfg.output_dir, cfg.cache_dir)
    if rank is not None:
        local = local / f"rank{rank}"
    shutil.rmtree(local, ignore_errors=True)
    local.mkdir(parents=True)
    for part in ("resume", "model") if rank in (None, 0) else ("resume",):
        if storage.download_dir(storage.join(cfg.output_dir, part), local / part):
            log.info("trial %s: continuing from %s", cfg.trial_id, storage.display(storage.join(cfg.output_dir, part)))
    return local


class _Mirror:
    """Keeps a remote trial folder up to date with the local one it is trained in.

    After an epoch, before its report: ``model/`` when it improved (rank 0), the ``resume/``
    files, ``resume/state.pt`` last, then DeepSpeed checkpoint tags rank 0 no longer has are
    removed. With several ranks, each uploads its own checkpoint shards before the report, and
    rank 0 uploads ``state.pt`` after it: the report is a barrier over the ranks, so the shards
    that ``state.pt`` points at are all up by then.
    """

    def __init__(self, remote: str, local: Path, is_main: bool, ranks: int = 1):
        self.remote, self.local, self.is_main, self.ranks = remote, local, is_main, ranks

    def before_report(self, improved: bool) -> None:
        resume = storage.join(self.remote, "resume")
        if self.is_main:
            if improved:
                storage.upload_dir(self.local / "model", storage.join(self.remote, "model"))
            storage.upload_dir(self.local / "resume", resume, exclude=("state.pt",))
            if self.ranks == 1:
                self._state()
            return
        # another rank: only the checkpoint shards it wrote (its state.pt and DeepSpeed's
        # `latest` are copies downloaded at the start)
        for tag in sorted((self.local / "resume" / "deepspeed").glob("step*")):
            storage.upload_dir(tag, storage.join(resume, "deepspeed", tag.name))

    def after_report(self) -> None:
        if self.is_main and self.ranks > 1:
            self._state()

    def checkpoint(self, improved: bool) -> None:
        """A mid-epoch resume state, mirrored like an epoch's (no report: a barrier of its own
        orders every rank's checkpoint shards before rank 0's ``state.pt``)."""
        self.before_report(improved)
        if self.ranks > 1:
            torch.distributed.barrier()
            self.after_report()

    def _state(self) -> None:
        state = self.local / "resume" / "state.pt"
        if state.is_file():
            storage.upload_file(state, storage.join(self.remote, "resume", "state.pt"))
        tags = storage.join(self.remote, "resume", "deepspeed")
        keep = {p.name for p in (self.local / "resume" / "deepspeed").glob("step*")}
        for name in storage.list_dirs(tags):
            if name.startswith("step") and name not in keep:
                storage.delete_dir(storage.join(tags, name))


def _run_distributed(cfg: TrialConfig, workers: int, report: Callable[[dict], None]) -> dict:
    """Data-parallel trial on ``workers`` Ray Train workers (DDP, or DeepSpeed when configured);
    rank 0's result comes back and is recorded here like a single-process trial's."""
    from trainables.distributed import run_distributed

    resources = cfg.settings.get("resources", {})
    per_worker = {"CPU": float(resources.get("cpu", 1))}
    if resources.get("gpu"):
        per_worker["GPU"] = float(resources["gpu"])
    retries: list[dict] = []
    train_path, train_fs = storage.for_ray(storage.join(cfg.output_dir, "train"))

    def attempt(hparams: dict) -> dict:
        return run_distributed(_worker_trial, asdict(replace(cfg, hparams=hparams)), num_workers=workers,
                               use_gpu=bool(resources.get("gpu")), resources_per_worker=per_worker,
                               report=report, storage_path=train_path, storage_filesystem=train_fs,
                               name=f"{cfg.trial_id}-{len(retries)}")

    def on_retry(record: dict, new_hparams: dict) -> None:
        retries.append(record)
        report({"train/oom_retries": len(retries), "train/batch_size": new_hparams["batch_size"],
                "train/grad_accumulation": new_hparams["grad_accumulation"]})

    # the micro-batch is split over the workers, so it cannot shrink below one row each
    result = run_with_oom_retry(attempt, dict(cfg.hparams), floor=workers, on_retry=on_retry)
    if retries:
        result["oom_retries"] = retries
        result["metrics"]["train/oom_retries"] = float(len(retries))
    return result


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
    deepspeed = bool(cfg.settings.get("deepspeed")) and cfg.stage != "eval"
    log.info("trial %s on %s in %s%s", cfg.trial_id, hardware, precision.name, " (DeepSpeed)" if deepspeed else "")
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
        """The model on the trial's device, in the trial's precision (DeepSpeed casts its own)."""
        if not (deepspeed and cfg.settings["deepspeed"].get("offload_param", "none") != "none"):
            model.to(device)
        model.precision = None if deepspeed else precision
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
            run_cfg = replace(cfg, hparams=hparams)
            return model, tokenizer, _train_phase(run_cfg, tasks, placed(model), tokenizer, out, report, ctx,
                                                  device=device, precision=precision)

        def on_retry(record: dict, new_hparams: dict) -> None:
            oom_retries.append(record)
            report({"train/oom_retries": len(oom_retries), "train/batch_size": new_hparams["batch_size"],
                    "train/grad_accumulation": new_hparams["grad_accumulation"]})

        holder: dict = {}

        def attempt_recording(hparams: dict):
            holder["hparams"] = hparams
            return attempt(hparams)

        if ctx is not None and ctx.world_size > 1:
            # one rank retrying alone would leave the others waiting in a collective: the whole
            # worker group fails and ``_run_distributed`` retries it with a smaller micro-batch
            model, tokenizer, summary = attempt_recording(dict(hp))
        else:
            model, tokenizer, summary = run_with_oom_retry(attempt_recording, dict(hp), on_retry=on_retry)
        hp = holder["hparams"]  # what actually ran (a smaller micro-batch after an OOM)
        if deepspeed:  # the engine's (maybe partitioned) module is done with: free it first
            model = None
            _release_memory(device)
        if cfg.stage == "target":
            model = _selected_model(cfg, model, summary, tasks, out, device, precision, deepspeed, ctx)
    metrics: dict[str, float] = {}
    evaluated_by: dict[str, int] = {}
    if cfg.stage in ("target", "eval"):
        (target,) = tasks.values()
        evaluation, evaluated_by = _evaluate_languages(
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
    import gc

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _selected_model(cfg: TrialConfig, model, summary: dict, tasks: dict[str, Task], out: Path,
                    device: torch.device, precision, deepspeed: bool, ctx):
    """The model selected on English dev, on the trial's device, ready to evaluate.

    Plain and DDP paths keep the trained model: it already holds the selected weights when the
    last validation was the best one, else they are loaded into it in place from ``model/``. After
    DeepSpeed the engine is gone and the saved weights (16 bit under bf16/fp16 ZeRO-3) are built
    straight on the device in the training precision. Every rank of a multi-worker trial gets
    the model (each evaluates its share of the languages); a rank without ``model/`` in its
    folder (a staging folder of a trial on object storage) downloads it: the last report was a
    barrier after rank 0 had uploaded it.
    """
    if not deepspeed and summary.get("best_is_current"):
        return model
    best_dir = out / "model"
    if not best_dir.is_dir() and storage.is_remote(cfg.output_dir):
        storage.download_dir(storage.join(cfg.output_dir, "model"), best_dir)
    if not best_dir.is_dir():
        raise FileNotFoundError(f"{best_dir}: the dev-selected model is missing")
    if not deepspeed:
        load_saved_weights(model, best_dir)
        return model
    dtype = precision.dtype if precision.mixed else torch.float32
    model, _ = build_on_device(best_dir, list(tasks.values()), device, dtype)
    return model


def task_lengths(cfg: TrialConfig, default: int) -> dict[str, int]:
    """Each task's ``max_length``: a multi-task entry's own per-task lengths, else the job's."""
    given = cfg.settings.get("task_max_length") or {}
    return {name: int(given.get(name, default)) for name in cfg.tasks}


def _dev_score(tasks: dict[str, Task], dev: dict, model, tokenizer, hp: dict,
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


def _train_phase(cfg: TrialConfig, tasks: dict[str, Task], model, tokenizer, out: Path,
                 report: Callable[[dict], None], ctx=None, *, device: torch.device,
                 precision) -> dict:
    """Train, keeping the best epoch on English dev in ``out/model``.

    ``ctx`` (a ``trainables.distributed.DistributedContext``) makes it one rank of a
    data-parallel trial: its shard of the data, its part of the batch, files from rank 0 only.
    """
    settings = replace(TrainSettings.from_dict(cfg.hparams, seed=cfg.seed),
                       checkpoint_every_steps=cfg.settings.get("checkpoint_every_steps"))
    lengths = task_lengths(cfg, settings.max_length)
    features = {name: get_family(t.info.family).featurize(t, t.load_train(), tokenizer, lengths[name])
                for name, t in tasks.items()}
    is_main = ctx is None or ctx.is_main
    deepspeed_settings = cfg.settings.get("deepspeed")
    if ctx is not None and ctx.world_size > 1:
        from trainables.distributed import shard, worker_settings, wrap_data_parallel

        settings = worker_settings(settings, ctx.world_size)
        features = {name: shard(f, ctx) for name, f in features.items()}
        if not deepspeed_settings:
            wrap_data_parallel(model, ctx)
    engine: dict = {}

    def optimization(m, s, total):
        if not deepspeed_settings:
            return PlainOptimization(m, s, total, precision=precision, fused=device.type == "cuda")
        from trainables.deepspeed_backend import DeepSpeedOptimization, single_process_env

        single_process_env()
        # the trial's one precision and checkpointing settings, shared with the plain path
        ds = {**deepspeed_settings, "precision": precision.name,
              "gradient_checkpointing": bool(cfg.settings.get("gradient_checkpointing"))}
        engine["opt"] = DeepSpeedOptimization(m, s, total, ds_settings=ds, checkpoint_dir=out / "resume" / "deepspeed")
        return engine["opt"]

    dev = {name: t.load("dev", t.info.train_language) for name, t in tasks.items()}  # once, not per epoch
    if settings.eval_examples:  # validation on the first examples of each dev split (jiant's subset)
        dev = {name: d.select(range(min(settings.eval_examples, len(d)))) for name, d in dev.items()}
    resume_file = out / "resume" / "state.pt"
    resume = load_resume_state(resume_file, device)
    meta = {"trial_id": cfg.trial_id, "job_id": cfg.job_id, "stage": cfg.stage,
            "tasks": list(cfg.tasks), "seed": cfg.seed, "hparams": cfg.hparams}
    mirror = (_Mirror(cfg.output_dir, out, is_main, ranks=ctx.world_size if ctx is not None else 1)
              if storage.is_remote(cfg.output_dir) else None)

    unsent = {"model": False}  # a better model saved since the last upload (object storage)

    def save_best(epoch: int, score: float) -> None:
        tmp = out / "model.tmp"
        if is_main:
            shutil.rmtree(tmp, ignore_errors=True)
        epoch_meta = {**meta, "epoch": epoch + 1, "dev_score": score}
        if deepspeed_settings:  # ZeRO partitions: every rank gathers, rank 0 writes
            from trainables.deepspeed_backend import save_consolidated

            save_consolidated(engine["opt"].engine, model, tokenizer, tmp, epoch_meta)
        elif is_main:
            save_model(model, tokenizer, tmp, epoch_meta)
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
                     dev_score=lambda: _dev_score(tasks, dev, model, tokenizer, cfg.hparams, lengths),
                     on_epoch_end=on_epoch_end, on_improved=save_best, on_checkpoint=on_checkpoint,
                     agree=lambda value: _from_rank0(value, ctx), resume=resume, mixing=mixing,
                     step_fn=build_step(adversarial_config(cfg)), optimization=optimization, device=device)
    finally:
        if "opt" in engine:
            engine.pop("opt").close()


RESUME_FIELDS = ("optimization", "epoch", "step", "best", "best_epoch")


def load_resume_state(path: Path, device: torch.device) -> dict | None:
    """The trial's resume state, or None to start fresh: a damaged one (truncated by a full disk
    or a killed upload, or pointing at a DeepSpeed checkpoint that is not there) is named in one
    warning and removed with what it points at, and the trial restarts from scratch."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, weights_only=False, map_location=device)
        if not isinstance(state, dict) or any(k not in state for k in RESUME_FIELDS):
            raise ValueError(f"not a resume state (fields {sorted(state) if isinstance(state, dict) else type(state).__name__})")
        tag = state["optimization"].get("tag") if isinstance(state["optimization"], dict) else None
        if tag is not None and not (path.parent / "deepspeed" / tag).is_dir():
            raise FileNotFoundError(f"its DeepSpeed checkpoint {tag} is missing")
        return state
    except Exception as exc:  # noqa: BLE001 - any unreadable state means the same: start over
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        log.warning("%s is damaged (%s: %s): the trial starts from scratch", path, type(exc).__name__, reason)
        shutil.rmtree(path.parent, ignore_errors=True)
        return None


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


def _evaluate_languages(task: Task, model, tokenizer, languages: tuple[str, ...], hp: dict, *,
                        perturbations=(), perturbation_seed: int = 0, ctx=None) -> tuple[dict, dict]:
    """Zero-shot metrics per language as ``<task>/<metric>/<lang>`` plus ``/avg`` over languages,
    and which rank evaluated each language.

    Each evaluation-time perturbation adds ``<task>.<label>/<metric>/<lang>`` on the perturbed
    test set and ``<task>.<label>/drop/<lang>``, the clean main metric minus the perturbed one.
    A perturbation that cannot run in a language (no ``{language}`` lexicon file for it) is
    skipped there with a log line: no metric, and its ``/avg`` is over the languages it ran in.

    The ranks of a multi-worker trial split the languages (rank r takes every W-th from r) and
    gather the results, so each language is evaluated once. A non-finite main metric fails
    the trial (``NonFiniteError``): it must never reach the table as a score.
    """
    rank, world = (ctx.rank, ctx.world_size) if ctx is not None else (0, 1)
    model.eval()
    applicable = _applicable_perturbations(task, perturbations)
    mine = {lang: _language_metrics(task, model, tokenizer, lang, hp, applicable, perturbation_seed)
            for lang in languages[rank::world]}
    per_language = _gathered(mine, world)
    missing = [lang for lang in languages if lang not in per_language]
    if missing:
        raise RuntimeError(f"{task.name}: no rank evaluated {' '.join(missing)}")
    metrics: dict[str, float] = {}
    values: dict[str, list[float]] = {}
    for lang in languages:
        for key, value in per_language[lang][0].items():
            metrics[key] = value
            prefix = key.rsplit("/", 1)[0]
            if prefix != f"{task.name}/n":
                values.setdefault(prefix, []).append(value)
    metrics.update({f"{prefix}/avg": float(np.mean(v)) for prefix, v in values.items()})
    return metrics, {lang: per_language[lang][1] for lang in languages}


def _gathered(mine: dict, world: int) -> dict:
    """{language: (metrics, rank)} from every rank (an all-gather; this rank's alone if single)."""
    import torch.distributed as dist

    rank = dist.get_rank() if world > 1 else 0
    tagged = {lang: (metrics, rank) for lang, metrics in mine.items()}
    if world == 1:
        return tagged
    everything: list = [None] * world
    dist.all_gather_object(everything, tagged)
    return {lang: item for part in everything for lang, item in part.items()}


def _language_metrics(task: Task, model, tokenizer, lang: str, hp: dict, perturbations: list[dict],
                      perturbation_seed: int) -> dict[str, float]:
    """One language's clean metrics (``<task>/<metric>/<lang>``) and those under each of the
    ``perturbations`` that apply to the task."""
    family = get_family(task.info.family)
    main = task.info.main_metric
    data = task.load("test", lang)
    result = _evaluate(family, task, model, data, tokenizer, hp)
    if not np.isfinite(result.get(main, 0.0)):
        raise NonFiniteError(f"{task.name}/{main}/{lang} is {result[main]} on {len(data)} test examples")
    metrics: dict[str, float] = {}
    n = result.pop("n", None)
    if n is not None:
        metrics[f"{task.name}/n/{lang}"] = n
    metrics.update({f"{task.name}/{name}/{lang}": value for name, value in result.items()})
    log.info("%s %s: %s", task.name, lang, {k: round(v, 4) for k, v in result.items()})
    for config in perturbations:
        label = f"{task.name}.{perturbation_label(config)}"
        missing = _unavailable(config, lang)
        if missing:  # e.g. no `{language}` lexicon for this language (English, often)
            log.info("%s %s: perturbation %s skipped: %s", task.name, lang, label, missing)
            continue
        perturbed = _perturbed(task, model, tokenizer, data, config, perturbation_seed, lang, hp)
        scores = _evaluate(family, task, model, perturbed, tokenizer, hp)
        scores.pop("n", None)
        scores["drop"] = result[main] - scores[main]
        metrics.update({f"{label}/{name}/{lang}": value for name, value in scores.items()})
        log.info("%s %s under %s: %s", task.name, lang, label, {k: round(v, 4) for k, v in scores.items()})
    return metrics


def _evaluate(family, task, model, data, tokenizer, hp: dict) -> dict:
    with model.autocast():  # the training precision (also covers families that call the encoder directly)
        return family.evaluate(task, model, data, tokenizer, batch_size=hp.get("eval_batch_size", 64),
                               max_length=hp.get("max_length", 128))


def _applicable_perturbations(task: Task, perturbations) -> list[dict]:
    """The configs that apply to the task's family (retrieval targets have none): others are
    skipped with a log line, so one study can perturb classification and QA targets alike."""
    if not perturbations:
        return []
    from trainables.perturb import build_perturbation

    out = []
    for config in perturbations:
        families = build_perturbation(config, language="en").families
        if task.info.family in families:
            out.append(dict(config))
        else:
            log.info("perturbation %s does not apply to %s (%s): skipped", config.get("name"),
                     task.name, task.info.family)
    return out


def _unavailable(config: dict, language: str) -> str | None:
    """Why a perturbation cannot run in ``language`` (a missing per-language lexicon), or None."""
    from trainables.perturb import build_perturbation

    return build_perturbation(config, language=language).unavailable()


def _perturbed(task: Task, model, tokenizer, data, config: dict, seed: int, language: str, hp: dict):
    from trainables.perturb import perturb_dataset

    gold = None
    if config.get("name") == "attack":
        from trainables.perturb.attack import model_gold_probability

        gold = model_gold_probability(model, task, tokenizer, max_length=hp.get("max_length", 128),
                                      batch_size=hp.get("eval_batch_size", 64))
    return perturb_dataset(data, task.info.family, config, seed=seed, language=language,
                           gold_probability=gold)
