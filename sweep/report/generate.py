"""What ``sweep report`` calls: collect a study's records (and those of the studies it is
compared with), build the table, write the files, draw the figures, write the HTML page and
attach it all to the study's parent run in MLflow."""
from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import mlflow

from sweep.report.collect import collect_many
from sweep.report.files import write_report
from sweep.report.html_report import write_html
from sweep.report.model import StudyReport, StudySource
from sweep.report.runs import parent_run
from sweep.report.table import build_report

log = logging.getLogger(__name__)

ARTIFACT_DIR = "report"


def log_report(
    client: mlflow.MlflowClient, experiment: str, study: str, paths: dict[str, Path]
) -> None:
    """Attach the report files to the study's parent run under ``report/``."""
    run = parent_run(client, experiment, study)
    for path in paths.values():
        client.log_artifact(run.info.run_id, str(path), artifact_path=ARTIFACT_DIR)
    log.info("logged %d report files to parent run %s", len(paths), run.info.run_id)


def generate_report(
    tracking_uri: str,
    experiment: str,
    study: str,
    out_dir: Path,
    intermediate_order: Sequence[str] | None = None,
    target_order: Sequence[str] | None = None,
    *,
    group_by: str | None = None,
    compare: Sequence[StudySource] = (),
    figures: bool = True,
    html: bool = True,
    distance_features: str = "syntax_knn",
    distance_metric: str = "cosine",
) -> tuple[StudyReport, dict[str, Path]]:
    """Collect, aggregate, write and log a study's report in one call.

    ``compare`` adds other studies (e.g. the same study on another model) as row blocks
    prefixed by study. Files go to ``out_dir`` (``report.md``, ``report.csv``,
    ``report_languages.csv``, ``report_groups.csv`` and ``report_resource_classes.csv`` where
    they apply, the figures as PNG and ``report.html``) and are logged to the
    study's parent run under ``report/``. A figure that cannot be drawn is logged and skipped:
    the tables are the report, figures are extras.
    """
    sources = [StudySource(tracking_uri, experiment, study), *compare]
    scores, failed, labels = collect_many(sources, group_by)
    report = build_report(scores, labels[0], failed, intermediate_order, target_order,
                          group_by=group_by, studies=labels)
    paths = write_report(report, out_dir)
    figure_paths: dict[str, Path] = {}
    if figures:
        from sweep.report.figures import write_figures  # matplotlib: only when drawing

        figure_paths = write_figures(report, out_dir, feature_set=distance_features,
                                     metric=distance_metric)
        paths.update(figure_paths)
    if html:
        paths["html"] = write_html(report, out_dir, figure_paths)
    log_report(mlflow.MlflowClient(tracking_uri=tracking_uri), experiment, study, paths)
    return report, paths
