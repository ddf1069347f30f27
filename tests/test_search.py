"""Hyperparameter search inside a job cell: Optuna through Ray Tune, with ASHA early stopping."""
from __future__ import annotations

import json

import mlflow
import pytest

from tests.conftest import run_sweep, write_spec

pytestmark = pytest.mark.slow


def test_optuna_search_with_asha_selects_the_best_trial(tmp_path, toy_root, small_model):
    spec = write_spec(
        tmp_path / "study.yaml", toy_root, small_model,
        intermediate=["none"], targets=[{"task": "toy_xnli", "languages": ["en", "xs"]}],
        hyperparameters={"target": {
            "learning_rate": {"distribution": "loguniform", "low": 1e-4, "high": 3e-3},
            "batch_size": [16, 32], "epochs": 2, "max_length": 48}},
        search={"algorithm": "optuna", "num_samples": 3, "scheduler": "asha", "grace_period": 1,
                "max_concurrent": 2},
    )
    proc = run_sweep("run", str(spec), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    (job_dir,) = (tmp_path / "runs" / "e2e" / "jobs").iterdir()
    record = json.loads((job_dir / "job.json").read_text())
    trials = [json.loads(p.read_text()) for p in job_dir.glob("trials/*/result.json")]
    assert 1 <= len(trials) <= 3
    lrs = {t["hparams"]["learning_rate"] for t in trials}
    assert all(1e-4 <= lr <= 3e-3 for lr in lrs) and len(lrs) == len(trials)  # sampled, not fixed
    assert all(t["hparams"]["batch_size"] in (16, 32) for t in trials)
    top = max(t["metrics"]["dev/score"] for t in trials)
    (best,) = [t for t in trials if t["trial_id"] == record["best_trial"]]
    assert best["metrics"]["dev/score"] == top  # the selected trial is a best one (ties possible)
    assert record["hparams"] == best["hparams"]

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("e2e")
    runs = client.search_runs([exp.experiment_id], max_results=100)
    (job,) = [r for r in runs if r.data.tags.get("xstilts.kind") == "job"]
    nested = [r for r in runs if r.data.tags.get("xstilts.kind") == "trial"]
    assert len(nested) == 3 and all(r.data.tags["mlflow.parentRunId"] == job.info.run_id for r in nested)
    assert job.data.tags["xstilts.best_trial"] == best["trial_id"]
    assert float(job.data.params["selected.learning_rate"]) == pytest.approx(best["hparams"]["learning_rate"])
    assert job.data.metrics["toy_xnli/accuracy/avg"] == pytest.approx(best["metrics"]["toy_xnli/accuracy/avg"])
