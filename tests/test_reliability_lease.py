"""One writer per study (issue 14, item 2): the lease on ``<storage>/<study>/lease.json``.

Real files and processes, no Ray: a live holder refuses a second run in one line; a dead pid on
this host, an old heartbeat or a damaged lease file is taken over with a log line.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest
import yaml

from sweep import lease as lease_mod
from sweep.cli import main
from sweep.lease import LEASE_FILE, Lease, LeaseHeld


def _write(root, **record):
    root.mkdir(parents=True, exist_ok=True)
    base = {"host": socket.gethostname(), "pid": os.getpid(), "token": "other",
            "started": time.time() - 60, "heartbeat": time.time()}
    (root / LEASE_FILE).write_text(json.dumps({**base, **record}))


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_second_holder_is_refused_naming_the_first(tmp_path):
    first = Lease(tmp_path / "study", "study").acquire()
    try:
        with pytest.raises(LeaseHeld) as refused:
            Lease(tmp_path / "study", "study").acquire()
        message = str(refused.value)
        assert f"host {socket.gethostname()} pid {os.getpid()}" in message
        assert "last heartbeat" in message and "\n" not in message
    finally:
        first.release()
    assert not (tmp_path / "study" / LEASE_FILE).exists()
    Lease(tmp_path / "study", "study").acquire().release()  # free again


def test_a_dead_pid_on_this_host_is_taken_over(tmp_path, caplog):
    _write(tmp_path / "study", pid=_dead_pid())
    with Lease(tmp_path / "study", "study") as held:
        record = json.loads((tmp_path / "study" / LEASE_FILE).read_text())
        assert record["token"] == held.token and record["pid"] == os.getpid()
    assert "taking over the lease" in caplog.text and "no longer running on this host" in caplog.text


def test_no_heartbeat_from_another_host_is_taken_over(tmp_path, caplog):
    _write(tmp_path / "study", host="elsewhere", pid=1, heartbeat=time.time() - lease_mod.STALE_S - 5)
    with Lease(tmp_path / "study", "study"):
        pass
    assert "no heartbeat for" in caplog.text


def test_a_live_lease_from_another_host_holds(tmp_path):
    _write(tmp_path / "study", host="elsewhere", pid=1)
    with pytest.raises(LeaseHeld, match="host elsewhere pid 1"):
        Lease(tmp_path / "study", "study").acquire()
    assert json.loads((tmp_path / "study" / LEASE_FILE).read_text())["host"] == "elsewhere"


def test_a_damaged_lease_file_is_taken_over(tmp_path, caplog):
    (tmp_path / "study").mkdir()
    (tmp_path / "study" / LEASE_FILE).write_text('{"host": "x", "pi')
    with Lease(tmp_path / "study", "study"):
        pass
    assert "the lease file is damaged" in caplog.text


def test_the_heartbeat_is_renewed(tmp_path, monkeypatch):
    monkeypatch.setattr(lease_mod, "HEARTBEAT_S", 0.2)
    with Lease(tmp_path / "study", "study"):
        first = json.loads((tmp_path / "study" / LEASE_FILE).read_text())["heartbeat"]
        time.sleep(1.0)
        later = json.loads((tmp_path / "study" / LEASE_FILE).read_text())["heartbeat"]
    assert later > first


def test_sweep_run_refuses_while_another_run_holds_the_study(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    spec = tmp_path / "study.yaml"
    spec.write_text(yaml.safe_dump({"name": "held", "model": "tiny", "targets": ["toy_xnli"],
                                    "storage": str(tmp_path / "runs"), "cache_dir": str(tmp_path / "cache")}))
    _write(tmp_path / "runs" / "held", host="node-7", pid=4242)
    assert main(["run", str(spec)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: study held is being run by host node-7 pid 4242")
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["held"]  # no mlflow.db
    # only the holder's lease and the (empty) lock file every run on this study shares
    assert sorted(p.name for p in (tmp_path / "runs" / "held").iterdir()) == [LEASE_FILE, LEASE_FILE + ".lock"]
    assert (tmp_path / "runs" / "held" / (LEASE_FILE + ".lock")).stat().st_size == 0


from tests.test_object_storage import gcs, s3, store  # noqa: E402,F401 - loopback S3 and GCS servers


def test_object_storage_lease_refuses_and_is_taken_over_when_stale(store, monkeypatch, caplog):
    from trainables import storage

    monkeypatch.setattr(lease_mod, "SETTLE_S", 0.2)
    root = store.uri("lease-test/study")
    first = Lease(root, "study").acquire()
    try:
        assert storage.read_json(storage.join(root, LEASE_FILE))["token"] == first.token
        with pytest.raises(LeaseHeld, match=f"pid {os.getpid()}"):
            Lease(root, "study").acquire()
    finally:
        first.release()
    assert storage.read_text(storage.join(root, LEASE_FILE)) is None
    storage.write_text(storage.join(root, LEASE_FILE), json.dumps(
        {"host": "elsewhere", "pid": 1, "token": "old", "started": 0, "heartbeat": time.time() - 3600}))
    with Lease(root, "study") as taker:
        assert storage.read_json(storage.join(root, LEASE_FILE))["token"] == taker.token
    assert "taking over the lease" in caplog.text and "no heartbeat for" in caplog.text


def test_racing_takers_of_a_stale_lease_end_with_one_holder(tmp_path):
    """Eight processes take over the same dead holder's lease at once: exactly one holds it."""
    _write(tmp_path / "study", pid=_dead_pid())
    script = ("import sys, time; from sweep.lease import Lease, LeaseHeld\n"
              "time.sleep(max(0, float(sys.argv[2]) - time.time()))\n"
              "try:\n    l = Lease(sys.argv[1], 'study').acquire()\nexcept LeaseHeld:\n    print('refused'); sys.exit(0)\n"
              "print('held', l.token, flush=True); time.sleep(3); l.release()\n")
    start = time.time() + 3
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "study"), str(start)],
                              stdout=subprocess.PIPE, text=True) for _ in range(8)]
    outputs = [p.communicate(timeout=60)[0].split() for p in procs]
    holders = [o for o in outputs if o and o[0] == "held"]
    assert len(holders) == 1, outputs
