"""The Ray Tune function trainable: unpack the trial config, run it, forward reports to Tune.

Grid trials carry their complete ``TrialConfig`` under ``config["trial"]``; searched trials
(Optuna) carry the job's fixed part there and the sampled values under ``config["hp"]``, and
take their id and output folder from Tune's trial id.
"""
from __future__ import annotations

import logging

from ray import tune

from trainables import storage


def tune_trial(config: dict) -> None:
    from trainables.trial import run_trial  # torch & co. load in the worker, not the driver

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    trial = dict(config["trial"])
    if config.get("hp"):
        trial["hparams"] = {**trial.get("hparams", {}), **config["hp"]}
        trial_id = tune.get_context().get_trial_id()
        trial["trial_id"] = f"{trial['job_id']}-{trial_id}"
        trial["output_dir"] = str(storage.join(trial["output_dir"], trial_id))  # a path or a URI
    run_trial(trial, report=lambda metrics: tune.report(_with_trial_id(metrics, trial["trial_id"])))


def _with_trial_id(metrics: dict, trial_id: str) -> dict:
    return {**metrics, "trial_key": trial_id}
