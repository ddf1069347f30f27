"""Up-front checks of `sweep validate`, `sweep run` and `sweep report`, in seconds and before
anything starts: the storage path is a folder we can write in, the MLflow store answers, a
study to report on has run, and a plan is not unexpectedly huge.

Each problem is a ``SpecError`` (one line naming the field, exit code 2). Nothing here creates
a folder or a store: the probe file is removed at once.
"""
from __future__ import annotations

import math
import os
import sqlite3
import tempfile
import threading
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from sweep.spec import Spec, SpecError, did_you_mean
from trainables.contract import Tag, tag

TRACKING_TIMEOUT_S = 5.0
LARGE_PLAN_TRIALS = 20_000     # above this, `sweep run` wants --yes
DATABASE_SCHEMES = ("postgresql", "mysql", "mssql")


def check_storage(spec: Spec) -> None:
    """The storage path is (or can become) a folder we can write in: a probe file is created and
    removed in the deepest folder that exists on the way to ``<storage>/<study>``. Object storage:
    a probe object under ``<storage>/<study>/`` (a missing bucket or no access is one line)."""
    from trainables import storage

    if storage.is_remote(spec.storage):
        try:
            storage.check_access(storage.join(spec.storage, spec.name))
        except storage.StorageError as exc:
            raise SpecError("storage", str(exc), spec.source) from None
        return
    target = Path(spec.storage).expanduser().absolute() / spec.name
    existing = target
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise SpecError("storage", f"{existing} is a file, not a folder", spec.source)
    try:
        fd, probe = tempfile.mkstemp(prefix=".xstilts-probe-", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise SpecError("storage", f"cannot write in {existing}: {exc.strerror or exc}", spec.source) from None


def check_tracking(uri: str, field: str, source: str | None = None,
                   timeout: float = TRACKING_TIMEOUT_S) -> None:
    """The MLflow store answers within ``timeout`` seconds: a tracking server's ``/health``, a
    sqlite file that is a database in a writable folder, a database server that accepts a
    connection. Anything else (a plain path: MLflow 3's file store is read-only) is refused."""
    parts = urlsplit(uri)
    scheme = parts.scheme.split("+")[0].lower()
    if scheme in ("http", "https"):
        _check_server(uri, field, source, timeout)
    elif scheme == "sqlite":
        _check_sqlite(uri, field, source)
    elif scheme in DATABASE_SCHEMES:
        _check_database(uri, field, source, timeout)
    elif scheme.startswith("databricks"):
        return  # needs its own credentials; MLflow reports problems itself
    else:
        raise SpecError(field, f"{_shown(uri)} is not an MLflow tracking URI: use http(s)://host:port "
                               "(a tracking server), sqlite:///path/mlflow.db or postgresql://...", source)


def _shown(uri: str) -> str:
    """The URI without a password, for messages."""
    parts = urlsplit(uri)
    if parts.password:
        return uri.replace(f":{parts.password}@", ":***@")
    return repr(uri)


def _check_server(uri: str, field: str, source, timeout: float) -> None:
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout):
            return
    except urllib.error.HTTPError:
        return  # it answered (a proxy asking for credentials, a server without /health)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise SpecError(field, f"MLflow tracking server {_shown(uri)} does not answer within "
                               f"{timeout:g} s: {reason}", source) from None


def _check_sqlite(uri: str, field: str, source) -> None:
    path = uri.split("sqlite://", 1)[1]
    if path in ("", "/:memory:"):
        return
    db = Path(path[1:] if path.startswith("/") else path)
    db = db if db.is_absolute() else Path.cwd() / db
    if db.is_dir():
        raise SpecError(field, f"{db} is a directory, not a sqlite file", source)
    if db.is_file():
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=TRACKING_TIMEOUT_S) as conn:
                conn.execute("SELECT name FROM sqlite_master LIMIT 1").fetchall()
        except sqlite3.Error as exc:
            raise SpecError(field, f"{db} is not a usable sqlite database: {exc}", source) from None
    folder = db.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise SpecError(field, f"the MLflow database {db} cannot be written: {folder} is not a "
                               "writable folder", source)


def _check_database(uri: str, field: str, source, timeout: float) -> None:
    problem: list[str] = []

    def connect() -> None:
        try:
            import sqlalchemy

            with sqlalchemy.create_engine(uri).connect():
                pass
        except Exception as exc:  # noqa: BLE001 - a missing driver, a refused login: its first line
            problem.append(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)

    worker = threading.Thread(target=connect, daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        problem.append(f"no answer within {timeout:g} s")
    if problem:
        raise SpecError(field, f"MLflow database {_shown(uri)} cannot be reached: {problem[0]}", source)


# --------------------------------------------------------------------------- reports

def check_study_ran(spec: Spec, uri: str, field: str) -> None:
    """`sweep report` needs a study that has run: its plan.json under the storage path, and its
    experiment in the MLflow store (checked without creating either)."""
    from mlflow.tracking import MlflowClient

    from trainables import storage

    root = storage.join(spec.storage if storage.is_remote(spec.storage)
                        else Path(spec.storage).expanduser().absolute(), spec.name)
    if not storage.is_file(storage.join(root, "plan.json")):
        raise SpecError("", f"study '{spec.name}' has not run yet (no {storage.display(root)}/plan.json): "
                            f"run `sweep run {spec.source}` first", spec.source)
    if uri.startswith("sqlite:///") and not Path(uri.split("sqlite:///", 1)[1]).is_file():
        raise SpecError(field, f"no MLflow store at {uri.split('sqlite:///', 1)[1]}: did the study run "
                               "with another tracking URI?", spec.source)
    check_tracking(uri, field, spec.source)
    if MlflowClient(uri).get_experiment_by_name(spec.experiment) is None:
        raise SpecError(field, f"no MLflow experiment {spec.experiment!r} in {_shown(uri)}: did the "
                               "study run with another tracking URI?", spec.source)


def check_group_by(uri: str, experiment: str, group_by: str) -> None:
    """``--group-by`` names a param or tag that the study's job runs have (``name`` or
    ``xstilts.name``)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], f"tags.`{tag(Tag.KIND)}` = 'job'", max_results=50)
    known = sorted({k for r in runs for k in (*r.data.params, *r.data.tags) if not k.startswith("mlflow.")})
    if runs and group_by not in known and tag(group_by) not in known:
        raise SpecError("--group-by", f"{group_by!r} is neither a param nor a tag of the study's job "
                                      f"runs{did_you_mean(group_by, known)}")


# --------------------------------------------------------------------------- plan size

def plan_trials(plan, spec: Spec) -> int:
    """Trials a plan runs: each job's grid points (``num_samples`` for a searched job)."""
    total = 0
    for job in plan.jobs:
        space = job.hyperparameters if job.stage != "eval" else {}
        grids = [len(v["grid"]) for v in space.values() if isinstance(v, dict) and "grid" in v]
        sampled = any(isinstance(v, dict) and "grid" not in v for v in space.values())
        total += spec.search.num_samples if sampled else math.prod(grids)
    return total
