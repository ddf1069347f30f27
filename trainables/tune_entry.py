"""The Ray Tune function trainable: unpack the trial config, run it, forward reports to Tune.

Grid trials carry their complete ``TrialConfig`` under ``config["trial"]``; searched trials
(Optuna) carry the job's fixed part there and the sampled values under ``config["hp"]``, and
take their id and output folder from Tune's trial id.

A trial that fails deterministically (``trainables.failures``: missing or corrupt data, a bad
option) ends without an exception, with its ``error.txt``, so Ray does not retry it; other
failures (a lost node, out of memory) go to Ray, which retries them ``max_failures`` times.
"""
from __future__ import annotations

import functools
import logging

from ray import tune

from trainables import storage
from trainables.failures import is_deterministic
from trainables.records import CURVE_FILE, ERROR_FILE, record_epoch

log = logging.getLogger(__name__)


def fail_fast(trainable):
    """Wrap a function trainable so that a deterministic failure is not retried by Ray: the
    error is logged in one line and the trial ends (``on_failure(config, exc)`` first)."""

    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(config: dict):
            try:
                return fn(config)
            except Exception as exc:
                if not is_deterministic(exc):
                    raise
                line = (f"{type(exc).__name__}: {exc}".splitlines() or [type(exc).__name__])[0]
                log.error("trial failed, not retried (a retry gives the same error): %s", line)
                if trainable is not None:
                    trainable(config, line)
                return None
        return wrapper
    return decorate


def _keep_error(config: dict, line: str) -> None:
    """``error.txt`` says why (``run_trial`` wrote it, unless the error came before it could)."""
    output_dir = config["trial"]["output_dir"]
    if config.get("hp"):  # a searched trial's folder is named after its Tune id
        output_dir = storage.join(output_dir, tune.get_context().get_trial_id())
    location = storage.join(output_dir, ERROR_FILE)
    if not storage.is_file(location):
        if not storage.is_remote(output_dir):
            storage.makedirs(output_dir)
        storage.write_text(location, line + "\n")


@fail_fast(_keep_error)
def tune_trial(config: dict) -> None:
    from trainables.trial import run_trial  # torch & co. load in the worker, not the driver

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    trial = dict(config["trial"])
    if config.get("hp"):
        trial["hparams"] = {**trial.get("hparams", {}), **config["hp"]}
        trial_id = tune.get_context().get_trial_id()
        trial["trial_id"] = f"{trial['job_id']}-{trial_id}"
        trial["output_dir"] = str(storage.join(trial["output_dir"], trial_id))  # a path or a URI
    run_trial(trial, report=lambda metrics: _report(trial, metrics))


def _report(trial: dict, metrics: dict) -> None:
    if metrics.get("epoch") is not None and not metrics.get("done"):
        try:
            record_epoch(trial["output_dir"], metrics)
        except OSError as exc:  # a full disk: the report still goes to Tune
            log.warning("could not add epoch %s to %s: %s", metrics["epoch"], CURVE_FILE, exc)
    tune.report(_with_trial_id(metrics, trial["trial_id"]))


def _with_trial_id(metrics: dict, trial_id: str) -> dict:
    return {**metrics, "trial_key": trial_id}
