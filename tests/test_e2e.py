"""End to end through the real CLI, real Ray Tune and a real MLflow sqlite store."""
from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest

from tests.conftest import SWEEP, run_sweep, write_spec

pytestmark = pytest.mark.slow


def _runs(db: Path, study: str) -> list:
    client = mlflow.MlflowClient(f"sqlite:///{db}")
    exp = client.get_experiment_by_name(study)
    return client.search_runs([exp.experiment_id], max_results=1000)


def test_study_runs_records_and_reports(tmp_path, toy_root, small_model):
    """A study with a grid search, an eval-only target and one broken target: it diverges (FGM
    with an embedding perturbation of norm 1e30 turns its loss into NaN at step 2). Missing data,
    the broken target here before, is now refused before any training (tests/test_fail_fast.py)."""
    spec = write_spec(
        tmp_path / "study.yaml", toy_root, small_model,
        targets=[{"task": "toy_xnli", "languages": ["en", "xs"]},
                 {"task": "toy_pos", "languages": ["en", "xo"]},
                 {"task": "toy_tatoeba", "languages": ["xs", "xo"]}],
        hyperparameters={
            "intermediate": {"learning_rate": 5e-4, "epochs": 1, "max_length": 48},
            "target": {"learning_rate": [3e-4, 1e-3], "epochs": 1, "max_length": 48},
            "tasks": {"toy_pos": {"adversarial": "blowup"}},
        },
        adversarial={"blowup": {"method": "fgm", "epsilon": 1.0e30}},
        mlflow={"log_checkpoints": True},  # off by default; this test checks the uploaded copy
    )
    proc = run_sweep("run", str(spec), cwd=tmp_path)
    out = proc.stdout + proc.stderr
    # a failed trial never takes the sweep down: everything else finished, exit code says 1 failed
    assert proc.returncode == 1, out
    assert "5 jobs finished" in proc.stdout and "2 failed" in proc.stdout, out

    runs = _runs(tmp_path / "runs" / "mlflow.db", "e2e")
    parents = [r for r in runs if r.data.tags.get("xstilts.kind") == "study"]
    jobs = [r for r in runs if r.data.tags.get("xstilts.kind") == "job"]
    trials = [r for r in runs if r.data.tags.get("xstilts.kind") == "trial"]
    assert len(parents) == 1
    parent_id = parents[0].info.run_id
    plan = json.loads((tmp_path / "runs" / "e2e" / "plan.json").read_text())
    assert sorted(r.data.tags["xstilts.job_id"] for r in jobs) == sorted(j["id"] for j in plan["jobs"])
    assert all(r.data.tags["mlflow.parentRunId"] == parent_id for r in jobs)
    job_run_ids = {r.info.run_id for r in jobs}
    # the lr grid gives each xnli job two trials, logged as runs nested under the job run
    assert len(trials) == 2 * 2 and all(r.data.tags["mlflow.parentRunId"] in job_run_ids for r in trials)
    assert all(r.data.metrics["train/tokens_per_s"] > 0 for r in trials)  # per epoch, from the trial

    by_label = {r.info.run_name: r for r in jobs}
    assert set(by_label) == {"toy_chunk s1", "none→toy_xnli s1", "toy_chunk→toy_xnli s1", "none→toy_pos s1",
                             "toy_chunk→toy_pos s1", "none→toy_tatoeba s1", "toy_chunk→toy_tatoeba s1"}
    xnli = by_label["toy_chunk→toy_xnli s1"]
    assert xnli.info.status == "FINISHED"
    # the hardware the selected trial really used, at a glance in the runs table
    assert xnli.data.tags["xstilts.device"].startswith("cpu (") and xnli.data.tags["xstilts.precision"] == "fp32"
    for lang in ("en", "xs"):
        assert 0.0 <= xnli.data.metrics[f"toy_xnli/accuracy/{lang}"] <= 1.0
    avg = (xnli.data.metrics["toy_xnli/accuracy/en"] + xnli.data.metrics["toy_xnli/accuracy/xs"]) / 2
    assert xnli.data.metrics["toy_xnli/accuracy/avg"] == pytest.approx(avg)
    for key in ("model", "seed", "intermediate", "target", "languages", "hp.learning_rate.grid",
                "hp.epochs", "selected.learning_rate", "depends_on"):
        assert key in xnli.data.params, key
    assert xnli.data.params["depends_on"] == by_label["toy_chunk s1"].data.tags["xstilts.job_id"]
    assert {"xstilts.stage", "xstilts.seed", "xstilts.intermediate", "xstilts.target"} <= set(xnli.data.tags)
    tatoeba = by_label["toy_chunk→toy_tatoeba s1"]
    assert tatoeba.data.tags["xstilts.stage"] == "eval"
    assert {"toy_tatoeba/accuracy/xs", "toy_tatoeba/accuracy/xo", "toy_tatoeba/accuracy_xx_to_en/xs"} <= set(tatoeba.data.metrics)
    # checkpoints of trained jobs are MLflow artifacts, loadable as a plain HF encoder
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    files = {a.path for a in client.list_artifacts(by_label["toy_chunk s1"].info.run_id, "checkpoint")}
    assert "checkpoint/config.json" in files and "checkpoint/heads.pt" in files

    failed = by_label["none→toy_pos s1"]
    assert failed.info.status == "FAILED"
    assert failed.data.tags["xstilts.error"].startswith("NonFiniteError: loss became nan at step")

    report = (tmp_path / "runs" / "e2e" / "report.md").read_text()
    assert "| none |" in report and "| toy_chunk |" in report and "NonFiniteError: loss became nan" in report
    assert report in proc.stdout
    # toy_chunk→toy_pos failed: a re-run needs the intermediate checkpoint, so it is kept
    inter_id = by_label["toy_chunk s1"].data.tags["xstilts.job_id"]
    assert list((tmp_path / "runs" / "e2e" / "jobs" / inter_id / "trials").glob("*/model/config.json"))


def test_intermediate_checkpoints_released_then_retrained_when_needed(tmp_path, toy_root, small_model):
    hp = {"intermediate": {"learning_rate": 5e-4, "epochs": 1, "max_length": 32},
          "target": {"learning_rate": 5e-4, "epochs": 1, "max_length": 32}}
    spec = write_spec(tmp_path / "study.yaml", toy_root, small_model, intermediate=["toy_chunk"],
                      targets=[{"task": "toy_tatoeba", "languages": ["xs"]}], hyperparameters=hp)
    proc = run_sweep("run", str(spec), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    plan = json.loads((tmp_path / "runs" / "e2e" / "plan.json").read_text())
    (inter,) = [j for j in plan["jobs"] if j["stage"] == "intermediate"]
    trials = tmp_path / "runs" / "e2e" / "jobs" / inter["id"] / "trials"
    assert not list(trials.glob("*/model")) and (trials.parent / "job.json").is_file()

    # the study grows a target that starts from the released intermediate job: it is retrained
    spec = write_spec(tmp_path / "study.yaml", toy_root, small_model, intermediate=["toy_chunk"],
                      targets=[{"task": "toy_tatoeba", "languages": ["xs"]},
                               {"task": "toy_xnli", "languages": ["xs"]}],
                      hyperparameters=hp, keep_intermediate=True)
    proc = run_sweep("run", str(spec), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "is trained again" in proc.stderr
    assert list(trials.glob("*/model/config.json"))                    # kept this time
    jobs = [r for r in _runs(tmp_path / "runs" / "mlflow.db", "e2e") if r.data.tags.get("xstilts.kind") == "job"]
    assert sorted(r.info.run_name for r in jobs) == ["toy_chunk s1", "toy_chunk→toy_tatoeba s1",
                                                     "toy_chunk→toy_xnli s1"]   # no duplicate runs


def test_run_on_an_existing_ray_cluster_with_address(tmp_path, toy_root, small_model):
    """`--address` joins a cluster started with `ray start --head` (token authentication on)."""
    import socket
    import subprocess

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ray_bin = str(Path(SWEEP).parent / "ray")
    started = subprocess.run([ray_bin, "start", "--head", f"--port={port}", "--num-cpus=2",
                              "--include-dashboard=false", "--disable-usage-stats"],
                             capture_output=True, text=True, timeout=120)
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        spec = write_spec(tmp_path / "study.yaml", toy_root, small_model, intermediate=["none"],
                          targets=[{"task": "toy_tatoeba", "languages": ["xs"]}])
        proc = run_sweep("run", str(spec), "--address", f"127.0.0.1:{port}", cwd=tmp_path)
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, out
        assert "Connecting to existing Ray cluster" in out and "Started a local Ray instance" not in out
        assert "1 jobs finished" in proc.stdout
    finally:
        subprocess.run([ray_bin, "stop", "--force"], capture_output=True, timeout=120)
