"""Finding a study's runs in MLflow: the study and job runs the engine's tracking module
writes (``xstilts.kind=study`` / ``job``), searched page by page, the newest attempt of each
job kept. Trial runs (``xstilts.kind=trial``) are never read."""
from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator

import mlflow
from mlflow.entities import Run

from trainables.contract import Tag, tag

log = logging.getLogger(__name__)

#: runs per search page; studies have thousands of runs, so the search is always paginated
PAGE_SIZE = 1000


def quote(value: str) -> str:
    """Quote a value for an MLflow filter string (which has no escape for embedded quotes)."""
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    raise ValueError(f"cannot search MLflow for a value containing both quote kinds: {value!r}")


def study_filter(study: str, kind: str) -> str:
    return (f'tags."{tag(Tag.STUDY)}" = {quote(study)} AND '
            f'tags."{tag(Tag.KIND)}" = {quote(kind)}')


def experiment_id(client: mlflow.MlflowClient, experiment: str) -> str:
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise LookupError(f"no MLflow experiment named {experiment!r}")
    return exp.experiment_id


def search_all(
    client: mlflow.MlflowClient, experiment_id: str, filter_string: str, page_size: int
) -> Iterator[Run]:
    """Yield every matching run, oldest first, one page at a time (a study can be huge)."""
    token = None
    while True:
        page = client.search_runs(
            [experiment_id],
            filter_string,
            max_results=page_size,
            order_by=["attributes.start_time ASC", "attributes.run_id ASC"],
            page_token=token,
        )
        yield from page
        token = page.token
        if not token:
            return


def run_status(run: Run) -> str:
    """The job's status: the engine's tag, else MLflow's own run status."""
    status = run.data.tags.get(tag(Tag.STATUS))
    if status:
        return status
    return {"FINISHED": "finished", "FAILED": "failed", "KILLED": "failed"}.get(
        run.info.status, "running"
    )


def latest_per_job(runs: Iterable[Run]) -> list[Run]:
    """Keep the newest run of each job id, so a failed attempt that was retried successfully
    is neither reported as failed nor counted twice. Input must be oldest first."""
    latest: dict[str, Run] = {}
    for run in runs:
        latest[run.data.tags.get(tag(Tag.JOB_ID)) or run.info.run_id] = run
    return list(latest.values())


def parent_run(client: mlflow.MlflowClient, experiment: str, study: str) -> Run:
    """The study's parent run; if the study was started more than once, the newest."""
    exp_id = experiment_id(client, experiment)
    runs = list(search_all(client, exp_id, study_filter(study, "study"), PAGE_SIZE))
    if not runs:
        raise LookupError(f"no parent run for study {study!r} in experiment {experiment!r}")
    if len(runs) > 1:
        log.warning("study %s has %d parent runs; logging to the newest", study, len(runs))
    return runs[-1]
