"""cluster.yaml is a valid Ray cluster-launcher file and keeps the safety settings it promises."""
from __future__ import annotations

from pathlib import Path

import yaml

import pytest
from ray.autoscaler._private.util import prepare_config, validate_config

CLUSTER = Path(__file__).resolve().parents[1] / "cluster.yaml"


def test_cluster_yaml_validates_against_rays_schema():
    config = yaml.safe_load(CLUSTER.read_text())
    validate_config(prepare_config(config))  # what `ray up` does; raises on a schema violation
    assert config["head_node_type"] in config["available_node_types"]


def test_schema_check_rejects_a_broken_file():
    config = yaml.safe_load(CLUSTER.read_text())
    config["available_node_types"]["head"]["bogus"] = 1
    with pytest.raises(Exception, match="bogus"):
        validate_config(prepare_config(config))


def test_cluster_yaml_keeps_dashboard_local_and_holds_no_secrets():
    text = CLUSTER.read_text()
    config = yaml.safe_load(text)
    head_start = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head_start
    assert "RAY_AUTH_MODE=disabled" not in text
    for secret in ("aws_secret_access_key", "AWS_SECRET", "password", "token:"):
        assert secret.lower() not in text.lower()
    assert any("pip install -e ." in c for c in config["setup_commands"])
