"""How long a trial of a job takes, before it runs: the scheduler's cost model.

A trial's cost is ``examples x epochs x max_length x model size x family factor`` (sequences
encoded per example: a multiple-choice example is one sequence per choice), in token-epochs of
XLM-R Large, turned into seconds by a rate. The rate starts from a rough XLM-R Large figure
(an ANLI+ epoch at length 256 is about 40 GPU-minutes) and is refined per task family from
finished trials' durations (``observe``), so the longest-path order tracks the real cluster.
Only ratios between jobs matter for the order; the seconds matter for ``sweep status``'s ETA.
"""
from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

# English training examples (approximate public sizes); tasks not here count DEFAULT_EXAMPLES.
TRAIN_EXAMPLES = {
    "anli_plus": 1_100_000, "mnli": 392_702, "qqp": 363_846, "squad_v1": 87_599,
    "squad_v2": 130_319, "hellaswag": 39_905, "cosmosqa": 25_262, "commonsenseqa": 9_741,
    "ccg": 38_015, "xnli": 392_702, "pawsx": 49_401, "udpos": 21_253, "panx": 20_000,
    "xquad": 87_599, "mlqa": 87_599, "tydiqa": 3_696, "siqa": 33_410, "copa": 400,
}
# sequences encoded per example (multiple choice: one per answer choice)
SEQUENCES_PER_EXAMPLE = {"hellaswag": 4, "cosmosqa": 4, "commonsenseqa": 5, "siqa": 3, "copa": 2}
# evaluation-only jobs (retrieval): sentences embedded, once
EVAL_EXAMPLES = {"bucc": 40_000, "tatoeba": 36_000}
DEFAULT_EXAMPLES = 10_000
# parameters relative to XLM-R Large (560M)
MODEL_SIZE = (("xxl", 19.0), ("xl", 6.3), ("large", 1.0), ("base", 0.5), ("tiny", 0.01))
# seconds per (example x epoch x token) of XLM-R Large on one GPU: 40 min for an ANLI+ epoch at 256
BASE_RATE = 40 * 60 / (1_100_000 * 256)
EVAL_SPEEDUP = 3.0  # a forward pass without backward and optimizer step


def model_size(model: str) -> float:
    name = str(model).lower().rsplit("/", 1)[-1]
    return next((size for key, size in MODEL_SIZE if key in name), 1.0)


def task_family(task: str) -> str:
    try:
        from trainables.tasks import task_info

        return task_info(task).family
    except Exception:  # noqa: BLE001 - an unknown task: its own family
        return task


def _hp_value(space: dict, name: str, default: Any) -> Any:
    value = space.get(name, default)
    if isinstance(value, dict):  # a grid or a distribution: the largest value bounds the cost
        values = value.get("grid") or value.get("values") or [value.get("high", default)]
        value = max(v for v in values if isinstance(v, (int, float))) if values else default
    return value


def job_units(job) -> float:
    """A trial's work, in XLM-R Large token-epochs (the rate turns it into seconds)."""
    space = job.hyperparameters or {}
    size = model_size(job.model)
    length = float(_hp_value(space, "max_length", 128))
    if job.stage == "eval":
        examples = EVAL_EXAMPLES.get(job.target, DEFAULT_EXAMPLES)
        return examples * length * size / EVAL_SPEEDUP
    epochs = float(_hp_value(space, "epochs", 1))
    total = 0.0
    for task in job.tasks:
        options = (job.task_options or {}).get(task, {})
        examples = options.get("train_examples") or TRAIN_EXAMPLES.get(task, DEFAULT_EXAMPLES)
        if len(job.tasks) > 1 and options.get("examples_cap"):
            examples = min(examples, options["examples_cap"])
        task_length = (job.settings or {}).get("task_max_length", {}).get(task, length)
        total += examples * SEQUENCES_PER_EXAMPLE.get(task, 1) * float(task_length)
    return total * epochs * size


def family_of(job) -> str:
    return "eval" if job.stage == "eval" else task_family(job.tasks[0] if job.tasks else "")


class CostModel:
    """Seconds per trial of each job, refined per family by ``observe(job, seconds)``."""

    def __init__(self, rate: float = BASE_RATE, weight: float = 0.3):
        self.rate = rate
        self.weight = weight                    # of a new observation in the running ratio
        self.ratio: dict[str, float] = {}       # family -> observed / predicted
        self._units: dict[str, float] = {}

    def units(self, job) -> float:
        if job.id not in self._units:
            self._units[job.id] = max(job_units(job), 1.0)
        return self._units[job.id]

    def _ratio(self, family: str) -> float:
        if family in self.ratio:
            return self.ratio[family]
        if self.ratio:  # an unseen family: the mean of what was seen (the cluster's speed)
            return sum(self.ratio.values()) / len(self.ratio)
        return 1.0

    def seconds(self, job) -> float:
        """Predicted duration of one trial of ``job``."""
        return self.units(job) * self.rate * self._ratio(family_of(job))

    def observe(self, job, seconds: float) -> None:
        """A finished trial of ``job`` took ``seconds``: move its family's ratio toward that."""
        if not seconds or seconds <= 0:
            return
        family = family_of(job)
        measured = seconds / (self.units(job) * self.rate)
        old = self.ratio.get(family)
        self.ratio[family] = measured if old is None else (1 - self.weight) * old + self.weight * measured
        log.debug("cost model: %s ratio %.3g after a %.1f s trial", family, self.ratio[family], seconds)

    def to_dict(self) -> dict:
        return {"rate": self.rate, "ratio": dict(self.ratio)}

    @classmethod
    def from_dict(cls, data: dict | None) -> "CostModel":
        model = cls(rate=(data or {}).get("rate", BASE_RATE))
        model.ratio = {k: float(v) for k, v in ((data or {}).get("ratio") or {}).items()}
        return model
