"""Crashes at the dangerous moments, armed through the environment of the Ray processes
(runtime/faults.py): each point kills a real host or supervisor process once, and the
hub must lose nothing and duplicate nothing."""

from __future__ import annotations

from collections import Counter

import exactly_once_defs as eo
import pytest
import workflows as wf
from helpers import (
    armed_ray,
    assert_no_duplicate_completions,
    query_store,
    stop_runtime,
    wait_until,
)

from runtime import OrchestrationStatus, Runtime

OWN_CLUSTER = True  # this module's Ray carries the armed fault points in its environment

ARMED = {
    "commit": "host.after_commit",
    "result": "host.before_result",
    "group": "store.mid_group_commit",
    "outbox": "outbox.after_delivery",
}


@pytest.fixture(scope="module")
def faults_dir(tmp_path_factory):
    """A Ray whose processes have every point armed, one hub per point."""
    directory = tmp_path_factory.mktemp("faults")
    with armed_ray(directory, [f"{p}@faults-{h}" for h, p in ARMED.items()]):
        yield directory


@pytest.fixture
def hub_for(faults_dir, tmp_path):
    started = []

    def start(point: str, placement: str = "pooled") -> Runtime:
        rt = Runtime.start(
            hub=f"faults-{point}",
            store=f"sqlite:///{tmp_path / 'hub.db'}",
            placement=placement,
            pool_size=1,
            register=wf.ALL + eo.ALL,
        )
        started.append(rt)
        return rt

    yield start
    for rt in started:
        stop_runtime(rt)


def fired(faults_dir, point: str) -> bool:
    return (faults_dir / f"{ARMED[point]}@faults-{point}").exists()


def test_a_crash_after_commit_and_before_dispatch_dispatches_on_recovery(
    hub_for, faults_dir, tmp_path
):
    client = hub_for("commit").client
    log = str(tmp_path / "runs")
    iid = client.start_new(wf.slow_chain, input=(log, 4, 0.1))
    state = client.wait_for_completion(iid, timeout=120)
    assert fired(faults_dir, "commit")
    assert state.output == list(range(4)), state.failure_details
    # The first step's activity left with its commit and may have run in the dead host
    # too (at-least-once); the new incarnation sends it again, and every later step once.
    runs = Counter(wf.executions(log))
    assert set(runs) == {str(i) for i in range(4)}, runs
    assert runs["0"] in (1, 2) and all(runs[str(i)] == 1 for i in range(1, 4)), runs
    assert_no_duplicate_completions(client, iid)


def test_a_crash_between_an_activity_result_and_its_record_runs_it_again_once(
    hub_for, faults_dir, tmp_path
):
    client = hub_for("result").client
    log = str(tmp_path / "runs")
    iid = client.start_new(wf.slow_chain, input=(log, 3, 0.1))
    state = client.wait_for_completion(iid, timeout=120)
    assert fired(faults_dir, "result")
    assert state.output == list(range(3)), state.failure_details
    # The first result died with the host before it was recorded: at-least-once.
    assert Counter(wf.executions(log)) == Counter(["0", "0", "1", "2"])
    assert_no_duplicate_completions(client, iid)


def test_a_crash_inside_a_group_commit_leaves_no_checkpoint_half_written(hub_for, faults_dir):
    client = hub_for("group").client
    ids = [client.start_new(wf.fan_out_fan_in, input=n) for n in range(2, 10)]
    for n, iid in zip(range(2, 10), ids):
        state = client.wait_for_completion(iid, timeout=180)
        assert state.runtime_status == OrchestrationStatus.COMPLETED, state.failure_details
        assert state.output == n * (n + 1) // 2
        assert_no_duplicate_completions(client, iid)
    assert fired(faults_dir, "group")


def test_a_crash_between_outbox_delivery_and_deletion_starts_one_instance(
    hub_for, faults_dir, tmp_path
):
    rt = hub_for("outbox")
    client = rt.client
    iid = client.call_entity("Launcher@k", "launch", 4)
    wait_until(lambda: fired(faults_dir, "outbox"), timeout=60)
    wait_until(lambda: client.get_status(iid) is not None, timeout=60)
    assert client.wait_for_completion(iid, timeout=120).output == 10
    url = rt.config.store
    wait_until(lambda: not query_store(url, "SELECT id FROM outbox WHERE hub=?", (rt.config.hub,)))
    rows = query_store(
        url, "SELECT instance_id, start_id FROM instances WHERE hub=?", (rt.config.hub,)
    )
    assert [r[0] for r in rows] == [iid], rows
