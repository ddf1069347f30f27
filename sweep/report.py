"""`sweep report`: turn a study's MLflow record into a paper-like results table.

Rows are intermediate tasks (baseline ``none`` first), columns are target tasks plus ``average``;
each cell is mean ± std over seeds of the target's cross-lingual average score, with Δ vs the
baseline row. The math (:func:`build_report`) is a pure function of plain score records so it can
be tested without MLflow; :func:`collect_scores` is the only part that reads the tracking store.

Reads the schema written by the engine's tracking module: one parent run per study
(``xstilts.kind=study``) and one child run per job (``xstilts.kind=job``) carrying
``<target>/<main_metric>/avg``. Trial runs (``xstilts.kind=trial``) are never read.
"""
from __future__ import annotations

import csv
import logging
import statistics
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Run

log = logging.getLogger(__name__)

BASELINE = "none"
AVERAGE = "average"
MISSING_MARK = "–"
MULTI_SEP = "+"
SCORE_STAGES = ("target", "eval")
#: when two finished runs give the same (intermediate, target, seed), the higher rank wins
_STAGE_RANK = {"target": 0, "eval": 1}
#: runs per search page; studies have thousands of runs, so the search is always paginated
PAGE_SIZE = 1000
ARTIFACT_DIR = "report"


@dataclass
class Cell:
    """One table cell. Scores are raw (0–1); ``delta`` is None for the baseline row itself,
    when there is no baseline, or when either side has no finished run."""

    mean: float | None
    std: float | None
    n_seeds: int
    delta: float | None


@dataclass
class StudyReport:
    """A study's results table: ``cells`` is keyed by (intermediate, column)."""

    study: str
    rows: list[str]
    columns: list[str]
    cells: dict[tuple[str, str], Cell]
    missing: list[tuple[str, str]]
    failed: list[dict]

    @property
    def n_seeds(self) -> int:
        """The most seeds any cell has: the N quoted in the legend."""
        return max((c.n_seeds for c in self.cells.values()), default=0)


# --------------------------------------------------------------------------- reading MLflow


def _quote(value: str) -> str:
    """Quote a value for an MLflow filter string (which has no escape for embedded quotes)."""
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    raise ValueError(f"cannot search MLflow for a value containing both quote kinds: {value!r}")


def _study_filter(study: str, kind: str) -> str:
    return f'tags."xstilts.study" = {_quote(study)} AND tags."xstilts.kind" = {_quote(kind)}'


def _experiment_id(client: mlflow.MlflowClient, experiment: str) -> str:
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise LookupError(f"no MLflow experiment named {experiment!r}")
    return exp.experiment_id


def _search_all(
    client: mlflow.MlflowClient, experiment_id: str, filter_string: str, page_size: int
) -> Iterator[Run]:
    """Yield every matching run, oldest first, one page at a time (a study can be huge)."""
    token = None
    while True:
        page = client.search_runs(
            [experiment_id],
            filter_string,
            max_results=page_size,
            order_by=["attributes.start_time ASC", "attributes.run_id ASC"],
            page_token=token,
        )
        yield from page
        token = page.token
        if not token:
            return


def _status(run: Run) -> str:
    """The job's status: the engine's tag, else MLflow's own run status."""
    tag = run.data.tags.get("xstilts.status")
    if tag:
        return tag
    return {"FINISHED": "finished", "FAILED": "failed", "KILLED": "failed"}.get(
        run.info.status, "running"
    )


def _seed(raw: str | None) -> int | str | None:
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return raw


def _latest_per_job(runs: Iterable[Run]) -> list[Run]:
    """Keep the newest run of each job id, so a failed attempt that was retried successfully
    is neither reported as failed nor counted twice. Input must be oldest first."""
    latest: dict[str, Run] = {}
    for run in runs:
        latest[run.data.tags.get("xstilts.job_id") or run.info.run_id] = run
    return list(latest.values())


def _score_metric(run: Run, target: str) -> str | None:
    """The key of the run's cross-lingual average for its main metric."""
    main = run.data.tags.get("xstilts.main_metric")
    if main:
        return f"{target}/{main}/avg"
    candidates = [k for k in run.data.metrics if k.startswith(f"{target}/") and k.endswith("/avg")]
    return candidates[0] if len(candidates) == 1 else None


def _score_record(run: Run) -> dict | None:
    tags = run.data.tags
    target = tags.get("xstilts.target", "")
    key = _score_metric(run, target)
    if not target or key is None or key not in run.data.metrics:
        log.warning("finished %s job %s (run %s) has no %s metric; counted as missing",
                    tags.get("xstilts.stage"), tags.get("xstilts.job_id"), run.info.run_id,
                    key or f"{target}/<main_metric>/avg")
        return None
    return {
        "intermediate": tags.get("xstilts.intermediate", BASELINE),
        "target": target,
        "seed": _seed(tags.get("xstilts.seed")),
        "score": float(run.data.metrics[key]),
        "metric": key,
        "stage": tags.get("xstilts.stage"),
        "job_id": tags.get("xstilts.job_id"),
        "run_id": run.info.run_id,
    }


def _failed_record(run: Run) -> dict:
    tags = run.data.tags
    return {
        "job_id": tags.get("xstilts.job_id", ""),
        "stage": tags.get("xstilts.stage", ""),
        "intermediate": tags.get("xstilts.intermediate", BASELINE),
        "target": tags.get("xstilts.target", ""),
        "seed": _seed(tags.get("xstilts.seed")),
        "error": tags.get("xstilts.error", ""),
        "run_id": run.info.run_id,
    }


def _dedupe_scores(records: Iterable[dict]) -> list[dict]:
    """One score per (intermediate, target, seed): an eval-stage run beats a target-stage run,
    a newer run beats an older one of the same stage (records arrive oldest first)."""
    best: dict[tuple, dict] = {}
    for rec in records:
        key = (rec["intermediate"], rec["target"], rec["seed"])
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
    client: mlflow.MlflowClient, experiment: str, study: str, page_size: int = PAGE_SIZE
) -> tuple[list[dict], list[dict]]:
    """Read a study's job runs: (score records, failed-job records).

    Score records are ``{intermediate, target, seed, score}`` (plus ``metric``, ``stage``,
    ``job_id``, ``run_id`` for traceability) from finished target/eval jobs. Failed records are
    ``{job_id, stage, intermediate, target, seed, error, run_id}`` for jobs of any stage whose
    latest attempt failed. Running jobs appear in neither (their cells show as missing).
    """
    exp_id = _experiment_id(client, experiment)
    runs = _latest_per_job(_search_all(client, exp_id, _study_filter(study, "job"), page_size))
    scores, failed = [], []
    for run in runs:
        status = _status(run)
        if status == "failed":
            failed.append(_failed_record(run))
        elif status == "finished" and run.data.tags.get("xstilts.stage") in SCORE_STAGES:
            rec = _score_record(run)
            if rec is not None:
                scores.append(rec)
    log.info("study %s: %d job runs, %d scores, %d failed", study, len(runs), len(scores),
             len(failed))
    return _dedupe_scores(scores), failed


# --------------------------------------------------------------------------- the math


def _default_row_key(name: str) -> tuple:
    """Baseline first, then single tasks, then multi-task sets (smaller sets first)."""
    if name == BASELINE:
        return (0, 0, name)
    n_tasks = name.count(MULTI_SEP) + 1
    return (1 if n_tasks == 1 else 2, n_tasks, name)


def _ordered(names: Iterable[str], explicit: Sequence[str] | None, key=None) -> list[str]:
    """Explicitly ordered names first (kept even without data, so a typo shows up as an empty
    row rather than vanishing), then the rest in default order so no result is silently lost."""
    names = set(names)
    head = list(dict.fromkeys(explicit or ()))
    return head + sorted(names - set(head), key=key)


def _stats(values: Sequence[float]) -> tuple[float | None, float | None]:
    """Mean and sample std (ddof=1) over seeds; with a single seed the std is reported as 0.0
    (there is no spread to estimate), with none both are None."""
    if not values:
        return None, None
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return mean, std


def _seed_scores(scores: Iterable[dict]) -> dict[tuple[str, str], dict[Any, float]]:
    """(intermediate, target) -> {seed: score}; a repeated seed keeps the last record."""
    by_cell: dict[tuple[str, str], dict[Any, float]] = {}
    for rec in scores:
        cell = by_cell.setdefault((rec["intermediate"], rec["target"]), {})
        if rec["seed"] in cell:
            log.warning("duplicate score for %s seed %s; keeping the last one",
                        (rec["intermediate"], rec["target"]), rec["seed"])
        cell[rec["seed"]] = float(rec["score"])
    return by_cell


def _row_average(per_target: list[dict[Any, float]]) -> list[float]:
    """Per-seed mean over the row's targets, only for seeds where every target has a score
    (otherwise rows with different missing targets would not be comparable)."""
    if not per_target:
        return []
    seeds = set.intersection(*(set(d) for d in per_target))
    return [statistics.fmean(d[s] for d in per_target) for s in sorted(seeds, key=str)]


def _add_deltas(cells: dict[tuple[str, str], Cell], rows: list[str], columns: list[str]) -> None:
    """Δ = row mean − baseline mean, per column; the baseline row itself gets no Δ."""
    if BASELINE not in rows:
        return
    for col in columns:
        base = cells[(BASELINE, col)].mean
        for row in rows:
            cell = cells[(row, col)]
            if row != BASELINE and base is not None and cell.mean is not None:
                cell.delta = cell.mean - base


def build_report(
    scores: list[dict],
    study: str,
    failed: Iterable[dict] = (),
    intermediate_order: Sequence[str] | None = None,
    target_order: Sequence[str] | None = None,
) -> StudyReport:
    """Aggregate score records over seeds into a :class:`StudyReport`.

    Rows/columns are every intermediate/target seen in ``scores`` or ``failed`` (so a row whose
    jobs all failed still shows, as missing). The ``average`` column is the per-seed mean over
    all target columns, then mean ± std over the seeds that have every target. Stds are sample
    stds (ddof=1); a cell with one seed has std 0.0.
    """
    failed = list(failed)
    by_cell = _seed_scores(scores)
    intermediates = {i for i, _ in by_cell} | {f["intermediate"] for f in failed}
    targets = {t for _, t in by_cell} | {f["target"] for f in failed if f.get("target")}
    rows = _ordered(intermediates, intermediate_order, key=_default_row_key)
    targets_ordered = _ordered(targets, target_order)
    columns = targets_ordered + [AVERAGE]

    cells: dict[tuple[str, str], Cell] = {}
    missing: list[tuple[str, str]] = []
    for row in rows:
        per_target = [by_cell.get((row, t), {}) for t in targets_ordered]
        for target, seed_scores in zip(targets_ordered, per_target):
            cells[(row, target)] = Cell(*_stats(list(seed_scores.values())),
                                        n_seeds=len(seed_scores), delta=None)
            if not seed_scores:
                missing.append((row, target))
        avg = _row_average(per_target)
        cells[(row, AVERAGE)] = Cell(*_stats(avg), n_seeds=len(avg), delta=None)
    _add_deltas(cells, rows, columns)
    return StudyReport(study, rows, columns, cells, missing, failed)


# --------------------------------------------------------------------------- rendering


def _pct(value: float) -> str:
    return f"{value * 100:.1f}"


def _signed_pct(value: float) -> str:
    """Δ with an explicit sign; rounds first so a tiny negative never prints as -0.0."""
    rounded = round(value * 100, 1)
    return f"{rounded + 0.0:+.1f}"


def _best_rows(report: StudyReport, column: str) -> set[str]:
    """Rows whose mean is best (highest) in a column, compared at printed precision so that
    visually tied values are all bold."""
    shown = {r: _pct(report.cells[(r, column)].mean) for r in report.rows
             if report.cells[(r, column)].mean is not None}
    if not shown:
        return set()
    top = max(float(v) for v in shown.values())
    return {r for r, v in shown.items() if float(v) == top}


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def _format_cell(cell: Cell, bold: bool, n_total: int) -> str:
    if cell.mean is None:
        return MISSING_MARK
    mean = f"**{_pct(cell.mean)}**" if bold else _pct(cell.mean)
    text = f"{mean} ± {_pct(cell.std)}"
    if cell.delta is not None:
        text += f" ({_signed_pct(cell.delta)})"
    if cell.n_seeds < n_total:
        text += f" (n={cell.n_seeds})"
    return text


def _table_lines(report: StudyReport) -> list[str]:
    n_total = report.n_seeds
    best = {c: _best_rows(report, c) for c in report.columns}
    lines = ["| intermediate | " + " | ".join(map(_md_escape, report.columns)) + " |",
             "|---|" + "---:|" * len(report.columns)]
    for row in report.rows:
        cells = [_format_cell(report.cells[(row, c)], row in best[c], n_total)
                 for c in report.columns]
        lines.append(f"| {_md_escape(row)} | " + " | ".join(cells) + " |")
    return lines


def _legend(report: StudyReport) -> str:
    n = report.n_seeds
    delta = ("Δ vs baseline (`none`) in parentheses" if BASELINE in report.rows
             else "no baseline (`none`) row, so no Δ")
    return (f"Cells: mean ± std over {n} seed{'s' if n != 1 else ''} of the average over "
            f"languages (×100, sample std; 0.0 with one seed); {delta}; `average` = per-seed "
            f"mean over the targets; best mean per column in **bold**; (n=k) marks cells with "
            f"fewer seeds.")


def _failed_line(f: dict) -> str:
    where = f["intermediate"] + (f" → {f['target']}" if f.get("target") else "")
    return (f"- `{f.get('job_id', '')}` ({f.get('stage', '')}, {where}, seed {f.get('seed')}): "
            f"{f.get('error') or 'no error recorded'}")


def render_markdown(report: StudyReport) -> str:
    """The report as Markdown: header, table, legend, then missing cells and failed jobs."""
    lines = [f"# X-STILTs results: {report.study}", "", *_table_lines(report), "",
             _legend(report), ""]
    lines.append(f"## Missing cells ({len(report.missing)})")
    lines += [f"- {i} → {t}" for i, t in report.missing] or ["- none"]
    lines += ["", f"## Failed jobs ({len(report.failed)})"]
    lines += [_failed_line(f) for f in report.failed] or ["- none"]
    return "\n".join(lines) + "\n"


def _csv_value(value: float | None) -> str | float:
    return "" if value is None else value


def write_report(report: StudyReport, out_dir: Path) -> dict[str, Path]:
    """Write ``report.md`` and ``report.csv`` (one row per (intermediate, column), raw floats,
    empty fields for missing values) into ``out_dir``; returns {"md": ..., "csv": ...}."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    md_path, csv_path = out_dir / "report.md", out_dir / "report.csv"
    md_path.write_text(render_markdown(report), encoding="utf-8")
    with csv_path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["intermediate", "target", "mean", "std", "n_seeds", "delta"])
        for row in report.rows:
            for col in report.columns:
                c = report.cells[(row, col)]
                writer.writerow([row, col, _csv_value(c.mean), _csv_value(c.std), c.n_seeds,
                                 _csv_value(c.delta)])
    log.info("wrote %s and %s", md_path, csv_path)
    return {"md": md_path, "csv": csv_path}


# --------------------------------------------------------------------------- MLflow output


def _parent_run(client: mlflow.MlflowClient, experiment: str, study: str) -> Run:
    """The study's parent run; if the study was started more than once, the newest."""
    exp_id = _experiment_id(client, experiment)
    runs = list(_search_all(client, exp_id, _study_filter(study, "study"), PAGE_SIZE))
    if not runs:
        raise LookupError(f"no parent run for study {study!r} in experiment {experiment!r}")
    if len(runs) > 1:
        log.warning("study %s has %d parent runs; logging to the newest", study, len(runs))
    return runs[-1]


def log_report(
    client: mlflow.MlflowClient, experiment: str, study: str, paths: dict[str, Path]
) -> None:
    """Attach the report files to the study's parent run under ``report/``."""
    run = _parent_run(client, experiment, study)
    for path in paths.values():
        client.log_artifact(run.info.run_id, str(path), artifact_path=ARTIFACT_DIR)
    log.info("logged %d report files to parent run %s", len(paths), run.info.run_id)


def generate_report(
    tracking_uri: str,
    experiment: str,
    study: str,
    out_dir: Path,
    intermediate_order: Sequence[str] | None = None,
    target_order: Sequence[str] | None = None,
) -> tuple[StudyReport, dict[str, Path]]:
    """Collect, aggregate, write and log a study's report in one call."""
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    scores, failed = collect_scores(client, experiment, study)
    report = build_report(scores, study, failed, intermediate_order, target_order)
    paths = write_report(report, out_dir)
    log_report(client, experiment, study, paths)
    return report, paths
