"""The validated study (``Spec``): what the planner expands, built by ``semantics``."""
from __future__ import annotations

from dataclasses import dataclass, field

from sweep.spec.blocks import (
    DeepSpeedBlock, EvaluationBlock, MlflowConfig, Resources, SearchConfig, TaskOptionsBlock,
)
from sweep.spec.hyperparameters import HyperParameter


@dataclass(frozen=True)
class Target:
    task: str
    languages: tuple[str, ...]


@dataclass(frozen=True)
class Spec:
    """The validated study: what the planner expands."""

    name: str
    description: str
    model: str
    intermediate: tuple[tuple[str, ...], ...]  # () is the baseline without intermediate training
    targets: tuple[Target, ...]
    seeds: tuple[int, ...]
    hyperparameters: dict[str, dict[str, HyperParameter]]
    search: SearchConfig
    resources: Resources
    storage: str
    cache_dir: str
    mlflow: MlflowConfig
    tasks: dict[str, TaskOptionsBlock]  # type: ignore[valid-type]
    max_failures: int
    source: str | None = None
    train_examples: dict[str, tuple[int | None, ...]] = field(default_factory=dict)
    deepspeed: DeepSpeedBlock | None = None
    precision: str = "auto"
    gradient_checkpointing: bool = False
    checkpoint_every_steps: int | None = None
    adversarial: dict[str, dict] = field(default_factory=dict)
    evaluation: EvaluationBlock = EvaluationBlock()
    keep_intermediate: bool = False
    task_hyperparameters: dict[str, dict[str, HyperParameter]] = field(default_factory=dict)
    groups: dict[tuple[str, ...], str] = field(default_factory=dict)  # intermediate entry -> group
    factors: tuple[str, ...] = ()

    @property
    def experiment(self) -> str:
        return self.mlflow.experiment or self.name


def effective_precision(spec: Spec) -> str:
    """The precision trials will run in when the spec leaves it to ``auto``, as far as the spec
    can tell: bf16 where trials reserve GPUs (every GPU of a current cluster has it), else fp32."""
    if spec.precision != "auto":
        return spec.precision
    return "bf16" if spec.resources.gpu else "fp32"
