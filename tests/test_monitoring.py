"""Metrics reach Ray's Prometheus endpoint; logs are JSON lines with hub and instance ids."""

from __future__ import annotations

import glob
import json
import os
import re
import urllib.request

import entity_defs as ed
import pytest
import ray
import workflows as wf
from helpers import start_ray, wait_until

from runtime import Runtime
from runtime.logs import log_dir


@pytest.fixture
def hub(hub_name, store_url):
    start_ray()
    rt = Runtime.start(
        hub=hub_name,
        store=store_url,
        placement="pooled",
        pool_size=2,
        register=[*ed.ALL, wf.inc, wf.double, wf.chain, wf.fail, wf.unhandled],
    )
    yield rt
    rt.shutdown()


def scrape() -> str:
    port = ray.nodes()[0]["MetricsExportPort"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return response.read().decode()


def sample(text: str, metric: str, **labels: str) -> float:
    """Sum of the samples of ``metric`` whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        match = re.match(rf"^{metric}{{(.*)}} (\S+)$", line)
        if match and all(f'{k}="{v}"' in match.group(1) for k, v in labels.items()):
            total += float(match.group(2))
    return total


def test_metrics_count_instances_activities_entities_and_commits(hub):
    c, name = hub.client, hub.config.hub
    done = c.start_new(wf.chain, input=1)
    failed = c.start_new(wf.unhandled, input="boom")
    for iid in (done, failed):
        c.wait_for_completion(iid, timeout=60)
    for _ in range(3):
        c.signal_entity("Counter@m", "add", 1)

    def exported() -> str | None:
        text = scrape()
        wanted = [
            sample(text, "ray_durable_instances_started_total", hub=name, name="chain") >= 1,
            sample(text, "ray_durable_instances_finished_total", hub=name, status="Completed") >= 1,
            sample(text, "ray_durable_instances_finished_total", hub=name, status="Failed") >= 1,
            sample(text, "ray_durable_activity_duration_seconds_count", hub=name) >= 2,
            sample(text, "ray_durable_entity_operations_total", hub=name, entity="Counter") >= 3,
            sample(text, "ray_durable_checkpoint_write_seconds_count", hub=name, kind="entity")
            >= 1,
            sample(
                text, "ray_durable_checkpoint_write_seconds_count", hub=name, kind="orchestration"
            )
            >= 1,
        ]
        return text if all(wanted) else None

    # Ray's metrics agent exports every few seconds.
    text = wait_until(exported, timeout=90, every=2.0)
    assert sample(text, "ray_durable_instances_started_total", hub="some-other-hub") == 0


def test_logs_are_json_lines_carrying_hub_instance_and_execution(hub):
    c = hub.client
    iid = c.start_new(wf.chain, input=1)
    c.wait_for_completion(iid, timeout=60)
    directory = log_dir()

    def finished_line() -> dict | None:
        for path in glob.glob(os.path.join(directory, "*.log")):
            with open(path, errors="replace") as f:
                for line in f:
                    if iid in line and "instance finished" in line:
                        return json.loads(line[line.index("{") :])
        return None

    record = wait_until(finished_line, timeout=30, every=0.5)
    assert record["hub"] == hub.config.hub and record["instance_id"] == iid
    assert record["status"] == "Completed" and record["name"] == "chain"
    assert len(record["execution_id"]) == 32 and record["level"] == "INFO"
