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
(``mnli@1000``) when a study varies ``train_examples``.

The package is layered; a module imports only modules of the layers below its own:

1. data model and formatting: :mod:`.model`, :mod:`.benchmarks`, :mod:`.formatting`,
   :mod:`.html_formatting`, :mod:`.legend`;
2. reading MLflow: :mod:`.runs` (finding runs), :mod:`.metrics` (a run's metrics into
   scores), :mod:`.collect` (runs into score records);
3. the table: :mod:`.table` (:func:`build_report`);
4. sections: :mod:`.breakdowns` (Δ by group and by resource class), :mod:`.robustness`,
   :mod:`.paper_comparison`, :mod:`.figures`, :mod:`.reading` (the sentence ``sweep run``
   ends with);
5. output: :mod:`.markdown`, :mod:`.html_report`, :mod:`.files` (:func:`write_report`) and
   :mod:`.generate` (:func:`generate_report`, what ``sweep report`` calls).
"""
from sweep.report.benchmarks import BENCHMARK_LANGUAGES, BENCHMARKS, list_average
from sweep.report.collect import collect_many, collect_scores
from sweep.report.files import write_report
from sweep.report.generate import generate_report, log_report
from sweep.report.markdown import bucc_note, render_markdown
from sweep.report.metrics import benchmark_scores
from sweep.report.model import (MISSING_MARK, Cell, LanguageTable, RowInfo, StudyReport,
                                StudySource)
from sweep.report.table import build_report

#: the suite's name for it from when it was private to the one-module report
_benchmark_scores = benchmark_scores

__all__ = ["BENCHMARKS", "BENCHMARK_LANGUAGES", "MISSING_MARK", "Cell", "LanguageTable",
           "RowInfo", "StudyReport", "StudySource", "benchmark_scores", "bucc_note",
           "build_report", "collect_many", "collect_scores", "generate_report", "list_average",
           "log_report", "render_markdown", "write_report"]
