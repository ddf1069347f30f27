"""Real `sweep run`s on the toy study (issue 14, items 2-5 and 7): a second run refuses while the
first holds the study, Ctrl-C leaves no MLflow run RUNNING, a resumed trial's curves continue at
the trial's own epochs, damaged records are redone to the same numbers, and a full disk is one
line and exit 1.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest

from tests.conftest import SWEEP, run_sweep, write_spec

pytestmark = pytest.mark.slow

TARGET = [{"task": "toy_xnli", "languages": ["en", "xs"]}]


def _spec(tmp: Path, toy_root, model, epochs: int = 2, **fields) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    hp = {"intermediate": {"epochs": 1}, "target": {"learning_rate": 5e-4, "epochs": epochs,
                                                     "max_length": 48, "batch_size": 32}}
    return write_spec(tmp / "study.yaml", toy_root, model, intermediate=["none"], targets=TARGET,
                      hyperparameters=hp, **fields)


def _client(storage: Path) -> mlflow.MlflowClient:
    return mlflow.MlflowClient(f"sqlite:///{storage / 'mlflow.db'}")


def _runs(storage: Path, kind: str = "job") -> list:
    client = _client(storage)
    exp = client.get_experiment_by_name("e2e")
    return client.search_runs([exp.experiment_id], f"tags.`xstilts.kind` = '{kind}'", max_results=100)


def _job_records(storage: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in (storage / "e2e" / "jobs").glob("*/job.json")}


def _error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("error:")]


def test_one_writer_ctrl_c_killed_and_continuous_curves(tmp_path, toy_root, small_model):
    spec = _spec(tmp_path, toy_root, small_model, epochs=8)
    storage = tmp_path / "runs"
    first = subprocess.Popen([SWEEP, "run", str(spec)], cwd=tmp_path, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True,
                             env={**os.environ, "RAY_DEDUP_LOGS": "0", "MLFLOW_TRACKING_URI": ""})
    lease = storage / "e2e" / "lease.json"
    deadline = time.time() + 120
    while time.time() < deadline and first.poll() is None and not lease.exists():
        time.sleep(0.1)
    assert first.poll() is None and lease.exists(), "the first run took no lease"

    second = run_sweep("run", str(spec), cwd=tmp_path)  # while the first one runs
    assert second.returncode == 2, second.stdout + second.stderr
    (line,) = _error_lines(second.stderr)
    assert f"is being run by host {os.uname().nodename} pid {first.pid}" in line

    # Ctrl-C once the trial has finished an epoch, before it is done
    deadline = time.time() + 400
    while time.time() < deadline and first.poll() is None:
        if any(storage.glob("e2e/jobs/*/trials/*/resume/state.pt")):
            break
        time.sleep(0.1)
    assert first.poll() is None, "the run ended before it could be interrupted:\n" + first.stdout.read()
    first.send_signal(signal.SIGINT)
    output, _ = first.communicate(timeout=300)
    assert first.returncode == 130, output
    assert not lease.exists()
    runs = _runs(storage)
    assert runs and all(r.info.status == "KILLED" for r in runs), [r.info.status for r in runs]
    parent = _runs(storage, "study")[0]
    assert parent.info.status == "KILLED"
    epochs_before = {int(m.step) for m in _client(storage).get_metric_history(runs[0].info.run_id, "epoch")}
    assert epochs_before and max(epochs_before) < 8, output

    again = run_sweep("run", str(spec), cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    (run,) = _runs(storage)
    assert run.info.status == "FINISHED"
    client = _client(storage)
    epochs = client.get_metric_history(run.info.run_id, "epoch")
    # one point per epoch, at the trial's own epoch: the resumed part continues, no gap, no repeat
    assert sorted((int(m.step), m.value) for m in epochs) == [(e, float(e)) for e in range(1, 9)]
    losses = client.get_metric_history(run.info.run_id, "train/loss")
    assert sorted(int(m.step) for m in losses) == list(range(1, 9))
    record = next(iter(_job_records(storage).values()))
    trial = json.loads(next(storage.glob("e2e/jobs/*/trials/*/result.json")).read_text())
    # it resumed; epochs whose state was saved but whose report the Ctrl-C cut off came from curve.json
    assert trial["resumed_from_epoch"] >= max(epochs_before) >= 1
    assert record["metrics"]["toy_xnli/accuracy/xs"] == run.data.metrics["toy_xnli/accuracy/xs"]


FULL_DISK = """
import errno, sys
from pathlib import Path
from trainables import storage

real = storage.write_text

def full(location, text):  # the disk fills up while job.json is written
    if str(location).endswith("job.json"):
        Path(str(location) + ".tmp").write_text(text[: len(text) // 2])
        raise OSError(errno.ENOSPC, "No space left on device", str(location))
    return real(location, text)

storage.write_text = full
from sweep.cli import main
sys.exit(main(["run", sys.argv[1]]))
"""


def test_full_disk_then_damaged_records_heal_to_the_same_numbers(tmp_path, toy_root, small_model):
    spec = _spec(tmp_path, toy_root, small_model)
    storage = tmp_path / "runs"
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    full = subprocess.run([sys.executable, "-c", FULL_DISK, str(spec)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600, env={**env, "RAY_DEDUP_LOGS": "0"})
    assert full.returncode == 1, full.stdout + full.stderr
    assert "Traceback" not in full.stdout + full.stderr
    (line,) = _error_lines(full.stderr)
    assert "no space left on device" in line and "run the same command again" in line
    (run,) = _runs(storage)
    assert run.data.tags["xstilts.status"] == "failed"
    assert run.data.tags["xstilts.error"].startswith("no space left on device: could not write")
    assert not _job_records(storage)

    # space is back: the same command records the job from its trial's result, without training
    healed = run_sweep("run", str(spec), cwd=tmp_path)
    assert healed.returncode == 0, healed.stdout + healed.stderr
    assert "leftover *.tmp" in healed.stderr
    assert not list(storage.glob("e2e/**/*.tmp"))
    (job_id, record), = _job_records(storage).items()
    result_file = next(storage.glob("e2e/jobs/*/trials/*/result.json"))
    reference = json.loads(result_file.read_text())["metrics"]

    # damaged records: an empty job.json, a truncated result.json and plan.json, a stray .tmp
    (storage / "e2e" / "jobs" / job_id / "job.json").write_text("")
    result_file.write_text(result_file.read_text()[:40])
    (storage / "e2e" / "plan.json").write_text('{"jobs": [')
    (result_file.parent / "model.tmp").mkdir()
    redone = run_sweep("run", str(spec), cwd=tmp_path)
    assert redone.returncode == 0, redone.stdout + redone.stderr
    log = redone.stderr
    assert "Traceback" not in log
    assert f"jobs/{job_id}/job.json is damaged (empty): job {job_id}" in log
    assert f"{result_file} is damaged (not JSON" in log and "the trial runs again" in log
    assert "plan.json is damaged (not JSON" in log
    assert log.count("is damaged") == 3  # each one named once
    assert json.loads(result_file.read_text())["metrics"] == pytest.approx(reference, abs=1e-9)
    assert _job_records(storage)[job_id]["metrics"] == pytest.approx(record["metrics"], abs=1e-9)

    # the report: an unknown --group-by is one line
    bad = run_sweep("report", str(spec), "--group-by", "seeed", "--no-figures", cwd=tmp_path)
    assert bad.returncode == 2, bad.stdout + bad.stderr
    (line,) = _error_lines(bad.stderr)
    assert "--group-by: 'seeed' is neither a param nor a tag" in line and "did you mean 'seed'" in line


def _mount_tmpfs(path: Path, size: str) -> bool:
    if os.geteuid() != 0:
        return False
    path.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True).returncode == 0


def test_a_real_full_disk_is_one_line_and_exit_1_then_resumes(tmp_path, toy_root, small_model):
    """Storage on a 2 MB tmpfs: the trial's checkpoint does not fit. Needs root (mount)."""
    storage = tmp_path / "runs"
    if not _mount_tmpfs(storage, "2000k"):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        spec = _spec(tmp_path, toy_root, small_model)
        full = run_sweep("run", str(spec), cwd=tmp_path)
        assert full.returncode == 1, full.stdout + full.stderr
        (line,) = _error_lines(full.stderr)
        assert line.startswith("error: no space left on device under ")
        assert "failed: no space left on device" in full.stderr  # the job's recorded reason
        assert "sweep/" not in full.stderr  # no traceback through the driver (Ray logs the trial's)
        assert not _job_records(storage)

        # with space again, the same command finishes the study
        subprocess.run(["mount", "-o", "remount,size=64m", str(storage)], check=True)
        again = run_sweep("run", str(spec), cwd=tmp_path)
        assert again.returncode == 0, again.stdout + again.stderr
        assert len(_job_records(storage)) == 1
    finally:
        subprocess.run(["umount", "-l", str(storage)], capture_output=True)


def test_a_corrupt_model_fails_its_job_at_once_without_retries(tmp_path, toy_root, small_model):
    """max_failures: 2, but a corrupt config.json gives the same error every time: one attempt."""
    import shutil

    model = tmp_path / "model"
    shutil.copytree(small_model, model)
    (model / "config.json").write_text((small_model / "config.json").read_text()[:30])
    spec = _spec(tmp_path, toy_root, model, max_failures=2)
    proc = run_sweep("run", str(spec), cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Trial task failed" not in proc.stdout + proc.stderr  # Ray saw no error to retry
    (run,) = _runs(tmp_path / "runs")
    assert run.data.tags["xstilts.status"] == "failed"
    assert "config.json' is not a valid JSON file" in run.data.tags["xstilts.error"]
    (error,) = (tmp_path / "runs").glob("e2e/jobs/*/trials/*/error.txt")
    assert "is not a valid JSON file" in error.read_text()
