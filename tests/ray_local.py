"""A Ray head of our own on this machine, stopped without touching anyone else's Ray.

``ray stop`` ends every Ray process of the user on the machine (other tests' clusters
included), so the clusters here are started with their own temp dir and ports, and stopped by
ending exactly the processes whose command line names that temp dir.
"""
from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def short_temp_dir(prefix: str) -> Path:
    """Under /tmp with a short name: Ray's unix socket paths must stay under 107 characters."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


def token_env(extra: dict | None = None) -> dict[str, str]:
    """An environment with a fresh Ray token of its own (no file in ~/.ray is read or written)."""
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32),
           "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "RAY_DEDUP_LOGS": "0",
           "RAY_USAGE_STATS_ENABLED": "0"}
    for name in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "MLFLOW_TRACKING_URI"):
        env.pop(name, None)
    env.update(extra or {})
    return env


def port_flags() -> list[str]:
    """Every port a head opens, picked free (Ray's fixed defaults may be taken by other heads)."""
    flags = {"--node-manager-port": free_port(), "--object-manager-port": free_port(),
             "--ray-client-server-port": free_port(), "--dashboard-agent-listen-port": free_port(),
             "--dashboard-agent-grpc-port": free_port(), "--metrics-export-port": free_port(),
             "--runtime-env-agent-port": free_port()}
    return [f"{k}={v}" for k, v in flags.items()]


def processes_of(temp_dir: Path) -> list[psutil.Process]:
    """Processes whose command line names ``temp_dir`` (GCS, raylet, dashboard, workers...)."""
    needle = str(temp_dir)
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if proc.pid == os.getpid():
            continue
        try:
            if any(needle in part for part in proc.info["cmdline"] or ()):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def stop_cluster(temp_dir: Path, timeout: float = 20) -> int:
    """SIGTERM, then SIGKILL, the Ray processes of this temp dir only; how many there were."""
    procs = processes_of(temp_dir)
    for proc in procs:
        try:
            proc.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    for proc in alive:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=10)
    return len(procs)


def wait_for_http(url: str, timeout: float = 90) -> None:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except urllib.error.HTTPError:
            return  # it answers (401 without a token is an answer)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(1)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")


def start_head(temp_dir: Path, env: dict[str, str], *, num_cpus: int = 2, extra: list[str] = ()) -> dict:
    """``ray start --head`` on free ports under ``temp_dir``; returns its addresses."""
    port, dashboard = free_port(), free_port()
    cmd = [str(BIN / "ray"), "start", "--head", f"--port={port}", f"--temp-dir={temp_dir}",
           "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}", f"--num-cpus={num_cpus}",
           "--num-gpus=0", "--include-dashboard=true", "--disable-usage-stats", *port_flags(), *extra]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    if proc.returncode != 0:
        stop_cluster(temp_dir)
        raise RuntimeError(f"ray start failed ({proc.returncode}): {proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    job_server = f"http://127.0.0.1:{dashboard}"
    wait_for_http(f"{job_server}/api/version")
    return {"gcs": f"127.0.0.1:{port}", "job_server": job_server, "temp_dir": temp_dir}


def remove(temp_dir: Path) -> None:
    shutil.rmtree(temp_dir, ignore_errors=True)
