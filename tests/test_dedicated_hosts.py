"""Dedicated hosts on a real Ray: owned by their node's keeper, recycled when an instance ends."""

from __future__ import annotations

import os
import signal
from collections import Counter

import ray
import workflows as wf
from helpers import completed_seqs, host_pid, start_runtime, stop_runtime, wait_until

from runtime import OrchestrationStatus
from runtime.actors.ray_seam import find_actor, keeper_name


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
        iid = client.start_new(wf.slow_chain, input=(log, 8, 0.3))
        wait_until(lambda: len(completed_seqs(client, iid)) >= 2)
        host = host_pid(client, iid)
        os.kill(client.supervisor_pid(), signal.SIGKILL)
        state = client.wait_for_completion(iid, timeout=120)
        assert state.runtime_status == OrchestrationStatus.COMPLETED, state.failure_details
        assert host_pid(client, iid) == host  # the same process all along
        assert all(n == 1 for n in Counter(wf.executions(log)).values())  # nothing re-ran
    finally:
        stop_runtime(rt)
