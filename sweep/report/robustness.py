"""Robustness tables of a report: clean vs perturbed scores, the drop, and whether intermediate
training changes the drop.

A trial evaluated under ``evaluation.perturbations`` logs, next to the clean
``<target>/<metric>/<lang>``, the perturbed ``<target>.<label>/<metric>/<lang>`` and
``<target>.<label>/drop/<lang>`` (clean main metric − perturbed), each with ``/avg`` over
languages (read by :func:`sweep.report.metrics.perturbed_scores`). Per target this module
builds:

* per row and perturbation: clean, perturbed and drop, mean ± std over seeds (of the average
  over languages);
* per row and perturbation, against the row's baseline (``none``, direct fine-tuning): the
  paired difference of drops over the seeds both have (row − baseline; negative = intermediate
  training made the model more robust), its std, the number of seeds where the row dropped less,
  and a paired t-test p-value (two-sided; needs two or more seeds);
* per language, row and perturbation: the drop, mean ± std over seeds, with Δ vs baseline.
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sweep.report.formatting import format_cell, md_escape, pct, signed_pct
from sweep.report.html_formatting import cell_html, escape
from sweep.report.metrics import scored_metric
from sweep.report.model import Cell, RowInfo, StudyReport, mean_std, row_label, with_size
from sweep.report.table import add_deltas


@dataclass
class PairedDrop:
    """Row − baseline drop over the seeds both have (negative: the row drops less)."""

    mean: float | None
    std: float | None
    n: int
    fewer: int                 # seeds where the row's drop is smaller than the baseline's
    p_value: float | None      # paired t-test, two-sided; None below two seeds or zero spread


@dataclass
class RobustnessTable:
    target: str
    metric: str
    perturbations: list[str]
    rows: list[str]
    clean: dict[str, Cell]                              # row -> clean score
    perturbed: dict[tuple[str, str], Cell]              # (row, perturbation) -> perturbed score
    drop: dict[tuple[str, str], Cell]                   # (row, perturbation) -> drop
    paired: dict[tuple[str, str], PairedDrop]           # non-baseline rows only
    languages: list[str]
    language_drop: dict[tuple[str, str, str], Cell]     # (perturbation, language, row) -> drop
    baselines: dict[str, str | None]


def _paired(row: dict[Any, float], base: dict[Any, float]) -> PairedDrop:
    seeds = sorted(set(row) & set(base), key=str)
    diffs = [row[s] - base[s] for s in seeds]
    mean, std = mean_std(diffs)
    p_value = None
    if len(diffs) > 1 and std:
        from scipy import stats

        p_value = float(stats.ttest_rel([row[s] for s in seeds], [base[s] for s in seeds]).pvalue)
    return PairedDrop(mean, std, len(diffs), sum(d < 0 for d in diffs), p_value)


def _cell(values: dict[Any, float]) -> Cell:
    return Cell(*mean_std(list(values.values())), n_seeds=len(values), delta=None)


def build_robustness(report: StudyReport) -> dict[str, RobustnessTable]:
    """One table per target column whose runs carry perturbed metrics."""
    multi = len(report.studies) > 1
    by_target: dict[str, list[dict]] = {}
    for rec in report.records:
        if rec.get("perturbed"):
            by_target.setdefault(with_size(rec["target"], rec.get("target_examples")), []).append(rec)
    return {col: _table(col, recs, report, multi) for col, recs in by_target.items()}


def _table(col: str, records: list[dict], report: StudyReport, multi: bool) -> RobustnessTable:
    clean: dict[str, dict] = {}
    perturbed: dict[tuple[str, str], dict] = {}
    drop: dict[tuple[str, str], dict] = {}
    lang_drop: dict[tuple[str, str, str], dict] = {}
    for rec in records:
        row = row_label(RowInfo(rec["study"], rec.get("group"), rec["intermediate"],
                                 rec.get("train_examples")), multi, report.group_by)
        clean.setdefault(row, {})[rec["seed"]] = float(rec["score"])
        for label, entry in rec["perturbed"].items():
            if entry["score"] is not None:
                perturbed.setdefault((row, label), {})[rec["seed"]] = entry["score"]
            if entry["drop"] is not None:
                drop.setdefault((row, label), {})[rec["seed"]] = entry["drop"]
            for lang, value in entry["drops"].items():
                lang_drop.setdefault((label, lang, row), {})[rec["seed"]] = value
    rows = [r for r in report.rows if r in clean]
    labels = sorted({label for _, label in perturbed} | {label for _, label in drop})
    languages = sorted({lang for _, lang, _ in lang_drop}, key=lambda x: (x != "en", x))
    baselines = {r: b for r, b in report.baselines.items() if r in rows and b in rows}
    paired = {(row, label): _paired(drop.get((row, label), {}), drop.get((base, label), {}))
              for row, base in baselines.items() if base is not None for label in labels}
    lang_cells = {key: _cell(v) for key, v in lang_drop.items()}
    for label in labels:
        add_deltas(lang_cells, baselines, languages, key=lambda row, lang: (label, lang, row))
    metric = scored_metric(records)
    return RobustnessTable(col, metric, labels, rows, {r: _cell(v) for r, v in clean.items()},
                           {k: _cell(v) for k, v in perturbed.items()},
                           {k: _cell(v) for k, v in drop.items()}, paired, languages, lang_cells,
                           baselines)


# --------------------------------------------------------------------------- rendering

def _paired_text(p: PairedDrop | None) -> str:
    if p is None or p.mean is None:
        return "–"
    text = f"{signed_pct(p.mean)} ± {pct(p.std)}, less drop in {p.fewer}/{p.n} seeds"
    return text + (f", p={p.p_value:.3g}" if p.p_value is not None else "")


def _missing(cell: Cell | None) -> Cell:
    return cell or Cell(None, None, 0, None)


def robustness_lines(tables: dict[str, RobustnessTable], n_total: int) -> list[str]:
    """Markdown section: per target the clean / perturbed / drop table, the paired comparison
    with the baseline, and the per-language drops."""
    if not tables:
        return []
    lines = ["## Robustness under perturbations", "",
             "Scores ×100, mean ± std over seeds of the average over languages; drop = clean − "
             "perturbed. Δdrop vs baseline is paired over seeds (row − baseline; negative: the "
             "row loses less under the perturbation), with a two-sided paired t-test.", ""]
    for table in tables.values():
        lines += [f"### {md_escape(table.target)} ({table.metric or 'main metric'})", "",
                  "| intermediate | clean | " + " | ".join(
                      f"{md_escape(p)} | drop" for p in table.perturbations) + " |",
                  "|---|---:|" + "---:|---:|" * len(table.perturbations)]
        for row in table.rows:
            cells = [format_cell(_missing(table.clean.get(row)), False, n_total)]
            for p in table.perturbations:
                cells += [format_cell(_missing(table.perturbed.get((row, p))), False, n_total),
                          format_cell(_missing(table.drop.get((row, p))), False, n_total)]
            lines.append(f"| {md_escape(row)} | " + " | ".join(cells) + " |")
        compared = [r for r, b in table.baselines.items() if b is not None]
        if compared:
            lines += ["", f"Δdrop vs baseline ({md_escape(table.target)})", "",
                      "| intermediate | " + " | ".join(map(md_escape, table.perturbations)) + " |",
                      "|---|" + "---:|" * len(table.perturbations)]
            for row in compared:
                lines.append(f"| {md_escape(row)} | " + " | ".join(
                    _paired_text(table.paired.get((row, p))) for p in table.perturbations) + " |")
        for p in table.perturbations:
            lines += ["", f"Drop per language under {md_escape(p)} ({md_escape(table.target)}; "
                          "Δ vs baseline in parentheses)", "",
                      "| language | " + " | ".join(map(md_escape, table.rows)) + " |",
                      "|---|" + "---:|" * len(table.rows)]
            for lang in table.languages:
                lines.append(f"| {lang} | " + " | ".join(
                    format_cell(_missing(table.language_drop.get((p, lang, row))), False, n_total)
                    for row in table.rows) + " |")
        lines.append("")
    return lines


def _num(value: float | None) -> str | float:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else value


ROBUSTNESS_HEADER = ["target", "perturbation", "intermediate", "language", "clean_mean",
                     "perturbed_mean", "drop_mean", "drop_std", "n_seeds", "delta_drop_vs_baseline",
                     "seeds_less_drop", "paired_n", "p_value"]


def write_robustness_csv(tables: dict[str, RobustnessTable], path: Path) -> Path:
    """One row per (target, perturbation, row) with language ``avg``, then one per language."""
    with Path(path).open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(ROBUSTNESS_HEADER)
        for t in tables.values():
            for p in t.perturbations:
                for row in t.rows:
                    drop, paired = _missing(t.drop.get((row, p))), t.paired.get((row, p))
                    writer.writerow([t.target, p, row, "avg", _num(_missing(t.clean.get(row)).mean),
                                     _num(_missing(t.perturbed.get((row, p))).mean), _num(drop.mean),
                                     _num(drop.std), drop.n_seeds,
                                     _num(paired.mean if paired else None),
                                     paired.fewer if paired else "", paired.n if paired else "",
                                     _num(paired.p_value if paired else None)])
                for lang in t.languages:
                    for row in t.rows:
                        c = _missing(t.language_drop.get((p, lang, row)))
                        writer.writerow([t.target, p, row, lang, "", "", _num(c.mean), _num(c.std),
                                         c.n_seeds, _num(c.delta), "", "", ""])
    return Path(path)


def robustness_html(tables: dict[str, RobustnessTable], n_total: int) -> str:
    """The same tables as :func:`robustness_lines` for the HTML page ('' without perturbations)."""
    if not tables:
        return ""
    parts = ["<h2>Robustness under perturbations</h2>",
             '<p class="note">drop = clean − perturbed (×100, mean ± std over seeds); Δdrop vs '
             "baseline is paired over seeds (negative: the row loses less), two-sided paired "
             "t-test.</p>"]
    for t in tables.values():
        head = "".join(f"<th>{escape(p)}</th><th>drop</th>" for p in t.perturbations)
        body = []
        for row in t.rows:
            cells = cell_html(_missing(t.clean.get(row)), False, n_total)
            for p in t.perturbations:
                cells += (cell_html(_missing(t.perturbed.get((row, p))), False, n_total)
                          + cell_html(_missing(t.drop.get((row, p))), False, n_total))
            body.append(f"<tr><td>{escape(row)}</td>{cells}</tr>")
        parts.append(f"<h3>{escape(t.target)} ({escape(t.metric or 'main metric')})</h3>"
                     f'<table class="robustness" data-target="{escape(t.target)}"><thead><tr>'
                     f"<th>intermediate</th><th>clean</th>{head}</tr></thead>"
                     f"<tbody>{''.join(body)}</tbody></table>")
        compared = [r for r, b in t.baselines.items() if b is not None]
        if compared:
            rows = "".join(f"<tr><td>{escape(r)}</td>" + "".join(
                f"<td>{escape(_paired_text(t.paired.get((r, p))))}</td>" for p in t.perturbations)
                + "</tr>" for r in compared)
            parts.append('<table class="robustness-paired"><thead><tr><th>Δdrop vs baseline</th>'
                         + "".join(f"<th>{escape(p)}</th>" for p in t.perturbations)
                         + f"</tr></thead><tbody>{rows}</tbody></table>")
        for p in t.perturbations:
            rows = "".join(f"<tr><td>{escape(lang)}</td>" + "".join(
                cell_html(_missing(t.language_drop.get((p, lang, r))), False, n_total,
                           lower_is_better=True)
                for r in t.rows) + "</tr>" for lang in t.languages)
            parts.append(f"<p>Drop per language under {escape(p)}</p>"
                         f'<table class="robustness-languages"><thead><tr><th>language</th>'
                         + "".join(f"<th>{escape(r)}</th>" for r in t.rows)
                         + f"</tr></thead><tbody>{rows}</tbody></table>")
    return "".join(parts)
