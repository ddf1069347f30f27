"""The report as Markdown (``report.md``): the main table and its legend, then each section
that applies, then missing cells and failed jobs."""
from __future__ import annotations

from sweep.report.breakdowns import class_lines, group_lines
from sweep.report.formatting import best_rows, format_cell, md_escape
from sweep.report.legend import legend
from sweep.report.model import LanguageTable, StudyReport, failed_where
from sweep.report.paper_comparison import paper_lines
from sweep.report.robustness import build_robustness, robustness_lines


def _table_lines(report: StudyReport) -> list[str]:
    n_total = report.n_seeds
    best = {c: best_rows(report, c) for c in report.columns}
    lines = ["| intermediate | " + " | ".join(map(md_escape, report.columns)) + " |",
             "|---|" + "---:|" * len(report.columns)]
    for row in report.rows:
        cells = [format_cell(report.cells[(row, c)], row in best[c], n_total)
                 for c in report.columns]
        lines.append(f"| {md_escape(row)} | " + " | ".join(cells) + " |")
    return lines


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
    study = f"{f['study']}: " if f.get("study") else ""
    return (f"- `{f.get('job_id', '')}` ({study}{f.get('stage', '')}, {failed_where(f)}, seed "
            f"{f.get('seed')}): {f.get('error') or 'no error recorded'}")


def _language_lines(table: LanguageTable, n_total: int) -> list[str]:
    """A per-language table: rows are languages, columns the intermediates (no bold)."""
    lines = [f"### {md_escape(table.target)} ({table.metric or 'main metric'})", "",
             "| language | n | " + " | ".join(map(md_escape, table.columns)) + " |",
             "|---|---:|" + "---:|" * len(table.columns)]
    for lang in table.languages:
        size = table.sizes.get(lang)
        cells = [format_cell(table.cells[(lang, c)], False, n_total) for c in table.columns]
        lines.append(f"| {lang} | {'' if size is None else size} | " + " | ".join(cells) + " |")
    return lines


def render_markdown(report: StudyReport) -> str:
    """The report as Markdown: header, table, legend, Δ by group, paper comparison,
    per-language tables, Δ by resource class, then missing cells and failed jobs."""
    lines = [f"# X-STILTs results: {report.study}", "", *_table_lines(report), "",
             legend(report), "", *bucc_note(report), *group_lines(report),
             *paper_lines(report)]
    if report.language_tables:
        lines += ["## Per-language scores", "",
                  "Rows: test languages (n = test-set size); columns: intermediate tasks; "
                  "mean ± std over seeds (×100), Δ vs baseline in parentheses.", ""]
        for table in report.language_tables.values():
            lines += [*_language_lines(table, report.n_seeds), ""]
        lines += class_lines(report)
    lines += robustness_lines(build_robustness(report), report.n_seeds)
    lines.append(f"## Missing cells ({len(report.missing)})")
    lines += [f"- {i} → {t}" for i, t in report.missing] or ["- none"]
    lines += ["", f"## Failed jobs ({len(report.failed)})"]
    lines += [_failed_line(f) for f in report.failed] or ["- none"]
    return "\n".join(lines) + "\n"
