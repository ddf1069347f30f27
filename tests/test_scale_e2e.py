"""Scale paths through the real CLI and Ray Tune: a study trained under DeepSpeed ZeRO (on CPU,
DS_ACCELERATOR=cpu) and a study whose trials run on two Ray Train workers (DDP over gloo)."""
from __future__ import annotations

import json

import mlflow
import pytest
from transformers import AutoModel

from tests.conftest import run_sweep, write_spec

pytestmark = pytest.mark.slow

HP = {"intermediate": {"learning_rate": 5e-4, "epochs": 1, "max_length": 32, "batch_size": 16},
      "target": {"learning_rate": 5e-4, "epochs": 2, "max_length": 32, "batch_size": 16}}


def _job_runs(tmp_path) -> dict:
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("e2e")
    return {r.info.run_name: r for r in client.search_runs([exp.experiment_id])
            if r.data.tags.get("xstilts.kind") == "job"}


@pytest.mark.parametrize("stage", [2, 3])
def test_study_under_deepspeed_zero(tmp_path, toy_root, small_model, stage):
    spec = write_spec(tmp_path / "study.yaml", toy_root, small_model, intermediate=["toy_chunk"],
                      targets=[{"task": "toy_xnli", "languages": ["en", "xs"]}], hyperparameters=HP,
                      deepspeed={"stage": stage}, precision="fp32", keep_intermediate=True)
    proc = run_sweep("run", str(spec), cwd=tmp_path, env={"DS_ACCELERATOR": "cpu"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    runs = _job_runs(tmp_path)
    target = runs["toy_chunk→toy_xnli s1"]
    assert 0.0 <= target.data.metrics["toy_xnli/accuracy/xs"] <= 1.0
    assert target.data.params["settings.deepspeed.stage"] == str(stage)
    # the intermediate checkpoint written from the ZeRO engine is a plain HF encoder
    plan = json.loads((tmp_path / "runs" / "e2e" / "plan.json").read_text())
    inter = next(j for j in plan["jobs"] if j["stage"] == "intermediate")
    record = json.loads((tmp_path / "runs" / "e2e" / "jobs" / inter["id"] / "job.json").read_text())
    encoder = AutoModel.from_pretrained(record["model_dir"])
    assert encoder.config.num_hidden_layers == 2


def test_study_with_two_ray_train_workers_per_trial(tmp_path, toy_root, small_model):
    spec = write_spec(tmp_path / "study.yaml", toy_root, small_model, intermediate=["none"],
                      targets=[{"task": "toy_xnli", "languages": ["en", "xs"]}], hyperparameters=HP,
                      resources={"cpu": 0.5, "workers": 2})
    proc = run_sweep("run", str(spec), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run = _job_runs(tmp_path)["none→toy_xnli s1"]
    assert 0.0 <= run.data.metrics["toy_xnli/accuracy/xs"] <= 1.0
    assert run.data.params["settings.workers"] == "2"
    history = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}").get_metric_history(
        run.info.run_id, "dev/score")
    # rank 0's reports only: epochs 1 and 2 and the trial's final report (3), where the job's
    # summary goes too (not again at step 0); reports of both ranks would double the epoch entries
    assert sorted(m.step for m in history) == [1, 2, 3]
