"""Inline activities on a real hub: they run in the host's process, their results are
committed like a dispatched activity's, failures, retries and timeouts behave as
documented, and a host killed in the middle of one runs it again (or quarantines the
instance whose inline activity kills its host every time)."""

from __future__ import annotations

import inline_defs as d
import pytest
import workflows as wf
from helpers import (
    assert_no_duplicate_completions,
    completed_seqs,
    same_pool_host,
    start_hub,
    stop_runtime,
    wait_until,
)

from runtime import OrchestrationStatus
from runtime.orchestration import history as h

LIMIT = 3


@pytest.fixture
def hub(hub_name, store_url, placement):
    rt = start_hub(hub_name, store_url, placement, wf.ALL + d.ALL, quarantine_after=LIMIT)
    yield rt
    stop_runtime(rt)


def _completed(client, iid):
    state = client.wait_for_completion(iid, timeout=120)
    assert state.runtime_status == OrchestrationStatus.COMPLETED, state.failure_details
    return state


def test_inline_activities_run_in_the_host_and_each_call_may_choose(hub):
    client = hub.client
    iid = client.start_new(d.inline_chain, input=3)
    state = _completed(client, iid)
    # Declared inline, dispatched, dispatched made inline by the call, inline made dispatched.
    assert state.output == (6, ["host", "host", "host", "task", "host", "task"])
    history = client.get_status(iid, show_history=True).history
    scheduled = [(e.name, e.inline) for e in history if isinstance(e, h.TaskScheduled)]
    assert scheduled == [
        ("add_inline", None),
        ("add_inline", None),
        ("add_inline", None),
        ("add_dispatched", None),
        ("add_dispatched", True),
        ("add_inline", False),
    ]
    assert_no_duplicate_completions(client, iid)


def test_inline_failures_timeouts_retries_and_results_that_cannot_be_stored(hub, tmp_path):
    client = hub.client
    iid = client.start_new(d.inline_failures, input=str(tmp_path / "runs"))
    state = _completed(client, iid)
    assert state.output == ["ActivityTimeoutError", 3, "SerializationError", "finished"]
    assert wf.executions(str(tmp_path / "runs")) == ["flaky"] * 3


def test_an_inline_activity_gets_a_copy_of_its_input(hub):
    client = hub.client
    state = _completed(client, client.start_new(d.inline_copies))
    assert state.output == (2, ["mine"])


def test_a_host_killed_in_an_inline_activity_runs_it_again(hub, tmp_path):
    client = hub.client
    flag, log = tmp_path / "die", str(tmp_path / "runs")
    flag.touch()
    iid = client.start_new(d.inline_steps, input=(log, str(flag)))
    # The host dies in step 1 until the flag goes: the step is re-run, step 0 is not.
    wait_until(lambda: len(wf.executions(log)) >= 3, timeout=120)
    flag.unlink()
    state = _completed(client, iid)
    assert state.output == [0, 1, 2]
    runs = wf.executions(log)
    assert runs.count("0") == 1 and runs.count("2") == 1 and runs.count("1") >= 2, runs
    assert_no_duplicate_completions(client, iid)


def test_an_inline_activity_that_always_kills_its_host_is_quarantined(hub, tmp_path):
    client = hub.client
    flag, log = tmp_path / "die", str(tmp_path / "runs")
    flag.touch()
    iid = client.start_new(d.inline_steps, input=(log, str(flag)))
    state = client.wait_for_completion(iid, timeout=240)
    assert state.runtime_status == OrchestrationStatus.FAILED
    assert state.failure_details.error_type == "QuarantinedError", state.failure_details
    assert "inline activity step_or_die" in state.failure_details.message
    [item] = client.list_quarantined()
    assert (item.target, item.crashes) == (iid, LIMIT)
    assert wf.executions(log).count("1") == LIMIT


def test_a_long_inline_activity_holds_up_nothing_else_on_its_host(hub, tmp_path):
    client, gate = hub.client, tmp_path / "gate"
    waiter, other = same_pool_host("w", 2)
    client.start_new(d.waits_inline, input=str(gate), instance_id=waiter)
    client.start_new(d.inline_chain, input=3, instance_id=other)
    # The other instance, on the same host, completes while the first one's activity waits.
    _completed(client, other)
    assert client.get_status(waiter).runtime_status == OrchestrationStatus.RUNNING
    gate.touch()
    assert _completed(client, waiter).output is True


def test_a_fan_out_with_an_inline_step_that_always_kills_its_host_is_quarantined(hub, tmp_path):
    client = hub.client
    flag, log = tmp_path / "die", str(tmp_path / "runs")
    flag.touch()
    iid = client.start_new(d.fan_with_poison, input=(log, str(flag)))
    state = client.wait_for_completion(iid, timeout=240)
    assert state.failure_details.error_type == "QuarantinedError", state.failure_details
    [item] = client.list_quarantined()
    assert (item.target, item.crashes) == (iid, LIMIT)  # one death, one count


@pytest.mark.parametrize("placement", ["pooled"])
def test_the_neighbour_of_a_poison_inline_activity_is_not_quarantined(hub, tmp_path, placement):
    client = hub.client
    flag, log = tmp_path / "die", str(tmp_path / "runs")
    flag.touch()
    poison, neighbour = same_pool_host("n", 2)
    client.start_new(d.naps, input=(6, 0.5), instance_id=neighbour)
    wait_until(lambda: completed_seqs(client, neighbour), timeout=120)
    client.start_new(d.inline_steps, input=(log, str(flag)), instance_id=poison)
    state = client.wait_for_completion(poison, timeout=240)
    assert state.failure_details.error_type == "QuarantinedError", state.failure_details
    assert _completed(client, neighbour).output == 6
    assert [item.target for item in client.list_quarantined()] == [poison]
    assert_no_duplicate_completions(client, neighbour)
