"""Dedicated hosts on a real Ray: owned by their node's keeper, recycled when an instance ends."""

from __future__ import annotations

import os
import signal
from collections import Counter

import ray
import workflows as wf
from helpers import completed_seqs, host_pid, start_runtime, stop_runtime, wait_until

from runtime import OrchestrationStatus
from runtime.actors.ray_seam import alive_nodes, find_actor, keeper_name, supervisor_name
from runtime.store import open_store


def test_instances_one_after_another_run_on_one_host_process(hub_name, tmp_path):
    """A host whose instance ended is the next spare: no new process per instance."""
    rt = start_runtime(hub_name, f"sqlite:///{tmp_path / 'hub.db'}", "dedicated")
    try:
        client = rt.client
        pids = []
        for _ in range(3):
            iid = client.start_new(wf.slow_chain, input=(str(tmp_path / "runs"), 2, 0.2))
            wait_until(
                lambda iid=iid: client.get_status(iid).runtime_status == OrchestrationStatus.RUNNING
            )
            pids.append(host_pid(client, iid))
            state = client.wait_for_completion(iid, timeout=60)
            assert state.runtime_status == OrchestrationStatus.COMPLETED, state.failure_details
        # Without recycling each instance is a new process: three pids. With it, each runs
        # on the host the last one left (a report still in flight may cost one new host).
        assert len(set(pids)) < 3, pids
    finally:
        stop_runtime(rt)


def test_stopping_the_hub_stops_its_keepers_and_a_new_start_makes_new_ones(hub_name, tmp_path):
    store = f"sqlite:///{tmp_path / 'hub.db'}"
    rt = start_runtime(hub_name, store, "dedicated")
    iid = rt.client.start_new(wf.chain, input=1)
    assert rt.client.wait_for_completion(iid, timeout=60).output == 4
    name = keeper_name(rt.config.hub, ray.get_runtime_context().get_node_id())
    assert find_actor(name) is not None
    stop_runtime(rt)
    rt = start_runtime(hub_name, store, "dedicated")  # at once: the old keeper may be dying
    try:
        iid = rt.client.start_new(wf.chain, input=2)
        assert rt.client.wait_for_completion(iid, timeout=60).output == 6
    finally:
        stop_runtime(rt)
    wait_until(lambda: find_actor(name) is None, timeout=30)


def test_a_supervisor_crash_leaves_the_dedicated_hosts_running(hub_name, tmp_path):
    """Hosts are owned by their keeper, not by the supervisor: the same process finishes the
    instance, and no activity runs twice."""
    log = str(tmp_path / "runs")
    rt = start_runtime(hub_name, f"sqlite:///{tmp_path / 'hub.db'}", "dedicated")
    try:
        client = rt.client
        iid = client.start_new(wf.slow_chain_then_go, input=(log, 4, 0.3))
        wait_until(lambda: len(completed_seqs(client, iid)) >= 2)
        host = client.host_of(iid)  # this handle reaches a new incarnation too (a new pid)
        pid = ray.get(host.pid.remote())
        old = client.supervisor_pid()
        os.kill(old, signal.SIGKILL)
        # The event waits for the new supervisor, so the instance outlives its recovery.
        wait_until(lambda: _answers(client) not in (None, old), timeout=120)
        client.raise_event(iid, "go", "went")
        state = client.wait_for_completion(iid, timeout=120)
        assert state.runtime_status == OrchestrationStatus.COMPLETED, state.failure_details
        assert ray.get(host.pid.remote()) == pid  # the same process all along, a spare now
        assert all(n == 1 for n in Counter(wf.executions(log)).values())  # nothing re-ran
    finally:
        stop_runtime(rt)


def test_a_host_whose_instance_ended_while_no_supervisor_ran_is_stopped(hub_name, tmp_path):
    """Its report of the end reached nobody: the next supervisor finds it through its keeper."""
    store = f"sqlite:///{tmp_path / 'hub.db'}"
    rt = start_runtime(hub_name, store, "dedicated")
    try:
        client = rt.client
        iid = client.start_new(wf.slow_chain, input=(str(tmp_path / "runs"), 3, 0.3))
        wait_until(lambda: len(completed_seqs(client, iid)) >= 1)
        host = client.host_of(iid)
        ray.kill(find_actor(supervisor_name(rt.config.hub)), no_restart=True)
        wait_until(lambda: _status(store, rt.config.hub, iid) == OrchestrationStatus.COMPLETED)
        assert not _gone(host)  # it finished the instance with no supervisor, and told nobody
        name = _record(store, rt.config.hub, iid).host
        rt = start_runtime(hub_name, store, "dedicated")  # a new supervisor: recovery
        wait_until(lambda: _gone(host), timeout=60)
        # Its keeper forgot it too (it listed the host to every later supervisor).
        wait_until(lambda: name not in _kept(rt.config.hub))
    finally:
        stop_runtime(rt)


def _answers(client) -> int | None:
    """The supervisor's pid, or None while it restarts."""
    try:
        return client.supervisor_pid()
    except Exception:
        return None


def _status(store: str, hub: str, iid: str) -> OrchestrationStatus | None:
    record = _record(store, hub, iid)
    return None if record is None else OrchestrationStatus(record.status)


def _record(store: str, hub: str, iid: str):
    db = open_store(store, hub)
    try:
        return db.load_instance(iid)
    finally:
        db.close()


def _kept(hub: str) -> list[str]:
    """The hosts the hub's keepers hold."""
    keepers = [find_actor(keeper_name(hub, node)) for node in alive_nodes()]
    return [n for k in keepers if k is not None for n in ray.get(k.names.remote())]


def _gone(handle) -> bool:
    try:
        ray.get(handle.pid.remote(), timeout=10)
        return False
    except ray.exceptions.RayActorError:
        return True
