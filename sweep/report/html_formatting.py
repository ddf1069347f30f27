"""How the report prints in HTML: escaping, the Markdown captions' inline marks, and a table
cell with its Δ coloured. Shared by the HTML page and the sections' HTML, so a cell reads the
same in every table of the page."""
from __future__ import annotations

import html
import re

from sweep.report.formatting import pct, signed_pct
from sweep.report.model import MISSING_MARK, Cell


def escape(text: object) -> str:
    return html.escape(str(text), quote=True)


_BOLD = re.compile(r"\*\*(.+?)\*\*")
_CODE = re.compile(r"`([^`]+)`")


def inline_markdown(text: str) -> str:
    """The Markdown report's inline marks as HTML (escaped first): ``**b**`` -> <b>, `` `c` ``
    -> <code>; the captions are shared with the Markdown report, which keeps the marks."""
    return _BOLD.sub(r"<b>\1</b>", _CODE.sub(r"<code>\1</code>", escape(text)))


def cell_html(cell: Cell, bold: bool, n_total: int, lower_is_better: bool = False) -> str:
    """A table cell; Δ is green when it is an improvement (a fall, for drops and errors)."""
    if cell.mean is None:
        return f'<td class="missing">{MISSING_MARK}</td>'
    mean = f"<b>{pct(cell.mean)}</b>" if bold else pct(cell.mean)
    text = f"{mean} ± {pct(cell.std)}"
    if cell.delta is not None:
        delta = signed_pct(cell.delta)
        shown = float(delta)
        worse = shown > 0 if lower_is_better else shown < 0
        css = "delta-neg" if worse else "delta-pos"
        text += f' <span class="{css}">({delta})</span>'
    if cell.n_seeds < n_total:
        text += f" (n={cell.n_seeds})"
    return f"<td>{text}</td>"
