"""A study report as one standalone HTML page: tables, missing/failed cells and the figures
embedded as base64 PNG, with inline CSS and no external assets, so the file can be mailed,
archived as an MLflow artifact or opened offline."""
from __future__ import annotations

import base64
import logging
from pathlib import Path

from sweep.report.breakdowns import class_html, group_html
from sweep.report.formatting import best_rows
from sweep.report.html_formatting import cell_html, escape, inline_markdown
from sweep.report.legend import legend
from sweep.report.model import LanguageTable, StudyReport, failed_where
from sweep.report.paper_comparison import paper_html
from sweep.report.robustness import build_robustness, robustness_html

log = logging.getLogger(__name__)

HTML_FILE = "report.html"
CSS = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1200px}
table{border-collapse:collapse;margin:1em 0;font-size:14px}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}
th:first-child,td:first-child{text-align:left}
th{background:#f3f3f3} td.missing{color:#999;text-align:center}
.delta-pos{color:#1a7f37}.delta-neg{color:#cf222e}.note{color:#555;font-size:13px}
figure{margin:1em 0} figure img{max-width:100%;border:1px solid #eee}
"""


def main_table(report: StudyReport) -> str:
    best = {c: best_rows(report, c) for c in report.columns}
    head = "".join(f"<th>{escape(c)}</th>" for c in report.columns)
    body = []
    for row in report.rows:
        cells = "".join(cell_html(report.cells[(row, c)], row in best[c], report.n_seeds)
                        for c in report.columns)
        body.append(f"<tr><td>{escape(row)}</td>{cells}</tr>")
    return (f'<table class="main"><thead><tr><th>intermediate</th>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table>")


def language_table(table: LanguageTable, n_total: int) -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in table.columns)
    body = []
    for lang in table.languages:
        size = table.sizes.get(lang)
        cells = "".join(cell_html(table.cells[(lang, c)], False, n_total)
                        for c in table.columns)
        body.append(f"<tr><td>{escape(lang)}</td><td>{'' if size is None else size}</td>"
                    f"{cells}</tr>")
    return (f'<h3>{escape(table.target)} ({escape(table.metric or "main metric")})</h3>'
            f'<table class="languages" data-target="{escape(table.target)}"><thead><tr>'
            f"<th>language</th><th>n</th>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>")


def _figure(name: str, path: Path) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return (f'<figure id="{escape(name)}"><img alt="{escape(name)}" '
            f'src="data:image/png;base64,{data}">'
            f"<figcaption>{escape(name)}</figcaption></figure>")


def render_html(report: StudyReport, figures: dict[str, Path] | None = None) -> str:
    """The whole page as a string."""
    parts = [f"<h1>X-STILTs results: {escape(report.study)}</h1>", main_table(report),
             f'<p class="note">{inline_markdown(legend(report))}</p>', group_html(report),
             paper_html(report)]
    images = {k: v for k, v in (figures or {}).items() if str(v).endswith(".png")}
    if images:
        parts.append("<h2>Figures</h2>")
        parts += [_figure(name, path) for name, path in images.items()]
    if report.language_tables:
        parts.append("<h2>Per-language scores</h2>")
        parts += [language_table(t, report.n_seeds) for t in report.language_tables.values()]
        parts.append(class_html(report))
    parts.append(robustness_html(build_robustness(report), report.n_seeds))
    parts.append(f"<h2>Missing cells ({len(report.missing)})</h2>")
    items = ([f"<li>{escape(i)} → {escape(t)}</li>" for i, t in report.missing]
             or ["<li>none</li>"])
    parts.append(f'<ul class="missing">{"".join(items)}</ul>')
    parts.append(f"<h2>Failed jobs ({len(report.failed)})</h2>")
    items = []
    for f in report.failed:
        items.append(f"<li><code>{escape(f.get('job_id', ''))}</code> "
                     f"({escape(f.get('stage', ''))}, {escape(failed_where(f))}, "
                     f"seed {escape(f.get('seed'))}): "
                     f"{escape(f.get('error') or 'no error recorded')}</li>")
    parts.append(f'<ul class="failed">{"".join(items or ["<li>none</li>"])}</ul>')
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f"<title>{escape(report.study)} – X-STILTs report</title><style>{CSS}</style></head>"
            f"<body>{''.join(parts)}</body></html>\n")


def write_html(report: StudyReport, out_dir: Path, figures: dict[str, Path] | None = None
               ) -> Path:
    path = Path(out_dir) / HTML_FILE
    path.write_text(render_html(report, figures), encoding="utf-8")
    log.info("wrote %s", path)
    return path
