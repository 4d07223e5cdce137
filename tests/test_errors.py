"""Every error the public API raises is a typed DurableError, readable, and picklable.

The table of bad inputs (one row per refused call, every entry point) is
tests/test_bad_inputs.py; here are the errors that need a scenario of their own: a store
that cannot be opened, an entity whose host keeps dying, a supervisor gone for good, a bug
in the supervisor.
"""

from __future__ import annotations

import os
import time
import uuid

import entity_defs as ed
import patterns
import pytest
import ray
import workflows as wf
from helpers import check_typed, dump_store, seed_hub, settled_store, start_ray, stop_runtime

import runtime.driver.client
from entities import entity
from runtime import (
    DurableClient,
    EntityUnavailableError,
    HubConfigError,
    HubUnavailableError,
    InternalError,
    Runtime,
)
from runtime.actors.ray_seam import SupervisorHandle
from runtime.actors.routing import NAMESPACE
from runtime.actors.supervisor import supervisor_name


@entity(name="Poison", placement="dedicated")
class Poison:
    """Its one operation kills the process of its host, every time it is tried."""

    def die(self) -> None:
        os._exit(1)


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    start_ray()
    path = tmp_path_factory.mktemp("errors") / "hub.db"
    rt = Runtime.start(
        hub=f"err-{uuid.uuid4().hex[:6]}",
        store=f"sqlite:///{path}",
        placement="pooled",
        pool_size=2,
        register=wf.ALL + patterns.ALL + ed.ALL + [Poison],
    )
    done, waiting = seed_hub(rt.client)
    yield rt, done, waiting
    stop_runtime(rt)


def test_unsupported_store_is_refused_before_anything_starts():
    start_ray()
    hub = f"mysql-{uuid.uuid4().hex[:6]}"
    with pytest.raises(HubConfigError) as caught:
        Runtime.start(hub=hub, store="mysql://x")
    check_typed(caught.value, HubConfigError, None)
    message = str(caught.value)
    assert "'mysql'" in message and "sqlite:///" in message, message
    with pytest.raises(ValueError):
        ray.get_actor(supervisor_name(hub), namespace=NAMESPACE)  # no supervisor was created


def test_store_the_supervisor_cannot_open_is_a_hub_config_error(tmp_path):
    start_ray()
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    store = f"sqlite:///{blocker}/hub.db"  # its folder is a file
    with pytest.raises(HubConfigError) as caught:
        Runtime.start(hub=f"nodir-{uuid.uuid4().hex[:6]}", store=store)
    check_typed(caught.value, HubConfigError, None)
    assert store in str(caught.value) and "Error" in str(caught.value), str(caught.value)


def test_entity_whose_host_keeps_dying_raises_entity_unavailable(hub, monkeypatch):
    rt, _, _ = hub
    monkeypatch.setattr(runtime.driver.client, "RECONNECT_SECONDS", 3.0)
    started = time.monotonic()
    with pytest.raises(EntityUnavailableError) as caught:
        rt.client.call_entity("Poison@p", "die")
    check_typed(caught.value, EntityUnavailableError, None)
    assert "Poison@p" in str(caught.value) and "3 s" in str(caught.value)
    with pytest.raises(EntityUnavailableError):
        rt.client.signal_entity("Poison@q", "die", wait=False).result(timeout=120)
    assert time.monotonic() - started < 120
    assert rt.client.call_entity("Counter@keep", "get") == 5  # the rest of the hub is fine


@ray.remote(num_cpus=0)
class _Gone:
    """Stands in for a supervisor that died for good."""

    def get_status(self, instance_id: str, show_history: bool) -> None:
        pass


def test_hub_whose_supervisor_stays_gone_raises_hub_unavailable(monkeypatch):
    start_ray()
    handle = _Gone.remote()
    ray.get(handle.get_status.remote("x", False))
    ray.kill(handle, no_restart=True)
    # ray.kill is asynchronous: a call sent right after it may still be served.
    with pytest.raises(ray.exceptions.RayActorError):
        for _ in range(100):
            ray.get(handle.get_status.remote("x", False))
            time.sleep(0.1)
    monkeypatch.setattr(runtime.driver.client, "RECONNECT_SECONDS", 1.0)
    client = DurableClient(f"gone-{uuid.uuid4().hex[:6]}", handle)
    with pytest.raises(HubUnavailableError) as caught:
        client.get_status("x")
    check_typed(caught.value, HubUnavailableError, None)
    assert client.hub in str(caught.value)


def test_supervisor_bug_is_an_internal_error_naming_the_method(hub):
    rt, done, _ = hub
    before = settled_store(rt.config.store)
    with pytest.raises(InternalError) as caught:
        rt.client._call(SupervisorHandle.query, "not a query")  # it reads query.statuses
    check_typed(caught.value, InternalError, None)
    error = caught.value
    text = str(error)
    assert "bug in ray-durable" in text and "'query'" in text and rt.config.hub in text, text
    assert "AttributeError" in text and "statuses" in text, text
    assert error.details.error_type == "AttributeError"
    assert "supervisor.py" in error.details.stack_trace, error.details.stack_trace
    assert isinstance(error.__cause__, ray.exceptions.RayTaskError)
    assert dump_store(rt.config.store) == before
    assert rt.client.get_status(done).runtime_status == "Completed"  # the hub still serves
