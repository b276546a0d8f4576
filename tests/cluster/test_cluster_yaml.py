"""cluster.yaml passes the Ray cluster launcher's own validation, offline; broken copies do not.

`prepare_config` merges the provider's defaults.yaml (a file inside the ray package) and
`validate_config` checks the result against ray/autoscaler/ray-schema.json plus a few semantic
rules. Neither needs AWS: the tests run them with outgoing connections forbidden.
"""

from __future__ import annotations

import copy
import re
import socket
from pathlib import Path

import jsonschema
import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

CLUSTER_YAML = Path(__file__).resolve().parents[2] / "cluster.yaml"


class NetworkUsed(AssertionError):
    pass


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a connection (AWS API, metadata service, DNS over TCP) fails the test."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise NetworkUsed(f"cluster config validation tried to connect: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


@pytest.fixture
def raw_config() -> dict:
    return yaml.safe_load(CLUSTER_YAML.read_text())


def validated(config: dict) -> dict:
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


def test_cluster_yaml_passes_rays_validator(offline: None, raw_config: dict) -> None:
    config = validated(raw_config)

    assert config["provider"]["type"] == "aws"
    node_types = config["available_node_types"]
    head = node_types[config["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0

    gpu_types = {name: t for name, t in node_types.items() if t["resources"].get("GPU", 0) >= 1}
    assert gpu_types, "no worker node type declares a GPU"
    for name, node_type in gpu_types.items():
        assert name != config["head_node_type"]
        custom = set(node_type["resources"]) - {"CPU", "GPU", "memory", "object_store_memory"}
        assert custom, f"{name} declares no custom resource"
        assert 0 <= node_type["min_workers"] <= node_type["max_workers"] <= config["max_workers"]
    assert config["idle_timeout_minutes"] > 0


def test_nodes_install_this_project_with_its_dependencies(raw_config: dict) -> None:
    mounts = raw_config["file_mounts"]
    repo_mount = next(remote for remote, local in mounts.items() if local in (".", "./"))
    commands = " && ".join(raw_config["setup_commands"])
    assert f"cd {repo_mount}" in commands
    assert "pip install" in commands and " -e ." in commands
    # Nodes start Ray from the venv that `pip install -e .` filled, with token auth on.
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        start = [c for c in raw_config[key] if "ray start" in c]
        assert start and all("RAY_AUTH_MODE=token" in c and "~/venv/bin/ray" in c for c in start)


def _drop_worker_resources(config: dict) -> None:
    worker = next(n for n in config["available_node_types"] if n != config["head_node_type"])
    del config["available_node_types"][worker]["resources"]


def _unknown_top_level_field(config: dict) -> None:
    config["max_wrokers"] = 3


def _unknown_node_type_field(config: dict) -> None:
    config["available_node_types"][config["head_node_type"]]["instance_type"] = "m5.large"


def _negative_resource(config: dict) -> None:
    worker = next(n for n in config["available_node_types"] if n != config["head_node_type"])
    config["available_node_types"][worker]["resources"]["GPU"] = -1


def _head_type_missing(config: dict) -> None:
    config["head_node_type"] = "no_such_type"


def _min_workers_above_max(config: dict) -> None:
    worker = next(n for n in config["available_node_types"] if n != config["head_node_type"])
    config["available_node_types"][worker]["min_workers"] = config["max_workers"] + 1


@pytest.mark.parametrize(
    ("breakage", "error", "message"),
    [
        (_drop_worker_resources, jsonschema.ValidationError, "'resources' is a required property"),
        (_unknown_top_level_field, jsonschema.ValidationError, "max_wrokers"),
        (_unknown_node_type_field, jsonschema.ValidationError, "instance_type"),
        (_negative_resource, jsonschema.ValidationError, "-1"),
        (_head_type_missing, ValueError, "head_node_type"),
        (_min_workers_above_max, ValueError, "max_workers"),
    ],
    ids=["worker-without-resources", "unknown-top-level-field", "unknown-node-type-field",
         "negative-resource", "head-type-missing", "min-workers-above-max"],
)
def test_broken_copies_are_rejected(
    offline: None, raw_config: dict, breakage, error: type[Exception], message: str
) -> None:
    validated(raw_config)  # the unbroken original passes
    broken = copy.deepcopy(raw_config)
    breakage(broken)
    with pytest.raises(error, match=re.escape(message)):
        validated(broken)
