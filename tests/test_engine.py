"""Pure tests of the replay engine: no Ray, no store, no clock."""

from __future__ import annotations

import pickle
from datetime import datetime, timedelta, timezone

import pytest

from runtime.entity_id import InvalidEntityIdError
from runtime.errors import (
    ArgumentTypeError,
    DurableError,
    FailureDetails,
    InvalidArgumentError,
    InvalidOperationError,
    TaskFailedError,
)
from runtime.orchestration import OrchestrationExecutor, RetryPolicy
from runtime.orchestration import history as h
from runtime.orchestration.tasks import EventTimeoutError

#: No Ray for this module (tests/conftest.py): the code under test is pure.
PURE = True

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
BAD, TYPE, BAD_ID = InvalidArgumentError, ArgumentTypeError, InvalidEntityIdError


def started(name="orch", input=None, at=T0):
    return [h.OrchestratorStarted(at), h.ExecutionStarted(name, input)]


def episode(*events, at=T0):
    return [h.OrchestratorStarted(at), *events]


class Run:
    """Drives an executor the way a host does and keeps the whole history."""

    def __init__(self, fn, input=None, iid="i1"):
        self.fn = fn
        self.iid = iid
        self.ex = OrchestrationExecutor(fn, iid)
        self.history: list = []
        self.step = self._feed(started(input=input))

    def _feed(self, events):
        step = self.ex.execute([], events)
        self.history.extend(step.new_events)
        return step

    def feed(self, *events, at=T0):
        self.step = self._feed(episode(*events, at=at))
        return self.step

    def scheduled(self, kind=h.TaskScheduled):
        return [e for e in self.step.new_events if isinstance(e, kind)]

    def replay(self, new_events=()):
        """A fresh executor over the stored history, as on activation."""
        ex = OrchestrationExecutor(self.fn, self.iid)
        return ex, ex.execute(self.history, list(new_events))


def chain(ctx, x):
    a = yield ctx.call_activity("inc", x)
    b = yield ctx.call_activity("double", a)
    return b


def test_chain_schedules_one_activity_at_a_time_and_completes():
    run = Run(chain, input=1)
    assert [(e.seq, e.name, e.input) for e in run.scheduled()] == [(0, "inc", 1)]
    run.feed(h.TaskCompleted(0, 2))
    assert [(e.seq, e.name, e.input) for e in run.scheduled()] == [(1, "double", 2)]
    step = run.feed(h.TaskCompleted(1, 4))
    assert step.status == "Completed" and step.output == 4
    assert isinstance(step.new_events[-1], h.ExecutionCompleted)


def test_replay_of_history_reproduces_state_without_new_actions():
    run = Run(chain, input=1)
    run.feed(h.TaskCompleted(0, 2))
    ex, step = run.replay()
    assert step.new_events == [] and step.status == "Running"
    assert [e.seq for e in ex.open_actions()] == [1]
    step = ex.execute([], episode(h.TaskCompleted(1, 4)))
    assert step.output == 4


def test_fan_out_fan_in_of_many_completes_once_all_results_are_in():
    def fan(ctx, n):
        results = yield ctx.task_all([ctx.call_activity("w", i) for i in range(n)])
        return sum(results)

    run = Run(fan, input=1000)
    assert len(run.scheduled()) == 1000
    run.feed(*[h.TaskCompleted(i, i) for i in range(500)])
    assert run.step.status == "Running"
    step = run.feed(*[h.TaskCompleted(i, i) for i in range(500, 1000)])
    assert step.output == sum(range(1000))


def test_duplicate_completion_is_dropped_not_recorded_twice():
    run = Run(chain, input=1)
    run.feed(h.TaskCompleted(0, 2))
    step = run.feed(h.TaskCompleted(0, 2))
    assert step.new_events == [h.OrchestratorStarted(T0)]
    assert sum(isinstance(e, h.TaskCompleted) and e.seq == 0 for e in run.history) == 1


def test_activity_failure_raises_task_failed_error_with_original_type():
    def compensating(ctx, _):
        try:
            yield ctx.call_activity("charge")
        except TaskFailedError as err:
            yield ctx.call_activity("refund", err.details.error_type)
            return "compensated"

    run = Run(compensating)
    run.feed(h.TaskFailed(0, FailureDetails("ValueError", "card declined", "tb")))
    assert [(e.name, e.input) for e in run.scheduled()] == [("refund", "ValueError")]
    assert run.feed(h.TaskCompleted(1)).output == "compensated"


def test_unhandled_error_fails_the_instance_with_details():
    def boom(ctx, _):
        yield ctx.call_activity("a")
        raise KeyError("missing")

    run = Run(boom)
    step = run.feed(h.TaskCompleted(0))
    assert step.status == "Failed"
    assert step.failure.error_type == "KeyError" and "missing" in step.failure.message
    assert "raise KeyError" in step.failure.stack_trace


def test_changed_code_is_a_non_determinism_failure_naming_both_sides():
    run = Run(chain, input=1)
    run.feed(h.TaskCompleted(0, 2))

    def changed(ctx, x):
        a = yield ctx.call_activity("inc", x)
        return (yield ctx.call_activity("triple", a))

    step = OrchestrationExecutor(changed, "i1").execute(run.history, [])
    assert step.status == "Failed" and step.failure.error_type == "NonDeterminismError"
    assert "'double'" in step.failure.message and "'triple'" in step.failure.message
    assert isinstance(step.new_events[-1], h.ExecutionCompleted)


def test_extra_action_in_replayed_episode_is_non_determinism():
    run = Run(chain, input=1)

    def two(ctx, x):
        yield ctx.task_all([ctx.call_activity("inc", x), ctx.call_activity("more", x)])

    step = OrchestrationExecutor(two, "i1").execute(run.history, [])
    assert step.failure.error_type == "NonDeterminismError"


def test_yielding_a_non_task_fails_clearly():
    def bad(ctx, _):
        yield 42

    assert "must yield tasks" in Run(bad).step.failure.message


def test_plain_function_orchestrator_and_no_input_signature():
    run = Run(lambda ctx: "hi")
    assert run.step.output == "hi"


def test_current_time_and_uuid_are_deterministic_across_replay():
    seen = []

    def timed(ctx, _):
        seen.append((ctx.current_utc_datetime, ctx.new_uuid(), ctx.is_replaying))
        yield ctx.call_activity("a")
        seen.append((ctx.current_utc_datetime, ctx.new_uuid(), ctx.is_replaying))

    run = Run(timed)
    run.feed(h.TaskCompleted(0), at=T0 + timedelta(seconds=5))
    first = list(seen)
    seen.clear()
    run.replay()
    assert [s[:2] for s in seen] == [s[:2] for s in first]
    assert first[1][0] == T0 + timedelta(seconds=5)
    assert seen[0][2] is True


def test_custom_status_is_reported():
    def status(ctx, _):
        ctx.set_custom_status({"stage": 1})
        yield ctx.call_activity("a")

    assert Run(status).step.custom_status == {"stage": 1}


def test_timer_and_external_event_race_with_task_any():
    def approval(ctx, _):
        timer = ctx.create_timer(ctx.current_utc_datetime + timedelta(hours=72))
        event = ctx.wait_for_external_event("Approval")
        winner = yield ctx.task_any([event, timer])
        if winner is event:
            timer.cancel()
            return event.result
        return "escalated"

    run = Run(approval)
    assert run.scheduled(h.TimerCreated)[0].fire_at == T0 + timedelta(hours=72)
    assert run.feed(h.EventRaised("approval", "yes")).output == "yes"
    run2 = Run(approval)
    assert run2.feed(h.TimerFired(0, T0)).output == "escalated"


def test_events_raised_early_are_buffered_and_consumed_in_order():
    def two_events(ctx, _):
        yield ctx.call_activity("a")
        first = yield ctx.wait_for_external_event("E")
        second = yield ctx.wait_for_external_event("E")
        return [first, second]

    run = Run(two_events)
    run.feed(h.EventRaised("E", 1), h.EventRaised("E", 2))
    assert run.feed(h.TaskCompleted(0)).output == [1, 2]


def test_wait_for_event_with_timeout_fails_typed():
    def waits(ctx, _):
        try:
            return (yield ctx.wait_for_external_event("E", timeout=timedelta(minutes=5)))
        except EventTimeoutError:
            return "timed out"

    run = Run(waits)
    assert run.feed(h.TimerFired(0, T0)).output == "timed out"


def test_naive_datetime_timer_is_rejected():
    def naive(ctx, _):
        yield ctx.create_timer(datetime(2026, 1, 1))

    step = Run(naive).step
    assert step.status == "Failed" and "timezone-aware" in step.failure.message


def test_retry_waits_on_durable_timers_then_succeeds():
    policy = RetryPolicy(timedelta(minutes=5), max_number_of_attempts=3, backoff_coefficient=2)

    def retried(ctx, _):
        return (yield ctx.call_activity_with_retry("flaky", policy))

    run = Run(retried)
    fail = FailureDetails("IOError", "down")
    run.feed(h.TaskFailed(0, fail))
    assert run.scheduled(h.TimerCreated)[0].fire_at == T0 + timedelta(minutes=5)
    run.feed(h.TimerFired(1, T0))
    assert run.scheduled()[0].seq == 2
    run.feed(h.TaskFailed(2, fail))
    assert run.scheduled(h.TimerCreated)[0].fire_at == T0 + timedelta(minutes=10)
    run.feed(h.TimerFired(3, T0))
    assert run.feed(h.TaskCompleted(4, "ok")).output == "ok"
    _, step = run.replay()
    assert step.new_events == []


def test_retry_gives_up_after_max_attempts():
    policy = RetryPolicy(timedelta(seconds=1), max_number_of_attempts=2)

    def retried(ctx, _):
        return (yield ctx.call_activity_with_retry("flaky", policy))

    run = Run(retried)
    run.feed(h.TaskFailed(0, FailureDetails("E", "1")))
    run.feed(h.TimerFired(1, T0))
    step = run.feed(h.TaskFailed(2, FailureDetails("E", "2")))
    assert step.status == "Failed" and "2" in step.failure.message


def test_continue_as_new_carries_unconsumed_events():
    def eternal(ctx, n):
        yield ctx.call_activity("tick")
        ctx.continue_as_new(n + 1)

    run = Run(eternal, input=0)
    run.feed(h.EventRaised("later", "x"))
    step = run.feed(h.TaskCompleted(0))
    assert step.status == "ContinuedAsNew"
    assert step.continued_as_new.input == 1
    assert step.continued_as_new.carried == (h.EventRaised("later", "x"),)


def test_sub_orchestration_ids_are_deterministic_and_failures_propagate():
    def parent(ctx, _):
        try:
            yield ctx.call_sub_orchestrator("child", 1)
        except TaskFailedError:
            return "child failed"

    run = Run(parent, iid="p")
    created = run.scheduled(h.SubOrchestrationCreated)[0]
    assert created.instance_id == "p:0"
    assert run.feed(h.SubOrchestrationFailed(0, FailureDetails("E", "x"))).output == "child failed"


def test_terminate_ends_a_waiting_instance():
    run = Run(chain, input=1)
    step = run.feed(h.ExecutionTerminated("stop"))
    assert step.status == "Terminated" and step.output == "stop"


def test_retry_policy_validates_input():
    with pytest.raises(ValueError):
        RetryPolicy(timedelta(seconds=1), max_number_of_attempts=0)


def test_events_after_continue_as_new_in_the_same_batch_move_to_the_next_execution():
    def counter(ctx, n):
        yield ctx.wait_for_external_event("op")
        ctx.continue_as_new(n + 1)

    run = Run(counter, input=0)
    step = run.feed(h.EventRaised("op", 1), h.EventRaised("op", 2), h.ExecutionTerminated("x"))
    assert step.status == "ContinuedAsNew"
    assert step.continued_as_new.carried == (h.EventRaised("op", 2), h.ExecutionTerminated("x"))
    assert step.new_events[-1] == step.continued_as_new


def test_suspended_instance_holds_events_until_resumed():
    run = Run(chain, input=1)
    run.feed(h.ExecutionSuspended("pause"))
    step = run.feed(h.TaskCompleted(0, 2))
    assert step.status == "Suspended" and run.scheduled() == []
    step = run.feed(h.ExecutionResumed("go"))
    assert [e.name for e in run.scheduled()] == ["double"]
    ex, replayed = run.replay()
    assert replayed.new_events == [] and [e.seq for e in ex.open_actions()] == [1]


def test_critical_section_is_granted_then_released_even_on_termination():
    def transfer(ctx, _):
        with (yield ctx.lock("Account@b", "Account@a")):
            yield ctx.call_entity("Account@a", "withdraw", 5)
            yield ctx.call_entity("Account@b", "deposit", 5)
        return "done"

    run = Run(transfer)
    request = run.scheduled(h.LockRequested)[0]
    assert request.entities == ("Account@a", "Account@b") and request.counters == (1, 1)
    run.feed(h.LockGranted(request.seq))
    assert run.scheduled(h.EntityCalled)[0].counter == 2
    run.feed(h.EntityResponded(1))
    step = run.feed(h.EntityResponded(2))
    assert step.output == "done"
    assert [e.lock_seq for e in step.new_events if isinstance(e, h.LockReleased)] == [0]

    waiting = Run(transfer)
    step = waiting.feed(h.ExecutionTerminated("stop"))
    # A grant may still be on its way: the release makes the late lock a no-op.
    released = [e for e in step.new_events if isinstance(e, h.LockReleased)]
    assert [(e.entities, e.counters) for e in released] == [(request.entities, (1, 1))]

    held = Run(transfer)
    held.feed(h.LockGranted(0))
    step = held.feed(h.ExecutionTerminated("stop"))
    assert step.status == "Terminated"
    assert [type(e).__name__ for e in step.new_events[-2:]] == [
        "LockReleased",
        "ExecutionCompleted",
    ]


def test_a_refused_lock_fails_the_lock_task_and_releases_what_it_asked_for():
    def careful(ctx, _):
        try:
            with (yield ctx.lock("Nope@a", "Account@b")):
                return "locked"
        except TaskFailedError as exc:
            return exc.details.error_type

    run = Run(careful)
    request = run.scheduled(h.LockRequested)[0]
    step = run.feed(h.LockFailed(request.seq, FailureDetails("NotRegisteredError", "no Nope")))
    assert step.output == "NotRegisteredError"
    released = [e for e in step.new_events if isinstance(e, h.LockReleased)]
    assert [(e.lock_seq, e.entities) for e in released] == [(request.seq, request.entities)]
    ex, replayed = run.replay()
    assert replayed.new_events == [] and replayed.output == "NotRegisteredError"


@pytest.mark.parametrize("ending", ["return", "failure", "continue_as_new"])
def test_signal_sent_by_the_final_step_is_recorded_before_the_end(ending):
    def notify(ctx, n):
        ctx.signal_entity("Counter@c", "add", n)
        if ending == "failure":
            raise ValueError("after the signal")
        if ending == "continue_as_new" and n == 1:
            ctx.continue_as_new(n + 1)
        return n

    step = Run(notify, input=1).step
    kinds = [type(e).__name__ for e in step.new_events]
    assert kinds.count("EntitySignaled") == 1
    signal = next(e for e in step.new_events if isinstance(e, h.EntitySignaled))
    assert (signal.entity, signal.operation, signal.input, signal.counter) == (
        "Counter@c",
        "add",
        1,
        1,
    )
    last = "ContinuedAsNew" if ending == "continue_as_new" else "ExecutionCompleted"
    assert kinds.index("EntitySignaled") < kinds.index(last) == len(kinds) - 1


def test_unawaited_activity_and_timer_die_with_the_execution():
    def leaves_work(ctx, _):
        ctx.call_activity("never_awaited")
        ctx.create_timer(T0 + timedelta(hours=1))
        ctx.signal_entity("Counter@c", "add", 1)
        return "done"

    kinds = [type(e).__name__ for e in Run(leaves_work).step.new_events]
    assert "TaskScheduled" not in kinds and "TimerCreated" not in kinds
    assert "EntitySignaled" in kinds


def test_non_determinism_sends_nothing_the_diverged_code_asked_for():
    def v1(ctx, _):
        yield ctx.call_activity("a")
        return "v1"

    run = Run(v1)

    def v2(ctx, _):
        ctx.signal_entity("Counter@c", "add", 1)
        yield ctx.call_activity("b")
        return "v2"

    ex = OrchestrationExecutor(v2, "i1")
    step = ex.execute(run.history, episode(h.TaskCompleted(0, None)))
    assert step.status == "Failed"
    assert not [e for e in step.new_events if isinstance(e, h.EntitySignaled)]


def _no_task_yet(ctx):
    return ctx.call_activity("a").result


def _retried(*args, **kwargs):
    """A step that retries an activity with ``RetryPolicy(*args, **kwargs)``, made in the step."""
    return lambda ctx: ctx.call_activity_with_retry("a", RetryPolicy(*args, **kwargs))


# (label, what the orchestrator yields step by step, events fed between steps, error class,
# the built-in class it also is). Each step is called with the context; what it returns is
# yielded, and the next step runs once the events fed after it are in.
BAD_CALLS = [
    (
        "RetryPolicy attempts 0",
        [_retried(timedelta(seconds=1), 0)],
        [],
        InvalidArgumentError,
        ValueError,
    ),
    (
        "RetryPolicy interval 5",
        [_retried(5, 3)],
        [],
        ArgumentTypeError,
        TypeError,
    ),
    (
        "RetryPolicy attempts '3'",
        [_retried(timedelta(seconds=1), "3")],
        [],
        ArgumentTypeError,
        TypeError,
    ),
    (
        "RetryPolicy backoff 0.5",
        [_retried(timedelta(seconds=1), 3, backoff_coefficient=0.5)],
        [],
        InvalidArgumentError,
        ValueError,
    ),
    (
        "RetryPolicy retry_timeout 60",
        [_retried(timedelta(seconds=1), 3, retry_timeout=60)],
        [],
        ArgumentTypeError,
        TypeError,
    ),
    (
        "retry with a dict",
        [lambda ctx: ctx.call_activity_with_retry("a", {"attempts": 3})],
        [],
        ArgumentTypeError,
        TypeError,
    ),
    (
        "child retry with None",
        [lambda ctx: ctx.call_sub_orchestrator_with_retry("c", None)],
        [],
        ArgumentTypeError,
        TypeError,
    ),
    ("timer naive", [lambda ctx: ctx.create_timer(datetime(2026, 1, 1))], [], BAD, ValueError),
    ("timer 5", [lambda ctx: ctx.create_timer(5)], [], TYPE, TypeError),
    ("timer as text", [lambda ctx: ctx.create_timer("2026-01-01")], [], TYPE, TypeError),
    ("activity 5", [lambda ctx: ctx.call_activity(5)], [], TYPE, TypeError),
    ("activity None", [lambda ctx: ctx.call_activity(None)], [], TYPE, TypeError),
    ("activity ''", [lambda ctx: ctx.call_activity("")], [], BAD, ValueError),
    ("child 5", [lambda ctx: ctx.call_sub_orchestrator(5)], [], TYPE, TypeError),
    (
        "child id 123",
        [lambda ctx: ctx.call_sub_orchestrator("c", instance_id=123)],
        [],
        BAD,
        ValueError,
    ),
    (
        "child id ''",
        [lambda ctx: ctx.call_sub_orchestrator("c", instance_id="")],
        [],
        BAD,
        ValueError,
    ),
    (
        "child version 2",
        [lambda ctx: ctx.call_sub_orchestrator("c", version=2)],
        [],
        BAD,
        ValueError,
    ),
    ("event name ''", [lambda ctx: ctx.wait_for_external_event("")], [], BAD, ValueError),
    ("event name None", [lambda ctx: ctx.wait_for_external_event(None)], [], BAD, ValueError),
    ("event timeout 5", [lambda ctx: ctx.wait_for_external_event("e", 5)], [], TYPE, TypeError),
    ("call operation ''", [lambda ctx: ctx.call_entity("Counter@c", "")], [], BAD, ValueError),
    (
        "signal operation None",
        [lambda ctx: ctx.signal_entity("Counter@c", None)],
        [],
        BAD,
        ValueError,
    ),
    ("call entity 'no-at'", [lambda ctx: ctx.call_entity("no-at", "add")], [], BAD_ID, ValueError),
    ("lock nothing", [lambda ctx: ctx.lock()], [], BAD, ValueError),
    (
        "lock inside a lock",
        [lambda ctx: ctx.lock("Counter@a"), lambda ctx: ctx.lock("Counter@b")],
        [h.LockGranted(0)],
        InvalidOperationError,
        None,
    ),
    ("task_all of numbers", [lambda ctx: ctx.task_all([1, 2])], [], TYPE, TypeError),
    ("task_any of a number", [lambda ctx: ctx.task_any(5)], [], TYPE, TypeError),
    ("result before completion", [_no_task_yet], [], InvalidOperationError, None),
    ("yield a number", [lambda ctx: 42], [], TYPE, TypeError),
]


@pytest.mark.parametrize(
    "label, steps, events, expected, also", BAD_CALLS, ids=[c[0] for c in BAD_CALLS]
)
def test_bad_input_to_the_context_fails_the_instance_with_a_typed_error(
    label, steps, events, expected, also
):
    def bad(ctx, _):
        for step in steps:
            yield step(ctx)

    run = Run(bad)
    for event in events:
        run.feed(event)
    failure = run.step.failure
    assert run.step.status == "Failed", label
    assert failure.error_type == expected.__name__, failure
    assert issubclass(expected, DurableError) and (also is None or issubclass(expected, also))
    assert failure.message and "Traceback" not in failure.message, failure.message
    if events:  # the critical section taken before the error is released, not left held
        assert [type(e).__name__ for e in run.step.new_events[-2:]] == [
            "LockReleased",
            "ExecutionCompleted",
        ]

    def catching(ctx, _):
        try:
            for step in steps:
                yield step(ctx)
        except DurableError as error:
            return error

    caught = Run(catching)
    for event in events:
        caught.feed(event)
    if caught.step.status == "Completed":  # raised in the orchestrator's code: it can catch it
        error = caught.step.output
        assert type(error) is expected and str(error) == failure.message
        again = pickle.loads(pickle.dumps(error))
        assert type(again) is expected and str(again) == str(error)
    else:  # raised by the engine about what the code yielded
        assert label == "yield a number" and caught.step.failure == failure


def work(x):
    """An activity passed by object (the executor keeps it as a dispatch target)."""
    return x


def test_an_answered_activity_leaves_no_dispatch_target_behind():
    def spread(ctx, n):
        return sum((yield ctx.task_all([ctx.call_activity(work, i) for i in range(n)])))

    run = Run(spread, input=3)
    assert sorted(run.ex.targets) == [0, 1, 2]  # the dispatcher reads them to ship the code
    run.feed(h.TaskCompleted(0, 0), h.TaskCompleted(1, 1))
    assert sorted(run.ex.targets) == [2]  # a wide fan-out would keep one per answered task
    assert run.feed(h.TaskCompleted(2, 2)).output == 3 and run.ex.targets == {}


# Found by the property tests (tests/test_engine_properties.py), one test per bug.


def test_a_step_suspended_after_its_completion_replays_the_action_it_took():
    # One batch: the completion runs the code (which schedules "double"), then the suspension.
    run = Run(chain, input=1)
    run.feed(h.TaskCompleted(0, 2), h.ExecutionSuspended("pause"))
    assert [e.name for e in run.scheduled()] == ["double"]
    ex, step = run.replay()
    assert step.status == "Suspended" and step.new_events == []
    assert [e.seq for e in ex.open_actions()] == [1]


def test_a_first_yield_of_a_task_already_complete_goes_on():
    def nothing_to_wait_for(ctx, _):
        done = yield ctx.task_all([])
        return (done, (yield ctx.call_activity("a")))

    run = Run(nothing_to_wait_for)
    assert [e.name for e in run.scheduled()] == ["a"]
    assert run.feed(h.TaskCompleted(0, 1)).output == ([], 1)


def locks_after_a(ctx, _):
    yield ctx.call_activity("a")
    with (yield ctx.lock("Counter@x")):
        yield ctx.call_entity("Counter@x", "add", 1)


def test_a_lock_request_that_dies_with_its_step_is_never_released():
    # The completion makes the code ask for the lock, the termination in the same batch ends
    # the execution: the request is never sent, so no entity waits for a release.
    run = Run(locks_after_a)
    step = run.feed(h.TaskCompleted(0), h.ExecutionTerminated("stop"))
    assert step.status == "Terminated"
    assert not [e for e in step.new_events if isinstance(e, (h.LockRequested, h.LockReleased))]
    _, replayed = run.replay()
    assert replayed.status == "Terminated" and replayed.new_events == []


def test_the_release_of_a_lock_still_on_its_way_at_termination_replays():
    run = Run(locks_after_a)
    run.feed(h.TaskCompleted(0))
    step = run.feed(h.ExecutionTerminated("stop"))
    assert [e.lock_seq for e in step.new_events if isinstance(e, h.LockReleased)] == [1]
    _, replayed = run.replay()
    assert replayed.status == "Terminated" and replayed.new_events == []


def test_replay_reports_the_events_continue_as_new_carried():
    def eternal(ctx, n):
        yield ctx.call_activity("tick")
        ctx.continue_as_new(n + 1)

    run = Run(eternal, input=0)
    step = run.feed(h.TaskCompleted(0), h.EventRaised("later", "x"))
    _, replayed = run.replay()
    assert replayed.continued_as_new == step.continued_as_new
    assert replayed.continued_as_new.carried == (h.EventRaised("later", "x"),)


def test_code_that_now_ends_where_history_went_on_is_non_determinism():
    def waits(ctx, _):
        return (yield ctx.wait_for_external_event("E"))

    run = Run(waits)
    step = OrchestrationExecutor(lambda ctx: "done", "i1").execute(run.history, [])
    assert step.failure.error_type == "NonDeterminismError", step
    assert "ends the execution (Completed) where the history recorded it going on" in str(
        step.failure.message
    )
    assert step.new_events[-1].status == "Failed"  # the instance's end is recorded

    run.feed(h.EventRaised("E", 1))  # the history now ends one episode later
    step = OrchestrationExecutor(lambda ctx: "done", "i1").execute(run.history, [])
    assert step.failure.error_type == "NonDeterminismError", step


def test_code_that_now_goes_on_where_history_ended_is_non_determinism():
    run = Run(lambda ctx: "done")

    def waits(ctx, _):
        return (yield ctx.wait_for_external_event("E"))

    step = OrchestrationExecutor(waits, "i1").execute(run.history, [])
    assert step.failure.error_type == "NonDeterminismError"
    assert "the history recorded the execution ending (Completed) but the code now goes on" in (
        step.failure.message
    )


def test_a_timer_due_at_another_time_is_non_determinism_naming_both_times():
    def sleeps(minutes):
        def orchestrator(ctx, _):
            yield ctx.create_timer(timedelta(minutes=minutes))

        return orchestrator

    run = Run(sleeps(5))
    step = OrchestrationExecutor(sleeps(10), "i1").execute(run.history, [])
    assert step.failure.error_type == "NonDeterminismError"
    message = step.failure.message
    assert "a durable timer due 2026-01-01T00:05:00+00:00" in message
    assert "schedules a durable timer due 2026-01-01T00:10:00+00:00" in message
    assert OrchestrationExecutor(sleeps(5), "i1").execute(run.history, []).status == "Running"


def test_an_answer_repeated_while_suspended_is_recorded_once():
    run = Run(chain, input=1)
    run.feed(h.ExecutionSuspended("pause"))
    run.feed(h.TaskCompleted(0, 2))
    step = run.feed(h.TaskCompleted(0, 2))
    assert step.new_events == [h.OrchestratorStarted(T0)]
    assert sum(isinstance(e, h.TaskCompleted) for e in run.history) == 1
    run.feed(h.ExecutionResumed("go"))
    assert [e.name for e in run.scheduled()] == ["double"]
