"""Study spec: one YAML file -> a typed, validated ``Spec``.

Everything a user can get wrong is caught here, before anything starts, as a ``SpecError``
whose one-line message names the file and the field path (``targets[1].languages[0]``), with a
"did you mean" for near misses.
"""
from __future__ import annotations

import difflib
import logging
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from trainables.records import perturbation_label
from trainables.tasks import task_info, task_names

log = logging.getLogger(__name__)

NONE_TASK = "none"
TINY_MODEL = "tiny"


class SpecError(ValueError):
    """A spec problem, with the field path that caused it."""

    def __init__(self, field: str, message: str, source: str | None = None) -> None:
        self.field = field
        self.problem = message
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{field}: {message}" if field else f"{where}{message}")


def did_you_mean(word: str, choices: list[str] | tuple[str, ...]) -> str:
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


# --------------------------------------------------------------------------- hyperparameters

@dataclass(frozen=True)
class Fixed:
    value: Any


@dataclass(frozen=True)
class Grid:
    values: tuple


@dataclass(frozen=True)
class Distribution:
    kind: str
    low: float | None = None
    high: float | None = None
    values: tuple | None = None


HyperParameter = Union[Fixed, Grid, Distribution]

DISTRIBUTIONS = ("uniform", "loguniform", "randint", "choice")


@dataclass(frozen=True)
class HPRule:
    """Type and allowed range of one hyperparameter."""

    kind: type
    low: float | None = None
    low_inclusive: bool = True
    high: float | None = None
    high_inclusive: bool = True

    def check(self, value: Any) -> str | None:
        """None if ``value`` is allowed, else a message saying why not."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"must be a number, got {value!r}"
        if self.kind is int and not float(value).is_integer():
            return f"must be an integer, got {value!r}"
        if isinstance(value, float) and not math.isfinite(value):
            return f"must be finite, got {value!r}"
        if self.low is not None:
            if value < self.low or (value == self.low and not self.low_inclusive):
                return f"must be {'>=' if self.low_inclusive else '>'} {self.low}, got {value!r}"
        if self.high is not None:
            if value > self.high or (value == self.high and not self.high_inclusive):
                return f"must be {'<=' if self.high_inclusive else '<'} {self.high}, got {value!r}"
        return None


HP_RULES: dict[str, HPRule] = {
    "learning_rate": HPRule(float, low=0, low_inclusive=False, high=1),
    "batch_size": HPRule(int, low=1),
    "eval_batch_size": HPRule(int, low=1),
    "epochs": HPRule(int, low=1),
    "max_length": HPRule(int, low=8, high=8192),
    "warmup_ratio": HPRule(float, low=0, high=1, high_inclusive=False),
    "weight_decay": HPRule(float, low=0),
    "max_grad_norm": HPRule(float, low=0, low_inclusive=False),
    "grad_accumulation": HPRule(int, low=1),
    "max_steps": HPRule(int, low=1),
    # validation within epochs and early stopping (trainables.train.TrainSettings); no default
    # here: a spec that leaves them out keeps its job ids
    "eval_every_steps": HPRule(int, low=1),
    "eval_examples": HPRule(int, low=1),
    "patience": HPRule(int, low=1),
}

# hyperparameters without a default: out of a job's space (and id) unless a spec gives them
OPTIONAL_HPS = ("eval_every_steps", "eval_examples", "patience")

HP_DEFAULTS: dict[str, Any] = {
    "learning_rate": 2e-5,
    "batch_size": 32,
    "eval_batch_size": 64,
    "epochs": 3,
    "max_length": 128,
    "warmup_ratio": 0.1,
    "weight_decay": 0.01,
    "max_grad_norm": 1.0,
    "grad_accumulation": 1,
    "max_steps": None,
}


_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def _yaml_number(value: Any) -> Any:
    """PyYAML reads ``2e-5`` (no dot) as a string; researchers write learning rates that way."""
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        return float(value)
    return value


def parse_hyperparameter(name: str, raw: Any, path: str) -> HyperParameter:
    """scalar -> Fixed, list -> Grid (searched over), {distribution: ...} -> Distribution."""
    rule = HP_RULES[name]
    raw = [_yaml_number(v) for v in raw] if isinstance(raw, list) else _yaml_number(raw)
    if isinstance(raw, dict):
        raw = {k: (_yaml_number(v) if k in ("low", "high") else
                   [_yaml_number(x) for x in v] if k == "values" and isinstance(v, list) else v)
               for k, v in raw.items()}
    if isinstance(raw, list):
        if not raw:
            raise SpecError(path, "empty grid: give at least one value")
        for i, v in enumerate(raw):
            _check_value(rule, v, f"{path}[{i}]")
        if len(set(raw)) != len(raw):
            raise SpecError(path, f"grid has repeated values: {raw}")
        # sorted: the grid's order does not change what is searched, nor the job's id
        return Grid(tuple(sorted(_coerce(rule, v) for v in raw)))
    if isinstance(raw, dict):
        return _parse_distribution(rule, raw, path)
    if raw is None and name == "max_steps":
        return Fixed(None)
    _check_value(rule, raw, path)
    return Fixed(_coerce(rule, raw))


def _check_value(rule: HPRule, value: Any, path: str) -> None:
    problem = rule.check(value)
    if problem:
        raise SpecError(path, problem)


def _coerce(rule: HPRule, value: Any) -> Any:
    return int(value) if rule.kind is int else float(value)


def _parse_distribution(rule: HPRule, raw: dict, path: str) -> Distribution:
    allowed = {"distribution", "low", "high", "values"}
    for key in raw:
        if key not in allowed:
            raise SpecError(f"{path}.{key}", f"unknown field{did_you_mean(key, sorted(allowed))}")
    kind = raw.get("distribution")
    if kind not in DISTRIBUTIONS:
        raise SpecError(f"{path}.distribution",
                        f"must be one of {', '.join(DISTRIBUTIONS)}, got {kind!r}"
                        + did_you_mean(str(kind), DISTRIBUTIONS))
    if kind == "choice":
        values = raw.get("values")
        if not isinstance(values, list) or not values:
            raise SpecError(f"{path}.values", "choice needs a non-empty list of values")
        for i, v in enumerate(values):
            _check_value(rule, v, f"{path}.values[{i}]")
        return Distribution(kind, values=tuple(_coerce(rule, v) for v in values))
    for bound in ("low", "high"):
        if bound not in raw:
            raise SpecError(f"{path}.{bound}", f"{kind} needs '{bound}'")
        _check_value(rule, raw[bound], f"{path}.{bound}")
    low, high = raw["low"], raw["high"]
    if low >= high:
        raise SpecError(path, f"low ({low}) must be below high ({high})")
    if kind == "randint" and rule.kind is not int:
        raise SpecError(f"{path}.distribution", "randint is for integer hyperparameters")
    if kind != "randint" and rule.kind is int:
        raise SpecError(f"{path}.distribution", f"{kind} samples floats; use randint or choice "
                                                "for integer hyperparameters")
    if kind == "loguniform" and low <= 0:
        raise SpecError(f"{path}.low", f"loguniform needs low > 0, got {low!r}")
    return Distribution(kind, low=_coerce(rule, low), high=_coerce(rule, high))


# --------------------------------------------------------------------------- spec blocks

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


class TaskOptionsBlock(_Block):
    """``tasks: {name: {...}}``: where a task's data is and how it is used (see TaskOptions)."""

    data_dir: str | None = None
    train_examples: int | None = Field(None, ge=1)
    layer: int | None = Field(None, ge=0)
    pooling: Literal["mean", "cls"] | None = None
    examples_cap: int | None = Field(None, ge=1)
    probability: float | None = Field(None, gt=0, le=1)
    translated_train: list[str] | None = None
    english_train: Literal["siqa", "copa"] | None = None
    temperature: float | None = Field(None, gt=0)
    doc_stride: int | None = Field(None, ge=1)
    corpus: str | None = None
    corpus_languages: list[str] | None = None


class TargetEntry(_Block):
    task: str
    # a list of codes, the name of one of the task's language sets ("xtreme", "xtreme_r", "all"),
    # or a selection by language attributes: {resource_class: "<=2", from: xtreme_r, script: Latin}
    languages: Union[list[str], str, dict[str, Any], None] = None


class RawSpec(_Block):
    """The YAML as written, type-checked; semantic checks follow in ``_check_semantics``."""

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
    tasks: dict[str, TaskOptionsBlock] = Field(default_factory=dict)
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


PHASES = ("intermediate", "target")


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
    tasks: dict[str, TaskOptionsBlock]
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


# --------------------------------------------------------------------------- loading

def load_spec(path: str | Path) -> Spec:
    """Read and validate a spec file; every problem is a one-line ``SpecError``."""
    path = Path(path)
    source = str(path)
    if path.is_dir():
        raise SpecError("", f"{path} is a directory, not a spec file")
    if not path.is_file():
        raise SpecError("", f"spec file not found: {path}")
    raw = path.read_bytes()
    if b"\0" in raw:
        raise SpecError("", "not a text file (it holds NUL bytes: binary, or UTF-16?); "
                            "save the spec as UTF-8 YAML", source)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise SpecError("", f"line {line}: not UTF-8 text (byte {raw[exc.start]:#04x}); "
                            "save the spec as UTF-8", source) from None
    try:
        _check_duplicate_keys(yaml.compose(text, Loader=yaml.SafeLoader))
        data = yaml.safe_load(text)
    except SpecError as exc:
        raise SpecError(exc.field, exc.problem, source) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError("", f"{where}not valid YAML: {problem}", source) from None
    return parse_spec(data, source=source)


def _check_duplicate_keys(node, path: str = "") -> None:
    """A key given twice in one mapping is an error naming it and both lines (PyYAML would
    keep the last one silently)."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            here = f"{path}.{key}" if path else str(key)
            if key is not None and key != "<<":
                line = key_node.start_mark.line + 1
                if key in seen:
                    raise SpecError(here, f"key {key!r} is given twice (lines {seen[key]} and {line}); keep one")
                seen[key] = line
            _check_duplicate_keys(value, here)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _check_duplicate_keys(item, f"{path}[{i}]")


def parse_spec(data: Any, source: str | None = None) -> Spec:
    try:
        if not isinstance(data, dict):
            raise SpecError("", "the spec must be a YAML mapping (name: ..., targets: ...)")
        _check_unknown_keys(data, RawSpec, "")
        try:
            raw = RawSpec.model_validate(data)
        except ValidationError as exc:
            raise _first_error(exc) from None
        return _check_semantics(raw, source)
    except SpecError as exc:
        if exc.source is None and source is not None:
            raise SpecError(exc.field, exc.problem, source) from None
        raise


def _check_unknown_keys(data: Any, model: type[BaseModel], path: str) -> None:
    """Unknown keys get a 'did you mean' before pydantic's generic message."""
    if not isinstance(data, dict):
        return
    fields = model.model_fields
    for key, value in data.items():
        here = f"{path}.{key}" if path else str(key)
        if key not in fields:
            raise SpecError(here, "unknown field" + did_you_mean(str(key), sorted(fields)))
        annotation = fields[key].annotation
        optional = typing.get_origin(annotation) in (Union, types.UnionType)
        members = [annotation, *(typing.get_args(annotation) if optional else ())]  # Optional[Block]
        block = next((m for m in members if isinstance(m, type) and issubclass(m, BaseModel)), None)
        if block is not None:
            _check_unknown_keys(value, block, here)
    tasks = data.get("tasks") if model is RawSpec else None
    if isinstance(tasks, dict):
        for name, opts in tasks.items():
            _check_unknown_keys(opts, TaskOptionsBlock, f"tasks.{name}")
    targets = data.get("targets") if model is RawSpec else None
    if isinstance(targets, list):
        for i, entry in enumerate(targets):
            if isinstance(entry, dict):
                _check_unknown_keys(entry, TargetEntry, f"targets[{i}]")


def _first_error(exc: ValidationError) -> SpecError:
    errors = exc.errors()
    err = errors[0]
    # In a union (a name or a mapping) report the member that got furthest: for a mapping that is
    # the error inside it (targets[0].task), not "input should be a valid string".
    tag = next((i for i, p in enumerate(err["loc"]) if isinstance(p, str) and p in _UNION_TAGS), None)
    if tag is not None:
        err = max((e for e in errors if e["loc"][:tag] == err["loc"][:tag] and len(e["loc"]) > tag
                   and e["loc"][tag] in _UNION_TAGS), key=lambda e: len(e["loc"]))
    loc = [p for p in err["loc"] if not (isinstance(p, str) and p in _UNION_TAGS)]
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    message = err["msg"].removeprefix("Value error, ")
    if err["type"] == "missing":
        message = "required field is missing"
    elif "input" in err and not isinstance(err["input"], (dict, list)):
        message += f", got {err['input']!r}"
    return SpecError(path, message[0].lower() + message[1:] if message else message)


# pydantic inserts the union member's name into error locations; drop it from paths
_UNION_TAGS = {"str", "list[str]", "TargetEntry", "int", "float", "function-after[_name_is_a_slug(), str]"}


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


def _check_semantics(raw: RawSpec, source: str | None) -> Spec:
    names = task_names()
    _check_storage(raw.storage, raw.cache_dir)
    intermediate = _check_intermediate(raw.intermediate, names)
    targets = _check_targets(raw.targets, names)
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
    _check_mixing(intermediate, raw.tasks)
    _check_required_options(intermediate, targets, raw.tasks)
    adversarial = _check_adversarial_configs(raw.adversarial)
    hps = _check_hyperparameters(raw.hyperparameters, raw.search, adversarial)
    task_hps = _check_task_hyperparameters(raw.hyperparameters.get(PER_TASK), raw.search, adversarial)
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
        groups=_check_groups(raw.groups, intermediate),
        factors=_check_factors(raw.factors, hps, task_hps),
    )


def _check_intermediate(entries: list, names: list[str]) -> tuple[tuple[str, ...], ...]:
    if not entries:
        raise SpecError("intermediate", f"give at least one entry ('{NONE_TASK}' for the baseline)")
    usable = [n for n in names if task_info(n).intermediate and task_info(n).trainable]
    seen: set[tuple[str, ...]] = set()
    out = []
    for i, entry in enumerate(entries):
        path = f"intermediate[{i}]"
        group = [entry] if isinstance(entry, str) else list(entry)
        if isinstance(entry, list):
            if len(entry) < 2:
                raise SpecError(path, "a multi-task entry needs at least two tasks")
            if len(set(entry)) != len(entry):
                raise SpecError(path, f"repeated task in multi-task entry: {entry}")
        for j, name in enumerate(group):
            where = path if isinstance(entry, str) else f"{path}[{j}]"
            if name == NONE_TASK:
                if isinstance(entry, list):
                    raise SpecError(where, f"'{NONE_TASK}' cannot be part of a multi-task entry")
                continue
            if name not in names:
                raise SpecError(where, f"unknown task '{name}'" + did_you_mean(name, names + [NONE_TASK]))
            if name not in usable:
                raise SpecError(where, f"task '{name}' cannot be an intermediate task "
                                       "(it has no English training data)")
        key = () if group == [NONE_TASK] else tuple(sorted(group))
        if key in seen:
            raise SpecError(path, f"repeated intermediate entry: {entry}")
        seen.add(key)
        out.append(key)
    return tuple(out)


def _check_mixing(groups: tuple[tuple[str, ...], ...], options: dict[str, TaskOptionsBlock]) -> None:
    """Multi-task sampling probabilities are all-or-nothing within an intermediate entry."""
    for i, group in enumerate(groups):
        given = [t for t in group if t in options and options[t].probability is not None]
        if given and len(given) != len(group):
            missing = [t for t in group if t not in given]
            raise SpecError(f"tasks.{missing[0]}.probability",
                            f"intermediate[{i}] mixes {'+'.join(group)} with given probabilities "
                            f"for {', '.join(given)}: give one for every task of the entry or none")


def _check_required_options(groups, targets, options: dict[str, TaskOptionsBlock]) -> None:
    used = [t for g in groups for t in g] + [t.task for t in targets]
    for name in dict.fromkeys(used):
        for option in task_info(name).required_options:
            if name not in options or getattr(options[name], option) is None:
                raise SpecError(f"tasks.{name}.{option}", f"task '{name}' needs this option "
                                                          f"({task_info(name).description})")


def _select_languages(task: str, info, criteria: dict, path: str) -> tuple[str, ...]:
    """A task's languages (or one of its sets, ``from:``) filtered by language attributes."""
    from sweep.languages import select_languages

    sets = {"all": info.languages, **dict(info.language_sets)}
    base = criteria.pop("from", "all")
    if base not in sets:
        raise SpecError(f"{path}.from", f"'{base}' is not a language set of task '{task}'"
                                        + did_you_mean(str(base), list(sets)) + f"; sets: {', '.join(sets)}")
    if not criteria:
        raise SpecError(path, "give at least one attribute to select by (e.g. resource_class: '<=2')")
    try:
        chosen = select_languages(tuple(sets[base]), criteria)
    except ValueError as exc:
        raise SpecError(_join_field(path, str(exc)), _problem(str(exc))) from None
    except KeyError as exc:  # a language without metadata (the toy languages)
        raise SpecError(path, f"cannot select languages of task '{task}' by attributes: "
                              f"{exc.args[0] if exc.args else exc}") from None
    if not chosen:
        raise SpecError(path, f"no language of task '{task}' matches {criteria}")
    return tuple(chosen)


def _check_targets(entries: list, names: list[str]) -> tuple[Target, ...]:
    if not entries:
        raise SpecError("targets", "give at least one target task")
    usable = [n for n in names if task_info(n).target]
    out: list[Target] = []
    for i, entry in enumerate(entries):
        path = f"targets[{i}]"
        entry = TargetEntry(task=entry) if isinstance(entry, str) else entry
        tpath = path if isinstance(entries[i], str) else f"{path}.task"
        if entry.task not in names:
            raise SpecError(tpath, f"unknown task '{entry.task}'" + did_you_mean(entry.task, names))
        if entry.task not in usable:
            raise SpecError(tpath, f"task '{entry.task}' cannot be a target task")
        info = task_info(entry.task)
        if entry.languages is None:
            languages = info.languages
        elif isinstance(entry.languages, dict):
            languages = _select_languages(entry.task, info, dict(entry.languages), f"{path}.languages")
        elif isinstance(entry.languages, str):
            sets = {"all": info.languages, **dict(info.language_sets)}
            if entry.languages not in sets:
                raise SpecError(f"{path}.languages",
                                f"'{entry.languages}' is not a language set of task '{entry.task}'"
                                + did_you_mean(entry.languages, list(sets))
                                + f"; give a list of languages or one of: {', '.join(sets)}")
            languages = tuple(sets[entry.languages])
        else:
            if not entry.languages:
                raise SpecError(f"{path}.languages", "give at least one language (or leave out "
                                                     "the field for all of the task's languages)")
            for j, lang in enumerate(entry.languages):
                if lang not in info.languages:
                    raise SpecError(f"{path}.languages[{j}]",
                                    f"'{lang}' is not a language of task '{entry.task}'"
                                    + did_you_mean(lang, info.languages)
                                    + f"; it has: {' '.join(info.languages)}")
            if len(set(entry.languages)) != len(entry.languages):
                raise SpecError(f"{path}.languages", f"repeated language: {entry.languages}")
            languages = tuple(entry.languages)
        if any(t.task == entry.task for t in out):
            raise SpecError(path, f"target '{entry.task}' is listed twice")
        out.append(Target(entry.task, languages))
    return tuple(out)


ADVERSARIAL = "adversarial"  # the hyperparameter naming an adversarial-training configuration


def _adversarial_names(configs: dict[str, dict]) -> list[str]:
    from trainables.adversarial import method_names  # only for specs that use adversarial training

    return [*method_names(), *configs]  # method_names() starts with "none"


def _parse_adversarial(value: Any, path: str, configs: dict[str, dict]) -> HyperParameter:
    """``adversarial: freelb`` / ``[none, freelb, smart3]`` / ``{distribution: choice, values: [...]}``."""
    names = _adversarial_names(configs)

    def check(name: Any, where: str) -> str:
        if not isinstance(name, str) or name not in names:
            raise SpecError(where, f"unknown adversarial configuration {name!r}"
                                   + did_you_mean(str(name), names) + f"; known: {', '.join(names)}")
        return name

    if isinstance(value, list):
        if not value:
            raise SpecError(path, "empty grid: give at least one value")
        if len(set(map(str, value))) != len(value):
            raise SpecError(path, f"grid has repeated values: {value}")
        return Grid(tuple(sorted(check(v, f"{path}[{i}]") for i, v in enumerate(value))))
    if isinstance(value, dict):
        if value.get("distribution") != "choice" or not isinstance(value.get("values"), list):
            raise SpecError(path, "adversarial takes a name, a list of names, or "
                                  "{distribution: choice, values: [...]}")
        return Distribution("choice", values=tuple(check(v, f"{path}.values[{i}]")
                                                  for i, v in enumerate(value["values"])))
    return Fixed(check(value, path))


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
            raise SpecError(_join_field(path, str(exc)), _problem(str(exc))) from None
    return out


def _join_field(path: str, message: str) -> str:
    """``<field>: <problem>`` messages from validators become ``path.field``."""
    field_name = message.split(":", 1)[0].strip() if ":" in message else ""
    return f"{path}.{field_name}" if field_name and " " not in field_name else path


def _problem(message: str) -> str:
    head, _, rest = message.partition(":")
    return rest.strip() if rest and " " not in head.strip() else message


def _check_factors(raw: list[str], hps: dict, task_hps: dict) -> tuple[str, ...]:
    known = sorted([*HP_RULES, ADVERSARIAL])
    for i, name in enumerate(raw):
        if name not in known:
            raise SpecError(f"factors[{i}]", "unknown hyperparameter" + did_you_mean(name, known))
        spaces = [*hps.values(), *task_hps.values()]
        if not any(isinstance(space.get(name), Grid) for space in spaces):
            raise SpecError(f"factors[{i}]", f"'{name}' is not a list of values in any phase: "
                                             "a factor compares the values of a grid")
    if len(set(raw)) != len(raw):
        raise SpecError("factors", f"repeated factor: {raw}")
    return tuple(raw)


def _check_groups(raw: dict[str, list], intermediate: tuple[tuple[str, ...], ...]
                  ) -> dict[tuple[str, ...], str]:
    out: dict[tuple[str, ...], str] = {}
    for group, entries in raw.items():
        for i, entry in enumerate(entries):
            path = f"groups.{group}[{i}]"
            key = () if entry == NONE_TASK else tuple(sorted([entry] if isinstance(entry, str) else entry))
            if key not in intermediate:
                shown = [("+".join(k) or NONE_TASK) for k in intermediate]
                raise SpecError(path, f"{entry!r} is not an intermediate entry of this study"
                                      + did_you_mean("+".join(key) or NONE_TASK, shown))
            if key in out:
                raise SpecError(path, f"{entry!r} is already in group '{out[key]}'")
            out[key] = group
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


def effective_precision(spec: "Spec") -> str:
    """The precision trials will run in when the spec leaves it to ``auto``, as far as the spec
    can tell: bf16 where trials reserve GPUs (every GPU of a current cluster has it), else fp32."""
    if spec.precision != "auto":
        return spec.precision
    return "bf16" if spec.resources.gpu else "fp32"


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
            raise SpecError(_join_field(path, str(exc)), _problem(str(exc))) from None
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


PER_TASK = "tasks"  # hyperparameters.tasks.<task>: overrides for jobs that train that task alone


def _check_task_hyperparameters(raw: Any, search: SearchConfig, adversarial: dict[str, dict]
                                ) -> dict[str, dict[str, HyperParameter]]:
    """``hyperparameters.tasks: {xquad: {max_length: 384, epochs: 2}}``: values for one task.

    They override the phase's values in every job that trains that task on its own (a target,
    or a single-task intermediate entry); multi-task entries keep the phase's values.
    """
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise SpecError(f"hyperparameters.{PER_TASK}", "must map task names to hyperparameters")
    names = task_names()
    out: dict[str, dict[str, HyperParameter]] = {}
    for task, given in raw.items():
        base = f"hyperparameters.{PER_TASK}.{task}"
        if task not in names:
            raise SpecError(base, "unknown task" + did_you_mean(str(task), names))
        if not isinstance(given, dict) or not given:
            raise SpecError(base, "must be a non-empty mapping of hyperparameter: value")
        parsed: dict[str, HyperParameter] = {}
        for name, value in given.items():
            path = f"{base}.{name}"
            if name == ADVERSARIAL:
                parsed[name] = _parse_adversarial(value, path, adversarial)
            elif name in HP_RULES:
                parsed[name] = parse_hyperparameter(name, value, path)
            else:
                raise SpecError(path, "unknown hyperparameter" + did_you_mean(name, sorted([*HP_RULES, ADVERSARIAL])))
            if isinstance(parsed[name], Distribution) and search.algorithm == "grid":
                raise SpecError(path, "a distribution needs 'search: {algorithm: optuna}' "
                                      "(grid search takes a list of values)")
        out[task] = parsed
    return out


def _check_hyperparameters(raw: dict[str, dict[str, Any]], search: SearchConfig,
                           adversarial: dict[str, dict] | None = None,
                           ) -> dict[str, dict[str, HyperParameter]]:
    out: dict[str, dict[str, HyperParameter]] = {}
    for phase in raw:
        if phase not in PHASES and phase != PER_TASK:
            raise SpecError(f"hyperparameters.{phase}", "unknown phase"
                            + did_you_mean(phase, (*PHASES, PER_TASK)) + f"; phases: {', '.join(PHASES)} "
                            f"(and '{PER_TASK}' for per-task overrides)")
    for phase in PHASES:
        given = raw.get(phase) or {}
        if not isinstance(given, dict):
            raise SpecError(f"hyperparameters.{phase}", "must be a mapping of hyperparameter: value")
        parsed: dict[str, HyperParameter] = {}
        for name, value in given.items():
            path = f"hyperparameters.{phase}.{name}"
            if name == ADVERSARIAL:
                parsed[name] = _parse_adversarial(value, path, adversarial or {})
                if isinstance(parsed[name], Distribution) and search.algorithm == "grid":
                    raise SpecError(path, "a distribution needs 'search: {algorithm: optuna}' "
                                          "(grid search takes a list of values)")
                continue
            if name not in HP_RULES:
                raise SpecError(path, "unknown hyperparameter" + did_you_mean(name, sorted([*HP_RULES, ADVERSARIAL])))
            hp = parse_hyperparameter(name, value, path)
            if isinstance(hp, Distribution) and search.algorithm == "grid":
                raise SpecError(path, "a distribution needs 'search: {algorithm: optuna}' "
                                      "(grid search takes a list of values)")
            parsed[name] = hp
        for name, default in HP_DEFAULTS.items():
            parsed.setdefault(name, Fixed(default))
        out[phase] = parsed
    return out
