"""End to end on a real local Ray and a real SQLite file, in both placements."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import ray
import workflows as wf
from helpers import query_store

from runtime import (
    DurableError,
    InstanceExistsError,
    OrchestrationStatus,
    OrchestratorNotFoundError,
    SerializationError,
)
from runtime.orchestration import history as h


def store_counts(url: str) -> dict[str, int]:
    return {
        t: query_store(url, f"SELECT COUNT(*) FROM {t}")[0][0]
        for t in ("instances", "history", "inbox")
    }


def test_chain_completes_with_activity_called_by_object_and_by_name(runtime):
    runtime.register(wf.double)
    iid = runtime.client.start_new(wf.chain, input=1)
    state = runtime.client.wait_for_completion(iid, timeout=60)
    assert state.runtime_status == OrchestrationStatus.COMPLETED
    assert state.output == 4 and state.input == 1 and state.name == "chain"
    assert state.created_time <= state.last_updated_time


def test_fan_out_of_1000_completes_with_correct_sum(runtime):
    iid = runtime.client.start_new(wf.fan_out_fan_in, input=1000)
    state = runtime.client.wait_for_completion(iid, timeout=120)
    assert state.output == sum(range(1, 1001))
    full = runtime.client.get_status(iid, show_history=True)
    completions = [e.seq for e in full.history if isinstance(e, h.TaskCompleted)]
    assert sorted(completions) == list(range(1000))


def test_activity_failure_is_catchable_with_original_type(runtime):
    iid = runtime.client.start_new(wf.compensate, input="card declined")
    state = runtime.client.wait_for_completion(iid, timeout=60)
    assert state.output == {"error_type": "ValueError", "message": "card declined"}
    assert state.custom_status == "compensated"


def test_unhandled_failure_fails_instance_with_details(runtime):
    iid = runtime.client.start_new(wf.unhandled, input="boom")
    state = runtime.client.wait_for_completion(iid, timeout=60)
    assert state.runtime_status == OrchestrationStatus.FAILED
    assert state.failure_details.error_type == "TaskFailedError"
    assert "ValueError: boom" in state.failure_details.message
    assert "raise ValueError" in state.failure_details.stack_trace


def test_unknown_activity_name_fails_the_instance_clearly(runtime):
    iid = runtime.client.start_new(wf.calls_unknown)
    state = runtime.client.wait_for_completion(iid, timeout=60)
    assert state.runtime_status == OrchestrationStatus.FAILED
    assert "no activity named 'no_such_activity'" in state.failure_details.message


def test_start_by_registered_name_and_query_by_status(runtime):
    runtime.register(wf.chain)
    ids = [runtime.client.start_new("chain", input=i, instance_id=f"q-{i}") for i in range(3)]
    for iid in ids:
        runtime.client.wait_for_completion(iid, timeout=60)
    done = runtime.client.get_status_by(runtime_status=[OrchestrationStatus.COMPLETED])
    assert {s.instance_id for s in done} == set(ids)
    assert runtime.client.get_status_by(runtime_status=["Running"]) == []
    assert [
        s.instance_id for s in runtime.client.get_status_by(instance_id_prefix="q-", top=2)
    ] == ids[:2]


def test_terminate_a_running_instance(runtime, tmp_path):
    iid = runtime.client.start_new(wf.slow_chain, input=(str(tmp_path / "x"), 100, 0.2))
    runtime.client.terminate(iid, "enough")
    state = runtime.client.wait_for_completion(iid, timeout=60)
    assert state.runtime_status == OrchestrationStatus.TERMINATED
    assert state.output == "enough"


@pytest.mark.parametrize("placement", ["pooled"])
def test_bad_input_is_refused_and_leaves_the_store_unchanged(runtime, store_url):
    iid = runtime.client.start_new(wf.chain, input=1, instance_id="keep")
    runtime.client.wait_for_completion(iid, timeout=60)
    slow = runtime.client.start_new(wf.slow_chain, input=("/dev/null", 50, 0.1), instance_id="run")
    before = store_counts(store_url)

    with pytest.raises(OrchestratorNotFoundError, match="no orchestrator named 'nope'"):
        runtime.client.start_new("nope", input=1)
    with pytest.raises(SerializationError, match="orchestration input"):
        runtime.client.start_new(wf.chain, input=threading.Lock())
    with pytest.raises(InstanceExistsError, match="'run' already exists"):
        runtime.client.start_new(wf.chain, input=1, instance_id=slow)
    assert runtime.client.get_status("unknown-id") is None
    with pytest.raises(TimeoutError):
        runtime.client.wait_for_completion(slow, timeout=0.5)

    after = store_counts(store_url)
    assert after["instances"] == before["instances"]
    assert runtime.client.get_status("keep").output == 4
    runtime.client.terminate(slow)


def test_starts_from_many_threads_share_calls_and_each_keeps_its_own_refusal(
    runtime, store_url, monkeypatch, tmp_path
):
    """start_new from many threads at once: a few Ray calls carry them all, every instance
    runs, and a start refused for its id is refused alone, writing nothing."""
    client = runtime.client
    runtime.register(wf.double)
    client.start_new(wf.chain, input=0, instance_id="taken")
    client.wait_for_completion("taken", timeout=60)
    client.start_new(
        wf.slow_chain_then_go, input=(str(tmp_path / "log"), 1, 0.1), instance_id="running"
    )
    before = query_store(store_url, "SELECT input FROM instances WHERE instance_id='running'")
    calls: list[int] = []
    pipeline = client._starts
    method = pipeline._method

    def counted(handle: Any, starts: list[Any]) -> Any:
        calls.append(len(starts))
        return method(handle, starts)

    monkeypatch.setattr(pipeline, "_method", counted)
    burst = 24  # each a host process in the dedicated placement
    ids = [f"burst-{n}" for n in range(burst)] + ["running", "taken"]

    def start(iid: str) -> Any:
        try:
            return client.start_new(wf.chain, input=1, instance_id=iid)
        except DurableError as exc:
            return exc

    with ThreadPoolExecutor(16) as pool:
        outcomes = list(pool.map(start, ids))
    assert outcomes[:burst] == ids[:burst] and outcomes[-1] == "taken"  # an ended id is reused
    assert isinstance(outcomes[burst], InstanceExistsError)
    assert sum(calls) == len(ids) and len(calls) < len(ids)
    assert query_store(store_url, "SELECT input FROM instances WHERE instance_id='running'") == (
        before
    )
    for iid in ids[:burst] + ["taken"]:
        assert client.wait_for_completion(iid, timeout=120).output == 4
    client.terminate("running")


def test_completed_id_can_be_reused(runtime):
    runtime.client.wait_for_completion(runtime.client.start_new(wf.chain, 1, "same"), timeout=60)
    runtime.client.start_new(wf.chain, input=10, instance_id="same")
    assert runtime.client.wait_for_completion("same", timeout=60).output == 22


DRIVER = textwrap.dedent(
    """
    import sys, ray
    from runtime import DurableClient, orchestrator, activity

    @activity
    def shout(s):
        return s.upper() + "!"

    @orchestrator
    def greet(ctx, name):
        return (yield ctx.call_activity(shout, "hello " + name))

    ray.init(address=sys.argv[2], namespace="some-other-namespace")
    client = DurableClient.connect(hub=sys.argv[1])
    print(client.start_new(greet, input="ray"))
    """
)


@pytest.mark.parametrize("placement", ["dedicated"])
def test_second_driver_starts_code_from_its_main_and_exits(runtime, tmp_path):
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    out = subprocess.run(
        # This session's cluster by address: "auto" is ambiguous when other clusters run.
        [sys.executable, str(script), runtime.config.hub, ray.get_runtime_context().gcs_address],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    iid = out.stdout.strip().splitlines()[-1]
    # The driver that defined the code is gone; the hub still has it.
    state = runtime.client.wait_for_completion(iid, timeout=60)
    assert state.output == "HELLO RAY!"
