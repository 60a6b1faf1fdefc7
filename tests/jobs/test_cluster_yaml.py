"""cluster.yaml validates against Ray's own autoscaler schema and describes a CPU head plus GPU workers."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

CLUSTER_YAML = Path(__file__).resolve().parents[2] / "cluster.yaml"


def _load() -> dict:
    return yaml.safe_load(CLUSTER_YAML.read_text())


def test_cluster_yaml_validates_against_ray_schema() -> None:
    # `ray up` fills in the provider defaults before validating; do the same.
    validate_config(prepare_config(_load()))


def test_cluster_yaml_has_cpu_head_and_autoscaling_gpu_workers_that_install_the_project() -> None:
    config = _load()
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert "GPU" not in head["resources"]
    gpu = [t for name, t in types.items() if name != config["head_node_type"] and t["resources"].get("GPU", 0) >= 1]
    assert gpu and gpu[0]["max_workers"] > gpu[0]["min_workers"]
    assert any("pip install" in c and "classemo" in c for c in config["setup_commands"])


def test_schema_rejects_a_broken_config() -> None:
    """The validation really checks: an unknown top-level key fails."""
    config = _load()
    config["not_a_ray_key"] = 1
    with pytest.raises(jsonschema.ValidationError):
        validate_config(prepare_config(config))


def test_every_node_gets_the_same_token_and_starts_ray_with_token_auth() -> None:
    config = _load()
    mounts = config["file_mounts"]
    assert mounts.get("/home/ubuntu/.ray/auth_token") == "~/.ray/auth_token"
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        start = [c for c in config[key] if "ray start" in c]
        assert start and all("RAY_AUTH_MODE=token" in c for c in start), key
    assert not any("RAY_AUTH_MODE=disabled" in str(v) for v in config.values())
