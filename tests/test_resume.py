"""Resume: an interrupted sweep, run again, re-runs nothing that finished and ends as if uninterrupted."""
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


def _job_files(storage: Path) -> dict[str, tuple[int, str]]:
    return {p.parent.name: (p.stat().st_mtime_ns, p.read_text())
            for p in (storage / "e2e" / "jobs").glob("*/job.json")}


def _trial_results(storage: Path) -> dict[str, tuple[int, str]]:
    return {str(p.parent.relative_to(storage)): (p.stat().st_mtime_ns, p.read_text())
            for p in (storage / "e2e" / "jobs").glob("*/trials/*/result.json")}


def _metrics(storage: Path) -> dict[str, dict]:
    return {job_id: json.loads(text)["metrics"] for job_id, (_, text) in _job_files(storage).items()}


def _spec(tmp: Path, toy_root: Path, model: Path) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    return write_spec(tmp / "study.yaml", toy_root, model, seeds=[1, 2])


def test_interrupted_sweep_resumes_without_rerunning_finished_jobs(tmp_path, toy_root, small_model):
    reference = _spec(tmp_path / "reference", toy_root, small_model)
    assert run_sweep("run", str(reference), cwd=reference.parent).returncode == 0

    spec = _spec(tmp_path / "interrupted", toy_root, small_model)
    storage = spec.parent / "runs"
    proc = subprocess.Popen([SWEEP, "run", str(spec)], cwd=spec.parent, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, "RAY_DEDUP_LOGS": "0"})
    deadline = time.time() + 400
    while time.time() < deadline and proc.poll() is None:
        finished = _job_files(storage)
        if any(k.startswith(("t-", "e-")) for k in finished):  # some target/eval jobs are done
            break
        time.sleep(0.5)
    assert proc.poll() is None, "the sweep ended before it could be interrupted:\n" + proc.stdout.read()
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 130, output

    before_jobs = _job_files(storage)
    before_trials = _trial_results(storage)
    plan = json.loads((storage / "e2e" / "plan.json").read_text())
    assert 0 < len(before_jobs) < len(plan["jobs"]), "interrupt a sweep in the middle"

    again = run_sweep("run", str(spec), cwd=spec.parent)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"({len(before_jobs)} already done before this run)" in again.stdout

    after_jobs = _job_files(storage)
    assert set(after_jobs) == {j["id"] for j in plan["jobs"]}
    for job_id, record in before_jobs.items():      # finished jobs untouched
        assert after_jobs[job_id] == record, job_id
    after_trials = _trial_results(storage)
    for trial, record in before_trials.items():     # finished trials never trained again
        assert after_trials[trial] == record, trial

    # one MLflow child run per job, even for the job that was cut off and resumed
    client = mlflow.MlflowClient(f"sqlite:///{storage / 'mlflow.db'}")
    exp = client.get_experiment_by_name("e2e")
    runs = client.search_runs([exp.experiment_id], "tags.`xstilts.kind` = 'job'", max_results=1000)
    ids = [r.data.tags["xstilts.job_id"] for r in runs]
    assert sorted(ids) == sorted(set(ids)) and len(ids) == len(plan["jobs"])
    assert all(r.info.status == "FINISHED" for r in runs)

    # the same numbers as the run that was never interrupted
    expected = _metrics(reference.parent / "runs")
    got = _metrics(storage)
    assert set(got) == set(expected)
    for job_id in expected:
        assert got[job_id] == pytest.approx(expected[job_id], abs=1e-6), job_id
