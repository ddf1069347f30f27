"""The contract between the driver (``sweep``) and a trial (``trainables``): what a trial is
given and how the records it leaves are named. Torch-free, so the driver imports it without
pulling in the training stack; ``sweep`` builds these objects and ``trainables`` reads them,
and neither spells a field, a metric key or an MLflow tag by hand."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

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
    # how to run: {"deepspeed": {...}, "workers": n, "precision": "auto", "gradient_checkpointing":
    # bool, "adversarial": {name: config}, "perturbations": [...], "perturbation_seed": s}
    # (see sweep.plan._settings)
    settings: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict) -> "TrialConfig":
        data = dict(data)
        for key in ("tasks", "languages"):
            data[key] = tuple(data.get(key, ()))
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


    def to_dict(self) -> dict:
        """The plain form Ray Tune carries in a trial's config (tuples become lists there)."""
        return asdict(self)


@dataclass(frozen=True)
class TaskOptions:
    """Per-task options a spec can set (``tasks: {name: {...}}``); each applies where it says."""

    data_dir: str | None = None
    train_examples: int | None = None
    # retrieval tasks: the hidden layer whose pooled states are the sentence embedding
    # (default: layer 14 of 24 scaled to the model's depth) and the pooling ("mean" or "cls")
    layer: int | None = None
    pooling: str = "mean"
    # multi-task intermediate training: at most this many examples of the task per epoch
    # (examples-proportional mixing with a cap), or a given sampling probability instead
    examples_cap: int | None = None
    probability: float | None = None
    # extra training data in other languages (translate-train): paths or hub ids of files in the
    # task's raw schema, appended to the English training split
    translated_train: tuple[str, ...] = ()
    # which English training set a target without its own uses (XCOPA: "siqa" or "copa")
    english_train: str | None = None
    # dual-encoder retrieval training (LAReQA, Mewsli-X): softmax temperature of in-batch negatives
    temperature: float | None = None
    # extractive QA: step between the starts of consecutive windows of a long context, in sub-words
    doc_stride: int | None = None
    # masked-LM mixing (task ``mlm``): a text corpus (path or hub id) and its languages
    corpus: str | None = None
    corpus_languages: tuple[str, ...] = ()
    # where generated data (the toy benchmark) and caches live
    cache_dir: str = "~/.cache/xstilts"

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
    FAILED_JOBS = "failed_jobs"
    DEVICE = "device"
    PRECISION = "precision"
