"""The main table's caption, in Markdown; the HTML page shows the same text with its inline
marks rendered (:func:`sweep.report.html_formatting.inline_markdown`)."""
from __future__ import annotations

from sweep.report.model import INCOMPLETE_MARK, StudyReport


def legend(report: StudyReport) -> str:
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
