"""The Durable Functions patterns end to end: timers, events, eternal, children, retries."""

from __future__ import annotations

import os
from datetime import timedelta

import patterns as pt
import pytest
import workflows as wf
from helpers import kill_host, query_store, start_ray, wait_until

from runtime import (
    InstanceNotFoundError,
    InvalidOperationError,
    OrchestrationStatus,
    Runtime,
)
from runtime.orchestration import history as h


def status(client, iid):
    return client.get_status(iid).runtime_status


def waiting_for_event(client, iid) -> bool:
    state = client.get_status(iid, show_history=True)
    return state.runtime_status == OrchestrationStatus.RUNNING and any(
        isinstance(e, h.TaskCompleted) for e in state.history
    )


def test_approval_times_out_after_72_hours_of_manual_clock(clocked, clock):
    client = clocked.client
    iid = client.start_new(pt.approval, input="budget")
    wait_until(lambda: waiting_for_event(client, iid))
    clock.advance(timedelta(hours=71))
    assert status(client, iid) == OrchestrationStatus.RUNNING
    clock.advance(timedelta(hours=1, seconds=1))
    assert client.wait_for_completion(iid, timeout=30).output == "escalated budget"


def test_approval_event_wins_before_the_timeout(clocked, clock):
    client = clocked.client
    iid = client.start_new(pt.approval, input="budget")
    client.raise_event(iid, "ApprovalEvent", "yes")
    assert client.wait_for_completion(iid, timeout=30).output == "approved: yes"
    clock.advance(timedelta(hours=80))  # the cancelled timer firing later changes nothing
    assert client.get_status(iid).output == "approved: yes"


def test_timer_survives_a_killed_host(clocked, clock):
    client = clocked.client
    iid = client.start_new(pt.sleeper, input=2)
    wait_until(lambda: status(client, iid) == OrchestrationStatus.RUNNING)
    kill_host(client, iid)
    clock.advance(timedelta(hours=2))
    state = client.wait_for_completion(iid, timeout=60)
    assert state.output == "2026-01-01T02:00:00+00:00"


def test_event_wait_with_timeout_fails_typed(clocked, clock):
    client = clocked.client
    iid = client.start_new(pt.wait_with_timeout)
    wait_until(lambda: status(client, iid) == OrchestrationStatus.RUNNING)
    clock.advance(timedelta(minutes=11))
    assert client.wait_for_completion(iid, timeout=30).output == "timed out"


def test_events_raised_before_waiting_are_consumed_in_order(runtime):
    client = runtime.client
    iid = client.start_new(pt.collect_events, input=5)
    for i in range(5):
        client.raise_event(iid, "item", i)
    assert client.wait_for_completion(iid, timeout=30).output == [0, 1, 2, 3, 4]


def test_events_raised_without_waiting_arrive_in_order_and_refusals_reach_their_futures(
    runtime, store_url
):
    client = runtime.client
    iid = client.start_new(pt.collect_events, input=300)
    futures = [client.raise_event(iid, "item", i, wait=False) for i in range(300)]
    assert [f.result(timeout=60) for f in futures] == [None] * 300
    assert client.wait_for_completion(iid, timeout=60).output == list(range(300))
    stored = len(client.get_status(iid, show_history=True).history)
    with pytest.raises(InvalidOperationError, match="Completed"):
        client.raise_event(iid, "item", 1, wait=False).result(timeout=30)
    with pytest.raises(InstanceNotFoundError):
        client.raise_event("nobody", "item", 1, wait=False).result(timeout=30)
    assert len(client.get_status(iid, show_history=True).history) == stored
    assert query_store(store_url, "SELECT COUNT(*) FROM inbox WHERE instance_id=?", (iid,)) == [
        (0,)
    ]


def test_event_raised_while_host_is_dead_is_not_lost(runtime):
    client = runtime.client
    iid = client.start_new(pt.collect_events, input=2)
    client.raise_event(iid, "item", "a")
    wait_until(lambda: len(client.get_status(iid, show_history=True).history) >= 3)
    kill_host(client, iid)
    client.raise_event(iid, "item", "b")
    assert client.wait_for_completion(iid, timeout=60).output == ["a", "b"]


def test_eternal_counter_continues_as_new_with_bounded_history(runtime):
    client = runtime.client
    iid = client.start_new(pt.eternal_counter, input=0)
    for op in ["incr"] * 30 + ["decr"] * 5:
        client.raise_event(iid, "operation", op)
    wait_until(lambda: client.get_status(iid).custom_status == 25)
    state = client.get_status(iid, show_history=True)
    assert len(state.history) < 10
    client.raise_event(iid, "operation", "end")
    assert client.wait_for_completion(iid, timeout=30).output == 25


GENERATIONS = 3_000


@pytest.mark.slow
@pytest.mark.parametrize("placement", ["pooled"])
def test_continue_as_new_3000_times_keeps_the_store_bounded(runtime, store_url):
    # 3,000 generations show a bound as well as 10,000 did, in a third of the time.
    client = runtime.client
    iid = client.start_new(pt.ticker, input=(0, GENERATIONS))
    assert client.wait_for_completion(iid, timeout=600).output == GENERATIONS
    rows = query_store(store_url, "SELECT COUNT(*) FROM history")[0][0]
    if store_url.startswith("sqlite:///"):
        path = store_url[len("sqlite:///") :]
        size = os.path.getsize(path) + os.path.getsize(path + "-wal")
        print(f"history rows after {GENERATIONS} continue-as-new: {rows}; store size {size} bytes")
    assert rows < 20


def test_retry_waits_on_durable_timers_and_survives_a_kill(clocked, clock, tmp_path):
    client = clocked.client
    log = str(tmp_path / "tries")
    iid = client.start_new(pt.retrying, input=(log, 2))
    wait_until(lambda: len(wf.executions(log)) == 1)
    wait_until(
        lambda: any(
            isinstance(e, h.TimerCreated) for e in client.get_status(iid, show_history=True).history
        )
    )
    kill_host(client, iid)
    clock.advance(timedelta(minutes=5))
    wait_until(lambda: len(wf.executions(log)) == 2)
    assert status(client, iid) == OrchestrationStatus.RUNNING
    wait_until(
        lambda: (
            sum(
                isinstance(e, h.TimerCreated)
                for e in client.get_status(iid, show_history=True).history
            )
            == 2
        )
    )
    clock.advance(timedelta(minutes=10))
    assert client.wait_for_completion(iid, timeout=60).output == "ok"
    assert len(wf.executions(log)) == 3


def test_sub_orchestrations_fan_out_and_are_queryable(runtime):
    client = runtime.client
    iid = client.start_new(pt.parent, input=10, instance_id="p")
    assert client.wait_for_completion(iid, timeout=120).output == sum(range(1, 11))
    assert client.get_status("p:3").output == 4
    assert len(client.get_status_by(instance_id_prefix="p:")) == 10


def test_terminate_is_recursive_and_purge_removes_children(runtime):
    client = runtime.client
    iid = client.start_new(pt.parent_of_waiter, instance_id="top")
    wait_until(
        lambda: (
            client.get_status("top-c") is not None
            and status(client, "top-c") == OrchestrationStatus.RUNNING
        )
    )
    with pytest.raises(InvalidOperationError, match="only completed"):
        client.purge_instance_history(iid)
    client.terminate(iid, "stop all")
    assert client.wait_for_completion(iid, timeout=30).runtime_status == "Terminated"
    assert client.wait_for_completion("top-c", timeout=30).runtime_status == "Terminated"
    assert client.purge_instance_history(iid) == 2
    assert client.get_status("top-c") is None and client.get_status(iid) is None


def test_suspend_holds_events_until_resume(runtime):
    client = runtime.client
    iid = client.start_new(pt.collect_events, input=1)
    wait_until(lambda: status(client, iid) == OrchestrationStatus.RUNNING)
    client.suspend(iid, "maintenance")
    client.raise_event(iid, "item", "x")
    assert status(client, iid) == OrchestrationStatus.SUSPENDED
    with pytest.raises(TimeoutError):
        client.wait_for_completion(iid, timeout=1.0)
    client.resume(iid, "done")
    assert client.wait_for_completion(iid, timeout=30).output == ["x"]


def test_bad_lifecycle_requests_are_refused_and_change_nothing(runtime):
    client = runtime.client
    done = client.start_new(wf.chain, input=1)
    client.wait_for_completion(done, timeout=30)
    running = client.start_new(pt.collect_events, input=1)
    with pytest.raises(InvalidOperationError, match="Completed"):
        client.raise_event(done, "item", 1)
    with pytest.raises(InvalidOperationError, match="nothing to resume"):
        client.resume(running)
    with pytest.raises(InvalidOperationError, match="only completed"):
        client.purge_instance_history(running)
    with pytest.raises(InstanceNotFoundError):
        client.raise_event("nobody", "item", 1)
    client.raise_event(running, "item", 7)
    assert client.wait_for_completion(running, timeout=30).output == [7]
    assert client.get_status(done).output == 4


def test_restart_and_purge_by_filter(runtime):
    client = runtime.client
    first = client.start_new(wf.chain, input=3)
    client.wait_for_completion(first, timeout=30)
    again = client.restart(first)
    assert again != first and client.wait_for_completion(again, timeout=30).output == 8
    assert client.restart(first, restart_with_new_instance_id=False) == first
    client.wait_for_completion(first, timeout=30)
    assert client.purge_instance_history_by(runtime_status=["Completed"]) == 2
    assert client.get_status_by() == []


def test_instances_run_to_the_end_on_the_version_they_started_with(runtime):
    client = runtime.client
    old = client.start_new(pt.versioned_v1)
    runtime.register(pt.versioned_v2)
    new = client.start_new("versioned")
    assert client.get_status(old).version == "1" and client.get_status(new).version == "2"
    client.raise_event(old, "go")
    client.raise_event(new, "go")
    assert client.wait_for_completion(old, timeout=30).output == "v1"
    assert client.wait_for_completion(new, timeout=30).output == "v2"


@pytest.mark.parametrize("placement", ["pooled"])
def test_child_given_as_object_needs_no_registration(hub_name, tmp_path, placement):
    from helpers import start_ray

    from runtime import Runtime

    start_ray()
    rt = Runtime.start(
        hub=hub_name + "-bare", store=f"sqlite:///{tmp_path}/bare.db", placement=placement
    )
    try:
        iid = rt.client.start_new(pt.parent, input=3)
        assert rt.client.wait_for_completion(iid, timeout=60).output == 6
    finally:
        rt.shutdown()


def test_hub_activity_defaults_give_ray_options_and_a_retry_policy(hub_name, store_url, tmp_path):
    start_ray()
    rt = Runtime.start(
        hub=hub_name,
        store=store_url,
        placement="pooled",
        pool_size=1,
        register=pt.ALL,
        activity_defaults={
            "num_cpus": 0.5,
            "retry": {"first_retry_interval": 0.1, "max_number_of_attempts": 3},
        },
    )
    try:
        client = rt.client
        log = str(tmp_path / "tries")
        iid = client.start_new(pt.plain_call, input=(log, 2))
        assert client.wait_for_completion(iid, timeout=60).output == "ok"
        assert len(wf.executions(log)) == 3
        iid = client.start_new(pt.cpus_of_activity)
        assert client.wait_for_completion(iid, timeout=60).output == 0.5
    finally:
        rt.shutdown()
