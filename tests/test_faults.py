"""Faults on a local multi-node Ray cluster: a head (no CPUs: trials cannot land on it) and two
one-CPU worker nodes, each its own raylet, all started with ``ray start`` on this machine.

* A worker node's raylet is killed mid-trial: Tune retries the trial on the other node, the trial
  continues from its last finished epoch (``resume/state.pt``), and MLflow ends with exactly one
  finished child run per job, per-language metrics included.
* The driver is killed (SIGKILL, no clean-up) mid-sweep on the cluster: the same command run again
  runs only the unfinished jobs. (A Ctrl-C of a local sweep is ``tests/test_resume.py``.)

The cluster is this module's alone: its own GCS port, temp dir and auth token; teardown kills
only the processes it started (marked by an environment variable naming that temp dir, and their
children), never ``ray stop``, which would stop every Ray instance on the machine.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mlflow
import pytest

from tests.conftest import SWEEP, write_spec

pytestmark = pytest.mark.slow

RAY = str(Path(sys.executable).parent / "ray")
START_TIMEOUT = 120
SWEEP_TIMEOUT = 240


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every process on the machine."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        out[int(entry)] = (ppid, cmdline.strip())
    return out


def _environ(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return b""


def _running(pid: int) -> bool:
    """Alive and not a zombie (a zombie's command line is empty)."""
    try:
        return bool(Path(f"/proc/{pid}/cmdline").read_bytes())
    except OSError:
        return False


def _descendants(roots: set[int], procs: dict[int, tuple[int, str]]) -> set[int]:
    found = set(roots)
    grew = True
    while grew:
        grew = False
        for pid, (ppid, _) in procs.items():
            if ppid in found and pid not in found:
                found.add(pid)
                grew = True
    return found


class LocalCluster:
    """``ray start --head`` plus worker nodes, on this machine, with their own port, temp dir and token."""

    def __init__(self) -> None:
        # short: Ray's unix socket paths live under it (at most 107 characters)
        self.temp_dir = tempfile.mkdtemp(prefix="xsf", dir="/tmp")
        self.port = _free_port()
        # what the driver and the worker nodes connect to; Ray itself still records each node under
        # this machine's own address (it replaces a loopback --node-ip-address), on this machine alone
        self.address = f"127.0.0.1:{self.port}"
        # its own token, so it neither needs nor touches ~/.ray/auth_token; Ray's GCS declares a
        # node dead after 3 missed health checks of 500 ms (default: 5 of 3 s)
        self.env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32),
                    "RAY_health_check_period_ms": "500", "RAY_health_check_timeout_ms": "500",
                    "RAY_health_check_failure_threshold": "3", "RAY_health_check_initial_delay_ms": "500",
                    "RAY_DEDUP_LOGS": "0"}
        self.env["XSTILTS_FAULT_CLUSTER"] = self.temp_dir  # every process it starts inherits the mark
        self.env.pop("MLFLOW_TRACKING_URI", None)
        self.env.pop("RAY_ADDRESS", None)

    def _ray_start(self, *args: str) -> None:
        proc = subprocess.run([RAY, "start", *args, "--disable-usage-stats", f"--temp-dir={self.temp_dir}"],
                              capture_output=True, text=True, timeout=START_TIMEOUT, env=self.env)
        assert proc.returncode == 0, proc.stdout + proc.stderr

    def start_head(self) -> None:
        self._ray_start("--head", f"--port={self.port}", "--num-cpus=0", "--num-gpus=0",
                        "--include-dashboard=false", f"--dashboard-port={_free_port()}",
                        f"--ray-client-server-port={_free_port()}",
                        f"--dashboard-agent-listen-port={_free_port()}")

    def add_worker(self) -> None:
        self._ray_start(f"--address={self.address}", "--num-cpus=1", "--num-gpus=0",
                        f"--dashboard-agent-listen-port={_free_port()}")

    def pids(self) -> set[int]:
        """This cluster's processes (and the sweeps run on it): those whose environment carries its
        mark, those naming its temp dir, and their children."""
        procs = _processes()
        mark = f"XSTILTS_FAULT_CLUSTER={self.temp_dir}\0".encode()
        roots = {pid for pid, (_, cmd) in procs.items()
                 if pid != os.getpid() and (self.temp_dir in cmd or mark in _environ(pid))}
        return _descendants(roots, procs)

    def worker_raylets(self) -> dict[int, list[str]]:
        """Raylet pid of each live worker node (not the head) -> the command lines of its children."""
        procs = _processes()
        mine = self.pids()
        raylets = [pid for pid in mine if procs.get(pid, (0, ""))[1].split(" ", 1)[0].endswith("/raylet")
                   and " --head" not in procs[pid][1]]
        return {r: [cmd for pid, (ppid, cmd) in procs.items() if ppid == r] for r in raylets}

    def ensure_workers(self, n: int) -> None:
        for _ in range(n - len(self.worker_raylets())):
            self.add_worker()
        deadline = time.time() + 60
        while self._alive_cpus() < n and time.time() < deadline:
            time.sleep(0.5)
        assert self._alive_cpus() >= n, f"the cluster does not show {n} worker CPUs"

    def _alive_cpus(self) -> float:
        proc = subprocess.run([RAY, "status", f"--address={self.address}"], capture_output=True, text=True,
                              timeout=60, env=self.env)
        for line in proc.stdout.splitlines():
            if line.strip().endswith(" CPU") and "/" in line:
                return float(line.split("/")[1].split()[0])
        return 0.0

    def stop(self) -> None:
        """SIGKILL this cluster's processes only (a few rounds: children of killed ones appear)."""
        for _ in range(10):
            pids = {pid for pid in self.pids() if _running(pid)}
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.5)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster():
    c = LocalCluster()
    try:
        c.start_head()
        c.ensure_workers(2)
        yield c
    finally:
        c.stop()


def _start_sweep(spec: Path, cluster: LocalCluster, log: Path) -> subprocess.Popen:
    return subprocess.Popen([SWEEP, "run", str(spec), "--address", cluster.address], cwd=spec.parent,
                            stdout=log.open("w"), stderr=subprocess.STDOUT, env=cluster.env)


def _wait(proc: subprocess.Popen, log: Path, timeout: float = SWEEP_TIMEOUT) -> str:
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=30)
        pytest.fail(f"the sweep did not end within {timeout} s:\n{log.read_text()[-6000:]}")
    return log.read_text()


def _wait_for(condition, what: str, proc: subprocess.Popen, log: Path, timeout: float = 180):
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = condition()
        if found:
            return found
        if proc.poll() is not None:
            pytest.fail(f"the sweep ended (exit {proc.returncode}) before {what}:\n{log.read_text()[-6000:]}")
        time.sleep(0.1)
    proc.kill()
    pytest.fail(f"timed out waiting for {what}:\n{log.read_text()[-6000:]}")


def _job_runs(storage: Path, experiment: str) -> list:
    client = mlflow.MlflowClient(f"sqlite:///{storage / 'mlflow.db'}")
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id], "tags.`xstilts.kind` = 'job'", max_results=1000)


def _assert_one_finished_run_per_job(storage: Path, study: str) -> list:
    plan = json.loads((storage / study / "plan.json").read_text())
    runs = _job_runs(storage, study)
    ids = sorted(r.data.tags["xstilts.job_id"] for r in runs)
    assert ids == sorted(j["id"] for j in plan["jobs"]), "one MLflow child run per job, no duplicates"
    for r in runs:
        assert r.info.status == "FINISHED" and r.data.tags["xstilts.status"] == "finished", r.info.run_name
    return runs


def test_killed_worker_raylet_mid_trial_resumes_from_checkpoint(tmp_path, toy_root, small_model, cluster):
    cluster.ensure_workers(2)
    epochs = 30   # a fraction of a second each on the toy data: time to kill the node mid-trial
    spec = write_spec(tmp_path / "study.yaml", toy_root, small_model, name="faults-raylet",
                      intermediate=["none"], targets=[{"task": "toy_xnli", "languages": ["en", "xs"]}],
                      hyperparameters={"target": {"learning_rate": 5e-4, "epochs": epochs, "max_length": 32,
                                                  "batch_size": 32}},
                      max_failures=2)
    storage = tmp_path / "runs"
    log = tmp_path / "sweep.log"
    proc = _start_sweep(spec, cluster, log)
    try:
        state = _wait_for(lambda: next(storage.glob("faults-raylet/jobs/t-*/trials/*/resume/state.pt"), None),
                          "the trial's first resume state", proc, log)
        # the node running the trial: its raylet's child is Tune's function-trainable actor
        busy = [r for r, kids in cluster.worker_raylets().items()
                if any(c.startswith("ray::ImplicitFunc") for c in kids)]
        assert len(busy) == 1, f"the trial should run on one worker node: {cluster.worker_raylets()}"
        (raylet,) = busy
        node = _descendants({raylet}, _processes())
        os.kill(raylet, signal.SIGKILL)
        killed_at = time.time()
        # the node's workers and agents notice their raylet is gone and exit by themselves
        deadline = killed_at + 30
        while any(_running(pid) for pid in node) and time.time() < deadline:
            time.sleep(0.2)
        gone_after = time.time() - killed_at
        assert gone_after < 30, "the killed node's processes outlived their raylet by 30 s"
        output = _wait(proc, log)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output
    assert "1 jobs finished" in output, output
    trial_dir = state.parent.parent
    result = json.loads((trial_dir / "result.json").read_text())
    # the retry continued after at least the first epoch instead of training from scratch
    assert result["resumed_from_epoch"] is not None and 1 <= result["resumed_from_epoch"] < epochs, result
    assert not (trial_dir / "resume").exists() and not (trial_dir / "error.txt").exists()
    (run,) = _assert_one_finished_run_per_job(storage, "faults-raylet")
    for lang in ("en", "xs", "avg"):
        assert 0.0 <= run.data.metrics[f"toy_xnli/accuracy/{lang}"] <= 1.0, lang
    assert run.data.metrics["dev/score"] == pytest.approx(result["metrics"]["dev/score"])
    job = json.loads((storage / "faults-raylet" / "jobs" / result["job_id"] / "job.json").read_text())
    assert job["metrics"] == result["metrics"] and job["failed_trials"] == []
    print(f"raylet {raylet} killed: its node's processes exited within {gone_after:.1f} s, the retry "
          f"resumed after epoch {result['resumed_from_epoch']} of {epochs}")


def test_killed_driver_on_the_cluster_reruns_only_unfinished_jobs(tmp_path, toy_root, small_model, cluster):
    cluster.ensure_workers(2)
    hp = {"intermediate": {"learning_rate": 5e-4, "epochs": 1, "max_length": 32},
          "target": {"learning_rate": 5e-4, "epochs": 3, "max_length": 32}}
    spec = write_spec(tmp_path / "study.yaml", toy_root, small_model, name="faults-driver",
                      intermediate=["none", "toy_chunk"],
                      targets=[{"task": "toy_xnli", "languages": ["en", "xs"]},
                               {"task": "toy_tatoeba", "languages": ["xs"]}],
                      hyperparameters=hp, max_failures=1)
    storage = tmp_path / "runs"
    jobs_dir = storage / "faults-driver" / "jobs"
    log = tmp_path / "first.log"
    proc = _start_sweep(spec, cluster, log)
    try:
        # the intermediate job is recorded: kill the driver while the target stage runs
        _wait_for(lambda: list(jobs_dir.glob("i-*/job.json")), "the intermediate job's record", proc, log)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    before = {p.parent.name: (p.stat().st_mtime_ns, p.read_text()) for p in jobs_dir.glob("*/job.json")}
    trials_before = {str(p): p.stat().st_mtime_ns for p in jobs_dir.glob("*/trials/*/result.json")}
    plan = json.loads((storage / "faults-driver" / "plan.json").read_text())
    assert 0 < len(before) < len(plan["jobs"]), f"kill the driver mid-sweep: {sorted(before)}"

    log = tmp_path / "second.log"
    again = _start_sweep(spec, cluster, log)
    output = _wait(again, log)
    assert again.returncode == 0, output
    assert f"{len(plan['jobs'])} jobs finished ({len(before)} already done before this run)" in output, output
    after = {p.parent.name: (p.stat().st_mtime_ns, p.read_text()) for p in jobs_dir.glob("*/job.json")}
    assert set(after) == {j["id"] for j in plan["jobs"]}
    for job_id, record in before.items():           # finished jobs: not run again
        assert after[job_id] == record, job_id
    for path, mtime in trials_before.items():       # nor any finished trial
        assert Path(path).stat().st_mtime_ns == mtime, path
    # the second run logged "stage ...: N of M jobs to run" with only the unfinished ones
    pending_targets = [j for j in plan["jobs"] if j["stage"] != "intermediate" and j["id"] not in before]
    assert f"stage target+eval: {len(pending_targets)} of 4 jobs to run" in output, output
    assert "stage intermediate:" not in output
    _assert_one_finished_run_per_job(storage, "faults-driver")
