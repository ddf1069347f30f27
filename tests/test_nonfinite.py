"""Nothing wrong recorded as right: a model with one NaN weight trains to a NaN loss, and that is
a failed job with its reason, never a score in the table (issue 14, item 1)."""
from __future__ import annotations

import shutil

import mlflow
import pytest
from tests.conftest import run_sweep, write_spec


def _nan_model(tmp_path, small_model):
    from safetensors.torch import load_file, save_file

    model = tmp_path / "nan-model"
    shutil.copytree(small_model, model)
    weights = model / "model.safetensors"
    state = load_file(str(weights))
    name = next(k for k in state if k.endswith("attention.self.query.weight"))
    state[name][0, 0] = float("nan")                      # one weight of the first layer
    save_file(state, str(weights), metadata={"format": "pt"})
    return model


def test_a_nan_loss_fails_the_trial_with_step_and_epoch(tmp_path, toy_root, small_model):
    from trainables.train import NonFiniteError
    from trainables.trial import run_trial

    config = {"trial_id": "t", "job_id": "j", "stage": "target", "model": str(_nan_model(tmp_path, small_model)),
              "tasks": ["toy_xnli"], "languages": ["en"], "seed": 1, "output_dir": str(tmp_path / "out"),
              "task_options": {"toy_xnli": {"data_dir": str(toy_root)}}, "num_threads": 1,
              "hparams": dict(learning_rate=1e-3, batch_size=16, eval_batch_size=64, epochs=1, max_length=48,
                              warmup_ratio=0.1, weight_decay=0.01, max_grad_norm=1.0, grad_accumulation=1,
                              max_steps=None)}
    with pytest.raises(NonFiniteError) as err:
        run_trial(config)
    assert str(err.value) == "loss became nan at step 1 (epoch 1)"
    assert (tmp_path / "out" / "error.txt").read_text() == "NonFiniteError: loss became nan at step 1 (epoch 1)\n"
    assert not (tmp_path / "out" / "result.json").exists()


@pytest.mark.slow
def test_a_nan_job_is_failed_with_its_reason_and_has_no_score(tmp_path, toy_root, small_model):
    spec = write_spec(tmp_path / "study.yaml", toy_root, _nan_model(tmp_path, small_model), intermediate=["none"],
                      targets=[{"task": "toy_xnli", "languages": ["en", "xs"]}], max_failures=2,
                      hyperparameters={"target": {"learning_rate": 5e-4, "epochs": 1, "max_length": 48,
                                                  "batch_size": 32}})
    proc = run_sweep("run", str(spec), cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Trial task failed" not in proc.stdout + proc.stderr        # not retried: it would diverge again
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("e2e")
    (run,) = client.search_runs([experiment.experiment_id], "tags.`xstilts.kind` = 'job'")
    assert run.data.tags["xstilts.status"] == "failed"
    assert "loss became nan at step 1 (epoch 1)" in run.data.tags["xstilts.error"]
    assert not [k for k in run.data.metrics if k.startswith("toy_xnli/")]   # no score reached MLflow
    report = (tmp_path / "runs" / "e2e" / "report.md").read_text()
    assert "| none | – | – |" in report                                  # an empty cell, not a number
    failed = report[report.index("## Failed jobs (1)"):]
    assert "NonFiniteError: loss became nan at step 1 (epoch 1)" in failed
