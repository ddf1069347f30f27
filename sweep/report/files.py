"""The report's files: ``report.md``, ``report.csv``, ``report_languages.csv`` and the CSVs of
the sections that apply (robustness, breakdowns, paper comparison)."""
from __future__ import annotations

import csv
import logging
from pathlib import Path

from sweep.report.breakdowns import write_breakdowns
from sweep.report.formatting import csv_value
from sweep.report.markdown import render_markdown
from sweep.report.model import StudyReport
from sweep.report.paper_comparison import write_paper
from sweep.report.robustness import build_robustness, write_robustness_csv

log = logging.getLogger(__name__)

CSV_HEADER = ["intermediate", "target", "mean", "std", "n_seeds", "delta", "n_tasks"]


def write_report(report: StudyReport, out_dir: Path) -> dict[str, Path]:
    """Write ``report.md``, ``report.csv`` (one row per (row, column), raw floats, empty fields
    for missing values; ``n_tasks`` = "k/N" for benchmark columns) and
    ``report_languages.csv`` (one row per (target, language, row)) into ``out_dir``, plus the
    :mod:`~sweep.report.breakdowns` CSVs that apply (``report_groups.csv``,
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
                writer.writerow([row, col, csv_value(c.mean), csv_value(c.std), c.n_seeds,
                                 csv_value(c.delta),
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
                        writer.writerow([table.target, lang, csv_value(table.sizes.get(lang)),
                                         col, csv_value(c.mean), csv_value(c.std), c.n_seeds,
                                         csv_value(c.delta)])
        paths["languages_csv"] = lang_path
    robustness = build_robustness(report)
    if robustness:
        paths["robustness_csv"] = write_robustness_csv(robustness, out_dir / "report_robustness.csv")
    paths.update(write_breakdowns(report, out_dir))
    paths.update(write_paper(report, out_dir))
    log.info("wrote %s", ", ".join(str(p) for p in paths.values()))
    return paths
