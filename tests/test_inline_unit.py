"""The pure parts of inline activities: declaration and call options, their history record,
the crash marker's inline region and the host's bounded thread pool (no Ray)."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
import uuid

import cloudpickle
import pytest

from runtime import ActivityTimeoutError, InlinePoolExhaustedError, activity, orchestrator
from runtime.actors.hosting import inline
from runtime.actors.hosting.inline import InlineRunner
from runtime.actors.hosting.poison import HOLD, CrashMarker, PoisonGuard, Work
from runtime.driver.http_json import event_view
from runtime.errors import ArgumentTypeError, InvalidArgumentError
from runtime.orchestration import history as h
from runtime.orchestration.codec import decode_event, encode_event
from runtime.orchestration.engine import OrchestrationExecutor, Step
from runtime.registry import Activity
from runtime.serialization import dumps, loads

PURE = True


@activity(inline=True, timeout=2.5)
def fast(x):
    return x


def test_the_declaration_travels_with_the_activity():
    assert (fast.inline, fast.timeout) == (True, 2.5)
    again = cloudpickle.loads(cloudpickle.dumps(fast))
    assert (again.name, again.inline, again.timeout) == ("fast", True, 2.5)
    # A blob stored before inline activities existed has three fields.
    from runtime.registry import _activity_from

    old = _activity_from(dumps((fast.fn, "old", {"num_cpus": 1})))
    assert (old.name, old.inline, old.timeout, old.options) == ("old", False, None, {"num_cpus": 1})


@pytest.mark.parametrize(
    ("inline", "timeout", "error"),
    [
        ("yes", None, ArgumentTypeError),
        (1, None, ArgumentTypeError),
        (True, "5", ArgumentTypeError),
        (True, True, ArgumentTypeError),
        (True, 0, InvalidArgumentError),
        (True, -1.0, InvalidArgumentError),
        (True, float("inf"), InvalidArgumentError),
        (True, float("nan"), InvalidArgumentError),
    ],
)
def test_bad_inline_options_are_refused_where_they_are_written(inline, timeout, error):
    with pytest.raises(error, match="inline|timeout"):
        activity(inline=inline, timeout=timeout)

    @orchestrator
    def calls(ctx, _):
        yield ctx.call_activity("fast", 1, inline=inline, timeout=timeout)

    step = OrchestrationExecutor(calls, "i").execute([], [h.ExecutionStarted("calls", None)])
    assert step.failure is not None and step.failure.error_type == error.__name__


def test_the_call_records_its_own_choice_in_history():
    @orchestrator
    def calls(ctx, _):
        yield ctx.call_activity(fast, 1)
        yield ctx.call_activity(fast, 2, inline=False)
        yield ctx.call_activity("fast", 3, inline=True, timeout=9)

    past, new = [], [h.ExecutionStarted("calls", None)]
    scheduled = []
    for answer in (1, 2, 3):
        step = OrchestrationExecutor(calls, "i").execute(past, new)
        [action] = [e for e in step.new_events if isinstance(e, h.TaskScheduled)]
        scheduled.append((action.input, action.inline, action.timeout))
        past, new = [*past, *step.new_events], [h.TaskCompleted(action.seq, answer)]
    # None: as declared, which the host reads from the registered activity.
    assert scheduled == [(1, None, None), (2, False, None), (3, True, 9)]


def test_a_call_without_inline_options_is_stored_as_before_them():
    plain = h.TaskScheduled(3, "inc", 4)
    blob = encode_event(plain)
    assert b"inline" not in blob and b"timeout" not in blob  # older versions read it
    assert decode_event(blob) == plain
    chosen = h.TaskScheduled(3, "inc", 4, True, 1.5)
    assert decode_event(encode_event(chosen)) == chosen


def test_the_marker_names_every_running_inline_activity_once(tmp_path):
    path = str(tmp_path / "marker")
    marker = CrashMarker(path)
    marker.mark(Work("orchestration", "a", "step"))
    works = [Work("orchestration", f"i{n}", "inline activity f") for n in range(3)]
    marker.mark_inline(works)
    marker.mark_inline(works[1:])  # the first returned
    # The process dies; its successor reads both regions, each once.
    successor = CrashMarker(path)
    assert successor.previous() == Work("orchestration", "a", "step")
    assert successor.previous_inline() == works[1:]
    assert successor.previous_inline() == []
    marker.mark_inline([Work("orchestration", "x" * 40_000, "inline activity f")])
    assert CrashMarker(path).previous_inline() == []  # too long to keep: blames nothing


def _run(runner: InlineRunner, fn, input, timeout=5.0, wanted=lambda: True):
    work = Work("orchestration", "i", f"inline activity {fn.__name__}")
    return runner.run(Activity(fn, fn.__name__, inline=True), input, timeout, work, wanted)


def test_the_runner_copies_values_and_turns_errors_into_failures():
    runner = InlineRunner("hub")
    value = ["x"]

    def append(items):
        items.append("y")
        return items

    def boom(_):
        raise KeyError("nope")

    def lock(_):
        return threading.Lock()

    def leave(_):
        sys.exit(3)  # on a thread of the host: it must not stop the host's loop

    async def main():
        return await asyncio.gather(
            _run(runner, append, value),
            _run(runner, boom, 1),
            _run(runner, lock, 1),
            _run(runner, leave, 1),
            _run(runner, append, [], wanted=lambda: False),
        )

    (ok1, out1), (ok2, out2), (ok3, out3), (ok4, out4), (ok5, out5) = asyncio.run(main())
    assert ok1 and out1 == ["x", "y"] and value == ["x"]
    assert not ok2 and out2.error_type == "KeyError"
    assert not ok3 and out3.error_type == "SerializationError"
    assert not ok4 and out4.error_type == "SystemExit"
    assert not ok5 and "its execution has ended" in out5.message  # never ran


def test_the_runner_bounds_its_threads_and_abandons_what_runs_too_long(monkeypatch):
    seen: list[list[Work]] = []
    runner = InlineRunner("hub", seen.append, threads=2)
    monkeypatch.setattr(inline, "MAX_ABANDONED", 1)
    now = {"running": 0, "most": 0}
    lock = threading.Lock()
    release = threading.Event()

    def busy(seconds):
        with lock:
            now["running"] += 1
            now["most"] = max(now["most"], now["running"])
        time.sleep(seconds)
        with lock:
            now["running"] -= 1
        return seconds

    def stuck(_):
        release.wait(10)

    async def main():
        timed_out = await _run(runner, stuck, None, timeout=0.2)
        exhausted = await _run(runner, busy, 0)  # one stuck thread is all it allows
        release.set()
        while runner.stuck:
            await asyncio.sleep(0.01)
        results = await asyncio.gather(*(_run(runner, busy, 0.05) for _ in range(6)))
        return timed_out, exhausted, results

    (ok, failure), (ok2, exhausted), results = asyncio.run(main())
    assert not ok and failure.error_type == ActivityTimeoutError.__name__
    assert "ran past its timeout of 0.2 s" in failure.message
    assert not ok2 and exhausted.error_type == InlinePoolExhaustedError.__name__
    assert (runner.abandoned, runner.stuck) == (1, 0)
    assert results == [(True, 0.05)] * 6
    assert now["most"] == 2
    # The marker saw each call while it ran, at most two at once, and nothing at the end.
    assert max(len(works) for works in seen) == 2 and seen[-1] == []


class _Crashes:
    """The two store calls PoisonGuard makes."""

    def __init__(self):
        self.counts: dict[str, int] = {}

    def record_crash(self, work_id):
        self.counts[work_id] = self.counts.get(work_id, 0) + 1
        return self.counts[work_id]

    def forget_crashes(self, work_id):
        self.counts.pop(work_id, None)


def _death(store, host, works):
    """A host of that name dies while ``works`` run inline; its successor's guard."""
    guard = PoisonGuard(store, "hub", "sqlite:///x", host, 5)
    guard.running_inline(works)
    guard.marker.close()
    return PoisonGuard(store, "hub", "sqlite:///x", host, 5)


def _answered(*seqs):
    return Step([h.TaskCompleted(s, 0) for s in seqs])


def test_one_death_counts_once_per_instance_and_a_fan_out_is_cleared_by_all_its_answers():
    store, host = _Crashes(), f"host-{uuid.uuid4().hex}"
    fan = [Work("orchestration", "fan", "inline activity f", seq=n) for n in range(8)]
    guard = _death(store, host, fan)
    assert store.counts == {"orchestration:fan": 1}  # not 8
    assert guard.verdict("fan") > 0  # its backoff
    guard.acquit([("fan", _answered(0, 1, 2, 3, 4, 5, 6))])  # the killer, 7, never answers
    assert store.counts == {"orchestration:fan": 1}
    guard.acquit([("fan", _answered(7))])
    assert store.counts == {}


def test_the_instances_of_one_death_run_again_one_at_a_time():
    store, host = _Crashes(), f"host-{uuid.uuid4().hex}"
    both = [Work("orchestration", i, "inline activity f", seq=1) for i in ("a", "b")]
    guard = _death(store, host, both)
    turns: list[str] = []
    guard.on_turn = turns.append
    assert guard.verdict("a") > 0  # a's turn, after its backoff
    assert guard.verdict("b") == HOLD and "b" in guard.held
    guard.acquit([("a", _answered(1))])
    assert turns == ["b"] and "b" not in guard.held and store.counts == {"orchestration:b": 1}


def test_an_activity_declaration_is_stored_as_before_when_it_is_not_inline():
    @activity
    def plain(x):
        return x

    _, (blob,) = plain.__reduce__()
    assert len(loads(blob)) == 3  # (fn, name, options): what versions before inline read
    _, (blob,) = fast.__reduce__()
    assert loads(blob)[3:] == (True, 2.5)


def test_an_inline_activity_takes_no_ray_options():
    with pytest.raises(InvalidArgumentError, match="no Ray task options"):
        activity(inline=True, num_cpus=2)


def test_the_json_view_of_a_call_without_inline_options_is_as_before():
    view = event_view(h.TaskScheduled(1, "inc", 2))
    assert "Inline" not in view and "Timeout" not in view
    assert event_view(h.TaskScheduled(1, "inc", 2, True, 3.0))["Inline"] is True
