"""Failure tests with real killed processes (SIGKILL), not ray.kill."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter

import patterns as pt
import pytest
import ray
import workflows as wf
from helpers import (
    assert_no_duplicate_completions,
    completed_seqs,
    host_pid,
    kill_host,
    start_ray,
    wait_until,
)

from runtime import OrchestrationStatus, Runtime


def test_host_killed_mid_chain_resumes_without_rerunning_completed_steps(runtime, tmp_path):
    log = str(tmp_path / "runs")
    client = runtime.client
    iid = client.start_new(wf.slow_chain, input=(log, 6, 0.3))
    wait_until(lambda: len(completed_seqs(client, iid)) >= 2)
    done_before = completed_seqs(client, iid)
    kill_host(client, iid)

    state = client.wait_for_completion(iid, timeout=120)
    assert state.runtime_status == OrchestrationStatus.COMPLETED, state.failure_details
    assert state.output == list(range(6))
    runs = Counter(wf.executions(log))
    assert all(runs[str(i)] == 1 for i in done_before), runs
    assert all(runs[str(i)] >= 1 for i in range(6))
    assert_no_duplicate_completions(client, iid)


def test_host_killed_mid_fan_out_resumes_and_reruns_only_unfinished(runtime, tmp_path):
    log = str(tmp_path / "runs")
    client = runtime.client
    n = 200
    iid = client.start_new(wf.slow_fan_out, input=(log, n, 0.02))
    wait_until(lambda: len(completed_seqs(client, iid)) >= 40)
    done_before = completed_seqs(client, iid)
    kill_host(client, iid)

    state = client.wait_for_completion(iid, timeout=180)
    assert state.runtime_status == OrchestrationStatus.COMPLETED, state.failure_details
    assert state.output == sum(range(n))
    runs = Counter(wf.executions(log))
    assert all(runs[str(i)] == 1 for i in done_before)
    assert set(runs) == {str(i) for i in range(n)}
    assert_no_duplicate_completions(client, iid)


@pytest.mark.parametrize("placement", ["dedicated"])
def test_keeper_killed_its_hosts_die_and_come_back_from_the_store(runtime, tmp_path):
    """A dedicated host is owned by its node's keeper (so that its activities share the
    keeper's workers): the keeper's death takes the host with it, and nothing is lost."""
    from runtime.actors.ray_seam import NAMESPACE, keeper_name

    log = str(tmp_path / "runs")
    client = runtime.client
    iid = client.start_new(wf.slow_chain, input=(log, 6, 0.3))
    wait_until(lambda: len(completed_seqs(client, iid)) >= 2)
    pid = host_pid(client, iid)
    node = ray.get_runtime_context().get_node_id()
    keeper = ray.get_actor(keeper_name(runtime.config.hub, node), namespace=NAMESPACE)
    done_before = completed_seqs(client, iid)
    os.kill(ray.get(keeper.pid.remote()), signal.SIGKILL)

    wait_until(lambda: not _alive(pid), timeout=30)  # fate-shared with its owner
    state = client.wait_for_completion(iid, timeout=120)
    assert state.runtime_status == OrchestrationStatus.COMPLETED, state.failure_details
    assert state.output == list(range(6))
    runs = Counter(wf.executions(log))
    assert all(runs[str(i)] == 1 for i in done_before), runs
    assert_no_duplicate_completions(client, iid)
    again = client.start_new(wf.chain, input=1)  # the restarted keeper creates hosts
    assert client.wait_for_completion(again, timeout=60).output == 4


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("placement", ["pooled"])
def test_supervisor_killed_instances_complete_and_clients_reconnect(runtime, tmp_path):
    log = str(tmp_path / "runs")
    client = runtime.client
    iid = client.start_new(wf.slow_chain, input=(log, 5, 0.3))
    wait_until(lambda: len(completed_seqs(client, iid)) >= 1)
    os.kill(client.supervisor_pid(), signal.SIGKILL)

    state = client.wait_for_completion(iid, timeout=120)
    assert state.output == list(range(5))
    assert Counter(wf.executions(log)) == Counter(str(i) for i in range(5))
    # The restarted supervisor serves new work too.
    fresh = client.start_new(wf.chain, input=2)
    assert client.wait_for_completion(fresh, timeout=60).output == 6


def test_events_sent_without_waiting_across_a_supervisor_crash_arrive_once_in_order(runtime):
    client = runtime.client
    iid = client.start_new(pt.collect_events, input=400)
    futures = [client.raise_event(iid, "item", i, wait=False) for i in range(200)]
    os.kill(client.supervisor_pid(), signal.SIGKILL)  # while batches are on their way
    futures += [client.raise_event(iid, "item", i, wait=False) for i in range(200, 400)]
    assert [f.result(timeout=120) for f in futures] == [None] * 400
    assert client.wait_for_completion(iid, timeout=120).output == list(range(400))


@pytest.mark.parametrize("placement", ["dedicated", "pooled"])
def test_whole_ray_stopped_mid_run_resumes_on_same_store(runtime, tmp_path, store_url):
    log = str(tmp_path / "runs")
    client = runtime.client
    hub = runtime.config.hub
    iid = client.start_new(wf.slow_chain, input=(log, 5, 0.3))
    wait_until(lambda: len(completed_seqs(client, iid)) >= 2)
    kill_host(client, iid)
    ray.shutdown()

    start_ray()
    rt = Runtime.start(hub=hub, store=store_url, placement=runtime.config.placement)
    try:
        state = rt.client.wait_for_completion(iid, timeout=120)
        assert state.runtime_status == OrchestrationStatus.COMPLETED, state.failure_details
        assert state.output == list(range(5))
        assert_no_duplicate_completions(rt.client, iid)
    finally:
        rt.shutdown()


def _orchestration_host_pids(hub: str) -> list[int]:
    """Process ids of the hub's orchestration hosts alive now (pool hosts, dedicated hosts)."""
    pids = []
    for actor in ray.util.list_named_actors(all_namespaces=True):
        name = actor["name"]
        if name.startswith((f"{hub}/pool-", f"{hub}/host-")):
            try:
                handle = ray.get_actor(name, namespace=actor["namespace"])
                pids.append(ray.get(handle.pid.remote(), timeout=5))
            except Exception:
                pass  # restarting, or retired meanwhile
    return pids


def test_hosts_killed_during_a_burst_of_starts_leave_no_instance_pending(runtime):
    """Every stored start is activated, whatever dies while it is routed (issue: 5 of 100
    transfers stayed Pending forever after two host kills during their starts)."""
    client, hub = runtime.client, runtime.config.hub
    started: list[str] = []
    kills = 0
    # Dedicated: each start is a host process of its own (seconds on 2 cores), so fewer and
    # smaller rounds: each start still races a kill.
    rounds, size = (6, 8) if runtime.config.placement == "pooled" else (3, 4)
    for _ in range(rounds):
        # Starts sent right after the kill race the supervisor's notice of the death.
        for pid in _orchestration_host_pids(hub):
            try:
                os.kill(pid, signal.SIGKILL)
                kills += 1
            except ProcessLookupError:
                pass  # a dedicated host stopped since (its instance completed)
        started.extend(client.start_new(wf.chain, input=i) for i in range(size))
        time.sleep(0.3)

    deadline = time.monotonic() + 120
    stuck = []
    for index, iid in enumerate(started):
        try:
            state = client.wait_for_completion(iid, timeout=max(1.0, deadline - time.monotonic()))
        except TimeoutError:
            stuck.append((iid, str(client.get_status(iid).runtime_status)))
            continue
        assert state.runtime_status == OrchestrationStatus.COMPLETED, state.failure_details
        assert state.output == (index % size + 1) * 2
    total = len(started)
    assert not stuck, (
        f"{len(stuck)} of {total} instances never finished after {kills} kills: {stuck}"
    )
