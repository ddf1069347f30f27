"""Expand a spec into a DAG of jobs.

* An *intermediate job* trains the encoder on an intermediate task (set). Its id hashes everything
  that determines its checkpoint (model, tasks, their options, hyperparameter space, search, seed),
  so it is trained once and reused by every target job that starts from it.
* A *target job* trains on the English data of a target task, starting from the pretrained model
  (baseline ``none``) or from an intermediate job's checkpoint, and evaluates per language.
* An *eval job* evaluates a target without training data (retrieval) on that same encoder.

Ids are content hashes: stable across runs, machines and key order, so they key resumption.
"""
from __future__ import annotations

import hashlib
import itertools
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sweep.spec import Distribution, Fixed, Grid, HyperParameter, Spec, SpecError, effective_precision
from trainables.tasks import task_info

# Bump when a change makes old results incomparable (it changes every job id).
PLAN_FORMAT = 1
STAGE_ORDER = ("intermediate", "target", "eval")


def canonical_hash(payload: Any, length: int = 12) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def hp_space_dict(space: dict[str, HyperParameter]) -> dict[str, Any]:
    """A JSON-able form of a hyperparameter space (for ids, MLflow params and --json)."""
    out: dict[str, Any] = {}
    for name, hp in sorted(space.items()):
        if isinstance(hp, Fixed):
            out[name] = hp.value
        elif isinstance(hp, Grid):
            out[name] = {"grid": list(hp.values)}
        elif isinstance(hp, Distribution):
            out[name] = {k: v for k, v in (("distribution", hp.kind), ("low", hp.low),
                                            ("high", hp.high), ("values", hp.values)) if v is not None}
    return out


@dataclass(frozen=True)
class Job:
    id: str
    stage: str
    model: str
    seed: int
    intermediate: tuple[str, ...]          # () = no intermediate training (baseline)
    target: str | None                     # None for intermediate jobs
    languages: tuple[str, ...] = ()
    hyperparameters: dict = field(default_factory=dict, compare=False, hash=False)
    depends_on: tuple[str, ...] = ()
    task_options: dict = field(default_factory=dict, compare=False, hash=False)
    # the training-set size factor (``train_examples:`` in the spec) of the intermediate phase
    # this job comes from, and of its own target training; None = all examples
    intermediate_examples: int | None = None
    target_examples: int | None = None
    # how trials run: deepspeed, workers, adversarial configurations, evaluation perturbations
    settings: dict = field(default_factory=dict, compare=False, hash=False)
    group: str = field(default="", compare=False, hash=False)  # the spec's groups: label
    # values of the spec's factors (hyperparameters compared across jobs) of this job and of the
    # intermediate job it starts from: {"adversarial": "freelb"}
    factors: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def intermediate_name(self) -> str:
        return "+".join(self.intermediate) if self.intermediate else "none"

    @property
    def label(self) -> str:
        """Readable run name: ``mnli s1``, ``mnli→xnli s1``, ``mnli@1000→xnli s1``,
        ``mnli[adversarial=freelb]→xnli s1``."""
        inter = self.intermediate_name + (f"@{self.intermediate_examples}"
                                          if self.intermediate_examples is not None else "")
        inter += _factor_suffix(self.factors.get("intermediate", {}))
        if self.stage == "intermediate":
            return f"{inter} s{self.seed}"
        target = self.target + (f"@{self.target_examples}" if self.target_examples is not None else "")
        target += _factor_suffix(self.factors.get("target", {}))
        return f"{inter}→{target} s{self.seed}"

    @property
    def tasks(self) -> tuple[str, ...]:
        return self.intermediate if self.stage == "intermediate" else (self.target,)

    def to_dict(self) -> dict:
        return {"id": self.id, "stage": self.stage, "label": self.label, "model": self.model,
                "seed": self.seed, "intermediate": list(self.intermediate), "target": self.target,
                "languages": list(self.languages), "hyperparameters": self.hyperparameters,
                "depends_on": list(self.depends_on), "task_options": self.task_options,
                "intermediate_examples": self.intermediate_examples,
                "target_examples": self.target_examples, "settings": self.settings, "group": self.group,
                "factors": self.factors}


@dataclass
class Plan:
    study: str
    jobs: list[Job]

    def __post_init__(self) -> None:
        self.by_id = {j.id: j for j in self.jobs}

    def stage(self, name: str) -> list[Job]:
        return [j for j in self.jobs if j.stage == name]

    def counts(self) -> dict[str, int]:
        c = Counter(j.stage for j in self.jobs)
        return {s: c.get(s, 0) for s in STAGE_ORDER}

    def reuse(self) -> dict[str, int]:
        """Intermediate trainings scheduled vs one per (intermediate, target, seed) pair."""
        per_pair = sum(1 for j in self.jobs if j.stage != "intermediate" and j.intermediate)
        scheduled = self.counts()["intermediate"]
        return {"intermediate_trainings": scheduled, "without_reuse": per_pair,
                "saved": max(per_pair - scheduled, 0)}

    def dependents(self, job_id: str) -> list[Job]:
        return [j for j in self.jobs if job_id in j.depends_on]

    def to_dict(self) -> dict:
        return {"study": self.study, "jobs": [j.to_dict() for j in self.jobs],
                "counts": self.counts(), "reuse": self.reuse(), "memory": memory_estimates(self)}


def _factor_suffix(values: dict) -> str:
    return "[" + ",".join(f"{k}={v}" for k, v in sorted(values.items())) + "]" if values else ""


def split_factors(space: dict, factors: tuple[str, ...]) -> list[tuple[dict, dict]]:
    """(factor values, space with them fixed) for every combination of the factors' grids."""
    grids = {f: space[f]["grid"] for f in factors if isinstance(space.get(f), dict) and "grid" in space[f]}
    if not grids:
        return [({}, space)]
    names = sorted(grids)
    return [(dict(zip(names, combo)), {**space, **dict(zip(names, combo))})
            for combo in itertools.product(*(grids[n] for n in names))]


def _task_options(spec: Spec, tasks: tuple[str, ...], size: int | None = None) -> dict:
    """Each task's spec options; a size factor overrides ``train_examples`` of every task."""
    out = {t: spec.tasks[t].model_dump(exclude_none=True) for t in tasks if t in spec.tasks}
    if size is not None:
        for t in tasks:
            out.setdefault(t, {})["train_examples"] = size
    return out


def _search_identity(spec: Spec, space: dict) -> dict:
    """Search settings change which trial wins, so they belong to the job's identity —
    but only when the job's space actually has something to search."""
    searched = any(isinstance(v, dict) for v in space.values())
    if not searched:
        return {}
    s = spec.search
    ident = {"algorithm": s.algorithm, "num_samples": s.num_samples, "metric": s.metric,
             "mode": s.mode, "scheduler": s.scheduler}
    if s.scheduler == "asha":
        ident["grace_period"] = s.grace_period
    return ident


def _adversarial_used(spec: Spec, space: dict) -> dict:
    """The named adversarial configurations a phase's space refers to (they change results)."""
    value = space.get("adversarial")
    names = (value.get("grid") or value.get("values") or []) if isinstance(value, dict) else [value]
    return {n: spec.adversarial[n] for n in names if n in spec.adversarial}


def _settings(spec: Spec, stage: str, space: dict) -> tuple[dict, dict]:
    """(what a trial needs to know about how to run, the part of it that changes results)."""
    settings: dict = {"workers": spec.resources.workers, "resources": spec.resources.model_dump(),
                      "precision": spec.precision, "gradient_checkpointing": spec.gradient_checkpointing,
                      "checkpoint_every_steps": spec.checkpoint_every_steps}
    identity: dict = {}
    if spec.deepspeed is not None and stage != "eval":
        settings["deepspeed"] = spec.deepspeed.model_dump(exclude={"precision", "gradient_checkpointing"})
    if (spec.deepspeed is not None or spec.precision != "auto") and stage != "eval":
        # precision changes results; ZeRO stage, offload and checkpointing only move memory around
        identity["precision"] = effective_precision(spec)
    adversarial = _adversarial_used(spec, space)
    if adversarial:
        settings["adversarial"] = identity["adversarial"] = adversarial
    if stage != "intermediate" and spec.evaluation.perturbations:
        settings["perturbations"] = identity["perturbations"] = list(spec.evaluation.perturbations)
        settings["perturbation_seed"] = identity["perturbation_seed"] = spec.evaluation.seed
    return settings, identity


#: what an eval job's trial reads from its hyperparameters (trainables.trial.evaluation)
EVAL_HYPERPARAMETERS = ("max_length", "eval_batch_size")


def _eval_space(spec: Spec, task: str) -> dict:
    """An eval job's values: ``hyperparameters.tasks.<task>``'s ``max_length`` and
    ``eval_batch_size`` (fixed values: an eval job searches nothing); empty when not given, so
    the job keeps the trial's defaults and its id."""
    given = spec.task_hyperparameters.get(task, {})
    for name in EVAL_HYPERPARAMETERS:
        if name in given and not isinstance(given[name], Fixed):
            raise SpecError(f"hyperparameters.tasks.{task}.{name}",
                            f"task '{task}' is evaluation-only: give one value (an eval job searches nothing)",
                            spec.source)
    return hp_space_dict({n: given[n] for n in EVAL_HYPERPARAMETERS if n in given})


def _task_lengths(spec: Spec, tasks: tuple[str, ...]) -> dict[str, int]:
    """A multi-task entry's per-task ``max_length`` from ``hyperparameters.tasks.<task>`` (fixed
    values), so SQuAD keeps its 384 tokens next to MNLI's 128; empty for one task (its job space
    has the override already) or when none is given."""
    if len(tasks) < 2:
        return {}
    out = {}
    for task in tasks:
        value = spec.task_hyperparameters.get(task, {}).get("max_length")
        if isinstance(value, Fixed):
            out[task] = int(value.value)
        elif value is not None:
            raise SpecError(f"hyperparameters.tasks.{task}.max_length",
                            f"task '{task}' is in the multi-task entry {'+'.join(tasks)}: give one value "
                            "(its length there is not searched)", spec.source)
    return out


def build_plan(spec: Spec) -> Plan:
    """Intermediate jobs first, then target and eval jobs; ids are content hashes.

    Identities only gain keys for features a spec uses (sizes, precision, adversarial
    configurations, perturbations), so adding a feature never changes existing jobs' ids.
    """
    jobs: list[Job] = []

    def space_for(phase: str, tasks: tuple[str, ...]) -> dict:
        values = dict(spec.hyperparameters[phase])
        if len(tasks) == 1:
            values.update(spec.task_hyperparameters.get(tasks[0], {}))
        return hp_space_dict(values)

    inter_sizes = spec.train_examples.get("intermediate", (None,))
    target_sizes = spec.train_examples.get("target", (None,))
    for seed in spec.seeds:
        for tasks in spec.intermediate:
            if not tasks:
                continue
            for values, inter_space in split_factors(space_for("intermediate", tasks), spec.factors):
                for size in inter_sizes:
                    options = _task_options(spec, tasks, size)
                    settings, extra = _settings(spec, "intermediate", inter_space)
                    lengths = _task_lengths(spec, tasks)
                    if lengths:  # a multi-task entry encodes each task at its own max_length
                        settings["task_max_length"] = extra["task_max_length"] = lengths
                    ident = {"v": PLAN_FORMAT, "stage": "intermediate", "model": spec.model,
                             "tasks": list(tasks), "hp": inter_space,
                             "search": _search_identity(spec, inter_space), "seed": seed,
                             "options": options, **extra}
                    job = Job(id="i-" + canonical_hash(ident), stage="intermediate", model=spec.model,
                              seed=seed, intermediate=tasks, target=None, hyperparameters=inter_space,
                              task_options=options, intermediate_examples=size, settings=settings,
                              group=spec.groups.get(tasks, ""),
                              factors={"intermediate": values} if values else {})
                    jobs.append(job)
    parents: dict[tuple, list[Job]] = {}
    for job in jobs:
        parents.setdefault((job.intermediate, job.seed), []).append(job)
    for seed in spec.seeds:
        for tasks in spec.intermediate:
            for parent in (parents[(tasks, seed)] if tasks else [None]):
                inter_factors = parent.factors.get("intermediate", {}) if parent else {}
                for target in spec.targets:
                    trainable = task_info(target.task).trainable
                    stage = "target" if trainable else "eval"
                    splits = (split_factors(space_for("target", (target.task,)), spec.factors)
                              if trainable else [({}, _eval_space(spec, target.task))])
                    for values, space in splits:
                        for size in (target_sizes if trainable else (None,)):
                            options = _task_options(spec, (target.task,), size)
                            settings, extra = _settings(spec, stage, space)
                            ident = {"v": PLAN_FORMAT, "stage": stage, "model": spec.model,
                                     "from": parent.id if parent else None, "target": target.task,
                                     "languages": list(target.languages), "hp": space,
                                     "search": _search_identity(spec, space), "seed": seed,
                                     "options": options, **extra}
                            factors = {k: v for k, v in (("intermediate", inter_factors), ("target", values)) if v}
                            jobs.append(Job(
                                id=stage[0] + "-" + canonical_hash(ident), stage=stage, model=spec.model,
                                seed=seed, intermediate=tasks, target=target.task, languages=target.languages,
                                hyperparameters=space, depends_on=(parent.id,) if parent else (),
                                task_options=options,
                                intermediate_examples=parent.intermediate_examples if parent else None,
                                target_examples=size, settings=settings,
                                group=spec.groups.get(tasks, ""), factors=factors))
    return Plan(spec.name, jobs)


def format_plan(plan: Plan) -> str:
    """The human-readable job table with counts per stage and the reuse saving."""
    rows = [("id", "stage", "job", "languages", "depends on")]
    for j in plan.jobs:
        rows.append((j.id, j.stage, j.label, str(len(j.languages)) if j.languages else "-",
                     ",".join(j.depends_on) or "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    counts = plan.counts()
    reuse = plan.reuse()
    lines.append("")
    lines.append(f"study {plan.study}: {len(plan.jobs)} jobs — "
                 + ", ".join(f"{counts[s]} {s}" for s in STAGE_ORDER))
    lines.append(f"intermediate trainings: {reuse['intermediate_trainings']} scheduled, "
                 f"{reuse['without_reuse']} if trained per (intermediate, target, seed) pair — "
                 f"reuse saves {reuse['saved']}")
    lines.extend(format_memory(memory_estimates(plan)))
    return "\n".join(lines)


# --------------------------------------------------------------------------- memory per GPU

DEFAULT_GPU_MEMORY_GB = 80.0


def _largest(value: Any) -> Any:
    """The largest value a hyperparameter takes (a fixed value, a grid, a distribution)."""
    if not isinstance(value, dict):
        return value
    candidates = value.get("grid") or value.get("values") or [value.get("high")]
    return max(v for v in candidates if v is not None)


def _memory_key(job: Job) -> tuple:
    """What a training job's per-GPU memory depends on: model, precision, ZeRO stage, offload,
    workers, gradient checkpointing, micro-batch (per worker), sequence length, GPU share, and
    whether it is the plain path's autocast (fp32 weights, 16-bit activations)."""
    ds = job.settings.get("deepspeed") or {}
    resources = job.settings.get("resources") or {}
    precision = job.settings.get("precision", "auto")
    if precision == "auto":  # as trainables.device resolves it: bf16 on GPUs, fp32 on the CPU
        precision = "bf16" if resources.get("gpu") else "fp32"
    workers = int(job.settings.get("workers", 1))
    batch = int(_largest(job.hyperparameters.get("batch_size", 32)))
    # a data-parallel trial splits batch_size over its workers (trainables.distributed);
    # gradient accumulation runs micro-batches of that size one after the other
    micro = max(1, -(-batch // workers))
    return (job.model, precision, int(ds.get("stage", 0)), ds.get("offload_optimizer", "none"),
            ds.get("offload_param", "none"), workers, bool(job.settings.get("gradient_checkpointing", False)), micro,
            int(_largest(job.hyperparameters.get("max_length", 128))), float(resources.get("gpu", 0) or 0),
            resources.get("gpu_memory_gb"), not ds and precision != "fp32")


def memory_estimates(plan: Plan) -> list[dict]:
    """Estimated memory per GPU (``trainables.presets``) for each distinct training setting of
    the plan's intermediate and target jobs, with whether it fits the declared GPU memory.

    ``tiny`` has none; a local model or a hub id whose config.json is in the local Hugging Face
    cache is estimated from it; another hub id gets a note, never a download. Eval jobs do not train.
    """
    from trainables.presets import GB, estimate_for, fits, preset_for  # torch-free

    groups: dict[tuple, list[Job]] = {}
    for job in plan.jobs:
        if job.stage != "eval":
            groups.setdefault(_memory_key(job), []).append(job)
    presets: dict[str, tuple] = {}
    out = []
    for key, jobs in groups.items():
        (model, precision, stage, offload_optimizer, offload_param, workers, checkpointing, micro,
         max_length, gpu, gpu_memory_gb, autocast) = key
        if model == "tiny":
            continue
        if model not in presets:
            try:
                preset = preset_for(model)
                presets[model] = (preset, None if preset else
                                  (f"no config.json in {model}" if Path(model).expanduser().is_dir()
                                   else "config not available offline"))
            except ValueError as exc:
                presets[model] = (None, str(exc))
        preset, problem = presets[model]
        entry: dict[str, Any] = {
            "model": model, "stages": sorted({j.stage for j in jobs}, key=STAGE_ORDER.index), "jobs": len(jobs),
            "precision": precision, "zero_stage": stage, "offload_optimizer": offload_optimizer,
            "offload_param": offload_param, "workers": workers, "gradient_checkpointing": checkpointing,
            "micro_batch": micro, "max_length": max_length, "gpu_per_worker": gpu,
            "gpu_memory_gb": gpu_memory_gb or DEFAULT_GPU_MEMORY_GB, "gpu_memory_assumed": gpu_memory_gb is None,
            "params": preset.params if preset else None, "estimate": None, "fits": None, "note": None}
        if preset is None:
            entry["note"] = f"no estimate ({problem})"
            out.append(entry)
            continue
        est = estimate_for(preset, precision=precision, stage=stage, offload_optimizer=offload_optimizer,
                           offload_param=offload_param, num_gpus=workers, micro_batch=micro, seq_len=max_length,
                           gradient_checkpointing=checkpointing, autocast=autocast)
        entry["estimate"] = {"weights_gb": est.weights / GB, "grads_gb": est.grads / GB,
                             "optimizer_states_gb": est.optimizer_states / GB, "activations_gb": est.activations / GB,
                             "total_gb": est.total / GB, "cpu_gb": est.cpu_bytes / GB}
        if gpu > 0:
            # a fractional GPU shares the device with other trials; a worker uses one device
            entry["fits"] = fits(est, min(gpu, 1.0) * entry["gpu_memory_gb"] * GB)
            if offload_optimizer != "none" or offload_param != "none":
                on_gpu = estimate_for(preset, precision=precision, stage=stage, num_gpus=workers, micro_batch=micro,
                                      seq_len=max_length, gradient_checkpointing=checkpointing, autocast=autocast)
                if fits(on_gpu, min(gpu, 1.0) * entry["gpu_memory_gb"] * GB):  # offload slows every step
                    entry["note"] = (f"fits without CPU offload ({on_gpu.total / GB:.1f} GB per GPU): offload "
                                     "makes every step wait on host memory; drop it")
        else:
            entry["note"] = "CPU trials (resources.gpu: 0): not checked against GPU memory"
        out.append(entry)
    return out


def format_memory(estimates: list[dict]) -> list[str]:
    """The plan's memory lines: one per distinct setting, a warning line where it does not fit."""
    if not estimates:
        return []
    lines = ["", "memory per GPU (estimate: weights, gradients, optimizer states, activations; "
                 "not the CUDA context or fragmentation):"]
    for e in estimates:
        setting = (f"{e['model']} [{'+'.join(e['stages'])}, {e['jobs']} jobs] {e['precision']}, "
                   + (f"ZeRO-{e['zero_stage']}" if e["zero_stage"] else "no ZeRO")
                   + (f", offload optimizer {e['offload_optimizer']}" if e["offload_optimizer"] != "none" else "")
                   + (f", offload params {e['offload_param']}" if e["offload_param"] != "none" else "")
                   + f", {e['workers']} worker{'s' if e['workers'] > 1 else ''}"
                   + (", gradient checkpointing" if e["gradient_checkpointing"] else "")
                   + f", micro-batch {e['micro_batch']} x {e['max_length']} tokens")
        est = e["estimate"]
        if est is None:
            lines.append(f"  {setting}: {e['note']}")
            continue
        lines.append(f"  {setting}: {est['total_gb']:.1f} GB per GPU (weights {est['weights_gb']:.1f}, "
                     f"grads {est['grads_gb']:.1f}, optimizer {est['optimizer_states_gb']:.1f}, "
                     f"activations {est['activations_gb']:.1f})"
                     + (f"; CPU memory for offload {est['cpu_gb']:.1f} GB (whole node)" if est["cpu_gb"] else ""))
        if e["note"]:
            lines.append(f"    {e['note']}")
        if e["fits"] is False:
            available = min(e["gpu_per_worker"], 1.0) * e["gpu_memory_gb"]
            lines.append(f"    warning: does not fit: {est['total_gb']:.1f} GB > {available:.0f} GB of GPU memory"
                         f"{' (assumed)' if e['gpu_memory_assumed'] else ''} per worker; use more workers, "
                         "a higher ZeRO stage, offload, gradient checkpointing or a smaller batch_size")
    if any(e["gpu_memory_assumed"] and e["fits"] is not None for e in estimates):
        lines.append(f"  (GPU memory {DEFAULT_GPU_MEMORY_GB:.0f} GB assumed; declare it with resources.gpu_memory_gb)")
    return lines
