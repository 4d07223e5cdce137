"""Test session: one real local Ray (2 CPUs) and a fresh SQLite file per hub."""

from __future__ import annotations

import os
import sys
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest
import ray
from helpers import start_ray, start_runtime, stop_runtime

TESTS = Path(__file__).resolve().parent
# Ray workers import the test's orchestrators and activities by module name.
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(TESTS), str(TESTS.parent), os.environ.get("PYTHONPATH", "")) if p
)
sys.path.insert(0, str(TESTS))


@pytest.fixture(scope="session", autouse=True)
def ray_session():
    """Stops the session's Ray at the end; each module that needs it starts it (below)."""
    yield
    if ray.is_initialized():
        ray.shutdown()


@pytest.fixture(scope="module", autouse=True)
def ray_for_module(request):
    """Real Ray for end-to-end modules; a module with ``PURE = True`` runs without it, one
    with ``OWN_CLUSTER = True`` starts a multi-node cluster of its own (tests/multinode.py)."""
    if not getattr(request.module, "PURE", False) and not getattr(
        request.module, "OWN_CLUSTER", False
    ):
        start_ray()
    yield


def pytest_addoption(parser):
    parser.addoption(
        "--store",
        choices=("sqlite", "postgresql"),
        default="sqlite",
        help="the store of the end-to-end hubs (postgresql: the session's throw-away server)",
    )


@pytest.fixture
def store_url(tmp_path, request):
    """A fresh store for one hub: a SQLite file, or a new PostgreSQL database (--store)."""
    if request.config.getoption("--store") == "postgresql":
        return request.getfixturevalue("postgres").database()
    return f"sqlite:///{tmp_path / 'hub.db'}"


@pytest.fixture
def hub_name():
    return f"t-{uuid.uuid4().hex[:8]}"


@pytest.fixture(params=["dedicated", "pooled"])
def placement(request):
    return request.param


@pytest.fixture
def runtime(hub_name, store_url, placement):
    rt = start_runtime(hub_name, store_url, placement)
    yield rt
    stop_runtime(rt)


@pytest.fixture
def clock():
    from runtime.testing import ManualClock

    return ManualClock(start=datetime(2026, 1, 1, tzinfo=timezone.utc))


@pytest.fixture
def clocked(hub_name, store_url, placement, clock):
    """A runtime whose time moves only by ``clock.advance``."""
    rt = start_runtime(hub_name, store_url, placement, clock)
    yield rt
    stop_runtime(rt)


@pytest.fixture(scope="session")
def postgres():
    """The session's throw-away PostgreSQL server (skipped where none can be started)."""
    from postgres_server import REQUIRED, PostgresServer

    try:
        import psycopg  # noqa: F401

        server = PostgresServer()
    except (ImportError, RuntimeError) as exc:
        if REQUIRED:
            raise
        pytest.skip(f"no PostgreSQL here: {exc}")
    yield server
    server.close()
