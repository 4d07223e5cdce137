"""Test session: one real local Ray (2 CPUs) and a fresh SQLite file per hub."""

from __future__ import annotations

import os
import sys
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest
import ray

TESTS = Path(__file__).resolve().parent
# Ray workers import the test's orchestrators and activities by module name.
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(TESTS), str(TESTS.parent), os.environ.get("PYTHONPATH", "")) if p
)
sys.path.insert(0, str(TESTS))

# address="local" starts a Ray of our own even when another cluster (a leftover `ray start`,
# a notebook) is recorded on this machine.
RAY_ARGS = {
    "address": "local",
    "num_cpus": 2,
    "include_dashboard": False,
    "log_to_driver": False,
}


def start_ray() -> None:
    """Start the session's local Ray (again, after a test stopped it)."""
    if not ray.is_initialized():
        ray.init(**RAY_ARGS)


@pytest.fixture(scope="session", autouse=True)
def ray_session():
    """Stops the session's Ray at the end; each module that needs it starts it (below)."""
    yield
    if ray.is_initialized():
        ray.shutdown()


@pytest.fixture(scope="module", autouse=True)
def ray_for_module(request):
    """Real Ray for end-to-end modules; a module with ``PURE = True`` runs without it."""
    if not getattr(request.module, "PURE", False):
        start_ray()
    yield


@pytest.fixture
def store_url(tmp_path):
    return f"sqlite:///{tmp_path / 'hub.db'}"


@pytest.fixture
def hub_name():
    return f"t-{uuid.uuid4().hex[:8]}"


@pytest.fixture(params=["dedicated", "pooled"])
def placement(request):
    return request.param


def _start(hub_name, store_url, placement, clock=None):
    import patterns
    import workflows

    from runtime import Runtime

    start_ray()
    return Runtime.start(
        hub=hub_name,
        store=store_url,
        placement=placement,
        pool_size=2,
        register=workflows.ALL + patterns.ALL,
        clock=clock,
    )


def _stop(rt):
    try:
        rt.shutdown()
    except Exception:
        pass  # a test may have stopped Ray itself


@pytest.fixture
def runtime(hub_name, store_url, placement):
    rt = _start(hub_name, store_url, placement)
    yield rt
    _stop(rt)


@pytest.fixture
def clock():
    from runtime.testing import ManualClock

    return ManualClock(start=datetime(2026, 1, 1, tzinfo=timezone.utc))


@pytest.fixture
def clocked(hub_name, store_url, placement, clock):
    """A runtime whose time moves only by ``clock.advance``."""
    rt = _start(hub_name, store_url, placement, clock)
    yield rt
    _stop(rt)
