"""``sweep submit`` against a real ``ray start --head`` on this machine (its own temp dir,
ports and token): the driver runs as a Ray Job, ``submit`` returns at once with the job id,
``sweep status`` / ``sweep logs`` follow the job to its end, and the study's MLflow runs exist.
The head is stopped by ending its own processes only (tests/ray_local.py), never ``ray stop``.
"""
from __future__ import annotations

import subprocess
import time

import mlflow
import pytest

from tests import ray_local
from tests.conftest import SWEEP, write_spec

pytestmark = pytest.mark.slow  # a Ray head and one tiny study: about a minute


@pytest.fixture(scope="module")
def head():
    temp_dir = ray_local.short_temp_dir("xsub")
    env = ray_local.token_env()
    try:
        yield {**ray_local.start_head(temp_dir, env), "env": env}
    finally:
        ray_local.stop_cluster(temp_dir)
        ray_local.remove(temp_dir)


def _sweep(*args: str, env: dict, cwd, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([SWEEP, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def test_submit_runs_the_driver_as_a_ray_job(head, tmp_path, toy_root, small_model):
    spec = write_spec(tmp_path / "study.yaml", toy_root, small_model, name="submitted",
                      intermediate=["none"], targets=[{"task": "toy_xnli", "languages": ["en", "xs"]}],
                      hyperparameters={"target": {"learning_rate": 5e-4, "epochs": 1, "max_length": 32,
                                                  "batch_size": 32}})
    env, address = head["env"], head["job_server"]
    started = time.monotonic()
    proc = _sweep("submit", "study.yaml", "--address", address, "--cwd", str(tmp_path), env=env, cwd=tmp_path)
    submit_s = time.monotonic() - started
    assert proc.returncode == 0, proc.stdout + proc.stderr
    job_id = proc.stdout.strip().splitlines()[-1]
    assert job_id.startswith("sweep-submitted-"), proc.stdout
    # `submit` hands the driver over and returns: it does not wait for the study
    assert submit_s < 30, f"sweep submit took {submit_s:.1f} s"

    deadline, state = time.monotonic() + 420, ""
    while time.monotonic() < deadline:
        status = _sweep("status", "--job", job_id, "--address", address, env=env, cwd=tmp_path)
        state = status.stdout.splitlines()[0] if status.stdout else status.stderr
        if any(s in state for s in ("SUCCEEDED", "FAILED", "STOPPED")):
            break
        time.sleep(3)
    logs = _sweep("logs", job_id, "--address", address, env=env, cwd=tmp_path)
    assert state == f"job {job_id}: SUCCEEDED", f"{state}\n{logs.stdout[-4000:]}"
    assert status.returncode == 0 and "study:   submitted" in status.stdout
    assert f"cd {tmp_path} && exec sweep run study.yaml --address auto" in status.stdout

    # the driver's own output, through the job server
    assert logs.returncode == 0
    assert "study submitted: 1 jobs finished" in logs.stdout, logs.stdout[-4000:]
    follow = _sweep("logs", job_id, "--follow", "--address", address, env=env, cwd=tmp_path)
    assert follow.returncode == 0 and "study submitted: 1 jobs finished" in follow.stdout

    # the listing shows it; the study's records are where the spec says
    listing = _sweep("status", "--address", address, env=env, cwd=tmp_path)
    assert job_id in listing.stdout and "SUCCEEDED" in listing.stdout, listing.stdout
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("submitted")
    runs = client.search_runs([exp.experiment_id], "tags.`xstilts.kind` = 'job'")
    assert [r.info.status for r in runs] == ["FINISHED"]
    print(f"\nsweep submit returned in {submit_s:.1f} s")


def test_unknown_job_and_unreachable_server_are_one_line_errors(head, tmp_path):
    env, address = head["env"], head["job_server"]
    proc = _sweep("status", "--job", "sweep-nope-1", "--address", address, env=env, cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0, proc.stderr
    assert "no job 'sweep-nope-1'" in proc.stderr
    proc = _sweep("logs", "sweep-nope-1", "--address", address, env=env, cwd=tmp_path)
    assert proc.returncode == 2 and "no job 'sweep-nope-1'" in proc.stderr
    port = ray_local.free_port()
    proc = _sweep("status", "--address", f"http://127.0.0.1:{port}", env=env, cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.startswith("error: no Ray job server at"), proc.stderr
    assert proc.stderr.strip().count("\n") == 0, proc.stderr


def test_submit_checks_the_spec_before_anything_reaches_the_cluster(head, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nmodel: tiny\nresources: {placement: packed}\n")
    proc = _sweep("submit", str(bad), "--address", head["job_server"], env=head["env"], cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.startswith("error: "), proc.stderr
    assert proc.stderr.strip().count("\n") == 0
