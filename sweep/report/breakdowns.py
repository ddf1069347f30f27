"""Report breakdowns of Δ vs baseline: by row group and by the languages' resource class.

Both tables are derived from a built :class:`~sweep.report.model.StudyReport` and reuse its
Δs (the main table's ``Cell.delta`` and the per-language tables' ``Cell.delta``), so they can never
disagree with the tables they summarise; nothing is re-read from MLflow.

- **Δ by group** (:func:`group_table`): one row per group of intermediate rows (the value of
  ``group_by``, e.g. the spec's ``groups:`` via ``xstilts.group``), one column per report
  column (targets, ``average``, benchmark columns). A cell is the mean ± sample std (ddof=1)
  over the group's intermediate rows of each row's Δ vs its baseline in that column, with
  ``n`` = how many of those rows have a Δ there. The std is the spread *between the group's
  tasks*, not seed noise; with one row there is no spread and it is None (shown as none, not
  as 0.0). Baseline rows (``none``) and rows without a group value are not in any group.
- **Δ by resource class** (:func:`class_tables`): per target with per-language scores, one row
  per intermediate row, one column per Joshi et al. (2020) resource class present among the
  target's languages (0 = left-behinds … 5 = winners, from :mod:`sweep.languages`), plus
  ``unknown`` for languages without metadata. A cell is the mean ± sample std over the class's
  languages of the per-language Δ vs baseline (the per-language table's Δ: mean over seeds of
  the row minus mean over seeds of its baseline), with ``n`` = languages that have a Δ.

A table that does not apply (no groups, no per-language scores, no baseline) is None / absent
and nothing is rendered or written for it.
"""
from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path

from sweep.report.formatting import csv_value, md_escape, pct, signed_pct
from sweep.report.html_formatting import escape
from sweep.report.model import BASELINE, GROUP_SEP, LanguageTable, StudyReport, mean_std

log = logging.getLogger(__name__)

GROUPS_CSV = "report_groups.csv"
CLASSES_CSV = "report_resource_classes.csv"
UNKNOWN = "unknown"
NONE_MARK = "–"


@dataclass(frozen=True)
class Spread:
    """Mean and sample std of some Δs and how many there were; std is None below two values
    (no spread to estimate), mean is None with none."""

    mean: float | None
    std: float | None
    n: int


@dataclass
class GroupTable:
    """Δ by group: ``members`` maps each group label to the row labels it averages."""

    group_by: str | None
    groups: list[str]
    columns: list[str]
    members: dict[str, list[str]]
    cells: dict[tuple[str, str], Spread]


@dataclass
class ClassTable:
    """Δ by resource class for one target: ``languages`` maps each class to its languages."""

    target: str
    metric: str
    rows: list[str]
    classes: list[str]
    languages: dict[str, list[str]]
    cells: dict[tuple[str, str], Spread]


def spread(deltas: list[float]) -> Spread:
    """Mean ± sample std, without inventing a 0.0 spread for a single value."""
    mean, std = mean_std(deltas)
    return Spread(mean, std if len(deltas) > 1 else None, len(deltas))


# --------------------------------------------------------------------------- Δ by group


def _group_members(report: StudyReport) -> dict[str, list[str]]:
    """Group label -> its intermediate rows, in report order; groups of several studies are
    prefixed by the study so they never merge."""
    multi = len(report.studies) > 1
    members: dict[str, list[str]] = {}
    for row in report.rows:
        info = report.row_info.get(row)
        if info is None or info.group is None or info.intermediate == BASELINE:
            continue
        label = f"{info.study}{GROUP_SEP}{info.group}" if multi else info.group
        members.setdefault(label, []).append(row)
    return members


def group_table(report: StudyReport) -> GroupTable | None:
    """The Δ-by-group table, or None when the report is not grouped (``group_by``), no
    intermediate row has a group or none has a baseline (then there is no Δ to aggregate)."""
    if not report.group_by:
        return None
    members = _group_members(report)
    if not any(report.baselines.get(r) for rows in members.values() for r in rows):
        return None
    cells = {}
    for group, rows in members.items():
        for col in report.columns:
            deltas = [report.cells[(r, col)].delta for r in rows]
            cells[(group, col)] = spread([d for d in deltas if d is not None])
    return GroupTable(report.group_by, list(members), list(report.columns), members, cells)


# --------------------------------------------------------------------------- Δ by class


def resource_class(lang: str) -> str:
    """The language's Joshi et al. class as text, or ``unknown`` without metadata."""
    from sweep.languages import language_info

    try:
        return str(language_info(lang).resource_class)
    except KeyError:
        return UNKNOWN


def _classes(languages: list[str]) -> dict[str, list[str]]:
    """Class -> languages, classes in ascending order and ``unknown`` last."""
    by_class: dict[str, list[str]] = {}
    for lang in languages:
        by_class.setdefault(resource_class(lang), []).append(lang)
    order = sorted(by_class, key=lambda c: (c == UNKNOWN, int(c) if c != UNKNOWN else 0))
    return {c: by_class[c] for c in order}


def class_table(report: StudyReport, table: LanguageTable) -> ClassTable | None:
    """One target's Δ-by-resource-class table; None when no intermediate row has a
    per-language Δ (e.g. no baseline)."""
    rows = [r for r in table.columns
            if (info := report.row_info.get(r)) is not None and info.intermediate != BASELINE
            and any(table.cells[(lang, r)].delta is not None for lang in table.languages)]
    if not rows:
        return None
    classes = _classes(table.languages)
    cells = {}
    for row in rows:
        for cls, langs in classes.items():
            deltas = [table.cells[(lang, row)].delta for lang in langs]
            cells[(row, cls)] = spread([d for d in deltas if d is not None])
    return ClassTable(table.target, table.metric, rows, list(classes), classes, cells)


def class_tables(report: StudyReport) -> dict[str, ClassTable]:
    """Target -> its Δ-by-resource-class table, for targets where one applies."""
    tables = {t: class_table(report, lt) for t, lt in report.language_tables.items()}
    return {t: ct for t, ct in tables.items() if ct is not None}


# --------------------------------------------------------------------------- Markdown


def format_spread(s: Spread, n_total: int) -> str:
    """``+1.2 ± 0.4`` in points (×100); ``(n=k)`` when fewer than ``n_total`` contribute."""
    if s.mean is None:
        return NONE_MARK
    text = signed_pct(s.mean) + (f" ± {pct(s.std)}" if s.std is not None else "")
    return text + (f" (n={s.n})" if s.n < n_total else "")


def _class_header(cls: str, n_langs: int) -> str:
    name = UNKNOWN if cls == UNKNOWN else f"class {cls}"
    return f"{name} ({n_langs} lang{'s' if n_langs != 1 else ''})"


GROUP_NOTE = ("Rows: groups of intermediate rows{by}; cells: mean ± std over the group's rows "
              "of each row's Δ vs its baseline (×100 points; sample std between the group's "
              "tasks, not seed noise; no std with one row); `rows` = rows in the group, (n=k) "
              "= only k of them have a Δ in that column.")
CLASS_NOTE = ("Per target: rows are intermediate rows, columns Joshi et al. (2020) resource "
              "classes (0 = left-behinds … 5 = winners; `unknown` = no language metadata) with "
              "the number of the target's languages in each; cells: mean ± std over the class's "
              "languages of the per-language Δ vs baseline (×100 points; no std with one "
              "language); (n=k) = only k of the class's languages have a Δ.")


def group_lines(report: StudyReport) -> list[str]:
    """The "Δ by group" Markdown section, or nothing when it does not apply."""
    table = group_table(report)
    if table is None:
        return []
    by = f" (`{table.group_by}`)" if table.group_by else ""
    lines = ["## Δ by group", "", GROUP_NOTE.format(by=by), "",
             "| group | rows | " + " | ".join(map(md_escape, table.columns)) + " |",
             "|---|---:|" + "---:|" * len(table.columns)]
    for group in table.groups:
        n = len(table.members[group])
        cells = [format_spread(table.cells[(group, c)], n) for c in table.columns]
        lines.append(f"| {md_escape(group)} | {n} | " + " | ".join(cells) + " |")
    return lines + [""]


def class_lines(report: StudyReport) -> list[str]:
    """The "Δ by resource class" Markdown section, or nothing when it does not apply."""
    tables = class_tables(report)
    if not tables:
        return []
    lines = ["## Δ by resource class", "", CLASS_NOTE, ""]
    for t in tables.values():
        heads = [_class_header(c, len(t.languages[c])) for c in t.classes]
        lines += [f"### {md_escape(t.target)} ({t.metric or 'main metric'})", "",
                  "| intermediate | " + " | ".join(heads) + " |",
                  "|---|" + "---:|" * len(t.classes)]
        for row in t.rows:
            cells = [format_spread(t.cells[(row, c)], len(t.languages[c])) for c in t.classes]
            lines.append(f"| {md_escape(row)} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


# --------------------------------------------------------------------------- HTML


def _spread_html(s: Spread, n_total: int) -> str:
    if s.mean is None:
        return f'<td class="missing">{NONE_MARK}</td>'
    css = "delta-neg" if signed_pct(s.mean).startswith("-") else "delta-pos"
    text = format_spread(s, n_total)
    return f'<td><span class="{css}">{escape(text)}</span></td>'


def group_html(report: StudyReport) -> str:
    """The "Δ by group" HTML section, or an empty string when it does not apply."""
    table = group_table(report)
    if table is None:
        return ""
    by = f" (`{table.group_by}`)" if table.group_by else ""
    head = "".join(f"<th>{escape(c)}</th>" for c in table.columns)
    body = []
    for group in table.groups:
        n = len(table.members[group])
        cells = "".join(_spread_html(table.cells[(group, c)], n) for c in table.columns)
        body.append(f"<tr><td>{escape(group)}</td><td>{n}</td>{cells}</tr>")
    return (f'<h2>Δ by group</h2><p class="note">{escape(GROUP_NOTE.format(by=by))}</p>'
            f'<table class="groups"><thead><tr><th>group</th><th>rows</th>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table>")


def class_html(report: StudyReport) -> str:
    """The "Δ by resource class" HTML section, or an empty string when it does not apply."""
    tables = class_tables(report)
    if not tables:
        return ""
    parts = ["<h2>Δ by resource class</h2>", f'<p class="note">{escape(CLASS_NOTE)}</p>']
    for t in tables.values():
        head = "".join(f"<th>{escape(_class_header(c, len(t.languages[c])))}</th>"
                       for c in t.classes)
        body = [f"<tr><td>{escape(row)}</td>"
                + "".join(_spread_html(t.cells[(row, c)], len(t.languages[c]))
                          for c in t.classes) + "</tr>" for row in t.rows]
        parts.append(f'<h3>{escape(t.target)} ({escape(t.metric or "main metric")})</h3>'
                     f'<table class="resource-classes" data-target="{escape(t.target)}"><thead>'
                     f"<tr><th>intermediate</th>{head}</tr></thead>"
                     f"<tbody>{''.join(body)}</tbody></table>")
    return "".join(parts)


# --------------------------------------------------------------------------- CSV


def write_group_csv(table: GroupTable, path: Path) -> Path:
    """One row per (group, column), raw Δs (not ×100), empty fields for missing values."""
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["group", "n_rows", "rows", "column", "n", "mean_delta", "std_delta"])
        for group in table.groups:
            rows = table.members[group]
            for col in table.columns:
                s = table.cells[(group, col)]
                writer.writerow([group, len(rows), "; ".join(rows), col, s.n, csv_value(s.mean),
                                 csv_value(s.std)])
    return path


def write_class_csv(tables: dict[str, ClassTable], path: Path) -> Path:
    """One row per (target, intermediate row, resource class), raw Δs (not ×100)."""
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["target", "intermediate", "resource_class", "n_languages",
                         "languages", "n", "mean_delta", "std_delta"])
        for t in tables.values():
            for row in t.rows:
                for cls in t.classes:
                    s, langs = t.cells[(row, cls)], t.languages[cls]
                    writer.writerow([t.target, row, cls, len(langs), " ".join(langs), s.n,
                                     csv_value(s.mean), csv_value(s.std)])
    return path


def write_breakdowns(report: StudyReport, out_dir: Path) -> dict[str, Path]:
    """Write the breakdown CSVs that apply into ``out_dir``; their paths keyed for
    :func:`sweep.report.files.write_report` (``groups_csv``, ``resource_classes_csv``)."""
    out_dir = Path(out_dir)
    paths: dict[str, Path] = {}
    table = group_table(report)
    if table is not None:
        paths["groups_csv"] = write_group_csv(table, out_dir / GROUPS_CSV)
    tables = class_tables(report)
    if tables:
        paths["resource_classes_csv"] = write_class_csv(tables, out_dir / CLASSES_CSV)
    log.debug("breakdowns written: %s", ", ".join(map(str, paths.values())) or "none apply")
    return paths
