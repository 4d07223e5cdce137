"""Task hubs side by side: two hubs on one Ray cluster and ONE store file are isolated."""

from __future__ import annotations

import sqlite3
import uuid
from datetime import timedelta

import entity_defs
import hub_defs
import pytest
import ray
from helpers import start_ray

from runtime import InstanceNotFoundError, Runtime
from runtime.testing import ManualClock

SETTINGS = {"placement": "pooled", "pool_size": 1, "warm_hosts": 0}


@pytest.fixture(scope="module")
def hubs(tmp_path_factory):
    """(blue, green, clock, store path): different code under the same names, one file."""
    start_ray()
    path = tmp_path_factory.mktemp("hubs") / "shared.db"
    suffix = uuid.uuid4().hex[:6]
    clock = ManualClock()  # blue's time only: green keeps the real clock
    common = [hub_defs.stamp, hub_defs.nap, entity_defs.Counter]
    blue = Runtime.start(
        f"blue-{suffix}",
        store=f"sqlite:///{path}",
        clock=clock,
        register=[hub_defs.blue_flow, *common],
        **SETTINGS,
    )
    green = Runtime.start(
        f"green-{suffix}",
        store=f"sqlite:///{path}",
        register=[hub_defs.green_flow, *common],
        **SETTINGS,
    )
    yield blue, green, clock, path
    for rt in (blue, green):
        try:
            rt.shutdown()
        except Exception:
            pass


def test_each_hub_has_its_own_supervisor_on_the_same_store(hubs):
    blue, green, _, path = hubs
    assert blue.config.store == green.config.store == f"sqlite:///{path}"
    assert ray.get(blue.supervisor.pid.remote()) != ray.get(green.supervisor.pid.remote())


def test_same_instance_id_is_two_instances_and_events_go_to_their_hub(hubs):
    blue, green, _, path = hubs
    iid = "order-1"
    assert blue.client.start_new("flow", input="a", instance_id=iid) == iid
    assert green.client.start_new("flow", input="b", instance_id=iid) == iid

    blue.client.raise_event(iid, "Go", 1)
    assert blue.client.wait_for_completion(iid, timeout=60).output == "blue:a:1"
    assert str(green.client.get_status(iid).runtime_status) == "Running"

    green.client.raise_event(iid, "Go", 2)
    assert green.client.wait_for_completion(iid, timeout=60).output == "green:b:2"
    assert blue.client.get_status(iid).output == "blue:a:1"

    with sqlite3.connect(path) as db:
        rows = db.execute(
            "SELECT hub FROM instances WHERE instance_id=? ORDER BY hub", (iid,)
        ).fetchall()
    assert [r[0] for r in rows] == sorted([blue.config.hub, green.config.hub])


def test_listing_and_purge_stay_in_their_hub(hubs):
    blue, green, _, _ = hubs
    prefix = f"list-{uuid.uuid4().hex[:6]}-"
    for rt, ids in ((blue, ["b1", "b2"]), (green, ["g1"])):
        for i in ids:
            rt.client.start_new("flow", input=i, instance_id=prefix + i)
            rt.client.raise_event(prefix + i, "Go", 0)
        for i in ids:
            rt.client.wait_for_completion(prefix + i, timeout=60)
    listed = {
        rt.config.hub: sorted(
            s.instance_id for s in rt.client.get_status_by(instance_id_prefix=prefix)
        )
        for rt in (blue, green)
    }
    assert listed == {
        blue.config.hub: [prefix + "b1", prefix + "b2"],
        green.config.hub: [prefix + "g1"],
    }

    assert blue.client.purge_instance_history(prefix + "b1") == 1
    assert blue.client.purge_instance_history_by(runtime_status=["Completed"]) >= 1
    assert blue.client.get_status_by(instance_id_prefix=prefix) == []
    assert green.client.get_status(prefix + "g1").output == "green:g1:0"


def test_an_instance_of_one_hub_is_unknown_to_the_other(hubs):
    blue, green, _, _ = hubs
    iid = f"only-blue-{uuid.uuid4().hex[:6]}"
    blue.client.start_new("flow", input="x", instance_id=iid)
    with pytest.raises(InstanceNotFoundError):
        green.client.raise_event(iid, "Go", 1)
    with pytest.raises(InstanceNotFoundError):
        green.client.terminate(iid, "wrong hub")
    assert green.client.get_status(iid) is None
    blue.client.raise_event(iid, "Go", 3)
    assert blue.client.wait_for_completion(iid, timeout=60).output == "blue:x:3"


def test_entities_with_the_same_id_are_separate(hubs):
    blue, green, _, _ = hubs
    key = f"Counter@{uuid.uuid4().hex[:6]}"
    blue.client.signal_entity(key, "add", 1)
    green.client.signal_entity(key, "add", 10)
    green.client.signal_entity(key, "add", 10)
    assert blue.client.call_entity(key, "get") == 1
    assert green.client.call_entity(key, "get") == 20
    assert blue.client.read_entity_state(key).entity_state.value == 1
    green_only = f"Counter@green-{uuid.uuid4().hex[:6]}"
    green.client.signal_entity(green_only, "add", 1)
    assert not blue.client.read_entity_state(green_only).entity_exists
    blue_listed = {str(e.entity_id) for e in blue.client.get_entities(page_size=1000)[0]}
    assert key in blue_listed and green_only not in blue_listed


def test_timers_fire_only_in_their_hub(hubs):
    blue, green, clock, _ = hubs
    iid = f"nap-{uuid.uuid4().hex[:6]}"
    blue.client.start_new("nap", input=1, instance_id=iid)
    green.client.start_new("nap", input=1, instance_id=iid)
    clock.advance(timedelta(hours=2))  # blue's clock; green's timer is an hour of real time
    assert blue.client.wait_for_completion(iid, timeout=60).output == "woke"
    assert str(green.client.get_status(iid).runtime_status) == "Running"
    green.client.terminate(iid, "test over")
    assert str(green.client.wait_for_completion(iid, timeout=60).runtime_status) == "Terminated"
