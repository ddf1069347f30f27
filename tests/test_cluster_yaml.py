"""The cluster files are valid for their launcher and keep the safety settings they promise.

Ray's own `prepare_config` + `validate_config` (what `ray up` runs before touching any cloud)
check the launcher files offline; the KubeRay manifest is checked for the fields the operator
and its autoscaler need. Every file must hold no credentials, bind the dashboard to loopback
and keep Ray's token authentication on.
"""
from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "cluster.yaml"
GCP = ROOT / "cluster" / "gcp.yaml"
ONPREM = ROOT / "cluster" / "onprem.yaml"
KUBERAY = ROOT / "cluster" / "kuberay.yaml"
LAUNCHER_FILES = [CLUSTER, GCP, ONPREM]
ALL_FILES = [CLUSTER, GCP, ONPREM, KUBERAY]
TOKEN_FILE = "~/.ray/auth_token"

_SECRET_WORD = r"(?:password|passwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key)"
_SECRET_PATTERNS = [
    re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),                   # AWS access key id
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),               # PEM key
    re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s/:@]+:[^\s/@]+@"),        # user:secret@ in a URL
    re.compile(r"\bgh[pousr]_[A-Za-z0-9]{20,}\b"),                   # GitHub token
    re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b"),                        # Google API key
    re.compile(r"--(?:password|token|secret)[ =]\S+", re.I),         # secret on a command line
]
# NAME=value or name: value where the name says it holds a secret.
_ASSIGNMENT = re.compile(rf"(?i)\b[\w.-]*{_SECRET_WORD}[\w.-]*[ \t]*[:=][ \t]*([^\s,}}]+)")
# Values that are not secrets: references to a file, an env var, or a YAML mapping.
_HARMLESS_VALUE = re.compile(r"""^["']?(?:~/|/|\./|\$|\{|\[)""")


def find_secrets(text: str) -> list[str]:
    """Lines of `text` (comments included) that look like they carry a credential."""
    hits = []
    for line in text.splitlines():
        if any(p.search(line) for p in _SECRET_PATTERNS):
            hits.append(line.strip())
            continue
        for match in _ASSIGNMENT.finditer(line):
            if not _HARMLESS_VALUE.match(match.group(1)):
                hits.append(line.strip())
                break
    return hits


def _load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def _start_commands(config: dict[str, Any], key: str) -> str:
    return " ".join(config[key])


# ---------------------------------------------------------------- Ray launcher schema


@pytest.mark.parametrize("path", LAUNCHER_FILES, ids=lambda p: p.name)
def test_launcher_file_validates_against_rays_schema(path):
    config = _load(path)
    prepared = prepare_config(config)  # what `ray up` does before any cloud call
    validate_config(prepared)          # raises on a schema violation
    assert prepared["head_node_type"] in prepared["available_node_types"]


def test_cluster_yaml_validates_against_rays_schema():
    config = _load(CLUSTER)
    validate_config(prepare_config(config))
    assert config["head_node_type"] in config["available_node_types"]


@pytest.mark.parametrize("path", [CLUSTER, GCP], ids=lambda p: p.name)
def test_schema_check_rejects_a_broken_file(path):
    config = _load(path)
    config["available_node_types"]["head"]["bogus"] = 1
    with pytest.raises(Exception, match="bogus"):
        validate_config(prepare_config(config))


def test_schema_check_rejects_a_broken_onprem_file():
    config = _load(ONPREM)
    config["bogus_top_level"] = 1
    with pytest.raises(Exception, match="bogus_top_level"):
        validate_config(prepare_config(config))


# ---------------------------------------------------------------- safety settings


def test_cluster_yaml_keeps_dashboard_local_and_holds_no_secrets():
    text = CLUSTER.read_text()
    config = yaml.safe_load(text)
    head_start = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head_start
    assert "RAY_AUTH_MODE=disabled" not in text
    for secret in ("aws_secret_access_key", "AWS_SECRET", "password", "token:"):
        assert secret.lower() not in text.lower()
    assert any("pip install -q -e ." in c for c in config["setup_commands"])


@pytest.mark.parametrize("path", ALL_FILES, ids=lambda p: p.name)
def test_no_secret_looking_values(path):
    assert find_secrets(path.read_text()) == []


@pytest.mark.parametrize("line", [
    "aws_secret_access_key: wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "  - export PGPASSWORD=hunter2",
    "backend: postgresql://mlflow:hunter2@db:5432/mlflow",
    "RAY_AUTH_TOKEN=0123456789abcdef",
    "key_id: AKIAIOSFODNN7EXAMPLE",
    "-----BEGIN RSA PRIVATE KEY-----",
    "mlflow_token: 'abc123'",
    "- ray start --token abc123",
    "api_key = AIzaSyA1234567890abcdefghijklmnopqrstu",
])
def test_secret_finder_flags_planted_secrets(line):
    assert find_secrets(f"cluster_name: x\n{line}\n") != []


@pytest.mark.parametrize("line", [
    "ssh_private_key: ~/.ssh/id_ed25519",
    "valueFrom: {secretKeyRef: {name: xstilts-mlflow-db, key: password}}",
    "- secretRef: {name: xstilts-object-store, optional: true}",
    "authOptions: {mode: token}",
    "- ray get-auth-token --generate > /dev/null",
    "--backend-store-uri postgresql://mlflow@db:5432/mlflow",
])
def test_secret_finder_lets_references_pass(line):
    assert find_secrets(line) == []


@pytest.mark.parametrize("path", LAUNCHER_FILES, ids=lambda p: p.name)
def test_launcher_file_keeps_dashboard_local_and_token_auth_on(path):
    text = path.read_text()
    config = yaml.safe_load(text)
    head = _start_commands(config, "head_start_ray_commands")
    worker = _start_commands(config, "worker_start_ray_commands")
    assert "--dashboard-host=127.0.0.1" in head
    assert "0.0.0.0" not in text
    assert "RAY_AUTH_MODE=disabled" not in text
    # the head makes the token, every `ray start` runs in token mode, workers receive the token
    assert "ray get-auth-token --generate" in head
    assert head.index("get-auth-token") < head.index("ray start --head")
    assert "RAY_AUTH_MODE=token ray start --head" in head
    assert "RAY_AUTH_MODE=token ray start --address" in worker
    assert TOKEN_FILE in config["cluster_synced_files"]


@pytest.mark.parametrize("path", LAUNCHER_FILES, ids=lambda p: p.name)
def test_launcher_file_installs_project_and_runs_mlflow_on_head_loopback(path):
    config = _load(path)
    assert any("pip install -q -e ." in c for c in config["setup_commands"])
    assert config["file_mounts"]["~/xstilts"] == "."
    head = _start_commands(config, "head_start_ray_commands")
    assert "mlflow server --host 127.0.0.1 --port 5000" in head
    assert "--backend-store-uri" in head and "--artifacts-destination" in head
    # Ray Jobs on the head (`sweep submit`) inherit the head's Ray environment: its MLflow server
    assert "MLFLOW_TRACKING_URI=http://127.0.0.1:5000 RAY_AUTH_MODE=token ray start --head" in head


# ---------------------------------------------------------------- provider specifics


def test_aws_file_offers_80gb_workers_for_xl_and_declares_their_resources():
    config = _load(CLUSTER)
    workers = {name: t for name, t in config["available_node_types"].items()
               if name != config["head_node_type"]}
    by_instance = {t["node_config"]["InstanceType"]: t for t in workers.values()}
    # the 8-GPU types are the XL/XXL types: 80 GB A100 (p4de) and H100 (p5), not 40 GB p4d
    assert {"p4de.24xlarge", "p5.48xlarge", "g5.2xlarge"} <= set(by_instance)
    assert "p4d.24xlarge" not in by_instance
    gpus = {"p4de.24xlarge": 8, "p5.48xlarge": 8, "g5.2xlarge": 1}
    for instance, count in gpus.items():
        # declared, so the autoscaler can plan a STRICT_PACK placement group before a node exists
        assert by_instance[instance]["resources"]["GPU"] == count, instance
        assert by_instance[instance]["resources"]["CPU"] > 0, instance


def test_aws_workers_get_an_instance_profile_with_a_minimal_s3_policy():
    config = _load(CLUSTER)
    for name, node_type in config["available_node_types"].items():
        if name == config["head_node_type"]:
            continue  # Ray gives the head its own profile (ray-autoscaler-v1)
        assert node_type["node_config"]["IamInstanceProfile"] == {"Name": "xstilts-worker"}, name
    policy = json.loads((ROOT / "cluster" / "iam" / "worker-s3-policy.json").read_text())
    actions = {a for s in policy["Statement"] for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    assert actions == {"s3:ListBucket", "s3:GetBucketLocation", "s3:GetObject", "s3:PutObject",
                       "s3:DeleteObject", "s3:AbortMultipartUpload"}
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow"
        assert "*" not in statement["Resource"].split(":::", 1)[1].split("/", 1)[0]  # one bucket
        assert statement["Resource"].startswith("arn:aws:s3:::YOUR-BUCKET")
    passrole = json.loads((ROOT / "cluster" / "iam" / "head-pass-worker-role.json").read_text())
    assert [s["Action"] for s in passrole["Statement"]] == ["iam:PassRole"]
    assert passrole["Statement"][0]["Resource"].endswith(":role/xstilts-worker")


@pytest.mark.parametrize("path", [CLUSTER, GCP], ids=lambda p: p.name)
def test_cloud_files_run_rays_pinned_gpu_image_matching_the_project(path):
    import ray

    config = _load(path)
    image = config["docker"]["image"]
    match = re.fullmatch(r"rayproject/ray:(\d+\.\d+\.\d+)-py(\d)(\d+)-cu(\d+)", image)
    assert match, f"{image}: not a pinned rayproject/ray GPU tag"
    ray_version, major, minor, _cuda = match.groups()
    assert ray_version.split(".")[:2] == ray.__version__.split(".")[:2]  # the project's Ray
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requires = project["requires-python"]
    assert (int(major), int(minor)) >= tuple(int(x) for x in requires.lstrip(">=").split("."))
    pin = next(re.search(r"==([\d.]+)\.\*", d).group(1) for d in project["dependencies"]
               if d.startswith("ray["))
    assert ray_version.startswith(pin + ".")  # the same minor release as pyproject's pin
    assert config["docker"]["pull_before_run"] is False  # a pinned tag: one pull per host
    # the project image is built from the same base
    assert f"FROM {image}" in (ROOT / "cluster" / "Dockerfile").read_text()
    assert "latest" not in image and "latest_dlami" not in path.read_text()


@pytest.mark.parametrize("path", LAUNCHER_FILES, ids=lambda p: p.name)
def test_launcher_file_installs_dependencies_once_and_syncs_no_venv(path):
    from ray.autoscaler._private.command_runner import SSHCommandRunner

    config = _load(path)
    setup = " ".join(config["setup_commands"])
    # a full install only when pyproject.toml differs from the stamp of the last full install
    assert "~/.xstilts-deps" in setup and "--no-deps -e ." in setup
    assert setup.count("pip install") == 2
    for excluded in (".venv", "runs", ".cache"):
        assert excluded in config["rsync_exclude"], excluded
    assert ".gitignore" in config["rsync_filter"]
    # what Ray hands rsync for these settings
    args = SSHCommandRunner._create_rsync_filter_args(None, {
        "rsync_exclude": config["rsync_exclude"], "rsync_filter": config["rsync_filter"]})
    assert ["--exclude", ".venv"] == args[:2] and "dir-merge,- .gitignore" in args
    head = _start_commands(config, "head_start_ray_commands")
    worker = _start_commands(config, "worker_start_ray_commands")
    assert "ulimit -n 65536" in head and "ulimit -n 65536" in worker
    if "docker" in config:
        assert "--ulimit nofile=65536:65536" in config["docker"]["run_options"]


def test_gcp_file_has_placeholders_gpu_types_and_gcs_artifacts():
    text = GCP.read_text()
    config = yaml.safe_load(text)
    assert config["provider"]["type"] == "gcp"
    assert config["provider"]["project_id"] == "YOUR-PROJECT"
    assert re.search(r"project_id: YOUR-PROJECT\s+#.*REQUIRED", text)
    workers = {name: t for name, t in config["available_node_types"].items()
               if name != config["head_node_type"]}
    machine_types = {t["node_config"]["machineType"] for t in workers.values()}
    # 8-GPU types with 80 GB GPUs (A100 80GB, H100 80GB) for XL / XXL
    assert {"a2-ultragpu-8g", "a3-highgpu-8g", "g2-standard-8"} <= machine_types
    accelerators = {a["acceleratorType"] for t in workers.values() for a in t["node_config"]["guestAccelerators"]}
    assert {"nvidia-a100-80gb", "nvidia-h100-80gb"} <= accelerators
    for name, node_type in workers.items():
        accelerators = node_type["node_config"]["guestAccelerators"]
        # the autoscaler plans with `resources`: it must match the attached GPUs
        assert node_type["resources"]["GPU"] == sum(a["acceleratorCount"] for a in accelerators), name
        assert node_type["node_config"]["scheduling"]["onHostMaintenance"] == "TERMINATE", name
        assert node_type["min_workers"] == 0 and node_type["max_workers"] >= 1, name
        for account in node_type["node_config"]["serviceAccounts"]:
            assert account["email"].endswith("@YOUR-PROJECT.iam.gserviceaccount.com")
    head_setup = " ".join(config["head_setup_commands"])
    assert "XSTILTS_ARTIFACTS=gs://" in head_setup
    assert "google-cloud-storage" in head_setup


def test_onprem_file_lists_machines_and_needs_the_nfs_mount():
    config = _load(ONPREM)
    provider = config["provider"]
    assert provider["type"] == "local"
    assert provider["head_ip"] and len(provider["worker_ips"]) >= 1
    assert "available_node_types" not in config  # Ray makes the single local node type itself
    prepared = prepare_config(config)
    node_type = prepared["available_node_types"][prepared["head_node_type"]]
    assert node_type["max_workers"] == len(provider["worker_ips"])  # no scaling beyond the list
    assert any("mountpoint -q /mnt/xstilts" in c for c in config["setup_commands"])


# ---------------------------------------------------------------- KubeRay manifest


def _containers(pod_template: dict[str, Any]) -> list[dict[str, Any]]:
    return pod_template["spec"]["containers"]


def _all_containers(spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield from _containers(spec["headGroupSpec"]["template"])
    for group in spec["workerGroupSpecs"]:
        yield from _containers(group["template"])


def test_kuberay_manifest_has_head_gpu_workers_and_autoscaler():
    doc = _load(KUBERAY)
    assert doc["apiVersion"] == "ray.io/v1"
    assert doc["kind"] == "RayCluster"
    spec = doc["spec"]
    assert spec["enableInTreeAutoscaling"] is True
    assert spec["rayVersion"].startswith("2.60")
    head = spec["headGroupSpec"]
    assert head["rayStartParams"]["dashboard-host"] == "127.0.0.1"
    assert head["rayStartParams"]["num-cpus"] == "0"
    assert not any("nvidia.com/gpu" in c.get("resources", {}).get("limits", {}) for c in _containers(head["template"]))
    commands = [" ".join(c.get("command", []) + c.get("args", [])) for c in _containers(head["template"])]
    assert any("mlflow server --host 127.0.0.1 --port 5000" in c for c in commands)
    gpus = []
    for group in spec["workerGroupSpecs"]:
        assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"], group["groupName"]
        limits = _containers(group["template"])[0]["resources"]["limits"]
        gpus.append(int(limits["nvidia.com/gpu"]))
    assert max(gpus) == 8 and min(gpus) == 1


def test_kuberay_manifest_keeps_token_auth_and_references_secrets_by_name():
    spec = _load(KUBERAY)["spec"]
    assert spec["authOptions"]["mode"] == "token"
    secret_name = re.compile(rf"(?i){_SECRET_WORD}")
    for container in _all_containers(spec):
        assert container["image"].startswith("YOUR-REGISTRY/")
        for env in container.get("env", []):
            if secret_name.search(env["name"]):
                assert "value" not in env and "valueFrom" in env, env["name"]
            assert not env["name"].startswith("RAY_AUTH"), "KubeRay sets the Ray token itself"
        for source in container.get("envFrom", []):
            assert set(source) <= {"secretRef", "configMapRef", "prefix"}
            assert set(source.get("secretRef", {})) <= {"name", "optional"}
