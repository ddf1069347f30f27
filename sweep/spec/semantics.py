"""Checks that need more than one field of the spec, the task registry or the plug-ins
(storage, sizes, precision, DeepSpeed, adversarial configurations, perturbations), and the
``Spec`` they build from a type-checked ``RawSpec``."""
from __future__ import annotations

import logging
import re
from pathlib import Path

from sweep.spec.blocks import DeepSpeedBlock, EvaluationBlock, RawSpec, Resources
from sweep.spec.errors import SpecError, did_you_mean, validator_error
from sweep.spec.hyperparameters import (
    PER_TASK, PHASES, check_factors, check_hyperparameters, check_task_hyperparameters,
)
from sweep.spec.model import Spec, Target
from sweep.spec.selection import (
    check_groups, check_intermediate, check_mixing, check_required_options, check_targets,
)
from trainables.records import perturbation_label
from trainables.tasks import task_names

log = logging.getLogger(__name__)


def _check_storage(storage: str, cache_dir: str) -> None:
    """``storage``: a local / shared path, or an s3:// / gs:// URI (whether the bucket can be
    reached is checked when `sweep run` starts); ``cache_dir``: always local."""
    from trainables.storage import validate_location

    if not storage.strip():
        raise SpecError("storage", "must be a folder path or an s3:// / gs:// URI")
    problem = validate_location(storage)  # the URI is not echoed: it might hold a secret
    if problem:
        raise SpecError("storage", problem)
    if "://" in cache_dir:
        raise SpecError("cache_dir", "must be a local folder (each node keeps its own cache; "
                                     "object storage goes in `storage`)")


def check_semantics(raw: RawSpec, source: str | None) -> Spec:
    names = task_names()
    _check_storage(raw.storage, raw.cache_dir)
    intermediate = check_intermediate(raw.intermediate, names)
    targets = check_targets(raw.targets, names)
    if len(set(raw.seeds)) != len(raw.seeds):
        raise SpecError("seeds", f"repeated seeds: {raw.seeds}")
    if not raw.seeds:
        raise SpecError("seeds", "give at least one seed")
    for i, seed in enumerate(raw.seeds):
        if seed < 0:
            raise SpecError(f"seeds[{i}]", f"must be >= 0, got {seed}")
    for name in raw.tasks:
        if name not in names:
            raise SpecError(f"tasks.{name}", "unknown task" + did_you_mean(name, names))
    check_mixing(intermediate, raw.tasks)
    check_required_options(intermediate, targets, raw.tasks)
    adversarial = _check_adversarial_configs(raw.adversarial)
    hps = check_hyperparameters(raw.hyperparameters, raw.search.algorithm, adversarial)
    task_hps = check_task_hyperparameters(raw.hyperparameters.get(PER_TASK), raw.search.algorithm, adversarial)
    return Spec(
        name=raw.name, description=raw.description, model=raw.model, intermediate=intermediate,
        targets=targets, seeds=tuple(raw.seeds), hyperparameters=hps, search=raw.search,
        resources=raw.resources, storage=raw.storage, cache_dir=raw.cache_dir, mlflow=raw.mlflow,
        tasks=dict(raw.tasks), max_failures=raw.max_failures, source=source,
        train_examples=_check_sizes(raw.train_examples), deepspeed=_check_deepspeed(raw.deepspeed),
        precision=_check_precision(raw.precision, raw.resources), gradient_checkpointing=raw.gradient_checkpointing,
        checkpoint_every_steps=raw.checkpoint_every_steps,
        adversarial=adversarial, evaluation=_warn_missing_files(_check_evaluation(raw.evaluation), targets),
        keep_intermediate=raw.keep_intermediate, task_hyperparameters=task_hps,
        groups=check_groups(raw.groups, intermediate),
        factors=check_factors(raw.factors, hps, task_hps),
    )


def _check_adversarial_configs(raw: dict[str, dict]) -> dict[str, dict]:
    if not raw:
        return {}
    from trainables.adversarial import method_names, validate_adversarial

    out = {}
    for name, config in raw.items():
        path = f"adversarial.{name}"
        if name == "none" or name in method_names():
            raise SpecError(path, f"'{name}' is a built-in name; give the configuration another name")
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            raise SpecError(path, "names are letters, digits, '_', '.', '-'")
        try:
            out[name] = validate_adversarial(dict(config))
        except ValueError as exc:
            raise validator_error(path, exc) from None
    return out


def _check_sizes(raw: dict[str, list]) -> dict[str, tuple[int | None, ...]]:
    out = {}
    for phase, sizes in raw.items():
        path = f"train_examples.{phase}"
        if phase not in PHASES:
            raise SpecError(path, "unknown phase" + did_you_mean(phase, PHASES) + f"; phases: {', '.join(PHASES)}")
        if not sizes:
            raise SpecError(path, "give at least one size (null = all examples)")
        for i, size in enumerate(sizes):
            if size is not None and size < 1:
                raise SpecError(f"{path}[{i}]", f"must be >= 1 or null, got {size}")
        if len(set(sizes)) != len(sizes):
            raise SpecError(path, f"repeated size: {sizes}")
        out[phase] = tuple(sorted(sizes, key=lambda v: (v is None, v or 0)))
    return out


def _check_precision(precision: str, resources: Resources) -> str:
    if precision == "fp16" and not resources.gpu:
        raise SpecError("precision", "fp16 needs GPUs (resources.gpu is 0): use bf16 or fp32 on the CPU")
    return precision


def _check_deepspeed(block: DeepSpeedBlock | None) -> DeepSpeedBlock | None:
    if block is None:
        return None
    for name in ("precision", "gradient_checkpointing"):
        if getattr(block, name) is not None:
            raise SpecError(f"deepspeed.{name}", f"moved: set `{name}:` at the top level of the spec "
                                                 "(one setting for the plain and DeepSpeed paths)")
    if block.offload_param != "none" and block.stage != 3:
        raise SpecError("deepspeed.offload_param", f"parameter offload needs stage 3, got stage {block.stage}")
    if block.offload_optimizer != "none" and block.stage == 0:
        raise SpecError("deepspeed.offload_optimizer", "optimizer offload needs stage 1, 2 or 3")
    if block.config_file and not Path(block.config_file).expanduser().is_file():
        raise SpecError("deepspeed.config_file", f"file not found: {block.config_file}")
    return block


def _check_evaluation(block: EvaluationBlock) -> EvaluationBlock:
    if not block.perturbations:
        return block
    from trainables.perturb import fixed_files, validate_perturbation

    checked = []
    for i, config in enumerate(block.perturbations):
        path = f"evaluation.perturbations[{i}]"
        try:
            checked.append(validate_perturbation(dict(config)))
        except ValueError as exc:
            raise validator_error(path, exc) from None
        # a file without {language} is one file for every language: it must exist now, while a
        # {language} file may be missing for some languages (the trial skips those, with a log line)
        for name, file in fixed_files(checked[-1]).items():
            if not Path(file).expanduser().is_file():
                raise SpecError(f"{path}.{name}", f"file not found: {file}")
    labels = [perturbation_label(c) for c in checked]
    for j, label in enumerate(labels):
        i = labels.index(label)
        if i == j:
            continue
        if checked[i] == checked[j]:
            raise SpecError(f"evaluation.perturbations[{j}]", f"repeated perturbation: same as [{i}]")
        raise SpecError(f"evaluation.perturbations[{j}]",
                        f"its metrics would be named like those of [{i}] ('{label}'): lexicons are "
                        "named by file stem, so give the files different names")
    return EvaluationBlock(perturbations=checked, seed=block.seed)


def _warn_missing_files(block: EvaluationBlock, targets: tuple[Target, ...]) -> EvaluationBlock:
    """A ``{language}`` file found for none of the targets' languages is most likely a wrong
    path: say so now (a warning: the files may live only on the nodes that run trials)."""
    if not block.perturbations:
        return block
    from trainables.perturb import language_files

    languages = sorted({lang for t in targets for lang in t.languages})
    for i, config in enumerate(block.perturbations):
        for name, template in language_files(config).items():
            paths = [Path(template.replace("{language}", lang)).expanduser() for lang in languages]
            if paths and not any(p.is_file() for p in paths):
                log.warning("evaluation.perturbations[%d].%s: no file for any target language "
                            "(e.g. %s); the perturbation is skipped in every language unless the "
                            "files exist on the nodes that run the trials", i, name, paths[0])
    return block
