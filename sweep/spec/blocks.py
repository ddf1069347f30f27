"""The spec's YAML as typed pydantic blocks (``RawSpec``): types, ranges and unknown fields are
checked here; what needs more than one field, or the task registry, follows in ``semantics``."""
from __future__ import annotations

import re
import typing
from dataclasses import fields
from pathlib import Path
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator

from trainables.contract import HPRule, TaskOptions

NONE_TASK = "none"
TINY_MODEL = "tiny"


class _Block(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class SearchConfig(_Block):
    """How the hyperparameters within one job cell are searched."""

    algorithm: Literal["grid", "optuna"] = "grid"
    num_samples: int = Field(1, ge=1)
    metric: str = "dev/score"
    mode: Literal["max", "min"] = "max"
    scheduler: Literal["none", "asha"] = "none"
    grace_period: int = Field(1, ge=1)
    max_concurrent: int | None = Field(None, ge=1)


class Resources(_Block):
    """Per trial: CPUs and GPUs of each worker, and how many workers (Ray Train) a trial uses."""

    cpu: float = Field(1.0, gt=0)
    gpu: float = Field(0.0, ge=0)
    workers: int = Field(1, ge=1)
    # memory of one GPU, for `sweep plan`'s fit check (null: 80 GB is assumed, and said so)
    gpu_memory_gb: float | None = Field(None, gt=0)
    # where a multi-worker trial's workers go (Ray Train's placement strategy): pack (Ray's
    # default: one node when it fits, else several), strict_pack (one node, or wait for one:
    # the autoscaler adds a node that holds them all), spread (one per node where possible)
    placement: Literal["pack", "strict_pack", "spread"] = "pack"


class DeepSpeedBlock(_Block):
    """``deepspeed: {stage: 3, offload_optimizer: cpu}``: train the phases under DeepSpeed ZeRO."""

    stage: int = Field(2, ge=0, le=3)
    offload_optimizer: Literal["none", "cpu"] = "none"
    offload_param: Literal["none", "cpu"] = "none"
    # moved to the top level (one setting for the plain and DeepSpeed paths): an error here
    precision: Any = None
    gradient_checkpointing: Any = None
    config_file: str | None = None


class EvaluationBlock(_Block):
    """Evaluation-time perturbations of target test sets (robustness studies)."""

    perturbations: list[dict[str, Any]] = Field(default_factory=list)
    seed: int = Field(0, ge=0)


class MlflowConfig(_Block):
    tracking_uri: str | None = None
    experiment: str | None = None
    # upload each job's selected checkpoint as an MLflow artifact (its location is always a tag)
    log_checkpoints: bool = False


def _bounds(rule: HPRule | None) -> dict[str, float]:
    """A contract range as pydantic's field constraints."""
    if rule is None:
        return {}
    out = {}
    if rule.low is not None:
        out["ge" if rule.low_inclusive else "gt"] = rule.low
    if rule.high is not None:
        out["le" if rule.high_inclusive else "lt"] = rule.high
    return out


def _spec_type(hint: Any, choices: tuple[str, ...]) -> Any:
    """What the YAML gives for a ``TaskOptions`` field: a list for a tuple, one of its choices, and
    null-able (an option left out is not set, and the task's default applies)."""
    if choices:
        base = Literal[choices]
    elif hint == tuple[str, ...]:
        base = list[str]
    else:
        base = next(a for a in (typing.get_args(hint) or (hint,)) if a is not type(None))
    return base | None


def _task_options_block() -> type[BaseModel]:
    hints = typing.get_type_hints(TaskOptions)
    declared = {f.name: (_spec_type(hints[f.name], f.metadata.get("choices", ())),
                         Field(None, **_bounds(f.metadata.get("rule"))))
                for f in fields(TaskOptions) if f.metadata.get("in_spec", True)}
    return create_model("TaskOptionsBlock", __base__=_Block, __module__=__name__,
                        __doc__="``tasks: {name: {...}}``: where a task's data is and how it is "
                                "used; one field per spec-settable ``TaskOptions`` field.",
                        **declared)


TaskOptionsBlock = _task_options_block()


class TargetEntry(_Block):
    task: str
    # a list of codes, the name of one of the task's language sets ("xtreme", "xtreme_r", "all"),
    # or a selection by language attributes: {resource_class: "<=2", from: xtreme_r, script: Latin}
    languages: Union[list[str], str, dict[str, Any], None] = None


class RawSpec(_Block):
    """The YAML as written, type-checked; semantic checks follow in ``semantics``."""

    name: str
    description: str = ""
    model: str = TINY_MODEL
    intermediate: list[Union[str, list[str]]] = Field(default_factory=lambda: [NONE_TASK])
    targets: list[Union[str, TargetEntry]]
    seeds: list[int] = Field(default_factory=lambda: [1])
    hyperparameters: dict[str, dict[str, Any]] = Field(default_factory=dict)
    search: SearchConfig = SearchConfig()
    resources: Resources = Resources()
    storage: str = "runs"               # a folder (local, NFS) or an s3:// / gs:// URI
    cache_dir: str = "~/.cache/xstilts"
    mlflow: MlflowConfig = MlflowConfig()
    tasks: dict[str, TaskOptionsBlock] = Field(default_factory=dict)  # type: ignore[valid-type]
    max_failures: int = Field(1, ge=0)
    # study factors: training-set sizes per phase, each size its own jobs (null = all examples)
    train_examples: dict[str, list[Union[int, None]]] = Field(default_factory=dict)
    deepspeed: DeepSpeedBlock | None = None
    # how every training path computes (trainables.device): auto = bf16 on a GPU that has it,
    # fp32 on the CPU; fp16 trains with a gradient scaler (GPU only)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    gradient_checkpointing: bool = False
    # a resume state within epochs every that many optimizer steps (null: about every 5 minutes)
    checkpoint_every_steps: int | None = Field(None, ge=1)
    # named adversarial-training configurations, used by name in hyperparameters.<phase>.adversarial
    adversarial: dict[str, dict[str, Any]] = Field(default_factory=dict)
    evaluation: EvaluationBlock = EvaluationBlock()
    # intermediate checkpoints are deleted once every job starting from them finished, unless kept
    keep_intermediate: bool = False
    # named groups of intermediate entries (syntactic / semantic ...): a tag the report groups by
    groups: dict[str, list[Union[str, list[str]]]] = Field(default_factory=dict)
    # hyperparameters whose grid values are compared rather than searched: each value is its own
    # job (e.g. [adversarial] for standard vs FreeLB vs SMART intermediate training)
    factors: list[str] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _name_is_a_slug(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}", v):
            raise ValueError("must be 1-100 characters of letters, digits, '_', '.', '-'")
        return v

    @field_validator("model")
    @classmethod
    def _model_exists(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must name a hub id, a local directory or 'tiny'")
        looks_local = v.startswith(("/", "./", "../", "~")) or v in (".", "..")
        if looks_local and not Path(v).expanduser().is_dir():
            raise ValueError(f"local model directory not found: {v}")
        if looks_local or (v != TINY_MODEL and Path(v).is_dir()):
            # a trial runs in its own working directory (and maybe on another node): give it the
            # absolute path, resolved here against the directory `sweep` was started in
            return str(Path(v).expanduser().resolve())
        return v
