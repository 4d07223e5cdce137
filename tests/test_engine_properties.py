"""Property tests of the replay engine: random orchestrator programs, random completion orders.

Hypothesis draws a program (activities, timers, events, task_all, task_any of an event and a
timer, events with a timeout, retries, sub-orchestrations, entity calls and signals, critical
sections, continue-as-new) and interprets it as a generator orchestrator. A world answers the
program's pending actions in an order and in batches it also draws (group commit delivers
several at once), fails some of them, re-delivers some, raises the external events at any
time, suspends, resumes and terminates. Then:

(a) a fresh executor over every committed prefix of the history has the live run's open
    actions and, fed the rest of the run's inputs, records what the live run recorded;
(b) the whole history (through the codec) replays to the same outcome, with no new event;
(c) a changed program replayed against the history is a NonDeterminismError exactly when it
    takes other actions than the history recorded (a mutation of a step never reached, or
    one that changes nothing the history holds, must replay cleanly);
(d) replay costs O(history): the engine's executed lines per event do not grow with it.

Profiles (``HYPOTHESIS_PROFILE``): ``ci``, the default, runs 300 derandomized examples per
property, so ``.ci/run`` is reproducible; ``long`` runs 3,000 random ones and keeps failures
in ``.hypothesis/`` (git-ignored) to replay them first next time:

    HYPOTHESIS_PROFILE=long python -m pytest tests/test_engine_properties.py

A failure prints the smallest program and world it found (and, with ``long``, a
``@reproduce_failure`` blob).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from runtime.errors import FailureDetails, TaskFailedError
from runtime.orchestration import OrchestrationExecutor, RetryPolicy
from runtime.orchestration import history as h
from runtime.orchestration.codec import decode_event, encode_event
from runtime.orchestration.engine import Step
from runtime.orchestration.tasks import EventTimeoutError

#: No Ray for this module (tests/conftest.py): the code under test is pure.
PURE = True

settings.register_profile(
    "ci",
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "long",
    max_examples=3000,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
PROFILE = settings.get_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
IID = "p1"
ACTIVITIES = ("a", "b", "c")
EVENTS = ("go", "Go", "stop")  # "go" and "Go" are one event: names are case-insensitive
ENTITIES = ("Counter@x", "Counter@y", "Account@z")
OPERATIONS = ("add", "get")


# -- programs ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Activity:
    name: str
    guarded: bool  # the program catches the activity's failure


@dataclass(frozen=True)
class Retry:
    name: str
    attempts: int
    guarded: bool


@dataclass(frozen=True)
class Timer:
    minutes: int


@dataclass(frozen=True)
class Event:
    name: str


@dataclass(frozen=True)
class EventOrTimeout:
    name: str
    minutes: int


@dataclass(frozen=True)
class All:
    names: tuple[str, ...]
    guarded: bool


@dataclass(frozen=True)
class Race:  # task_any of an external event and a timer
    name: str
    minutes: int


@dataclass(frozen=True)
class Child:
    name: str
    guarded: bool


@dataclass(frozen=True)
class Call:
    entity: str
    operation: str
    guarded: bool


@dataclass(frozen=True)
class Signal:
    entity: str
    operation: str


@dataclass(frozen=True)
class Locked:  # a critical section with entity calls (and a signal) inside
    entities: tuple[str, ...]
    calls: tuple[tuple[str, str], ...]
    signal: bool
    guarded: bool


@dataclass(frozen=True)
class Program:
    steps: tuple[Any, ...]
    generations: int  # how many times the program continues as new before it returns


_guarded = st.booleans()
_minutes = st.integers(1, 90)


@st.composite
def _locked(draw: Any) -> Locked:
    entities = tuple(draw(st.lists(st.sampled_from(ENTITIES), min_size=1, max_size=2, unique=True)))
    call = st.tuples(st.sampled_from(entities), st.sampled_from(OPERATIONS))
    calls = tuple(draw(st.lists(call, max_size=2)))
    return Locked(entities, calls, draw(st.booleans()), draw(_guarded))


STEPS = st.one_of(
    st.builds(Activity, st.sampled_from(ACTIVITIES), _guarded),
    st.builds(Retry, st.sampled_from(ACTIVITIES), st.integers(1, 3), _guarded),
    st.builds(Timer, _minutes),
    st.builds(Event, st.sampled_from(EVENTS)),
    st.builds(EventOrTimeout, st.sampled_from(EVENTS), _minutes),
    st.builds(All, st.lists(st.sampled_from(ACTIVITIES), max_size=4).map(tuple), _guarded),
    st.builds(Race, st.sampled_from(EVENTS), _minutes),
    st.builds(Child, st.sampled_from(("child", "other")), _guarded),
    st.builds(Call, st.sampled_from(ENTITIES), st.sampled_from(OPERATIONS), _guarded),
    st.builds(Signal, st.sampled_from(ENTITIES), st.sampled_from(OPERATIONS)),
    _locked(),
)
PROGRAMS = st.builds(Program, st.lists(STEPS, min_size=1, max_size=7).map(tuple), st.integers(0, 2))


def _catching(guarded: bool, task: Any) -> Any:
    if not guarded:
        return (yield task)
    try:
        return (yield task)
    except TaskFailedError as err:
        return ("caught", err.details.message)


def _run(ctx: Any, step: Any, tag: tuple[int, int]) -> Any:
    """Run one step of a program; ``tag`` (generation, index) is every action's input."""
    if isinstance(step, Activity):
        return (yield from _catching(step.guarded, ctx.call_activity(step.name, tag)))
    if isinstance(step, Retry):
        policy = RetryPolicy(timedelta(minutes=1), step.attempts, backoff_coefficient=2)
        task = ctx.call_activity_with_retry(step.name, policy, tag)
        return (yield from _catching(step.guarded, task))
    if isinstance(step, Timer):
        return (yield ctx.create_timer(timedelta(minutes=step.minutes)))
    if isinstance(step, Event):
        return (yield ctx.wait_for_external_event(step.name))
    if isinstance(step, EventOrTimeout):
        try:
            return (yield ctx.wait_for_external_event(step.name, timedelta(minutes=step.minutes)))
        except EventTimeoutError:
            return "timed out"
    if isinstance(step, All):
        tasks = [ctx.call_activity(name, (*tag, j)) for j, name in enumerate(step.names)]
        return (yield from _catching(step.guarded, ctx.task_all(tasks)))
    if isinstance(step, Race):
        timer = ctx.create_timer(timedelta(minutes=step.minutes))
        raised = ctx.wait_for_external_event(step.name)
        if (yield ctx.task_any([raised, timer])) is raised:
            timer.cancel()
            return raised.result
        return "timeout"
    if isinstance(step, Child):
        return (yield from _catching(step.guarded, ctx.call_sub_orchestrator(step.name, tag)))
    if isinstance(step, Call):
        task = ctx.call_entity(step.entity, step.operation, tag)
        return (yield from _catching(step.guarded, task))
    if isinstance(step, Signal):
        ctx.signal_entity(step.entity, step.operation, tag)
        return None
    return (yield from _critical_section(ctx, step, tag))


def _critical_section(ctx: Any, step: Locked, tag: tuple[int, int]) -> Any:
    results = []
    with (yield ctx.lock(*step.entities)):
        for entity, operation in step.calls:
            task = ctx.call_entity(entity, operation, tag)
            results.append((yield from _catching(step.guarded, task)))
        if step.signal:
            ctx.signal_entity(step.entities[0], "add", tag)
    return results


def orchestrator_of(program: Program) -> Any:
    """The program as a generator orchestrator (its input is the generation)."""

    def orchestrator(ctx: Any, generation: int) -> Any:
        results = []
        for index, step in enumerate(program.steps):
            results.append((yield from _run(ctx, step, (generation, index))))
        if generation < program.generations:
            ctx.continue_as_new(generation + 1)
        return results

    return orchestrator


# -- the world that answers a program ------------------------------------------------------

#: Actions that wait for an answer from the world.
AWAITED = (h.TaskScheduled, h.TimerCreated, h.SubOrchestrationCreated, h.EntityCalled)
ACTIONS = (*AWAITED, h.LockRequested, h.EntitySignaled, h.LockReleased)
TERMINAL = (h.ExecutionCompleted, h.ContinuedAsNew)
_ANSWERS = {
    h.TaskScheduled: (h.TaskCompleted, h.TaskFailed),
    h.SubOrchestrationCreated: (h.SubOrchestrationCompleted, h.SubOrchestrationFailed),
    h.EntityCalled: (h.EntityResponded, h.EntityFailed),
}
CONTROLS = (None,) * 12 + ("toggle", "toggle", "terminate")
MAX_ROUNDS = 60


@dataclass
class Execution:
    """One execution as a host ran it: the input batches, each step, the stored history."""

    fn: Any
    batches: list[list[h.HistoryEvent]] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    open_after: list[list[h.HistoryEvent]] = field(default_factory=list)
    history: list[h.HistoryEvent] = field(default_factory=list)
    boundaries: list[int] = field(default_factory=list)

    def record(self, executor: OrchestrationExecutor, batch: list[h.HistoryEvent]) -> Step:
        """Feed ``batch`` to the live executor and keep what a host would commit."""
        step = executor.execute([], batch)
        self.batches.append(batch)
        self.steps.append(step)
        self.open_after.append(executor.open_actions())
        self.history.extend(step.new_events)
        self.boundaries.append(len(self.history))
        return step


class World:
    """Answers pending actions in an order drawn by hypothesis, as hosts and entities would."""

    def __init__(self, data: Any, program: Program) -> None:
        self.data = data
        self.program = program
        self.now = T0
        self.executions: list[Execution] = []

    def run(self) -> list[Execution]:
        """Run every execution of the program (continue-as-new starts the next one)."""
        fn = orchestrator_of(self.program)
        start: list[h.HistoryEvent] = [h.ExecutionStarted("prog", 0)]
        while True:
            execution = Execution(fn)
            self.executions.append(execution)
            step = self._execution(execution, start)
            if step.continued_as_new is None:
                return self.executions
            cont = step.continued_as_new
            start = [h.ExecutionStarted("prog", cont.input), *cont.carried]

    def _execution(self, execution: Execution, start: list[h.HistoryEvent]) -> Step:
        executor = OrchestrationExecutor(execution.fn, IID)
        generation = start[0].input  # type: ignore[attr-defined]
        self.outstanding: dict[int, h.HistoryEvent] = {}
        self.answered: list[h.HistoryEvent] = []
        self.pool = [
            h.EventRaised(s.name, f"{s.name}:{generation}.{i}")
            for i, s in enumerate(self.program.steps)
            if isinstance(s, (Event, EventOrTimeout, Race))
        ]
        self.suspensions = 0
        step = execution.record(executor, [self._stamp([]), *start])
        for _ in range(MAX_ROUNDS):
            self._note(step)
            if step.is_terminal:
                return step
            batch = self._batch(step.status == "Suspended")
            assert batch, f"the program is stuck: {self.program}"
            step = execution.record(executor, [self._stamp(batch), *batch])
        return step

    def _note(self, step: Step) -> None:
        for action in step.new_events:
            if isinstance(action, (*AWAITED, h.LockRequested)):
                self.outstanding[action.seq] = action  # type: ignore[union-attr]

    def _stamp(self, batch: list[h.HistoryEvent]) -> h.OrchestratorStarted:
        due = [e.fire_at for e in batch if isinstance(e, h.TimerFired)]
        self.now = max([self.now + timedelta(seconds=self.data.draw(st.integers(0, 90))), *due])
        return h.OrchestratorStarted(self.now)

    def _batch(self, suspended: bool) -> list[h.HistoryEvent]:
        offers: list[tuple[str, Any]] = [("answer", seq) for seq in sorted(self.outstanding)]
        offers += [("event", e) for e in self.pool]
        offers += [("again", e) for e in self.answered[-2:]]  # at-least-once delivery
        batch = []
        if offers:
            order = self.data.draw(st.permutations(offers))
            size = self.data.draw(st.integers(1, min(4, len(order))))
            batch = [self._deliver(kind, what) for kind, what in order[:size]]
        control = self.data.draw(st.sampled_from(CONTROLS))
        if suspended and (control == "toggle" or not offers):
            batch.append(h.ExecutionResumed("go on"))
        elif control == "toggle" and self.suspensions < 2:
            self.suspensions += 1
            batch.append(h.ExecutionSuspended("pause"))
        elif control == "terminate":
            batch.append(h.ExecutionTerminated("stop"))
        return batch

    def _deliver(self, kind: str, what: Any) -> h.HistoryEvent:
        if kind == "event":
            self.pool.remove(what)
            return what  # type: ignore[no-any-return]
        if kind == "again":
            return self._answer(self._action_of(what))
        answer = self._answer(self.outstanding.pop(what))
        self.answered.append(answer)
        return answer

    def _action_of(self, answer: Any) -> Any:
        return next(a for a in self.executions[-1].history if getattr(a, "seq", None) == answer.seq)

    def _answer(self, action: Any) -> h.HistoryEvent:
        if isinstance(action, h.TimerCreated):
            return h.TimerFired(action.seq, action.fire_at)
        if isinstance(action, h.LockRequested):
            return h.LockGranted(action.seq)
        done, failed = _ANSWERS[type(action)]
        if self.data.draw(st.integers(0, 3)) == 3:  # one in four fails
            return failed(action.seq, FailureDetails("ValueError", f"#{action.seq} failed"))
        return done(action.seq, ("result", action.seq))


# -- properties ------------------------------------------------------------------------


def _outcome(step: Step) -> tuple[Any, ...]:
    return (step.status, step.output, step.failure, step.continued_as_new)


def _check_continuation(execution: Execution, executor: Any, k: int, first: Step) -> None:
    """``first`` is step ``k + 1`` of ``executor``, which held the history up to step ``k``;
    it and the steps after it must record what the live run recorded."""
    step = first
    for j in range(k + 1, len(execution.steps)):
        if j > k + 1:
            step = executor.execute([], execution.batches[j])
        where = f"step {j} after replaying the prefix of step {k}"
        assert step.new_events == execution.steps[j].new_events, where
        assert _outcome(step) == _outcome(execution.steps[j]), where


@PROFILE
@given(program=PROGRAMS, data=st.data())
def test_replay_from_every_committed_prefix_continues_as_the_live_run(program, data):
    """(a) Activation at any commit replays to the live state and then records the same."""
    for execution in World(data, program).run():
        for k, end in enumerate(execution.boundaries):
            prefix = execution.history[:end]
            replayed = OrchestrationExecutor(execution.fn, IID)
            step = replayed.execute(prefix, [])
            where = f"replay of the prefix of step {k} ({end} events)"
            assert step.new_events == [], where
            assert step.status == execution.steps[k].status, where
            assert replayed.open_actions() == execution.open_after[k], where
            if step.is_terminal:
                assert _outcome(step) == _outcome(execution.steps[k]), where
            if k + 1 == len(execution.steps):
                continue
            following = execution.batches[k + 1]
            _check_continuation(execution, replayed, k, replayed.execute([], following))
            # the host's other path: the stored history and the new events in one call
            combined = OrchestrationExecutor(execution.fn, IID)
            _check_continuation(execution, combined, k, combined.execute(prefix, following))


def _check_well_formed(history: list[h.HistoryEvent]) -> None:
    """Each action recorded once, each answer once and after its action, each release of a
    lock that was asked for, and the end last."""
    actions: dict[int, h.HistoryEvent] = {}
    answered: set[int] = set()
    for index, e in enumerate(history):
        if isinstance(e, ACTIONS):
            assert e.seq not in actions, f"action #{e.seq} recorded twice: {e}"
            actions[e.seq] = e
        if isinstance(e, h.COMPLETIONS):
            assert e.seq in actions and e.seq not in answered, f"a stray or repeated {e}"
            answered.add(e.seq)
        if isinstance(e, h.LockReleased):
            assert isinstance(actions.get(e.lock_seq), h.LockRequested), f"{e} of no request"
        if isinstance(e, TERMINAL):
            assert index == len(history) - 1, f"{e} is not the last event"


@PROFILE
@given(program=PROGRAMS, data=st.data())
def test_the_stored_history_replays_to_the_same_outcome_with_nothing_new(program, data):
    """(b) A history is well formed, and replaying it as stored by the codec changes nothing."""
    for execution in World(data, program).run():
        _check_well_formed(execution.history)
        stored = [decode_event(encode_event(e)) for e in execution.history]
        assert stored == execution.history
        replayed = OrchestrationExecutor(execution.fn, IID)
        step = replayed.execute(stored, [])
        assert step.new_events == []
        assert _outcome(step) == _outcome(execution.steps[-1])
        assert replayed.open_actions() == execution.open_after[-1]


# -- changed programs ------------------------------------------------------------------

_TIMED = (Timer, EventOrTimeout, Race)


def _renamed(step: Any) -> Any:
    if isinstance(step, (Activity, Retry, Child)):
        return replace(step, name=f"{step.name}2")
    if isinstance(step, All) and step.names:
        return replace(step, names=(f"{step.names[0]}2", *step.names[1:]))
    if isinstance(step, (Call, Signal)):
        return replace(step, operation=f"{step.operation}2")
    if isinstance(step, Locked) and step.calls:
        (entity, operation), *rest = step.calls
        return replace(step, calls=((entity, f"{operation}2"), *rest))
    return None


@st.composite
def mutants(draw: Any, program: Program) -> tuple[str, Program]:
    """A changed program: an action renamed, a timer changed, a step dropped, moved or added."""
    steps = list(program.steps)
    renamable = [i for i, s in enumerate(steps) if _renamed(s) is not None]
    timed = [i for i, s in enumerate(steps) if isinstance(s, _TIMED)]
    kinds = ["drop", "insert", "append", "swap"] if len(steps) > 1 else ["drop", "insert", "append"]
    kinds += ["rename"] * bool(renamable) + ["retime"] * bool(timed)
    kind = draw(st.sampled_from(kinds))
    if kind == "rename":
        i = draw(st.sampled_from(renamable))
        steps[i] = _renamed(steps[i])
    elif kind == "retime":
        i = draw(st.sampled_from(timed))
        steps[i] = replace(steps[i], minutes=steps[i].minutes + draw(st.integers(1, 30)))
    elif kind == "insert":
        steps.insert(draw(st.integers(0, len(steps))), draw(STEPS))
    elif kind == "append":  # the commonest change to a deployed workflow: one more step
        steps.append(draw(st.one_of(st.builds(Event, st.sampled_from(EVENTS)), STEPS)))
    elif kind == "swap":
        i = draw(st.integers(0, len(steps) - 2))
        steps[i], steps[i + 1] = steps[i + 1], steps[i]
    else:
        del steps[draw(st.integers(0, len(steps) - 1))]
    return kind, replace(program, steps=tuple(steps))


def _signature(events: list[h.HistoryEvent]) -> list[tuple[Any, ...]]:
    """What a step did, as replay checks it: its actions (inputs aside) and if it ended."""
    signature = []
    for e in events:
        if isinstance(e, ACTIONS):
            kept = tuple((f.name, getattr(e, f.name)) for f in fields(e) if f.name != "input")
            signature.append((type(e).__name__, kept))
        elif isinstance(e, TERMINAL):  # where it ends: how it ends is the Replayer's check
            signature.append(("end",))
    return signature


def _takes_the_recorded_actions(fn: Any, execution: Execution) -> bool:
    """True if ``fn``, run live on the execution's recorded inputs, does step by step what
    the history recorded. Recorded inputs only: what a step dropped (a repeated answer, a
    termination after the end) is no more in the history than it is here."""
    executor = OrchestrationExecutor(fn, IID)
    for recorded in execution.steps:
        inputs = [e for e in recorded.new_events if not isinstance(e, (*ACTIONS, *TERMINAL))]
        if _signature(executor.execute([], inputs).new_events) != _signature(recorded.new_events):
            return False
    return True


@PROFILE
@given(program=PROGRAMS, data=st.data())
def test_a_changed_program_is_non_determinism_exactly_when_it_diverges(program, data):
    """(c) Replay names a change that the history contradicts, and only such a change."""
    executions = World(data, program).run()
    kind, mutant = data.draw(mutants(program))
    fn = orchestrator_of(mutant)
    for execution in executions:
        diverges = not _takes_the_recorded_actions(fn, execution)
        step = OrchestrationExecutor(fn, IID).execute(execution.history, [])
        failure = step.failure
        reported = failure is not None and failure.error_type == "NonDeterminismError"
        event(f"{kind}: {'diverges' if diverges else 'replays'}")
        assert reported == diverges, (kind, mutant, failure)
        if reported:
            assert step.status == "Failed" and isinstance(step.new_events[-1], h.ExecutionCompleted)
            # what the diverged code asked for is never sent (releasing held entities is)
            assert {type(e) for e in step.new_events} <= {h.LockReleased, h.ExecutionCompleted}


# -- the cost of replay ----------------------------------------------------------------

ENGINE = str(Path(h.__file__).parent)


def _settled(program: Program) -> list[h.HistoryEvent]:
    """The history of ``program`` when every event is there first and every action succeeds."""
    executor = OrchestrationExecutor(orchestrator_of(program), IID)
    waits = (Event, EventOrTimeout, Race)
    raised = [h.EventRaised(s.name, i) for i, s in enumerate(program.steps) if isinstance(s, waits)]
    batch: list[h.HistoryEvent] = [h.ExecutionStarted("prog", 0), *raised]
    history: list[h.HistoryEvent] = []
    while batch:
        step = executor.execute([], [h.OrchestratorStarted(T0), *batch])
        history.extend(step.new_events)
        if step.is_terminal:
            break
        answer = World(None, program)._answer
        batch = [_success(action, answer) for action in executor.open_actions()]
    return history


def _success(action: Any, answer: Any) -> h.HistoryEvent:
    if isinstance(action, (h.TimerCreated, h.LockRequested)):
        return answer(action)  # type: ignore[no-any-return]
    done, _ = _ANSWERS[type(action)]
    return done(action.seq, ("result", action.seq))


def _engine_lines(program: Program, history: list[h.HistoryEvent]) -> int:
    """How many lines of the engine's modules a fresh executor runs to replay ``history``."""
    count = 0

    def in_engine(frame: Any, what: str, arg: Any) -> Any:
        nonlocal count
        count += what == "line"
        return in_engine

    def calls(frame: Any, what: str, arg: Any) -> Any:
        return in_engine if frame.f_code.co_filename.startswith(ENGINE) else None

    executor = OrchestrationExecutor(orchestrator_of(program), IID)
    previous = sys.gettrace()
    sys.settrace(calls)
    try:
        executor.execute(history, [])
    finally:
        sys.settrace(previous)
    return count


@settings(PROFILE, max_examples=max(20, PROFILE.max_examples // 5))
@given(program=PROGRAMS)
def test_replay_costs_the_same_per_event_for_a_history_four_times_longer(program):
    """(d) Replay is O(history): the engine's lines per replayed event do not grow."""
    costs = []
    for times in (3, 12):
        longer = replace(program, steps=program.steps * times, generations=0)
        history = _settled(longer)
        # The program's own steps count too: a step like task_all([]) runs engine code
        # (a composite task) but records no event.
        costs.append(_engine_lines(longer, history) / (len(history) + len(longer.steps)))
    assert costs[1] <= 1.5 * costs[0], costs
