"""Hub metrics through ``ray.util.metrics``: Ray's Prometheus endpoint and dashboard show them.

Ray prefixes every name with ``ray_`` and counters get ``_total`` (so
``durable_instances_started`` is scraped as ``ray_durable_instances_started_total``).
Metrics are created once per process, on first use, because creating them needs a
connected Ray worker; a process without one records nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

log = logging.getLogger("ray_durable.metrics")

# Seconds; activities range from sub-millisecond Ray tasks to long GPU jobs.
_DURATION_BOUNDARIES = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120, 600]
# Seconds; an fsync'd SQLite commit takes from tens of microseconds to tens of milliseconds.
_COMMIT_BOUNDARIES = [0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5]

_SPECS: dict[str, tuple[str, str, tuple[str, ...], list[float] | None]] = {
    "instances_started": ("counter", "Orchestration instances started", ("hub", "name"), None),
    "instances_finished": (
        "counter",
        "Orchestration instances that reached a terminal status",
        ("hub", "name", "status"),
        None,
    ),
    "instances_live": (
        "gauge",
        "Orchestration instances in a host's memory (running or waiting)",
        ("hub", "host"),
        None,
    ),
    "activity_duration_seconds": (
        "histogram",
        "From an activity's dispatch to its result reaching the host",
        ("hub", "name"),
        _DURATION_BOUNDARIES,
    ),
    "inline_activities_abandoned": (
        "counter",
        "Inline activities that ran past their timeout (their threads run on, abandoned)",
        ("hub",),
        None,
    ),
    "entity_operations": (
        "counter",
        "Entity operations processed (repeats answered from the dedup record included)",
        ("hub", "entity"),
        None,
    ),
    "checkpoint_write_seconds": (
        "histogram",
        "Duration of one store commit (a group of checkpoints)",
        ("hub", "kind"),
        _COMMIT_BOUNDARIES,
    ),
    "recoveries": (
        "counter",
        "Hosts (and the supervisor) rebuilt from the store after a failure or restart",
        ("hub", "kind"),
        None,
    ),
    "pending_timers": ("gauge", "Durable timers not fired yet", ("hub",), None),
    "quarantined": (
        "counter",
        "Work quarantined as poison: instances failed, entity operations dead-lettered",
        ("hub", "kind"),
        None,
    ),
    "quarantined_items": (
        "gauge",
        "Quarantined work waiting for a person (durable quarantine list)",
        ("hub",),
        None,
    ),
    "outbox_depth": ("gauge", "Committed messages not delivered yet", ("hub",), None),
    "oldest_pending_seconds": (
        "gauge",
        "Age of the oldest Pending instance (a start nobody took: 0 when none)",
        ("hub",),
        None,
    ),
    "supervisor_round_seconds": (
        "histogram",
        "Duration of one round of a supervisor phase (recover, timers, outbox)",
        ("hub", "phase"),
        _COMMIT_BOUNDARIES,
    ),
    "supervisor_round_failures": (
        "counter",
        "Rounds of a supervisor control loop that failed (the loop goes on)",
        ("hub", "phase"),
        None,
    ),
}

_made: dict[str, Any] = {}


def _metric(key: str) -> Any:
    metric = _made.get(key)
    if metric is None:
        kind, description, tags, boundaries = _SPECS[key]
        try:
            from ray.util import metrics

            name = f"durable_{key}"
            if kind == "counter":
                metric = metrics.Counter(name, description=description, tag_keys=tags)
            elif kind == "gauge":
                metric = metrics.Gauge(name, description=description, tag_keys=tags)
            else:
                metric = metrics.Histogram(
                    name, description=description, boundaries=boundaries or [], tag_keys=tags
                )
        except Exception as exc:  # no Ray worker in this process: metrics are off here
            log.debug("metric %s unavailable: %s", key, exc)
            metric = False
        _made[key] = metric
    return metric


def inc(key: str, tags: dict[str, str], value: float = 1.0) -> None:
    """Add to a counter."""
    metric = _metric(key)
    if metric and value:
        metric.inc(value, tags=tags)


def set_gauge(key: str, tags: dict[str, str], value: float) -> None:
    """Set a gauge."""
    metric = _metric(key)
    if metric:
        metric.set(value, tags=tags)


def observe(key: str, tags: dict[str, str], seconds: float) -> None:
    """Record one histogram sample."""
    metric = _metric(key)
    if metric:
        metric.observe(seconds, tags=tags)


@contextmanager
def timed(key: str, tags: dict[str, str]) -> Iterator[None]:
    """Observe the duration of the block into histogram ``key``."""
    started = time.perf_counter()
    try:
        yield
    finally:
        observe(key, tags, time.perf_counter() - started)
