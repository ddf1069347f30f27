"""The DAG scheduler on real sweeps: no stage barrier, searches side by side, resumed searches."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import mlflow
import pytest

from tests.conftest import SWEEP, run_sweep, write_spec

pytestmark = pytest.mark.slow


def _intervals(job_dir: Path) -> list[tuple[float, float]]:
    """(start, end) of each finished trial: result.json's time, less the trial's own elapsed_s."""
    out = []
    for path in job_dir.glob("trials/*/result.json"):
        end = path.stat().st_mtime
        out.append((end - json.loads(path.read_text())["elapsed_s"], end))
    return out


def test_targets_start_as_their_inputs_exist(tmp_path, toy_root, small_model):
    spec = write_spec(tmp_path / "study.yaml", toy_root, small_model, targets=[{"task": "toy_xnli", "languages": ["en", "xs"]}],
                      hyperparameters={"intermediate": {"learning_rate": 5e-4, "epochs": 4, "max_length": 48,
                                                        "batch_size": 32},
                                       "target": {"learning_rate": 5e-4, "epochs": 1, "max_length": 48,
                                                  "batch_size": 32}})
    proc = run_sweep("run", str(spec), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    jobs = tmp_path / "runs" / "e2e" / "jobs"
    plan = json.loads((tmp_path / "runs" / "e2e" / "plan.json").read_text())
    inter = [j for j in plan["jobs"] if j["stage"] == "intermediate"]
    baseline = [j for j in plan["jobs"] if j["stage"] == "target" and not j["depends_on"]]
    dependent = [j for j in plan["jobs"] if j["stage"] == "target" and j["depends_on"]]
    last_inter_end = max((jobs / j["id"] / "job.json").stat().st_mtime for j in inter)
    (base_start, _), = _intervals(jobs / baseline[0]["id"])
    assert base_start < last_inter_end       # no stage barrier: the baseline ran beside it
    for job in dependent:
        ready = (jobs / job["depends_on"][0] / "job.json").stat().st_mtime
        (start, _), = _intervals(jobs / job["id"])
        assert ready <= start + 1 and start - ready < 20, (ready, start)
    # lazy records: a job's MLflow run starts with its first trial, not with the study
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("e2e")
    runs = {r.data.tags["xstilts.job_id"]: r for r in
            client.search_runs([exp.experiment_id], "tags.`xstilts.kind` = 'job'", max_results=100)}
    for job in dependent:
        assert runs[job["id"]].info.start_time / 1000 >= (jobs / job["depends_on"][0] / "job.json").stat().st_mtime - 1


def _results(storage: Path) -> dict[str, tuple[int, str]]:
    return {str(p.relative_to(storage)): (p.stat().st_mtime_ns, p.read_text())
            for p in storage.glob("e2e/jobs/*/trials/*/result.json")}


def test_searches_run_side_by_side_and_an_interrupted_search_continues(tmp_path, toy_root, small_model):
    spec = write_spec(
        tmp_path / "study.yaml", toy_root, small_model, intermediate=["none"],
        targets=[{"task": "toy_xnli", "languages": ["en", "xs"]}, {"task": "toy_pos", "languages": ["en", "xs"]}],
        hyperparameters={"target": {"learning_rate": {"distribution": "loguniform", "low": 1e-4, "high": 3e-3},
                                    "epochs": 2, "max_length": 48, "batch_size": 32}},
        search={"algorithm": "optuna", "num_samples": 3, "max_concurrent": 1})
    storage = tmp_path / "runs"
    proc = subprocess.Popen([SWEEP, "run", str(spec)], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, "RAY_DEDUP_LOGS": "0"})
    deadline = time.time() + 400
    while time.time() < deadline and proc.poll() is None and len(_results(storage)) < 2:
        time.sleep(0.5)
    assert proc.poll() is None, "the sweep ended before it could be interrupted:\n" + proc.stdout.read()
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 130, output
    before = _results(storage)
    assert 2 <= len(before) < 6

    again = run_sweep("run", str(spec), cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    after = _results(storage)
    for trial, record in before.items():        # kept, never trained again
        assert after[trial] == record, trial
    job_dirs = sorted((storage / "e2e" / "jobs").iterdir())
    assert len(job_dirs) == 2
    for job_dir in job_dirs:                    # exactly num_samples trials per job, in all
        assert len(list(job_dir.glob("trials/*/result.json"))) == 3, job_dir
        assert len(json.loads((job_dir / "search.json").read_text())["trials"]) == 3
    # the two searches ran at the same time (each one trial at a time: max_concurrent 1)
    a, b = (_intervals(d) for d in job_dirs)
    assert any(s1 < e2 and s2 < e1 for s1, e1 in a for s2, e2 in b)
    client = mlflow.MlflowClient(f"sqlite:///{storage / 'mlflow.db'}")
    exp = client.get_experiment_by_name("e2e")
    runs = client.search_runs([exp.experiment_id], max_results=200)
    assert sum(r.data.tags.get("xstilts.kind") == "job" for r in runs) == 2
    assert sum(r.data.tags.get("xstilts.kind") == "trial" for r in runs) == 6
