"""runtime.testing: users' orchestrations and entities in one process, and the Replayer.

Pure: no Ray cluster. The subjects are the examples and the test workflows the end-to-end
suite runs on a real hub, so the environment is held to the semantics those tests pin.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import random
import subprocess
import sys
import textwrap
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import entity_defs as ed
import patterns as pt
import pytest
import workflows as wf

from entities import EntityContext, entity
from runtime import (
    InstanceExistsError,
    InstanceNotFoundError,
    InvalidOperationError,
    NonDeterminismError,
    NotRegisteredError,
    OperationTimeoutError,
    OrchestrationFailedError,
    OrchestratorNotFoundError,
    RetryPolicy,
    SerializationError,
    TaskFailedError,
    UnknownOperationError,
    activity,
    orchestrator,
)
from runtime.driver.http_json import event_view
from runtime.orchestration import history as h
from runtime.orchestration.codec import MAGIC, decode_event
from runtime.testing import (
    DurableTestEnvironment,
    HistoryInputError,
    NoProgressError,
    Replayer,
    StepLimitError,
    load_history,
)

#: No Ray for this module (tests/conftest.py).
PURE = True

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))
import human_interaction as hi  # noqa: E402

START = datetime(2026, 1, 1, tzinfo=timezone.utc)
GOLDEN = Path(__file__).resolve().parent / "golden"


def env_of(*objects, **options) -> DurableTestEnvironment:
    return DurableTestEnvironment(register=list(objects), start=START, **options)


def completed(env: DurableTestEnvironment, orchestrator_, input=None):
    return env.wait_for_completion(env.start_new(orchestrator_, input=input))


# -- the 72-hour approval (examples/human_interaction.py) -----------------------------------


def test_an_approval_left_alone_escalates_after_72_hours_at_once_without_advance():
    env = env_of(hi.approval_workflow)
    began = time.monotonic()
    iid = env.start_new(hi.approval_workflow, input="team offsite")
    assert env.get_status(iid).custom_status == hi.WAITING
    assert env.now() == START  # starting runs what can run now; time stands still
    state = env.wait_for_completion(iid)
    assert time.monotonic() - began < 1.0
    assert state.output == "'team offsite' escalated after 72 h without answer"
    assert state.custom_status == "escalated"
    assert env.now() == START + hi.DEADLINE
    history = env.get_status(iid, show_history=True).history
    stamps = [e.timestamp for e in history if isinstance(e, h.OrchestratorStarted)]
    assert stamps[0] == START and stamps[-1] == START + hi.DEADLINE  # the skipped clock
    assert env.activity_calls(hi.escalate) == ["team offsite"]
    assert env.activity_calls(hi.handle_approval) == []


def test_an_approval_in_time_is_handled_and_moves_no_time():
    env = env_of(hi.approval_workflow)
    iid = env.start_new(hi.approval_workflow, input="new laptop")
    env.raise_event(iid, "ApprovalEvent", "alice")
    state = env.get_status(iid)
    assert state.output == "'new laptop' approved by alice"
    assert state.custom_status == "approved"
    assert env.wait_for_completion(iid).output == state.output
    assert env.now() == START


def test_advance_moves_time_by_hand_and_fires_the_timers_due():
    env = env_of(pt.approval)
    iid = env.start_new(pt.approval, input="x")
    env.advance(timedelta(hours=71))
    assert env.get_status(iid).runtime_status == "Running"
    env.advance(timedelta(hours=1))
    assert env.get_status(iid).output == "escalated x"
    with pytest.raises(ValueError):
        env.advance(timedelta(seconds=-1))


def test_timers_of_a_sleeping_orchestrator_see_the_skipped_clock():
    env = env_of(pt.sleeper)
    assert completed(env, pt.sleeper, 5).output == (START + timedelta(hours=5)).isoformat()


def test_a_timeout_counts_in_test_time():
    env = env_of(pt.approval)
    iid = env.start_new(pt.approval, input="x")
    with pytest.raises(OperationTimeoutError):
        env.wait_for_completion(iid, timeout=timedelta(hours=1))
    assert env.now() == START + timedelta(hours=1)
    assert env.wait_for_completion(iid, timeout=timedelta(hours=72)).output == "escalated x"


def test_waiting_for_an_event_that_nothing_raises_names_what_it_waits_for():
    env = env_of(pt.collect_events)
    iid = env.start_new(pt.collect_events, 2)
    env.raise_event(iid, "item", "a")
    with pytest.raises(NoProgressError, match="external event 'item'"):
        env.wait_for_completion(iid)
    env.raise_event(iid, "item", "b")
    assert env.wait_for_completion(iid).output == ["a", "b"]


def test_event_timeout_fires_when_nothing_comes():
    env = env_of(pt.wait_with_timeout)
    assert completed(env, pt.wait_with_timeout).output == "timed out"
    assert env.now() == START + timedelta(minutes=10)


# -- activities and mocks -------------------------------------------------------------------


def test_activities_run_in_process_by_object_and_by_name():
    env = env_of(wf.double)  # chain calls "double" by name, inc by object (unregistered)
    assert completed(env, wf.chain, 3).output == 8
    assert env.activity_calls(wf.inc) == [3] and env.activity_calls("double") == [4]
    assert completed(env, wf.fan_out_fan_in, 5).output == 15


def test_a_mock_by_object_or_by_name_wins_over_the_real_function():
    env = env_of(wf.double)
    env.mock_activity(wf.inc, lambda x: x + 100)
    env.mock_activity("double", returns=1)
    assert completed(env, wf.chain, 3).output == 1
    assert env.activity_calls("inc") == [3] and env.activity_calls(wf.double) == [103]


def test_a_mock_that_raises_fails_the_task_the_orchestrator_catches():
    env = env_of()
    env.mock_activity(wf.fail, raises=KeyError("card declined"))
    state = completed(env, wf.compensate, "ignored")
    assert state.output == {"error_type": "KeyError", "message": "'card declined'"}
    assert state.custom_status == "compensated"
    with pytest.raises(ValueError, match="exactly one"):
        env.mock_activity(wf.fail, lambda x: x, returns=1)


def test_an_unknown_activity_fails_the_orchestration_with_a_typed_error():
    state = completed(env_of(), wf.calls_unknown)
    assert state.runtime_status == "Failed"
    assert "ActivityNotFoundError" in str(state.failure_details)
    env = env_of()
    with pytest.raises(OrchestrationFailedError, match="ActivityNotFoundError"):
        env.wait_for_completion(env.start_new(wf.calls_unknown), raise_on_failure=True)


def test_a_retry_policy_retries_after_durable_waits_the_clock_skips():
    env = env_of()
    answers = iter([ConnectionError("down"), ConnectionError("down"), "ok"])

    def flaky(args):
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    env.mock_activity(pt.flaky, flaky)
    assert completed(env, pt.retrying, ("unused", 0)).output == "ok"
    assert len(env.activity_calls(pt.flaky)) == 3
    assert env.now() == START + timedelta(minutes=5 + 10)  # backoff 2: 5 then 10 minutes


def test_the_hub_default_retry_policy_is_recorded_and_applied():
    policy = RetryPolicy(timedelta(seconds=30), max_number_of_attempts=2)
    env = env_of(activity_retry=policy)
    env.mock_activity(pt.flaky, raises=ConnectionError("down"))
    state = completed(env, pt.plain_call, ("unused", 0))
    assert state.runtime_status == "Failed" and len(env.activity_calls(pt.flaky)) == 2
    started = env.get_status(state.instance_id, show_history=True).history[1]
    assert started.activity_retry == policy


calls = {"n": 0}


@activity(max_retries=2, retry_exceptions=[ConnectionError])
def ray_retried(_):
    calls["n"] += 1
    if calls["n"] < 3:
        raise ConnectionError("flaky network")
    return calls["n"]


@orchestrator
def calls_ray_retried(ctx, _):
    return (yield ctx.call_activity(ray_retried))


def test_ray_task_retries_of_an_activity_are_honoured():
    calls["n"] = 0
    env = env_of()
    assert completed(env, calls_ray_retried).output == 3
    assert len(env.activity_calls(ray_retried)) == 3


# -- sub-orchestrations, continue-as-new, custom status, lifecycle ------------------------


def test_sub_orchestrations_run_and_answer_their_parent():
    env = env_of()
    assert completed(env, pt.parent, 3).output == 1 + 2 + 3
    parent_id = env.start_new(pt.parent, 2, instance_id="p")
    assert env.get_status("p:0").output == 1 and env.get_status("p:1").output == 2
    assert env.wait_for_completion(parent_id).output == 3


@orchestrator
def parent_of_unknown(ctx, _):
    try:
        yield ctx.call_sub_orchestrator("no_such_orchestrator")
    except TaskFailedError as err:
        return err.details.error_type


def test_a_child_that_cannot_start_fails_the_parents_task():
    assert completed(env_of(), parent_of_unknown).output == "OrchestratorNotFoundError"


def test_continue_as_new_starts_a_fresh_history_for_the_same_instance():
    env = env_of()
    state = completed(env, pt.ticker, (0, 3))
    assert state.output == 3 and state.input == (2, 3)
    history = env.get_status(state.instance_id, show_history=True).history
    assert sum(isinstance(e, h.ExecutionStarted) for e in history) == 1
    assert history[1].input == (2, 3)
    assert history[1].generation == 3  # the third execution, numbered as hosts number it


def test_events_raised_across_continue_as_new_are_carried_over():
    env = env_of()
    iid = env.start_new(pt.eternal_counter, 0)
    for op in ("incr", "incr", "decr", "incr"):
        env.raise_event(iid, "operation", op)
    assert env.get_status(iid).custom_status == 2
    env.raise_event(iid, "operation", "end")
    assert env.wait_for_completion(iid).output == 2


def test_terminate_stops_an_instance_and_its_children():
    env = env_of()
    iid = env.start_new(pt.parent_of_waiter, instance_id="w")
    assert env.get_status("w-c").runtime_status == "Running"
    with pytest.raises(NoProgressError, match=r"sub-orchestration 'waiting_child' \(w-c\)"):
        env.wait_for_completion(iid)
    env.terminate(iid, "enough")
    assert env.get_status("w").runtime_status == "Terminated"
    assert env.get_status("w-c").runtime_status == "Terminated"
    with pytest.raises(InvalidOperationError, match="has ended"):
        env.terminate(iid)
    with pytest.raises(InvalidOperationError, match="has ended"):
        env.raise_event(iid, "never")
    with pytest.raises(InstanceNotFoundError):
        env.raise_event("nobody", "x")


def test_suspend_holds_events_until_resume():
    env = env_of()
    iid = env.start_new(pt.collect_events, 1)
    env.suspend(iid)
    env.raise_event(iid, "item", "held")
    assert env.get_status(iid).runtime_status == "Suspended"
    with pytest.raises(NoProgressError, match="suspended"):
        env.wait_for_completion(iid)
    env.resume(iid)
    assert env.wait_for_completion(iid).output == ["held"]
    with pytest.raises(InvalidOperationError):
        env.resume(iid)


def test_start_new_refuses_a_live_id_and_an_unknown_name_storing_nothing():
    env = env_of(pt.collect_events)
    env.start_new("collect_events", 1, instance_id="a")
    with pytest.raises(InstanceExistsError):
        env.start_new(pt.collect_events, 1, instance_id="a")
    with pytest.raises(OrchestratorNotFoundError, match="collect_events"):
        env.start_new("nope")
    with pytest.raises(SerializationError):
        env.start_new(pt.collect_events, input=threading.Lock(), instance_id="b")
    assert env.get_status("b") is None


def test_versions_are_picked_like_a_hub_picks_them():
    env = env_of(pt.versioned_v1, pt.versioned_v2)
    latest = env.start_new("versioned")
    first = env.start_new("versioned", version="1")
    for iid in (latest, first):
        env.raise_event(iid, "go")
    assert env.get_status(latest).output == "v2" and env.get_status(first).output == "v1"


@orchestrator
def loops_forever(ctx, n):
    yield ctx.call_activity(wf.inc, n)
    ctx.continue_as_new(n + 1)


def test_a_loop_that_never_waits_hits_the_step_limit():
    with pytest.raises(StepLimitError, match="loops without end"):
        env_of(max_steps=500).start_new(loops_forever, 0)
    with pytest.raises(ValueError, match="max_steps"):
        env_of(max_steps=0)
    with pytest.raises(ValueError, match="timezone-aware"):
        DurableTestEnvironment(start=datetime(2026, 1, 1))


# -- recorded as production records it -----------------------------------------------------


def test_histories_are_stored_in_the_codecs_format_and_decode_to_the_status_history():
    env = env_of()
    iid = completed(env, wf.chain, 1).instance_id
    blobs = env.store.load_history(iid)
    assert blobs and all(b.startswith(MAGIC) for b in blobs)
    assert [decode_event(b) for b in blobs] == env.get_status(iid, show_history=True).history


@activity
def unpicklable(_):
    return threading.Lock()


@orchestrator
def gets_unpicklable(ctx, _):
    try:
        yield ctx.call_activity(unpicklable)
    except TaskFailedError as err:
        return err.details.error_type


def test_a_result_that_does_not_pickle_fails_its_task_as_it_would_on_a_cluster():
    assert completed(env_of(), gets_unpicklable).output == "SerializationError"


@orchestrator
def nondeterministic(ctx, _):
    yield ctx.call_activity(random.choice([wf.inc, wf.double]), 1)


def test_an_orchestrator_that_would_not_replay_fails_the_test():
    random.seed(1)
    env = env_of()
    with pytest.raises(NonDeterminismError, match="does not replay"):
        for _ in range(20):  # one run draws another activity on replay than it ran
            completed(env, nondeterministic)


# -- entities -------------------------------------------------------------------------------


def test_entities_from_the_test_signal_call_and_read(durable_env):
    durable_env.register(ed.Counter, ed.account)
    durable_env.signal_entity("Counter@c", "add", 5)
    assert durable_env.call_entity("Counter@c", "get") == 5
    assert durable_env.read_entity_state("Account@x").entity_exists is False
    durable_env.signal_entity("Account@x", "deposit", 7)
    assert durable_env.read_entity_state("Account@x").entity_state == 7
    durable_env.signal_entity("Account@x", "close")
    assert durable_env.read_entity_state("Account@x").entity_exists is False


def test_a_failed_operation_rolls_back_and_its_caller_gets_the_error():
    env = env_of(ed.Counter, ed.account)
    env.signal_entity("Counter@c", "add", 1)
    with pytest.raises(TaskFailedError, match="add_then_fail"):
        env.call_entity("Counter@c", "add_then_fail", 10)
    assert env.call_entity("Counter@c", "get") == 1
    env.signal_entity("Account@a", "withdraw", 5)  # one-way: its error stays with it
    with pytest.raises(UnknownOperationError):
        env.signal_entity("Counter@c", "no_such_operation")
    with pytest.raises(NotRegisteredError):
        env.call_entity("Nobody@c", "get")


def test_orchestrations_signal_and_call_entities():
    env = env_of(ed.Counter)
    assert completed(env, ed.counter_user, "k").output == 11
    assert env.call_entity("Counter@k", "whoami") == "Counter@k"


def test_a_critical_section_moves_money_between_locked_accounts():
    env = env_of(ed.account)
    env.signal_entity("Account@a", "deposit", 100)
    env.signal_entity("Account@b", "deposit", 10)
    assert completed(env, ed.transfer, ("Account@a", "Account@b", 30)).output is True
    assert env.call_entity("Account@a", "balance") == 70
    assert env.call_entity("Account@b", "balance") == 40


def test_others_wait_while_an_orchestration_holds_the_lock():
    env = env_of(ed.account)
    iid = env.start_new(ed.hold, "Account@h")
    assert env.get_status(iid).custom_status == "holding"
    with pytest.raises(NoProgressError, match="locked by instance"):
        env.call_entity("Account@h", "balance")
    env.raise_event(iid, "release")
    assert env.get_status(iid).output == "released"
    # The waiting call ran once the section ended, then this one: both see the deposit.
    assert env.call_entity("Account@h", "balance") == 1


def test_a_second_critical_section_waits_for_the_first_to_end():
    env = env_of(ed.account)
    env.signal_entity("Account@a", "deposit", 100)
    holder = env.start_new(ed.hold, "Account@a")
    mover = env.start_new(ed.transfer, ("Account@a", "Account@b", 30))
    assert env.get_status(mover).runtime_status == "Running"
    with pytest.raises(NoProgressError, match=f"a lock on Account@a \\(held by {holder}\\)"):
        env.wait_for_completion(mover)
    env.raise_event(holder, "release")
    assert env.wait_for_completion(mover).output is True
    assert env.call_entity("Account@a", "balance") == 100 + 1 - 30


@entity
def relay(ctx: EntityContext):
    if ctx.operation_name == "pass_on":
        ctx.signal_entity("Counter@relayed", "add", ctx.get_input())
        ctx.start_new_orchestration(ed.counter_user, "started-by-entity", "from-entity")


def test_entities_signal_entities_and_start_orchestrations():
    env = env_of(ed.Counter, relay)
    env.signal_entity("relay@r", "pass_on", 4)
    assert env.call_entity("Counter@relayed", "get") == 4
    assert env.wait_for_completion("from-entity").output == 11


# -- the Replayer ---------------------------------------------------------------------------


@orchestrator(name="approval")
def approval_changed(ctx, request):
    """What a careless edit of patterns.approval looks like: a new first activity."""
    yield ctx.call_activity(pt.escalate, request)
    yield ctx.call_activity(pt.request_approval, request)
    return "changed"


def exported(env: DurableTestEnvironment, iid: str) -> dict:
    """What `durable status ID --history --json` prints, through JSON text and back."""
    return json.loads(json.dumps(env.history_json(iid)))


def test_the_replayer_accepts_a_history_today_s_code_still_makes():
    env = env_of()
    iid = completed(env, pt.approval, "trip").instance_id
    result = Replayer([pt.approval]).replay(exported(env, iid))
    assert result.ok and result.status == "Completed" and result.instance_id == iid
    assert "replays as recorded" in str(result)


def test_the_replayer_reports_a_changed_orchestrator_with_the_action_that_differs():
    env = env_of()
    iid = completed(env, pt.approval, "trip").instance_id
    result = Replayer([approval_changed]).replay(exported(env, iid))
    assert not result.ok
    assert result.seq == 0
    assert result.recorded == "activity 'request_approval'"
    assert result.now == "activity 'escalate'"
    assert "non-deterministic" in result.error
    with pytest.raises(NonDeterminismError, match="action #0"):
        Replayer([approval_changed]).replay(exported(env, iid), raise_on_failure=True)


@orchestrator(name="approval")
def approval_without_timer(ctx, request):
    yield ctx.call_activity(pt.request_approval, request)
    approved = yield ctx.wait_for_external_event("ApprovalEvent")
    return (yield ctx.call_activity(pt.handle_approval, approved))


def test_the_replayer_catches_a_removed_timer_in_a_running_instance():
    env = env_of()
    iid = env.start_new(pt.approval, "trip")  # waiting: its history is still open
    result = Replayer([approval_without_timer]).replay(exported(env, iid))
    assert (result.ok, result.seq, result.recorded) == (False, 1, "a durable timer")
    assert Replayer([pt.approval]).replay(exported(env, iid)).status == "Running"


@orchestrator(name="chain")
def chain_that_now_fails(ctx, x):
    a = yield ctx.call_activity(wf.inc, x)
    b = yield ctx.call_activity("double", a)
    raise ValueError(f"no longer accepts {b}")


def test_the_replayer_reports_a_changed_outcome():
    env = env_of(wf.double)
    iid = completed(env, wf.chain, 1).instance_id
    result = Replayer([chain_that_now_fails]).replay(env.get_status(iid, True).history)
    assert not result.ok and result.seq is None
    assert "ended Completed, but the code now ends Failed" in result.error


@pytest.mark.parametrize("golden", sorted(GOLDEN.glob("*.json")), ids=lambda p: p.stem)
def test_the_replayer_replays_the_golden_histories_in_each_stored_form(golden):
    doc = json.loads(golden.read_text())
    module, name = doc["function"].split(":")
    replayer = Replayer([getattr(__import__(module), name)])
    legacy = [base64.b64decode(b) for b in doc["legacy_history"]]  # before the codec
    # What the CLI prints for it (runtime.driver.http_json's view of each event), through JSON text.
    events = load_history(doc).events
    view = {
        "instanceId": doc["instance_id"],
        "historyEvents": [event_view(e, show_output=True) for e in events],
    }
    for form in (golden, doc, legacy, json.loads(json.dumps(view))):
        result = replayer.replay(form)
        assert result.ok and result.status == doc["status"], result
    assert replayer.replay(legacy, instance_id=doc["instance_id"]).ok


def test_replay_store_reads_the_raw_history_of_a_hub(tmp_path):
    from runtime.store import open_store
    from runtime.store.base import InstanceRecord

    doc = json.loads((GOLDEN / "g-retry.json").read_text())
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    store = open_store(url, "h")
    blobs = [base64.b64decode(b) for b in doc["history"]]
    store.create_instance(InstanceRecord("g-retry", "retrying", "", "Completed", "e", 0, 0), blobs)
    store.close()
    assert Replayer([pt.retrying]).replay_store(url, "h", "g-retry").ok
    with pytest.raises(InstanceNotFoundError):
        Replayer([pt.retrying]).replay_store(url, "h", "nobody")


@activity
def gives_bytes(_):
    return b"\x00raw"


@orchestrator
def uses_bytes(ctx, _):
    data = yield ctx.call_activity(gives_bytes)
    return len(data)


def test_values_the_json_view_loses_are_named_and_the_raw_history_is_lossless():
    env = env_of()
    iid = completed(env, uses_bytes).instance_id
    result = Replayer([uses_bytes]).replay(exported(env, iid))
    assert any("TaskCompleted" in w and "bytes" in w for w in result.warnings), result.warnings
    assert Replayer([uses_bytes]).replay(env.store.load_history(iid)).ok


def test_a_history_without_what_replay_needs_is_refused():
    env = env_of()
    iid = completed(env, wf.chain, 1).instance_id
    doc = exported(env, iid)
    for event in doc["historyEvents"]:
        event.pop("Result", None)  # as the HTTP API shows it without showHistoryOutput
    with pytest.raises(HistoryInputError, match="without outputs"):
        Replayer([wf.chain]).replay(doc)
    with pytest.raises(HistoryInputError, match="without its history"):
        Replayer([wf.chain]).replay({**doc, "historyEvents": None})
    with pytest.raises(NotRegisteredError):
        Replayer([pt.approval]).replay(exported(env, iid))
    assert Replayer(wf.ALL).replay(exported(env, iid)).ok  # activities in the list: skipped


def test_retry_policies_survive_the_json_view():
    policy = RetryPolicy(timedelta(seconds=30), max_number_of_attempts=2)
    env = env_of(activity_retry=policy)
    env.mock_activity(pt.flaky, raises=ConnectionError("down"))
    iid = completed(env, pt.plain_call, ("unused", 0)).instance_id
    loaded = load_history(exported(env, iid))
    assert loaded.events[1].activity_retry == policy and not loaded.warnings
    assert Replayer([pt.plain_call]).replay(loaded).ok


# -- the shapes, the fixture, and no Ray ---------------------------------------------------


def test_states_have_the_fields_of_the_clients():
    from runtime.driver.client import EntityStateResponse, OrchestrationState
    from runtime.testing import EntityState, InstanceState

    def names(cls):
        return [f.name for f in dataclasses.fields(cls)]

    assert names(InstanceState) == names(OrchestrationState)
    assert names(EntityState) == names(EntityStateResponse)


def run_python(code: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_a_whole_run_imports_no_ray(tmp_path):
    script = textwrap.dedent(
        """
        import sys
        from datetime import timedelta
        from entities import entity
        from runtime import activity, orchestrator
        from runtime.testing import DurableTestEnvironment, Replayer

        @activity
        def greet(name):
            return f"hello {name}"

        @entity
        class Tally:
            def __init__(self):
                self.n = 0
            def add(self, k):
                self.n += k
            def get(self):
                return self.n

        @orchestrator
        def flow(ctx, name):
            yield ctx.create_timer(timedelta(days=3))
            with (yield ctx.lock("Tally@t")):
                yield ctx.call_entity("Tally@t", "add", 2)
            return (yield ctx.call_activity(greet, name))

        env = DurableTestEnvironment(register=[Tally])
        iid = env.start_new(flow, "you")
        assert env.wait_for_completion(iid).output == "hello you"
        assert env.call_entity("Tally@t", "get") == 2
        assert Replayer([flow]).replay(env.history_json(iid)).ok
        loaded = sorted(m for m in sys.modules if m == "ray" or m.startswith("ray."))
        assert not loaded, loaded[:3]
        print("ok")
        """
    )
    done = run_python(script, tmp_path)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def readme_snippet() -> str:
    """The code block of the README's "Testing your orchestrations"."""
    text = (ROOT / "README.md").read_text()
    section = text.split("### Testing your orchestrations\n", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_readmes_snippet_passes_with_the_fixture_and_no_conftest(tmp_path):
    (tmp_path / "test_user.py").write_text(readme_snippet())
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_user.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and "2 passed" in done.stdout, done.stdout + done.stderr


def test_the_testing_package_exports_are_pinned_and_resolve():
    import runtime.testing

    names = [
        "DurableTestEnvironment",
        "EntityState",
        "HistoryInputError",
        "InstanceState",
        "ManualClock",
        "NoProgressError",
        "ReplayResult",
        "Replayer",
        "StepLimitError",
        "load_history",
    ]
    assert sorted(runtime.testing.__all__) == names
    for name in names:
        assert getattr(runtime.testing, name) is not None, name
    assert set(names) <= set(dir(runtime.testing))
