"""Reading a job run's metrics into the numbers the report shows: per-language scores and
test-set sizes, each benchmark's score of the task, and the scores under perturbations. Plain
dicts in, plain dicts out: no MLflow here, so the rules can be tested on their own.

Keys are ``<task>/<metric>/<language>`` (:func:`trainables.contract.metric_key`), ``avg`` for
the average over languages and ``n`` for a test set's size. A perturbed evaluation logs under
``<task>.<label>/<metric>/<language>`` and ``<task>.<label>/drop/<language>`` (clean main
metric − perturbed; see ``trainables.records.perturbation_label``).
"""
from __future__ import annotations

import logging
from collections.abc import Iterable

from sweep.report.benchmarks import BENCHMARK_LANGUAGES, BENCHMARK_METRIC, list_average
from trainables.contract import AVERAGE_LANGUAGE, metric_key, parse_metric_key

log = logging.getLogger(__name__)

#: the metric name of a test set's size
SIZE_METRIC = "n"
#: the metric name of a perturbation's drop, and what joins a task to a perturbation's label
DROP = "drop"
LABEL_SEP = "."


def per_language(metrics: dict[str, float], target: str, metric: str) -> tuple[dict, dict]:
    """({lang: score}, {lang: test-set size}) from ``<target>/<metric>/<lang>`` and
    ``<target>/n/<lang>``."""
    scores, sizes = {}, {}
    for key, value in metrics.items():
        parsed = parse_metric_key(key)
        if parsed is None or parsed[0] != target or parsed[2] == AVERAGE_LANGUAGE:
            continue
        _, name, lang = parsed
        if name == metric:
            scores[lang] = float(value)
        elif name == SIZE_METRIC:
            sizes[lang] = int(value)
    return scores, sizes


def benchmark_scores(metrics: dict[str, float], target: str, main_key: str) -> dict[str, dict]:
    """Per benchmark that has the task: ``{"score", "missing"}``, the mean over the benchmark's
    own language list of the task's per-language score under the benchmark's rules (QA
    (EM+F1)/2, tagging/BUCC F1, else the main metric), and the list's languages the run lacks.
    A run without per-language scores falls back to its average, with every language missing
    (which languages it covers is unknown)."""
    metric = BENCHMARK_METRIC.get(target, parse_metric_key(main_key)[1])
    scores, _ = per_language(metrics, target, metric)
    if metric == "em_f1" and not scores:
        em, _ = per_language(metrics, target, "exact_match")
        f1, _ = per_language(metrics, target, "f1")
        scores = {lang: (em[lang] + f1[lang]) / 2 for lang in em.keys() & f1.keys()}
    average = metrics.get(metric_key(target, metric, AVERAGE_LANGUAGE))
    if average is None and metric == "em_f1":
        em = metrics.get(metric_key(target, "exact_match", AVERAGE_LANGUAGE))
        f1 = metrics.get(metric_key(target, "f1", AVERAGE_LANGUAGE))
        average = None if em is None or f1 is None else (em + f1) / 2
    out = {}
    for bench, lists in BENCHMARK_LANGUAGES.items():
        langs = lists.get(target)
        if langs is None:
            continue
        value = list_average(scores, langs, average)
        if value is None:
            log.warning("run %s has no %s scores; %s is left out of %s", main_key, metric,
                        target, bench)
            continue
        out[bench] = value
        if value["missing"]:
            log.warning("%s: %s lacks %d of its %d languages (%s)", bench, target,
                        len(value["missing"]), len(langs), " ".join(value["missing"]))
    return out


def perturbed_scores(metrics: dict[str, float], target: str, metric: str) -> dict[str, dict]:
    """``{label: {"score", "drop", "languages": {lang: score}, "drops": {lang: drop}}}`` from a
    job run's metrics; ``score`` / ``drop`` are the ``/avg`` values (None when absent)."""
    out: dict[str, dict] = {}
    prefix = target + LABEL_SEP
    for key, value in metrics.items():
        parsed = parse_metric_key(key)
        if parsed is None or not parsed[0].startswith(prefix) or parsed[1] not in (metric, DROP):
            continue
        task, name, lang = parsed
        entry = out.setdefault(task[len(prefix):], {"score": None, "drop": None,
                                                    "languages": {}, "drops": {}})
        field = "score" if name == metric else DROP
        if lang == AVERAGE_LANGUAGE:
            entry[field] = float(value)
        else:
            entry["languages" if field == "score" else "drops"][lang] = float(value)
    return out


def scored_metric(records: Iterable[dict]) -> str:
    """The metric the records' main score is in (``accuracy`` for ``xnli/accuracy/avg``), from
    the first record that names one; '' when none does."""
    return next((parse_metric_key(r["metric"])[1] for r in records if r.get("metric")), "")
