"""The contract between the driver (``sweep``) and a trial (``trainables``): what a trial is
given and how the records it leaves are named. Torch-free, so the driver imports it without
pulling in the training stack; ``sweep`` builds these objects and ``trainables`` reads them,
and neither spells a field, a metric key or an MLflow tag by hand."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, TypedDict

STAGES = ("intermediate", "target", "eval")


# ---------------------------------------------------------------- hyperparameters
@dataclass(frozen=True)
class HPRule:
    """Type and allowed range of one hyperparameter (or numeric option)."""

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


@dataclass(frozen=True)
class HyperparameterInfo:
    """One hyperparameter a spec can set per phase and a trial trains with."""

    name: str
    rule: HPRule
    default: int | float | None
    doc: str
    # no default: out of a job's space (and so of its id) unless a spec gives it; the trial then
    # runs with ``default`` (None: the feature is off)
    optional: bool = False

    @property
    def accepts_null(self) -> bool:
        """``max_steps: null`` is a value (no limit); an optional hyperparameter is left out instead."""
        return self.default is None and not self.optional


def _table(*entries: HyperparameterInfo) -> dict[str, HyperparameterInfo]:
    return {entry.name: entry for entry in entries}


#: every numeric hyperparameter: the spec's rules and defaults, the trial's ``TrainSettings`` and
#: the README's table all follow this one declaration
HYPERPARAMETERS: dict[str, HyperparameterInfo] = _table(
    HyperparameterInfo("learning_rate", HPRule(float, low=0, low_inclusive=False, high=1), 2e-5,
                       "peak AdamW learning rate (linear warmup, then linear decay)"),
    HyperparameterInfo("batch_size", HPRule(int, low=1), 32,
                       "examples per micro-batch; an update sees batch_size x grad_accumulation"),
    HyperparameterInfo("eval_batch_size", HPRule(int, low=1), 64, "examples per evaluation batch"),
    HyperparameterInfo("epochs", HPRule(int, low=1), 3, "passes over the training set"),
    HyperparameterInfo("max_length", HPRule(int, low=8, high=8192), 128, "sub-words per sequence"),
    HyperparameterInfo("warmup_ratio", HPRule(float, low=0, high=1, high_inclusive=False), 0.1,
                       "share of the optimizer steps spent warming the learning rate up"),
    HyperparameterInfo("weight_decay", HPRule(float, low=0), 0.01, "AdamW weight decay"),
    HyperparameterInfo("max_grad_norm", HPRule(float, low=0, low_inclusive=False), 1.0,
                       "gradient clipping norm"),
    HyperparameterInfo("grad_accumulation", HPRule(int, low=1), 1, "micro-batches per optimizer update"),
    HyperparameterInfo("max_steps", HPRule(int, low=1), None,
                       "stop after this many optimizer steps (null: no limit)"),
    HyperparameterInfo("eval_every_steps", HPRule(int, low=1), None,
                       "also validate on English dev every that many optimizer steps", optional=True),
    HyperparameterInfo("eval_examples", HPRule(int, low=1), None,
                       "validate on the dev split's first that many examples", optional=True),
    HyperparameterInfo("patience", HPRule(int, low=1), None,
                       "stop after that many validations without a better dev score", optional=True),
    HyperparameterInfo("freeze_embeddings", HPRule(int, low=0, high=1), 0,
                       "1: the word embeddings stay as pretrained and only the layers above them learn, "
                       "so English training cannot move English words away from their translations "
                       "(whose embeddings it never updates)", optional=True),
)

#: the hyperparameter naming an adversarial-training configuration (a name, not a number:
#: ``none``, a built-in method or a configuration under the spec's ``adversarial:``)
ADVERSARIAL = "adversarial"


class TrialSettings(TypedDict, total=False):
    """How a trial runs (``TrialConfig.settings``), as ``sweep.plan`` builds it; a plain dict at
    run time, so Ray Tune carries it and the trial reads it with ``.get``."""

    workers: int
    resources: dict[str, Any]          # the spec's ``resources:`` block
    precision: str                     # auto | fp32 | bf16 | fp16
    gradient_checkpointing: bool
    checkpoint_every_steps: int | None
    deepspeed: dict[str, Any]          # the spec's ``deepspeed:`` block, when given
    adversarial: dict[str, dict]       # named adversarial configurations the job uses
    perturbations: list[dict]          # evaluation-time perturbations (target and eval jobs)
    perturbation_seed: int


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
    settings: TrialSettings = field(default_factory=TrialSettings)
    label: str = ""                  # the job's readable label, for log lines

    @classmethod
    def from_dict(cls, data: dict) -> "TrialConfig":
        data = dict(data)
        for key in ("tasks", "languages"):
            data[key] = tuple(data.get(key, ()))
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


    def to_dict(self) -> dict:
        """The plain form Ray Tune carries in a trial's config: JSON types (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def _option(default: Any = None, *, rule: HPRule | None = None, choices: tuple[str, ...] = (),
            in_spec: bool = True) -> Any:
    """A ``TaskOptions`` field with what a spec may give it (``sweep.spec`` builds its ``tasks:``
    block from these): a numeric range, a set of choices, or not settable there at all."""
    return field(default=default, metadata={"rule": rule, "choices": choices, "in_spec": in_spec})


@dataclass(frozen=True)
class TaskOptions:
    """Per-task options a spec can set (``tasks: {name: {...}}``); each applies where it says."""

    data_dir: str | None = None
    train_examples: int | None = _option(rule=HPRule(int, low=1))
    # retrieval tasks: the hidden layer whose pooled states are the sentence embedding
    # (default: layer 14 of 24 scaled to the model's depth) and the pooling ("mean" or "cls")
    layer: int | None = _option(rule=HPRule(int, low=0))
    pooling: str = _option("mean", choices=("mean", "cls"))
    # multi-task intermediate training: at most this many examples of the task per epoch
    # (examples-proportional mixing with a cap), or a given sampling probability instead
    examples_cap: int | None = _option(rule=HPRule(int, low=1))
    probability: float | None = _option(rule=HPRule(float, low=0, low_inclusive=False, high=1))
    # extra training data in other languages (translate-train): paths or hub ids of files in the
    # task's raw schema, appended to the English training split
    translated_train: tuple[str, ...] = ()
    # which English training set a target without its own uses (XCOPA: "siqa" or "copa")
    english_train: str | None = _option(choices=("siqa", "copa"))
    # dual-encoder retrieval training (LAReQA, Mewsli-X): softmax temperature of in-batch negatives
    temperature: float | None = _option(rule=HPRule(float, low=0, low_inclusive=False))
    # extractive QA: step between the starts of consecutive windows of a long context, in sub-words
    doc_stride: int | None = _option(rule=HPRule(int, low=1))
    # masked-LM mixing (task ``mlm``): a text corpus (path or hub id) and its languages
    corpus: str | None = None
    corpus_languages: tuple[str, ...] = ()
    # where generated data (the toy benchmark) and caches live: the spec's top-level cache_dir
    cache_dir: str = _option("~/.cache/xstilts", in_spec=False)

    @classmethod
    def from_dict(cls, values: dict, cache_dir: str) -> "TaskOptions":
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
        return cls(cache_dir=cache_dir, **values)


# ---------------------------------------------------------------- metric keys
# A score is logged as ``<task>/<metric>/<language>``; ``avg`` stands for the language average.
AVERAGE_LANGUAGE = "avg"


def metric_key(task: str, metric: str, language: str) -> str:
    return f"{task}/{metric}/{language}"


def parse_metric_key(key: str) -> tuple[str, str, str] | None:
    """``(task, metric, language)`` of a score key, None for other keys (``train/loss``).
    A task label may hold ``/`` itself (a perturbed evaluation), so the metric and the language
    are the last two parts."""
    parts = key.rsplit("/", 2)
    if len(parts) != 3 or not all(parts):
        return None
    return parts[0], parts[1], parts[2]


# ---------------------------------------------------------------- MLflow tags
TAG_PREFIX = "xstilts."


def tag(name: str) -> str:
    """The full MLflow tag name of one of the ``Tag`` names below."""
    return TAG_PREFIX + name


class Tag:
    """Short names of the tags the driver writes on MLflow runs (``tag(Tag.STAGE)`` is
    ``xstilts.stage``); the report finds and reads runs by the same names."""

    KIND = "kind"                  # study | job | trial
    STUDY = "study"
    JOB_ID = "job_id"
    TRIAL_ID = "trial_id"
    STAGE = "stage"
    INTERMEDIATE = "intermediate"
    TARGET = "target"
    SEED = "seed"
    MAIN_METRIC = "main_metric"
    STATUS = "status"              # running | finished | failed | blocked | interrupted
    TRAIN_EXAMPLES = "train_examples"
    TARGET_EXAMPLES = "target_examples"
    GROUP = "group"
    ERROR = "error"
    CHECKPOINT = "checkpoint"
    CHECKPOINT_UPLOAD = "checkpoint_upload"
    FAILED_JOBS = "failed_jobs"     # on the study run
    # on a job run, about its trials: the selected one, how many ran, failed, were stopped early
    BEST_TRIAL = "best_trial"
    TRIALS = "trials"
    FAILED_TRIALS = "failed_trials"
    STOPPED_TRIALS = "stopped_trials"
    OOM_RETRIES = "oom_retries"    # the selected trial's micro-batch changes after out-of-memory
    DEVICE = "device"              # what the selected trial ran on, and in which precision
    PRECISION = "precision"
