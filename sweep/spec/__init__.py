"""Study spec: one YAML file -> a typed, validated ``Spec``.

Everything a user can get wrong is caught here, before anything starts, as a ``SpecError``
whose one-line message names the file and the field path (``targets[1].languages[0]``), with a
"did you mean" for near misses. Layered, each module importing only those above it in this list:
``errors`` (SpecError, message translation), ``hyperparameters`` (values against the contract's
table), ``blocks`` (the pydantic blocks of the YAML), ``model`` (``Spec``), ``selection``
(intermediate entries, targets, languages), ``semantics`` (cross-field checks, building the
``Spec``), ``load`` (files and YAML).
"""
from sweep.spec.blocks import (
    NONE_TASK, TINY_MODEL, DeepSpeedBlock, EvaluationBlock, MlflowConfig, RawSpec, Resources, SearchConfig,
    TargetEntry, TaskOptionsBlock,
)
from sweep.spec.errors import SpecError, did_you_mean
from sweep.spec.hyperparameters import (
    DISTRIBUTIONS, HP_DEFAULTS, HP_RULES, OPTIONAL_HPS, PER_TASK, PHASES, Distribution, Fixed, Grid,
    HyperParameter, parse_hyperparameter,
)
from sweep.spec.load import load_spec, parse_spec
from sweep.spec.model import Spec, Target, effective_precision
from trainables.contract import ADVERSARIAL, HPRule

__all__ = [
    "ADVERSARIAL", "DISTRIBUTIONS", "HP_DEFAULTS", "HP_RULES", "NONE_TASK", "OPTIONAL_HPS", "PER_TASK", "PHASES",
    "TINY_MODEL", "DeepSpeedBlock", "Distribution", "EvaluationBlock", "Fixed", "Grid", "HPRule", "HyperParameter",
    "MlflowConfig", "RawSpec", "Resources", "SearchConfig", "Spec", "SpecError", "Target", "TargetEntry",
    "TaskOptionsBlock", "did_you_mean", "effective_precision", "load_spec", "parse_hyperparameter", "parse_spec",
]
