"""`sweep report`: turn a study's MLflow record into a paper-like results table.

Rows are intermediate tasks (baseline ``none`` first), columns are target tasks plus ``average``;
each cell is mean ± std over seeds of the target's cross-lingual average score, with Δ vs the
baseline row. The math (:func:`build_report`) is a pure function of plain score records so it can
be tested without MLflow; :func:`collect_scores` is the only part that reads the tracking store.

Reads the schema written by the engine's tracking module: one parent run per study
(``xstilts.kind=study``) and one child run per job (``xstilts.kind=job``) carrying
``<target>/<main_metric>/avg``. Trial runs (``xstilts.kind=trial``) are never read.

Beyond the v1 table the report has: benchmark-average columns (``XTREME`` over its 9 tasks,
``XTREME-R`` over its 10, scored by each benchmark's rules: QA by (EM+F1)/2 from
``<task>/em_f1/avg``, tagging and BUCC by F1, the rest by the main metric; when a study has only
some of a benchmark's tasks the column is the mean over those, marked partial with the count),
one per-language table per target (``<task>/<metric>/<lang>``, test-set size from
``<task>/n/<lang>``), rows grouped by any MLflow param or tag (``group_by``), rows of several
studies side by side (prefixed by study), and a row per intermediate data size
(``mnli@1000``) when a study varies ``train_examples``. Δ aggregated by row group and broken
down by the languages' resource class come from :mod:`sweep.breakdowns`. Figures and the HTML
page are built by :mod:`sweep.figures` and :mod:`sweep.html_report`.
"""
from __future__ import annotations

import csv
import logging
import statistics
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
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
SIZE_SEP = "@"
GROUP_SEP = " / "
#: benchmark -> its task slots, each the task names that fill it (aliases)
BENCHMARKS: dict[str, tuple[tuple[str, ...], ...]] = {
    "XTREME": (("xnli",), ("pawsx",), ("udpos",), ("panx", "wikiann"), ("xquad",), ("mlqa",),
               ("tydiqa",), ("bucc",), ("tatoeba",)),
    "XTREME-R": (("xnli",), ("xcopa",), ("udpos",), ("panx", "wikiann"), ("xquad",), ("mlqa",),
                 ("tydiqa",), ("mewslix",), ("lareqa",), ("tatoeba",)),
}
#: the metric a benchmark averages for a task, where it is not the task's main metric
QA_TASKS = ("xquad", "mlqa", "tydiqa")
BENCHMARK_METRIC = {**{t: "em_f1" for t in QA_TASKS}, "udpos": "f1", "panx": "f1",
                    "wikiann": "f1", "bucc": "f1"}
#: marks a benchmark cell whose tasks miss some of the benchmark's languages
INCOMPLETE_MARK = "†"


#: the name of each benchmark's language set in a task's ``TaskInfo.language_sets``
BENCHMARK_SETS = {"XTREME": "xtreme", "XTREME-R": "xtreme_r"}


def _benchmark_languages() -> dict[str, dict[str, tuple[str, ...]]]:
    """Benchmark -> task -> the languages it averages: the task's language set of that name,
    else all its languages. They are google-research/xtreme evaluate.py's
    ``XTREME_TASK2LANGS`` / ``XTREME_R_TASK2LANGS`` (checked against it; evaluate.py lists no
    LAReQA languages, and XTREME-R scores XQuAD-R's 11). ``wikiann`` stands in for PAN-X."""
    from trainables.tasks import task_info

    lists: dict[str, dict[str, tuple[str, ...]]] = {}
    for bench, slots in BENCHMARKS.items():
        lists[bench] = {}
        for names in slots:
            info = task_info(names[0])
            langs = dict(info.language_sets).get(BENCHMARK_SETS[bench], info.languages)
            lists[bench].update({name: tuple(langs) for name in names})
    return lists


BENCHMARK_LANGUAGES = _benchmark_languages()


@dataclass
class Cell:
    """One table cell. Scores are raw (0–1); ``delta`` is None for the baseline row itself,
    when there is no baseline, or when either side has no finished run."""

    mean: float | None
    std: float | None
    n_seeds: int
    delta: float | None
    #: benchmark columns only: how many of the benchmark's tasks the value averages
    n_tasks: int | None = None
    of_tasks: int | None = None
    #: benchmark columns only: tasks scored without some of the benchmark's languages
    incomplete: tuple[str, ...] = ()

    @property
    def partial(self) -> bool:
        return self.of_tasks is not None and self.n_tasks != self.of_tasks


@dataclass(frozen=True)
class RowInfo:
    """What a row label stands for: the study, the ``group_by`` value, the intermediate task
    (set) and its training-set size."""

    study: str
    group: str | None
    intermediate: str
    train_examples: int | None = None


@dataclass(frozen=True)
class StudySource:
    """Where one study of a comparison lives; ``label`` prefixes its rows (default: study)."""

    tracking_uri: str
    experiment: str
    study: str
    label: str | None = None


@dataclass
class LanguageTable:
    """Per-language scores of one target: cells keyed by (language, row label), each mean ± std
    over seeds with Δ vs the row's baseline; ``sizes`` is the test-set size per language."""

    target: str
    metric: str
    languages: list[str]
    columns: list[str]
    cells: dict[tuple[str, str], Cell]
    sizes: dict[str, int | None]


@dataclass
class StudyReport:
    """A study's results table: ``cells`` is keyed by (row label, column). ``columns`` are the
    targets, ``average`` and any benchmark columns (listed again in ``benchmark_columns``)."""

    study: str
    rows: list[str]
    columns: list[str]
    cells: dict[tuple[str, str], Cell]
    missing: list[tuple[str, str]]
    failed: list[dict]
    row_info: dict[str, RowInfo] = field(default_factory=dict)
    baselines: dict[str, str | None] = field(default_factory=dict)
    benchmark_columns: list[str] = field(default_factory=list)
    language_tables: dict[str, LanguageTable] = field(default_factory=dict)
    records: list[dict] = field(default_factory=list)
    group_by: str | None = None
    studies: list[str] = field(default_factory=list)

    @property
    def target_columns(self) -> list[str]:
        return [c for c in self.columns if c != AVERAGE and c not in self.benchmark_columns]

    @property
    def has_baseline(self) -> bool:
        return any(b is not None for b in self.baselines.values()) or any(
            info.intermediate == BASELINE for info in self.row_info.values())

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
        for key in (group_by, f"xstilts.{group_by}"):
            value = source.get(key)
            if value not in (None, "", "None"):
                return str(value)
    return None


def _run_fields(run: Run, group_by: str | None) -> dict:
    """Fields every record shares: which row (intermediate, size, group) and column it is."""
    tags, params = run.data.tags, run.data.params
    return {
        "intermediate": tags.get("xstilts.intermediate", BASELINE),
        "target": tags.get("xstilts.target", ""),
        "seed": _seed(tags.get("xstilts.seed")),
        "stage": tags.get("xstilts.stage"),
        "job_id": tags.get("xstilts.job_id"),
        "run_id": run.info.run_id,
        "study": tags.get("xstilts.study", ""),
        "group": _group_value(run, group_by),
        "train_examples": _int_or_none(tags.get("xstilts.train_examples",
                                                params.get("train_examples"))),
        "target_examples": _int_or_none(tags.get("xstilts.target_examples",
                                                 params.get("target_examples"))),
    }


def _benchmark_scores(metrics: dict[str, float], target: str, main_key: str) -> dict[str, dict]:
    """Per benchmark that has the task: ``{"score", "missing"}``, the mean over the benchmark's
    own language list of the task's per-language score under the benchmark's rules (QA
    (EM+F1)/2, tagging/BUCC F1, else the main metric), and the list's languages the run lacks.
    A run without per-language scores falls back to its average, with every language missing
    (which languages it covers is unknown)."""
    metric = BENCHMARK_METRIC.get(target, main_key.split("/")[-2])
    scores, _ = _per_language(metrics, target, metric)
    if metric == "em_f1" and not scores:
        em, _ = _per_language(metrics, target, "exact_match")
        f1, _ = _per_language(metrics, target, "f1")
        scores = {lang: (em[lang] + f1[lang]) / 2 for lang in em.keys() & f1.keys()}
    average = metrics.get(f"{target}/{metric}/avg")
    if average is None and metric == "em_f1":
        em, f1 = metrics.get(f"{target}/exact_match/avg"), metrics.get(f"{target}/f1/avg")
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


def list_average(scores: dict[str, float], langs: Sequence[str],
                 fallback: float | None = None) -> dict | None:
    """``{"score", "missing"}``: the mean of per-language ``scores`` over a benchmark's language
    list and the list's languages they lack. Without any of them, ``fallback`` (an average over
    unknown languages) with every language missing; None when there is neither."""
    have = [scores[lang] for lang in langs if lang in scores]
    missing = [lang for lang in langs if lang not in scores]
    if have:
        return {"score": statistics.fmean(have), "missing": missing}
    if fallback is not None:
        return {"score": float(fallback), "missing": list(langs)}
    return None


def _per_language(metrics: dict[str, float], target: str, metric: str) -> tuple[dict, dict]:
    """({lang: score}, {lang: test-set size}) from ``<target>/<metric>/<lang>`` and
    ``<target>/n/<lang>``."""
    scores, sizes = {}, {}
    for key, value in metrics.items():
        parts = key.split("/")
        if len(parts) != 3 or parts[0] != target or parts[2] == "avg":
            continue
        if parts[1] == metric:
            scores[parts[2]] = float(value)
        elif parts[1] == "n":
            sizes[parts[2]] = int(value)
    return scores, sizes


def _score_record(run: Run, group_by: str | None = None) -> dict | None:
    tags = run.data.tags
    target = tags.get("xstilts.target", "")
    key = _score_metric(run, target)
    if not target or key is None or key not in run.data.metrics:
        log.warning("finished %s job %s (run %s) has no %s metric; counted as missing",
                    tags.get("xstilts.stage"), tags.get("xstilts.job_id"), run.info.run_id,
                    key or f"{target}/<main_metric>/avg")
        return None
    metric = key.split("/")[-2]
    languages, sizes = _per_language(run.data.metrics, target, metric)
    from sweep.robustness import perturbed_scores

    return {
        **_run_fields(run, group_by),
        "score": float(run.data.metrics[key]),
        "metric": key,
        "bench_scores": _benchmark_scores(run.data.metrics, target, key),
        "languages": languages,
        "sizes": sizes,
        "perturbed": perturbed_scores(run.data.metrics, target, metric),
        "bucc_gold_pairs_only": target == "bucc" and not run.data.params.get("task_options.bucc.data_dir"),
    }


def _failed_record(run: Run, group_by: str | None = None) -> dict:
    fields_ = _run_fields(run, group_by)
    return {**fields_, "job_id": fields_["job_id"] or "", "stage": fields_["stage"] or "",
            "error": run.data.tags.get("xstilts.error", "")}


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
    (benchmark -> ``{score, missing}``, see ``_benchmark_scores``), ``languages`` / ``sizes`` (per-language score and test-set size),
    ``study``, ``group`` (value of ``group_by``), ``train_examples``, ``target_examples`` and
    ``metric``, ``stage``, ``job_id``, ``run_id`` for traceability, from finished target/eval
    jobs. Failed records are ``{job_id, stage, intermediate, target, seed, error, run_id, ...}``
    for jobs of any stage whose latest attempt failed. Running jobs appear in neither (their
    cells show as missing).
    """
    exp_id = _experiment_id(client, experiment)
    runs = _latest_per_job(_search_all(client, exp_id, _study_filter(study, "job"), page_size))
    scores, failed = [], []
    for run in runs:
        status = _status(run)
        if status == "failed":
            failed.append(_failed_record(run, group_by))
        elif status == "finished" and run.data.tags.get("xstilts.stage") in SCORE_STAGES:
            rec = _score_record(run, group_by)
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


def _row_average(per_target: list[dict[Any, float]]) -> list[float]:
    """Per-seed mean over the row's targets, only for seeds where every target has a score
    (otherwise rows with different missing targets would not be comparable)."""
    if not per_target:
        return []
    seeds = set.intersection(*(set(d) for d in per_target))
    return [statistics.fmean(d[s] for d in per_target) for s in sorted(seeds, key=str)]


def _with_size(name: str, size: int | None) -> str:
    return name if size is None else f"{name}{SIZE_SEP}{size}"


def _row_label(info: RowInfo, multi_study: bool, group_by: str | None) -> str:
    parts = [info.study] if multi_study else []
    if group_by and info.group is not None:
        parts.append(f"{group_by}={info.group}")
    return GROUP_SEP.join(parts + [_with_size(info.intermediate, info.train_examples)])


def _value_key(value: Any) -> tuple:
    """None first, then numbers in numeric order, then text."""
    if value is None:
        return (0, 0.0, "")
    try:
        return (1, float(value), "")
    except (TypeError, ValueError):
        return (2, 0.0, str(value))


def _rank(name: str, order: Sequence[str] | None) -> tuple:
    order = list(dict.fromkeys(order or ()))
    return (0, order.index(name), ()) if name in order else (1, 0, _default_row_key(name))


def _row_infos(records: list[dict], studies: list[str], intermediate_order, group_by) -> list:
    infos = {RowInfo(r["study"], r.get("group"), r["intermediate"], r.get("train_examples"))
             for r in records}
    if not group_by:  # listed intermediates without any data stay, as empty rows
        for study in studies:
            seen = {i.intermediate for i in infos if i.study == study}
            infos |= {RowInfo(study, None, name, None)
                      for name in intermediate_order or () if name not in seen}
    return sorted(infos, key=lambda i: (studies.index(i.study), _value_key(i.group),
                                        _rank(i.intermediate, intermediate_order),
                                        _value_key(i.train_examples)))


def _baselines(infos: list[RowInfo], labels: dict[RowInfo, str]) -> dict[str, str | None]:
    """Each row's baseline: the ``none`` row of its study and group, else of its study with
    no group value (e.g. grouping by intermediate data size, which the baseline lacks), else
    the study's only ``none`` row."""
    base = {(i.study, i.group): labels[i] for i in infos
            if i.intermediate == BASELINE and i.train_examples is None}
    per_study: dict[str, list[str]] = {}
    for (study, _), label in base.items():
        per_study.setdefault(study, []).append(label)
    out: dict[str, str | None] = {}
    for info in infos:
        only = per_study.get(info.study, [])
        ref = (base.get((info.study, info.group)) or base.get((info.study, None))
               or (only[0] if len(only) == 1 else None))
        out[labels[info]] = None if ref == labels[info] else ref
    return out


def _target_columns(records: list[dict], target_order) -> tuple[list[str], dict[str, str]]:
    """Column labels (``xnli``, or ``xnli@500`` per target training size) and their task."""
    pairs = {(r["target"], r.get("target_examples")) for r in records if r.get("target")}
    pairs = sorted(pairs, key=lambda p: (_rank(p[0], target_order)[:2], p[0], _value_key(p[1])))
    if target_order:  # listed targets without data stay, as empty columns
        seen = {t for t, _ in pairs}
        pairs = sorted(pairs + [(t, None) for t in dict.fromkeys(target_order) if t not in seen],
                       key=lambda p: (_rank(p[0], target_order)[:2], p[0], _value_key(p[1])))
    columns = [_with_size(t, n) for t, n in pairs]
    return columns, {c: t for c, (t, _) in zip(columns, pairs)}


def _benchmark_slots(tasks: dict[str, str]) -> dict[str, tuple[int, dict[str, str]]]:
    """Benchmark -> (number of its tasks, {column: task}) for benchmarks the study touches.
    Columns with a target training size are left out: a benchmark averages full training."""
    plain = {c: t for c, t in tasks.items() if SIZE_SEP not in c}
    out = {}
    for bench, slots in BENCHMARKS.items():
        chosen = {}
        for names in slots:
            hits = [c for c, t in plain.items() if t in names]
            if hits:
                chosen[hits[0]] = tasks[hits[0]]
        if chosen:
            out[bench] = (len(slots), chosen)
    return out


def _add_deltas(cells: dict[tuple[str, str], Cell], baselines: dict[str, str | None],
                columns: list[str], key=lambda row, col: (row, col)) -> None:
    """Δ = row mean − its baseline's mean, per column; a baseline row gets no Δ."""
    for row, base_row in baselines.items():
        if base_row is None:
            continue
        for col in columns:
            cell, base = cells.get(key(row, col)), cells.get(key(base_row, col))
            if cell is None or base is None or cell.mean is None or base.mean is None:
                continue
            cell.delta = cell.mean - base.mean


def _language_table(target_col: str, records: list[dict], rows: list[str],
                    labels: dict[int, str], baselines: dict[str, str | None]) -> LanguageTable:
    per: dict[tuple[str, str], dict[Any, float]] = {}
    sizes: dict[str, int | None] = {}
    metric = next((r["metric"].split("/")[-2] for r in records if r.get("metric")), "")
    for rec in records:
        row = labels[id(rec)]
        for lang, value in rec.get("languages", {}).items():
            per.setdefault((lang, row), {})[rec["seed"]] = value
        for lang, n in rec.get("sizes", {}).items():
            sizes[lang] = max(n, sizes.get(lang) or 0)
    langs = sorted({lang for lang, _ in per}, key=lambda x: (x != "en", x))
    columns = [r for r in rows if any((lang, r) in per for lang in langs)]
    cells = {(lang, row): Cell(*_stats(list(per.get((lang, row), {}).values())),
                               n_seeds=len(per.get((lang, row), {})), delta=None)
             for lang in langs for row in columns}
    _add_deltas(cells, {r: b for r, b in baselines.items() if r in columns and b in columns},
                langs, key=lambda row, lang: (lang, row))
    return LanguageTable(target_col, metric, langs, columns, cells,
                         {lang: sizes.get(lang) for lang in langs})


def build_report(
    scores: list[dict],
    study: str,
    failed: Iterable[dict] = (),
    intermediate_order: Sequence[str] | None = None,
    target_order: Sequence[str] | None = None,
    *,
    group_by: str | None = None,
    studies: Sequence[str] | None = None,
) -> StudyReport:
    """Aggregate score records over seeds into a :class:`StudyReport`.

    Rows are every (study, group, intermediate, size) seen in ``scores`` or ``failed`` (so a row
    whose jobs all failed still shows, as missing); row labels are prefixed by the study when
    there are several and by ``group_by=value`` when grouping. The ``average`` column is the
    per-seed mean over all target columns, then mean ± std over the seeds that have every
    target; benchmark columns do the same over the benchmark's tasks with its scoring rules.
    Stds are sample stds (ddof=1); a cell with one seed has std 0.0.
    """
    failed = list(failed)
    scores = [{**r, "study": r.get("study") or study} for r in scores]
    failed = [{**f, "study": f.get("study") or study} for f in failed]
    order = list(dict.fromkeys(studies or ()))
    order += sorted({r["study"] for r in scores + failed} - set(order))
    order = order or [study]
    multi = len(order) > 1
    infos = _row_infos(scores + failed, order, intermediate_order, group_by)
    labels = {info: _row_label(info, multi, group_by) for info in infos}
    rows = list(dict.fromkeys(labels[i] for i in infos))
    rec_label = {id(r): labels[RowInfo(r["study"], r.get("group"), r["intermediate"],
                                       r.get("train_examples"))] for r in scores}
    targets, tasks = _target_columns(scores + [f for f in failed if f.get("target")],
                                     target_order)
    benches = _benchmark_slots(tasks)
    bench_cols = [f"{b} ({len(c)}/{n} tasks)" if len(c) < n else b
                  for b, (n, c) in benches.items()]
    columns = targets + [AVERAGE] + bench_cols

    by_cell: dict[tuple[str, str], dict[Any, float]] = {}
    by_bench: dict[tuple[str, str, str], dict[Any, float]] = {}
    incomplete: dict[tuple[str, str], set[str]] = {}
    for rec in scores:
        row, col = rec_label[id(rec)], _with_size(rec["target"], rec.get("target_examples"))
        by_cell.setdefault((row, col), {})[rec["seed"]] = float(rec["score"])
        for bench, value in (rec.get("bench_scores") or {}).items():
            by_bench.setdefault((bench, row, col), {})[rec["seed"]] = value["score"]
            if value["missing"]:
                incomplete.setdefault((bench, row), set()).add(col)

    cells: dict[tuple[str, str], Cell] = {}
    missing: list[tuple[str, str]] = []
    for row in rows:
        per_target = [by_cell.get((row, t), {}) for t in targets]
        for target, seed_scores in zip(targets, per_target):
            cells[(row, target)] = Cell(*_stats(list(seed_scores.values())),
                                        n_seeds=len(seed_scores), delta=None)
            if not seed_scores:
                missing.append((row, target))
        avg = _row_average(per_target)
        cells[(row, AVERAGE)] = Cell(*_stats(avg), n_seeds=len(avg), delta=None)
        for col, (bench, (n_slots, chosen)) in zip(bench_cols, benches.items()):
            values = _row_average([by_bench.get((bench, row, c), {}) for c in chosen])
            cells[(row, col)] = Cell(*_stats(values), n_seeds=len(values), delta=None,
                                     n_tasks=len(chosen), of_tasks=n_slots,
                                     incomplete=tuple(sorted(set(chosen) & incomplete.get((bench, row), set()))))
    info_by_label = {labels[i]: i for i in infos}
    baselines = _baselines(infos, labels)
    _add_deltas(cells, baselines, columns)
    language_tables = {}
    for col in targets:
        recs = [r for r in scores if _with_size(r["target"], r.get("target_examples")) == col
                and r.get("languages")]
        if recs:
            language_tables[col] = _language_table(col, recs, rows, rec_label, baselines)
    name = study if not multi else " vs ".join(order)
    return StudyReport(name, rows, columns, cells, missing, failed, info_by_label, baselines,
                       bench_cols, language_tables, scores, group_by, order)


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
    text = f"{mean}{INCOMPLETE_MARK if cell.incomplete else ''} ± {_pct(cell.std)}"
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
    delta = ("Δ vs baseline (`none`) in parentheses" if report.has_baseline
             else "no baseline (`none`) row, so no Δ")
    text = (f"Cells: mean ± std over {n} seed{'s' if n != 1 else ''} of the average over "
            f"languages (×100, sample std; 0.0 with one seed); {delta}; `average` = per-seed "
            f"mean over the targets; best mean per column in **bold**; (n=k) marks cells with "
            f"fewer seeds.")
    if report.benchmark_columns:
        text += (" Benchmark columns average the benchmark's tasks per seed with its scoring "
                 "rules (QA: (EM+F1)/2; tagging and BUCC: F1; others: the main metric); "
                 "\"(k/N tasks)\" marks a partial average over the k tasks this study has. Each "
                 "task is averaged over the benchmark's own language list (XTREME's or "
                 f"XTREME-R's); {INCOMPLETE_MARK} marks a cell where a task lacks some of them.")
    if report.group_by:
        text += f" Rows are grouped by `{report.group_by}`."
    if len(report.studies) > 1:
        text += " Rows are prefixed by study; Δ is against the same study's baseline."
    return text


def bucc_note(report: StudyReport) -> list[str]:
    """A plain note when BUCC ran on the hub's gold pairs only (no ``tasks.bucc.data_dir``)."""
    runs = [r for r in report.records if r.get("bucc_gold_pairs_only")]
    if not runs:
        return []
    return [f"**BUCC ran on gold pairs only** ({len(runs)} job{'s' if len(runs) != 1 else ''}): "
            "without `tasks.bucc.data_dir` BUCC comes from the hub (`google/xtreme` `bucc18.*`), "
            "which holds the gold sentence pairs and no other sentences, so mining has no "
            "distractors and its F1 is not comparable with XTREME's (mined among all BUCC 2018 "
            "sentences). Point `tasks.bucc.data_dir` at the BUCC 2018 files for comparable scores.", ""]


def _failed_line(f: dict) -> str:
    where = f["intermediate"] + (f" → {f['target']}" if f.get("target") else "")
    study = f"{f['study']}: " if f.get("study") else ""
    return (f"- `{f.get('job_id', '')}` ({study}{f.get('stage', '')}, {where}, seed "
            f"{f.get('seed')}): {f.get('error') or 'no error recorded'}")


def _language_lines(table: LanguageTable, n_total: int) -> list[str]:
    """A per-language table: rows are languages, columns the intermediates (no bold)."""
    lines = [f"### {_md_escape(table.target)} ({table.metric or 'main metric'})", "",
             "| language | n | " + " | ".join(map(_md_escape, table.columns)) + " |",
             "|---|---:|" + "---:|" * len(table.columns)]
    for lang in table.languages:
        size = table.sizes.get(lang)
        cells = [_format_cell(table.cells[(lang, c)], False, n_total) for c in table.columns]
        lines.append(f"| {lang} | {'' if size is None else size} | " + " | ".join(cells) + " |")
    return lines


def render_markdown(report: StudyReport) -> str:
    """The report as Markdown: header, table, legend, Δ by group, paper comparison,
    per-language tables, Δ by resource class, then missing cells and failed jobs."""
    from sweep.breakdowns import class_lines, group_lines
    from sweep.paper_comparison import paper_lines

    lines = [f"# X-STILTs results: {report.study}", "", *_table_lines(report), "",
             _legend(report), "", *bucc_note(report), *group_lines(report),
             *paper_lines(report)]
    if report.language_tables:
        lines += ["## Per-language scores", "",
                  "Rows: test languages (n = test-set size); columns: intermediate tasks; "
                  "mean ± std over seeds (×100), Δ vs baseline in parentheses.", ""]
        for table in report.language_tables.values():
            lines += [*_language_lines(table, report.n_seeds), ""]
        lines += class_lines(report)
    from sweep.robustness import build_robustness, robustness_lines

    lines += robustness_lines(build_robustness(report), report.n_seeds)
    lines.append(f"## Missing cells ({len(report.missing)})")
    lines += [f"- {i} → {t}" for i, t in report.missing] or ["- none"]
    lines += ["", f"## Failed jobs ({len(report.failed)})"]
    lines += [_failed_line(f) for f in report.failed] or ["- none"]
    return "\n".join(lines) + "\n"


def _csv_value(value: float | None) -> str | float:
    return "" if value is None else value


CSV_HEADER = ["intermediate", "target", "mean", "std", "n_seeds", "delta", "n_tasks"]


def write_report(report: StudyReport, out_dir: Path) -> dict[str, Path]:
    """Write ``report.md``, ``report.csv`` (one row per (row, column), raw floats, empty fields
    for missing values; ``n_tasks`` = "k/N" for benchmark columns) and
    ``report_languages.csv`` (one row per (target, language, row)) into ``out_dir``, plus the
    :mod:`sweep.breakdowns` CSVs that apply (``report_groups.csv``,
    ``report_resource_classes.csv``) and the paper comparison's ``report_paper.csv``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    md_path, csv_path = out_dir / "report.md", out_dir / "report.csv"
    md_path.write_text(render_markdown(report), encoding="utf-8")
    with csv_path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(CSV_HEADER)
        for row in report.rows:
            for col in report.columns:
                c = report.cells[(row, col)]
                writer.writerow([row, col, _csv_value(c.mean), _csv_value(c.std), c.n_seeds,
                                 _csv_value(c.delta),
                                 "" if c.of_tasks is None else f"{c.n_tasks}/{c.of_tasks}"])
    paths = {"md": md_path, "csv": csv_path}
    if report.language_tables:
        lang_path = out_dir / "report_languages.csv"
        with lang_path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["target", "language", "n", "intermediate", "mean", "std",
                             "n_seeds", "delta"])
            for table in report.language_tables.values():
                for lang in table.languages:
                    for col in table.columns:
                        c = table.cells[(lang, col)]
                        writer.writerow([table.target, lang, _csv_value(table.sizes.get(lang)),
                                         col, _csv_value(c.mean), _csv_value(c.std), c.n_seeds,
                                         _csv_value(c.delta)])
        paths["languages_csv"] = lang_path
    from sweep.robustness import build_robustness, write_robustness_csv

    robustness = build_robustness(report)
    if robustness:
        paths["robustness_csv"] = write_robustness_csv(robustness, out_dir / "report_robustness.csv")
    from sweep.breakdowns import write_breakdowns

    paths.update(write_breakdowns(report, out_dir))
    from sweep.paper_comparison import write_paper

    paths.update(write_paper(report, out_dir))
    log.info("wrote %s", ", ".join(str(p) for p in paths.values()))
    return paths


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


def generate_report(
    tracking_uri: str,
    experiment: str,
    study: str,
    out_dir: Path,
    intermediate_order: Sequence[str] | None = None,
    target_order: Sequence[str] | None = None,
    *,
    group_by: str | None = None,
    compare: Sequence[StudySource] = (),
    figures: bool = True,
    html: bool = True,
    distance_features: str = "syntax_knn",
    distance_metric: str = "cosine",
) -> tuple[StudyReport, dict[str, Path]]:
    """Collect, aggregate, write and log a study's report in one call.

    ``compare`` adds other studies (e.g. the same study on another model) as row blocks
    prefixed by study. Files go to ``out_dir`` (``report.md``, ``report.csv``,
    ``report_languages.csv``, ``report_groups.csv`` and ``report_resource_classes.csv`` where
    they apply, the figures as PNG and ``report.html``) and are logged to the
    study's parent run under ``report/``. A figure that cannot be drawn is logged and skipped:
    the tables are the report, figures are extras.
    """
    sources = [StudySource(tracking_uri, experiment, study), *compare]
    scores, failed, labels = collect_many(sources, group_by)
    report = build_report(scores, labels[0], failed, intermediate_order, target_order,
                          group_by=group_by, studies=labels)
    paths = write_report(report, out_dir)
    figure_paths: dict[str, Path] = {}
    if figures:
        from sweep.figures import write_figures
        figure_paths = write_figures(report, out_dir, feature_set=distance_features,
                                     metric=distance_metric)
        paths.update(figure_paths)
    if html:
        from sweep.html_report import write_html
        paths["html"] = write_html(report, out_dir, figure_paths)
    log_report(mlflow.MlflowClient(tracking_uri=tracking_uri), experiment, study, paths)
    return report, paths
