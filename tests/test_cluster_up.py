"""``ray up`` -> ``sweep submit`` -> autoscaling -> a finished study -> ``ray down``, for real,
on this machine: Ray's fake multi-node provider (tests/fake_up_provider.py says why it needs a
thin launcher side) with cluster.yaml's node types, their GPUs logical. The head has no CPUs or
GPUs, so the study's trials (1 CPU + 1 GPU each) can only run once the autoscaler has added a
GPU worker node.

Runs rarely (slow). Its Ray processes have their own temp dir, ports and token, and `ray stop`
on the fake nodes ends only those, so other tests' Ray clusters in the same session live on.
"""
from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import mlflow
import pytest
import yaml

from tests import ray_local
from tests.conftest import SWEEP, write_spec

pytestmark = pytest.mark.slow  # ray up, one autoscaled node, a 1-job study, ray down: ~2-3 min

ROOT = Path(__file__).resolve().parents[1]
RAY = str(ray_local.BIN / "ray")


def fake_cluster_config(temp_dir: Path, home: Path, env_file: Path, state: Path) -> tuple[dict, str]:
    """cluster.yaml's head and worker types (names, min/max, resources) on the fake provider."""
    import ray._private.services as services

    source = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    port, dashboard = ray_local.free_port(), ray_local.free_port()
    types = {}
    for name, node_type in source["available_node_types"].items():
        resources = dict(node_type["resources"])
        if name != source["head_node_type"]:
            resources["object_store_memory"] = 100 * 1024 ** 2
        types[name] = {"resources": resources, "node_config": {},
                       "min_workers": node_type.get("min_workers", 0),
                       "max_workers": min(1, node_type.get("max_workers", 0))}
    head_flags = " ".join([f"--port={port}", f"--temp-dir={temp_dir}", "--num-cpus=0", "--num-gpus=0",
                           "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}",
                           "--disable-usage-stats", *ray_local.port_flags()])
    config = {
        "cluster_name": "xstilts-fake",
        "max_workers": 2,
        "upscaling_speed": source["upscaling_speed"],
        "idle_timeout_minutes": 0.5,
        "provider": {"type": "external", "module": "tests.fake_up_provider.LaunchableFakeProvider",
                     "gcs_address": f"{services.get_node_ip_address()}:{port}",
                     "disable_node_updaters": True, "disable_launch_config_check": True,
                     "use_node_id_as_ip": True, "fake_home": str(home), "temp_dir": str(temp_dir),
                     "env_file": str(env_file), "state_file": str(state)},
        "auth": {"ssh_user": "ubuntu"},
        "available_node_types": types,
        "head_node_type": source["head_node_type"],
        # what Ray's fake_multinode defaults (example.yaml) hold; an external provider gets none
        "file_mounts": {}, "cluster_synced_files": [], "file_mounts_sync_continuously": False,
        "rsync_exclude": [], "rsync_filter": [], "docker": {},
        "initialization_commands": [], "setup_commands": [], "head_setup_commands": [],
        "worker_setup_commands": [],
        # cluster.yaml's start commands, with this machine's ports, temp dir and the fake cluster
        "head_start_ray_commands": [
            "ray stop",
            "ray get-auth-token --generate > /dev/null && chmod 600 ~/.ray/auth_token",
            # every fake worker is started by the head's autoscaler process, which would hand the
            # head's resource override (CPU: 0, exported by `ray up`) on to them: the head's
            # resources are given as flags instead
            "unset RAY_OVERRIDE_RESOURCES; "
            "ulimit -n 65536 || true; RAY_FAKE_CLUSTER=1 AUTOSCALER_UPDATE_INTERVAL_S=1 RAY_AUTH_MODE=token "
            f"ray start --head {head_flags} --autoscaling-config=~/ray_bootstrap_config.yaml",
        ],
        "worker_start_ray_commands": [],
    }
    return config, f"http://127.0.0.1:{dashboard}"


def _run(cmd: list[str], env: dict, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def _nodes(job_server: str, env: dict) -> list[dict]:
    import urllib.request

    request = urllib.request.Request(f"{job_server}/nodes?view=summary",
                                     headers={"Authorization": f"Bearer {env['RAY_AUTH_TOKEN']}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())["data"]["summary"]


def test_ray_up_autoscales_for_a_submitted_study_and_ray_down(tmp_path, toy_root, small_model):
    temp_dir = ray_local.short_temp_dir("xup")
    home = tmp_path / "head-home"
    home.mkdir()
    env = ray_local.token_env({"HOME": str(home), "PYTHONPATH": str(ROOT)})
    env.pop("RAY_AUTH_TOKEN")  # the head makes its own, as on a real cluster
    env_file, launcher_state = tmp_path / "node-env.json", tmp_path / "launcher-state.json"
    env_file.write_text(json.dumps(env))
    config, job_server = fake_cluster_config(temp_dir, home, env_file, launcher_state)
    config_file = tmp_path / "fake-cluster.yaml"
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    launcher_env = {**env, "HOME": os.environ.get("HOME", str(home))}
    timings = {}
    try:
        started = time.monotonic()
        up = _run([RAY, "up", "-y", "--no-config-cache", str(config_file)], launcher_env, tmp_path)
        timings["ray up"] = time.monotonic() - started
        log = (home / "commands.log").read_text() if (home / "commands.log").exists() else ""
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:] + log[-3000:]
        token = (home / ".ray" / "auth_token").read_text().strip()
        client_env = {**env, "RAY_AUTH_TOKEN": token, "HOME": os.environ.get("HOME", str(home))}
        ray_local.wait_for_http(f"{job_server}/api/version")
        assert len(_nodes(job_server, client_env)) == 1  # the head alone: no workers yet

        spec = write_spec(tmp_path / "study.yaml", toy_root, small_model, name="autoscaled",
                          intermediate=["none"], targets=[{"task": "toy_xnli", "languages": ["en"]}],
                          hyperparameters={"target": {"learning_rate": 5e-4, "epochs": 1, "max_length": 32,
                                                      "batch_size": 32}},
                          resources={"cpu": 1, "gpu": 1})
        submit = _run([SWEEP, "submit", spec.name, "--address", job_server, "--cwd", str(tmp_path)],
                      client_env, tmp_path, timeout=60)
        assert submit.returncode == 0, submit.stdout + submit.stderr
        job_id = submit.stdout.strip().splitlines()[-1]
        t0, state, peak = time.monotonic(), "", []
        while time.monotonic() - t0 < 240:
            status = _run([SWEEP, "status", "--job", job_id, "--address", job_server], client_env, tmp_path, 60)
            state = status.stdout.splitlines()[0] if status.stdout else status.stderr
            nodes = _nodes(job_server, client_env)
            alive = [n for n in nodes if n["raylet"]["state"] == "ALIVE"]
            if len(alive) > len(peak):
                peak = alive
                timings.setdefault("worker node up", time.monotonic() - t0)
            if any(s in state for s in ("SUCCEEDED", "FAILED", "STOPPED")):
                break
            time.sleep(2)
        timings["study"] = time.monotonic() - t0
        logs = _run([SWEEP, "logs", job_id, "--address", job_server], client_env, tmp_path, 60).stdout
        assert state.endswith("SUCCEEDED"), f"{state}\n{logs[-4000:]}"
        assert "study autoscaled: 1 jobs finished" in logs, logs[-4000:]
        # the autoscaler added a GPU worker of one of cluster.yaml's GPU types
        workers = [n for n in peak if not n["raylet"].get("isHeadNode")]
        assert workers, peak
        gpu_types = {name for name, t in config["available_node_types"].items() if t["resources"].get("GPU")}
        worker_gpus = [n["raylet"]["resourcesTotal"].get("GPU", 0) for n in workers]
        assert all(g >= 1 for g in worker_gpus), worker_gpus
        worker_cpus = [n["raylet"]["resourcesTotal"].get("CPU", 0) for n in workers]
        assert worker_cpus == [8.0], worker_cpus  # one node, cluster.yaml's gpu_1x (8 CPUs, 1 GPU)
        client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
        exp = client.get_experiment_by_name("autoscaled")
        runs = client.search_runs([exp.experiment_id], "tags.`xstilts.kind` = 'job'")
        assert [r.info.status for r in runs] == ["FINISHED"]
    finally:
        started = time.monotonic()
        down = _run([RAY, "down", "-y", str(config_file)], launcher_env, tmp_path)
        timings["ray down"] = time.monotonic() - started
        left = ray_local.processes_of(temp_dir)
        ray_local.stop_cluster(temp_dir)  # whatever ray down left, this cluster's only
        ray_local.remove(temp_dir)
    assert down.returncode == 0, down.stdout[-2000:] + down.stderr[-2000:]
    assert not left, f"ray down left {len(left)} processes of this cluster"
    assert json.loads(launcher_state.read_text()) == {}  # the launcher's head record is gone
    print("\n" + ", ".join(f"{k}: {v:.0f} s" for k, v in timings.items())
          + f"; worker GPUs {worker_gpus}, CPUs {worker_cpus}, GPU types offered {sorted(gpu_types)}")
