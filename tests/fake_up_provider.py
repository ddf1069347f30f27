"""Ray's fake multi-node provider, made launchable by ``ray up`` / ``ray down`` (for
tests/test_cluster_up.py).

Ray ships ``FakeMultiNodeProvider`` (ray/autoscaler/_private/fake_multi_node) to test the
autoscaler on one machine: worker "nodes" are real raylets started on this machine with the
resources of their node type (logical GPUs). Ray 2.60 uses it only under a head started by
hand (``RAY_FAKE_CLUSTER=1 ray start --head --autoscaling-config=...``): ``provider: type:
fake_multinode`` cannot go through ``ray up``, because (1) its defaults file (example.yaml) is
not in the pip wheel, so ``prepare_config`` fails; (2) it always reports a head node that has
no launch hash, which ``ray up`` then tries to terminate (KeyError: the fake head has no
process entry); (3) its nodes have no command runner, so ``ray up`` would SSH to a node id.

This subclass fills exactly those gaps, as an ``external`` provider: on the laptop side
(``ray up``, ``ray down``) it keeps the head's record in a JSON state file and runs the node's
commands in a local shell whose HOME is the fake node's home; on the head (the autoscaler that
``ray up`` started) it is Ray's FakeMultiNodeProvider, unchanged. One deviation, because all
fake nodes share this machine with other users' Ray: the node's ``ray stop`` ends the
processes of this cluster's temp dir only, not every Ray process on the machine.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from ray.autoscaler._private.fake_multi_node.node_provider import FAKE_HEAD_NODE_ID, FakeMultiNodeProvider
from ray.autoscaler.command_runner import CommandRunnerInterface
from ray.autoscaler.node_provider import NodeProvider
from ray.autoscaler.tags import TAG_RAY_NODE_KIND, TAG_RAY_USER_NODE_TYPE

from tests.ray_local import stop_cluster

_RAY_STOP = re.compile(r"\bray stop\b")


class LocalRunner(CommandRunnerInterface):
    """A fake node's shell: this machine, HOME = the node's home."""

    def __init__(self, home: Path, temp_dir: Path, env: dict[str, str]):
        self.home, self.temp_dir, self.env = home, temp_dir, env

    def _path(self, path: str) -> Path:
        return self.home / path[2:] if path.startswith("~/") else Path(path)

    def run(self, cmd: str | None = None, timeout: int = 120, exit_on_fail: bool = False,
            port_forward=None, with_output: bool = False, environment_variables: dict | None = None,
            run_env: str = "auto", ssh_options_override_ssh_key: str = "", shutdown_after_run: bool = False):
        if not cmd:
            return b"" if with_output else None
        if _RAY_STOP.search(cmd):  # this cluster's processes only (see the module docstring)
            stop_cluster(self.temp_dir)
            cmd = _RAY_STOP.sub("true", cmd)
        # as Ray's SSH runner exports them: JSON for resources and labels
        env = {**self.env, **{k: v if isinstance(v, str) else json.dumps(v, separators=(",", ":"))
                              for k, v in (environment_variables or {}).items()}}
        proc = subprocess.run(["bash", "-c", cmd], cwd=self.home, env=env, capture_output=True, timeout=600)
        with (self.home / "commands.log").open("ab") as log:
            log.write(f"$ {cmd}\n".encode() + proc.stdout + proc.stderr + f"[exit {proc.returncode}]\n".encode())
        if proc.returncode != 0:
            raise subprocess.CalledProcessError(proc.returncode, cmd, proc.stdout, proc.stderr)
        return proc.stdout if with_output else None

    def run_rsync_up(self, source: str, target: str, options=None) -> None:
        dest = self._path(target)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if Path(source).is_dir():
            shutil.copytree(source, dest, dirs_exist_ok=True)
        else:
            shutil.copy2(source, dest)

    def run_rsync_down(self, source: str, target: str, options=None) -> None:
        src = self._path(source)
        if src.is_dir():
            shutil.copytree(src, target, dirs_exist_ok=True)
        else:
            shutil.copy2(src, target)

    def remote_shell_command_str(self) -> str:
        return f"cd {self.home} && bash"

    def run_init(self, *, as_head: bool, file_mounts: dict, sync_run_yet: bool):
        return None


class LaunchableFakeProvider(FakeMultiNodeProvider):
    def __init__(self, provider_config: dict[str, Any], cluster_name: str):
        self.on_head = bool(provider_config.get("on_head"))
        if self.on_head:  # the autoscaler on the head: Ray's provider as it is
            super().__init__(provider_config, cluster_name)
            head_type = provider_config.get("head_node_type")
            if head_type:
                self._nodes[self._head_node_id]["tags"][TAG_RAY_USER_NODE_TYPE] = head_type
            return
        NodeProvider.__init__(self, provider_config, cluster_name)
        self._state = Path(provider_config["state_file"])

    # ---------------------------------------------------------------- laptop side
    def _load(self) -> dict:
        return json.loads(self._state.read_text()) if self._state.is_file() else {}

    def _save(self, nodes: dict) -> None:
        self._state.write_text(json.dumps(nodes))

    def non_terminated_nodes(self, tag_filters):
        if self.on_head:
            return super().non_terminated_nodes(tag_filters)
        return [n for n, tags in self._load().items() if all(tags.get(k) == v for k, v in tag_filters.items())]

    def is_running(self, node_id):
        return super().is_running(node_id) if self.on_head else node_id in self._load()

    def is_terminated(self, node_id):
        return super().is_terminated(node_id) if self.on_head else node_id not in self._load()

    def node_tags(self, node_id):
        return super().node_tags(node_id) if self.on_head else self._load()[node_id]

    def set_node_tags(self, node_id, tags):
        if self.on_head:
            return super().set_node_tags(node_id, tags)
        nodes = self._load()
        nodes[node_id].update(tags)
        self._save(nodes)

    def create_node(self, node_config, tags, count):
        if self.on_head:
            return super().create_node(node_config, tags, count)
        assert tags[TAG_RAY_NODE_KIND] == "head", "the launcher only creates the head"
        nodes = self._load()
        nodes[FAKE_HEAD_NODE_ID] = dict(tags)  # the id Ray's fake head always has
        self._save(nodes)

    def terminate_node(self, node_id):
        if self.on_head:
            return super().terminate_node(node_id)
        nodes = self._load()
        nodes.pop(node_id, None)
        self._save(nodes)

    def terminate_nodes(self, node_ids):
        for node_id in node_ids:
            self.terminate_node(node_id)

    def prepare_for_head_node(self, cluster_config):
        cluster_config = dict(cluster_config)
        cluster_config["provider"] = {**cluster_config["provider"], "on_head": True,
                                      "head_node_type": cluster_config["head_node_type"]}
        return cluster_config

    def get_command_runner(self, log_prefix, node_id, auth_config, cluster_name, process_runner,
                           use_internal_ip, docker_config=None):
        config = self.provider_config
        env = json.loads(Path(config["env_file"]).read_text())
        return LocalRunner(Path(config["fake_home"]), Path(config["temp_dir"]), env)

    @staticmethod
    def bootstrap_config(cluster_config):
        return cluster_config
