"""The math of the results table: score records aggregated over seeds into a
:class:`~sweep.report.model.StudyReport` (rows, columns, cells, Δ vs each row's baseline,
benchmark columns and per-language tables). A pure function of plain records, so it is tested
without MLflow."""
from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from typing import Any

from sweep.report.benchmarks import BENCHMARKS
from sweep.report.metrics import scored_metric
from sweep.report.model import (AVERAGE, BASELINE, MULTI_SEP, SIZE_SEP, Cell, LanguageTable,
                                RowInfo, StudyReport, mean_std, row_label, with_size)


def _default_row_key(name: str) -> tuple:
    """Baseline first, then single tasks, then multi-task sets (smaller sets first)."""
    if name == BASELINE:
        return (0, 0, name)
    n_tasks = name.count(MULTI_SEP) + 1
    return (1 if n_tasks == 1 else 2, n_tasks, name)


def _row_average(per_target: list[dict[Any, float]]) -> list[float]:
    """Per-seed mean over the row's targets, only for seeds where every target has a score
    (otherwise rows with different missing targets would not be comparable)."""
    if not per_target:
        return []
    seeds = set.intersection(*(set(d) for d in per_target))
    return [statistics.fmean(d[s] for d in per_target) for s in sorted(seeds, key=str)]


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
    columns = [with_size(t, n) for t, n in pairs]
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


def add_deltas(cells: dict[tuple[str, str], Cell], baselines: dict[str, str | None],
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
    metric = scored_metric(records)
    for rec in records:
        row = labels[id(rec)]
        for lang, value in rec.get("languages", {}).items():
            per.setdefault((lang, row), {})[rec["seed"]] = value
        for lang, n in rec.get("sizes", {}).items():
            sizes[lang] = max(n, sizes.get(lang) or 0)
    langs = sorted({lang for lang, _ in per}, key=lambda x: (x != "en", x))
    columns = [r for r in rows if any((lang, r) in per for lang in langs)]
    cells = {(lang, row): Cell(*mean_std(list(per.get((lang, row), {}).values())),
                               n_seeds=len(per.get((lang, row), {})), delta=None)
             for lang in langs for row in columns}
    add_deltas(cells, {r: b for r, b in baselines.items() if r in columns and b in columns},
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
    labels = {info: row_label(info, multi, group_by) for info in infos}
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
        row, col = rec_label[id(rec)], with_size(rec["target"], rec.get("target_examples"))
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
            cells[(row, target)] = Cell(*mean_std(list(seed_scores.values())),
                                        n_seeds=len(seed_scores), delta=None)
            if not seed_scores:
                missing.append((row, target))
        avg = _row_average(per_target)
        cells[(row, AVERAGE)] = Cell(*mean_std(avg), n_seeds=len(avg), delta=None)
        for col, (bench, (n_slots, chosen)) in zip(bench_cols, benches.items()):
            values = _row_average([by_bench.get((bench, row, c), {}) for c in chosen])
            cells[(row, col)] = Cell(*mean_std(values), n_seeds=len(values), delta=None,
                                     n_tasks=len(chosen), of_tasks=n_slots,
                                     incomplete=tuple(sorted(set(chosen) & incomplete.get((bench, row), set()))))
    info_by_label = {labels[i]: i for i in infos}
    baselines = _baselines(infos, labels)
    add_deltas(cells, baselines, columns)
    language_tables = {}
    for col in targets:
        recs = [r for r in scores if with_size(r["target"], r.get("target_examples")) == col
                and r.get("languages")]
        if recs:
            language_tables[col] = _language_table(col, recs, rows, rec_label, baselines)
    name = study if not multi else " vs ".join(order)
    return StudyReport(name, rows, columns, cells, missing, failed, info_by_label, baselines,
                       bench_cols, language_tables, scores, group_by, order)
