"""Reading a study's job runs into score records and failed-job records: the only part of the
report that reads the tracking store (everything above works on these plain records).

A score record is one finished target/eval job: its row (intermediate, size, group, study),
its column (target, size), its seed and its scores (see :func:`collect_scores`)."""
from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

import mlflow
from mlflow.entities import Run

from sweep.report.metrics import benchmark_scores, per_language, perturbed_scores
from sweep.report.model import BASELINE, StudySource
from sweep.report.runs import (PAGE_SIZE, experiment_id, latest_per_job, run_status,
                               search_all, study_filter)
from trainables.contract import AVERAGE_LANGUAGE, Tag, metric_key, parse_metric_key, tag

log = logging.getLogger(__name__)

SCORE_STAGES = ("target", "eval")
#: when two finished runs give the same (intermediate, target, seed), the higher rank wins
_STAGE_RANK = {"target": 0, "eval": 1}


def _seed(raw: str | None) -> int | str | None:
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return raw


def _score_metric(run: Run, target: str) -> str | None:
    """The key of the run's cross-lingual average for its main metric."""
    main = run.data.tags.get(tag(Tag.MAIN_METRIC))
    if main:
        return metric_key(target, main, AVERAGE_LANGUAGE)
    candidates = [k for k in run.data.metrics
                  if (parsed := parse_metric_key(k)) and parsed[0] == target
                  and parsed[2] == AVERAGE_LANGUAGE]
    return candidates[0] if len(candidates) == 1 else None


def _int_or_none(raw: Any) -> int | None:
    if raw in (None, "", "None"):
        return None
    try:
        return int(float(raw))
    except (TypeError, ValueError):
        return None


def _group_value(run: Run, group_by: str | None) -> str | None:
    """The value of an MLflow param or tag (``name`` or ``xstilts.name``) naming the row's
    group; None when the run lacks it."""
    if not group_by:
        return None
    params, tags = run.data.params, run.data.tags
    for source in (params, tags):
        for key in (group_by, tag(group_by)):
            value = source.get(key)
            if value not in (None, "", "None"):
                return str(value)
    return None


def _run_fields(run: Run, group_by: str | None) -> dict:
    """Fields every record shares: which row (intermediate, size, group) and column it is."""
    tags, params = run.data.tags, run.data.params
    return {
        "intermediate": tags.get(tag(Tag.INTERMEDIATE), BASELINE),
        "target": tags.get(tag(Tag.TARGET), ""),
        "seed": _seed(tags.get(tag(Tag.SEED))),
        "stage": tags.get(tag(Tag.STAGE)),
        "job_id": tags.get(tag(Tag.JOB_ID)),
        "run_id": run.info.run_id,
        "study": tags.get(tag(Tag.STUDY), ""),
        "group": _group_value(run, group_by),
        "train_examples": _int_or_none(tags.get(tag(Tag.TRAIN_EXAMPLES),
                                                params.get("train_examples"))),
        "target_examples": _int_or_none(tags.get(tag(Tag.TARGET_EXAMPLES),
                                                 params.get("target_examples"))),
    }


def _score_record(run: Run, group_by: str | None = None) -> dict | None:
    """A finished job's score record; None (and a warning) when it has no main score."""
    tags = run.data.tags
    target = tags.get(tag(Tag.TARGET), "")
    key = _score_metric(run, target)
    if not target or key is None or key not in run.data.metrics:
        log.warning("finished %s job %s (run %s) has no %s metric; counted as missing",
                    tags.get(tag(Tag.STAGE)), tags.get(tag(Tag.JOB_ID)), run.info.run_id,
                    key or metric_key(target, "<main_metric>", AVERAGE_LANGUAGE))
        return None
    metric = parse_metric_key(key)[1]
    languages, sizes = per_language(run.data.metrics, target, metric)
    return {
        **_run_fields(run, group_by),
        "score": float(run.data.metrics[key]),
        "metric": key,
        "bench_scores": benchmark_scores(run.data.metrics, target, key),
        "languages": languages,
        "sizes": sizes,
        "perturbed": perturbed_scores(run.data.metrics, target, metric),
        "bucc_gold_pairs_only": (target == "bucc"
                                 and not run.data.params.get("task_options.bucc.data_dir")),
    }


def _failed_record(run: Run, group_by: str | None = None) -> dict:
    fields_ = _run_fields(run, group_by)
    return {**fields_, "job_id": fields_["job_id"] or "", "stage": fields_["stage"] or "",
            "error": run.data.tags.get(tag(Tag.ERROR), "")}


def _cell_key(rec: dict) -> tuple:
    return (rec.get("study"), rec.get("group"), rec["intermediate"], rec.get("train_examples"),
            rec["target"], rec.get("target_examples"), rec["seed"])


def _dedupe_scores(records: Iterable[dict]) -> list[dict]:
    """One score per (intermediate, target, seed) (and size, group): an eval-stage run beats a
    target-stage run, a newer run beats an older one of the same stage (records arrive oldest
    first)."""
    best: dict[tuple, dict] = {}
    for rec in records:
        key = _cell_key(rec)
        old = best.get(key)
        if old is not None:
            rank_new, rank_old = (_STAGE_RANK.get(r["stage"], 0) for r in (rec, old))
            log.info("two finished runs for %s (%s, %s); keeping the %s one", key,
                     old["run_id"], rec["run_id"], "first" if rank_new < rank_old else "second")
            if rank_new < rank_old:
                continue
        best[key] = rec
    return list(best.values())


def collect_scores(
    client: mlflow.MlflowClient, experiment: str, study: str, page_size: int = PAGE_SIZE,
    group_by: str | None = None,
) -> tuple[list[dict], list[dict]]:
    """Read a study's job runs: (score records, failed-job records).

    Score records are ``{intermediate, target, seed, score}`` plus ``bench_scores``
    (benchmark -> ``{score, missing}``, see :func:`~sweep.report.metrics.benchmark_scores`),
    ``languages`` / ``sizes`` (per-language score and test-set size), ``perturbed`` (see
    :func:`~sweep.report.metrics.perturbed_scores`), ``study``, ``group`` (value of
    ``group_by``), ``train_examples``, ``target_examples`` and ``metric``, ``stage``,
    ``job_id``, ``run_id`` for traceability, from finished target/eval jobs. Failed records
    are ``{job_id, stage, intermediate, target, seed, error, run_id, ...}`` for jobs of any
    stage whose latest attempt failed. Running jobs appear in neither (their cells show as
    missing).
    """
    exp_id = experiment_id(client, experiment)
    runs = latest_per_job(search_all(client, exp_id, study_filter(study, "job"), page_size))
    scores, failed = [], []
    for run in runs:
        status = run_status(run)
        if status == "failed":
            failed.append(_failed_record(run, group_by))
        elif status == "finished" and run.data.tags.get(tag(Tag.STAGE)) in SCORE_STAGES:
            rec = _score_record(run, group_by)
            if rec is not None:
                scores.append(rec)
    log.info("study %s: %d job runs, %d scores, %d failed", study, len(runs), len(scores),
             len(failed))
    return _dedupe_scores(scores), failed


def collect_many(sources: Sequence[StudySource], group_by: str | None = None,
                 page_size: int = PAGE_SIZE) -> tuple[list[dict], list[dict], list[str]]:
    """Score and failed records of several studies (each in its own store), with ``study`` set
    to the source's label so rows of different studies never merge."""
    scores, failed, labels = [], [], []
    for src in sources:
        label = src.label or src.study
        if label in labels:
            raise ValueError(f"two studies to compare are both labelled {label!r}; "
                             f"give them distinct labels")
        labels.append(label)
        client = mlflow.MlflowClient(tracking_uri=src.tracking_uri)
        s, f = collect_scores(client, src.experiment, src.study, page_size, group_by=group_by)
        scores += [{**r, "study": label} for r in s]
        failed += [{**r, "study": label} for r in f]
    return scores, failed, labels
