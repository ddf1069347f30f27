"""How the report's numbers print: scores as points (×100), Δs with their sign, Markdown
cells, and empty CSV fields for missing values. Shared by every section, so a number reads the
same in the main table, the breakdowns and the paper comparison."""
from __future__ import annotations

from sweep.report.model import INCOMPLETE_MARK, MISSING_MARK, Cell, StudyReport


def pct(value: float) -> str:
    return f"{value * 100:.1f}"


def signed_pct(value: float) -> str:
    """Δ with an explicit sign; rounds first so a tiny negative never prints as -0.0."""
    rounded = round(value * 100, 1)
    return f"{rounded + 0.0:+.1f}"


def best_rows(report: StudyReport, column: str) -> set[str]:
    """Rows whose mean is best (highest) in a column, compared at printed precision so that
    visually tied values are all bold."""
    shown = {r: pct(report.cells[(r, column)].mean) for r in report.rows
             if report.cells[(r, column)].mean is not None}
    if not shown:
        return set()
    top = max(float(v) for v in shown.values())
    return {r for r, v in shown.items() if float(v) == top}


def md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def format_cell(cell: Cell, bold: bool, n_total: int) -> str:
    if cell.mean is None:
        return MISSING_MARK
    mean = f"**{pct(cell.mean)}**" if bold else pct(cell.mean)
    text = f"{mean}{INCOMPLETE_MARK if cell.incomplete else ''} ± {pct(cell.std)}"
    if cell.delta is not None:
        text += f" ({signed_pct(cell.delta)})"
    if cell.n_seeds < n_total:
        text += f" (n={cell.n_seeds})"
    return text


def csv_value(value: float | None) -> str | float:
    return "" if value is None else value
