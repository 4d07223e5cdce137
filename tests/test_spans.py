"""The spans of an execution read off its history (pure: no Ray, no OpenTelemetry)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from runtime.errors import FailureDetails
from runtime.orchestration import history as h
from runtime.orchestration.spans import InstanceTrace, derived_id, parse_traceparent, traceparent

PURE = True

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
PARENT = traceparent("ab" * 16, "cd" * 8)


def at(seconds: float) -> h.OrchestratorStarted:
    return h.OrchestratorStarted(T0 + timedelta(seconds=seconds))


def chain() -> list[list[h.HistoryEvent]]:
    """The steps of an execution: start, an activity failing then retried, a timer, done."""
    boom = FailureDetails("ValueError", "boom")
    return [
        [at(0), h.ExecutionStarted("order", 1, trace=PARENT), h.TaskScheduled(0, "pay", 1)],
        [at(1), h.TaskFailed(0, boom), h.TimerCreated(1, T0 + timedelta(seconds=2))],
        [at(2), h.TimerFired(1, T0), h.TaskScheduled(2, "pay", 1, attempt=2)],
        [at(3), h.TaskCompleted(2, "ok"), h.EntitySignaled(3, "@counter@a", "add", 1, 1)],
        [at(4), h.EventRaised("go"), h.ExecutionCompleted("Completed", "ok")],
    ]


def test_each_step_finishes_the_spans_it_answers_under_the_recorded_parent():
    trace = InstanceTrace("i1", "e1")
    spans = [trace.observe(step) for step in chain()]
    assert [[s.name for s in step] for step in spans] == [
        [],
        ["activity pay"],
        ["timer"],
        ["activity pay", "signal add"],
        ["event go", "orchestration order"],
    ]
    failed, timer = spans[1][0], spans[2][0]
    assert (failed.start, failed.end) == (T0.timestamp(), T0.timestamp() + 1)
    assert failed.error == "ValueError: boom" and failed.attributes["durable.attempt"] == 1
    assert spans[3][0].attributes["durable.attempt"] == 2 and spans[3][0].error is None
    assert timer.attributes["durable.fire_at"] == (T0 + timedelta(seconds=2)).isoformat()
    execution = spans[4][1]
    assert (execution.trace_id, execution.parent_id) == ("ab" * 16, "cd" * 8)
    assert (execution.start, execution.end) == (T0.timestamp(), T0.timestamp() + 4)
    every = [s for step in spans for s in step]
    assert {s.parent_id for s in every if s is not execution} == {execution.span_id}
    assert {s.trace_id for s in every} == {"ab" * 16}


def test_replay_sends_nothing_and_agrees_on_the_ids_of_what_is_still_open():
    first = InstanceTrace("i1", "e1")
    for step in chain()[:2]:
        first.observe(step)
    resumed = InstanceTrace.resumed("i1", "e1", [e for step in chain()[:2] for e in step])
    assert resumed.observe([]) == []
    later = chain()[2:]
    assert [s.span_id for step in later for s in first.observe(step)] == [
        s.span_id for step in later for s in resumed.observe(step)
    ]
    assert resumed.context_of(2) == first.context_of(2)


def test_a_step_with_a_late_or_unknown_answer_sends_no_span():
    trace = InstanceTrace("i1", "e1")
    trace.observe(chain()[0])
    assert trace.observe([at(1), h.TaskCompleted(7, "stray")]) == []


def test_an_execution_without_a_recorded_parent_is_a_root_in_a_trace_of_its_own():
    trace = InstanceTrace("i1", "e1")
    trace.observe([at(0), h.ExecutionStarted("order", 1)])
    failure = FailureDetails("KeyError", "x")
    (span,) = trace.observe([at(1), h.ExecutionCompleted("Failed", None, failure)])
    assert span.parent_id is None and span.error == "KeyError: x"
    assert span.trace_id == derived_id("trace", "i1", "e1", length=32)
    other = InstanceTrace("i1", "e2")
    assert other.trace_id != span.trace_id and other.span_id != span.span_id
    (ended,) = trace.observe([at(2), h.ExecutionCompleted("Terminated", "by hand")])
    assert ended.error == "Terminated: by hand"


def test_ray_task_ids_are_attributes_of_the_activity_span():
    trace = InstanceTrace("i1", "e1")
    trace.observe(chain()[0])
    trace.ray_tasks[0] = "deadbeef"
    (span,) = trace.observe(chain()[1])
    assert span.attributes["ray.task_id"] == "deadbeef" and not trace.ray_tasks


def test_traceparent_reads_only_valid_w3c_values():
    assert parse_traceparent(traceparent("a" * 32, "b" * 16)) == ("a" * 32, "b" * 16)
    assert parse_traceparent(" 00-" + "A" * 32 + "-" + "B" * 16 + "-01 ") == ("a" * 32, "b" * 16)
    for bad in (
        None,
        "",
        7,
        "00-xyz-abc-01",
        "01-" + "a" * 32 + "-" + "b" * 16 + "-01",
        "00-" + "0" * 32 + "-" + "b" * 16 + "-01",
        "00-" + "a" * 32 + "-" + "0" * 16 + "-01",
    ):
        assert parse_traceparent(bad) is None  # type: ignore[arg-type]
    assert derived_id("x") != derived_id("y") and len(derived_id("x", length=32)) == 32


def test_events_of_one_name_in_one_step_are_spans_of_their_own_and_replay_agrees():
    events = [at(0), h.ExecutionStarted("order"), h.EventRaised("go"), h.EventRaised("go")]
    first = [s.span_id for s in InstanceTrace("i1", "e1").observe(events)]
    assert len(first) == len(set(first)) == 2
    resumed = InstanceTrace.resumed("i1", "e1", events[:3])
    assert [s.span_id for s in resumed.observe(events[3:])] == first[1:]
