"""The deployment files of examples/cluster/ hold what a cluster needs (parsed, not applied)."""

from __future__ import annotations

from pathlib import Path

import yaml
from multinode import HEALTH_CHECKS

from runtime import HubConfig

PURE = True
CLUSTER = Path(__file__).resolve().parent.parent / "examples" / "cluster"


def manifest() -> dict[str, dict]:
    """The KubeRay manifest's documents by kind."""
    return {
        doc["kind"]: doc for doc in yaml.safe_load_all((CLUSTER / "raycluster.yaml").read_text())
    }


def containers(ray_cluster: dict) -> list[dict]:
    spec = ray_cluster["spec"]
    groups = [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
    return [c for g in groups for c in g["template"]["spec"]["containers"]]


def test_the_hub_settings_are_a_valid_postgresql_hub_without_a_secret(tmp_path):
    config = HubConfig.from_yaml(CLUSTER / "durable.yaml")
    assert config.store.startswith("postgresql://durable@")
    assert "password_env=PGPASSWORD" in config.store and ":***@" not in config.store
    assert config.placement == "pooled" and config.pool_size == 16
    assert config.ray.address == "auto"


def test_the_kuberay_manifest_carries_the_same_hub_settings():
    docs = manifest()
    assert docs["RayCluster"]["apiVersion"] == "ray.io/v1"
    in_map = docs["ConfigMap"]["data"]["durable.yaml"]
    assert yaml.safe_load(in_map) == yaml.safe_load((CLUSTER / "durable.yaml").read_text())


def test_every_pod_gets_the_password_from_a_secret_and_the_tuned_health_checks():
    pods = containers(manifest()["RayCluster"])
    assert len(pods) == 2  # the head and the worker group
    for pod in pods:
        env = {e["name"]: e for e in pod["env"]}
        assert "value" not in env["PGPASSWORD"]
        assert env["PGPASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "durable-db"
        tuned = {k[len("RAY_") :]: int(v["value"]) for k, v in env.items() if k.startswith("RAY_")}
        assert tuned == HEALTH_CHECKS
        assert {"mountPath": "/etc/durable", "name": "durable-config"} in pod["volumeMounts"]
