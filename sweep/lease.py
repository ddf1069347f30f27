"""One writer per study: `sweep run` holds a lease on ``<storage>/<study>/lease.json``.

The lease names its holder (host, pid, start, last heartbeat, a random token); a thread
renews the heartbeat every ``HEARTBEAT_S``. A second `sweep run` on the same study and storage
refuses with one line naming the holder. A lease is stale, and taken over with a log line, when
its holder was on this host and that pid is gone, or when its heartbeat is older than
``STALE_S`` (a driver on another host that died).

How exclusive it is depends on the store:

* local folders and NFS (v4, or v3 with lockd): acquiring, renewing and releasing happen under an
  exclusive ``flock`` on ``lease.json.lock``, so reading the lease, judging it stale and writing
  the new one is one step no other taker can interleave; the record itself is written whole
  (temporary file, then rename), so a reader never sees a half-written lease.
* object storage (``s3://``, ``gs://``): pyarrow offers no conditional create, so the lease is
  written, then read back after ``SETTLE_S``: of two drivers starting within that window, the
  later write wins and the other one refuses. Two drivers writing within the same instant can
  both pass; the lease guards against the usual mistake (a second run started later), not a
  deliberate race.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import secrets
import socket
import threading
import time
from pathlib import Path

from trainables import storage

log = logging.getLogger(__name__)

LEASE_FILE = "lease.json"
HEARTBEAT_S = 30.0
STALE_S = 180.0        # no heartbeat for this long: the holder is gone
SETTLE_S = 2.0         # object storage: wait this long before reading the lease back


class LeaseHeld(RuntimeError):
    """Another live `sweep run` holds the study."""


class Lease:
    def __init__(self, study_root, study: str):
        self.path = storage.join(study_root, LEASE_FILE)
        self.study = study
        self.token = secrets.token_hex(8)
        self.record = {"host": socket.gethostname(), "pid": os.getpid(), "token": self.token,
                       "started": time.time(), "heartbeat": time.time()}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ acquire / release
    def acquire(self) -> "Lease":
        if storage.is_remote(self.path):
            self._acquire_remote()
        else:
            self._acquire_local()
        self._thread = threading.Thread(target=self._beat, name="xstilts-lease", daemon=True)
        self._thread.start()
        return self

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            with _local_lock(self.path):
                if (read_lease(self.path) or {}).get("token") == self.token:
                    storage.delete_file(self.path)
        except OSError as exc:  # a full or gone disk must not hide the run's own outcome
            log.warning("could not remove the lease %s: %s", storage.display(self.path), exc)

    def __enter__(self) -> "Lease":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    def _acquire_local(self) -> None:
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        with _local_lock(self.path):
            current = read_lease(self.path)
            if current is not None:
                self._take_over_or_refuse(current)
            _write_whole(self.path, self.record)

    def _acquire_remote(self) -> None:
        current = read_lease(self.path)
        if current is not None:
            self._take_over_or_refuse(current)
        storage.write_text(self.path, json.dumps(self.record, sort_keys=True))
        time.sleep(SETTLE_S)
        winner = read_lease(self.path) or {}
        if winner.get("token") != self.token:
            raise LeaseHeld(_held_message(self.study, winner, self.path))

    def _take_over_or_refuse(self, current: dict | None) -> None:
        reason = stale_reason(current)
        if reason is None:
            raise LeaseHeld(_held_message(self.study, current, self.path))
        log.warning("study %s: taking over the lease %s of %s: %s", self.study,
                    storage.display(self.path), _holder(current), reason)

    # ------------------------------------------------------------------ heartbeat
    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                with _local_lock(self.path):
                    current = read_lease(self.path) or {}
                    if current.get("token") != self.token:
                        log.error("study %s: the lease %s is now held by %s; this run no longer "
                                  "owns the study", self.study, storage.display(self.path),
                                  _holder(current))
                        return
                    self.record["heartbeat"] = time.time()
                    _write_whole(self.path, self.record)
            except OSError as exc:  # a full disk: keep trying, the run itself reports it
                log.warning("could not renew the lease %s: %s", storage.display(self.path), exc)


@contextlib.contextmanager
def _local_lock(path):
    """Exclusive ``flock`` beside a local lease for one read-judge-write step; nothing on object
    storage, which has no locks (see the module docstring)."""
    if storage.is_remote(path):
        yield
        return
    with open(f"{path}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _write_whole(path, record: dict) -> None:
    """The record in one piece: locally a temporary file of this writer's own, then a rename."""
    text = json.dumps(record, sort_keys=True)
    if storage.is_remote(path):
        storage.write_text(path, text)
        return
    tmp = Path(f"{path}.{record['token']}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def read_lease(path) -> dict | None:
    """The lease's record; a damaged one (an interrupted write) reads as an empty record, which
    is stale."""
    try:
        text = storage.read_text(path)
    except (OSError, UnicodeDecodeError):
        return {}
    if text is None:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def stale_reason(record: dict | None, now: float | None = None) -> str | None:
    """Why a lease no longer holds (None: it does)."""
    if record is None:
        return "no lease"
    now = time.time() if now is None else now
    try:
        heartbeat = float(record["heartbeat"])
        host, pid = str(record["host"]), int(record["pid"])
    except (KeyError, TypeError, ValueError):
        return "the lease file is damaged"
    if host == socket.gethostname() and not _pid_alive(pid):
        return f"pid {pid} is no longer running on this host"
    if now - heartbeat > STALE_S:
        return f"no heartbeat for {now - heartbeat:.0f} s (more than {STALE_S:.0f} s)"
    return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError as exc:
        return exc.errno == errno.EPERM  # alive, someone else's
    return True


def _holder(record: dict | None) -> str:
    record = record or {}
    return f"host {record.get('host', '?')} pid {record.get('pid', '?')}"


def _held_message(study: str, record: dict | None, path) -> str:
    record = record or {}
    started = record.get("started")
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(started))) if started else "?"
    beat = record.get("heartbeat")
    ago = f"{time.time() - float(beat):.0f} s ago" if beat else "never"
    return (f"study {study} is being run by {_holder(record)} (since {since}, last heartbeat {ago}; "
            f"lease {storage.display(path)}): wait for it to end or stop it; a lease without a "
            f"heartbeat for {STALE_S:.0f} s is taken over")
