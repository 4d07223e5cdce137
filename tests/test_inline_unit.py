"""The pure parts of inline activities: declaration and call options, their history record,
the crash marker's inline region and the host's bounded thread pool (no Ray)."""

from __future__ import annotations

import asyncio
import threading
import time

import cloudpickle
import pytest

from runtime import ActivityTimeoutError, activity, orchestrator
from runtime.actors.hosting.inline import InlineRunner
from runtime.actors.hosting.poison import CrashMarker, Work
from runtime.errors import ArgumentTypeError, InvalidArgumentError
from runtime.orchestration import history as h
from runtime.orchestration.codec import decode_event, encode_event
from runtime.orchestration.engine import OrchestrationExecutor
from runtime.registry import Activity
from runtime.serialization import dumps

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


def _run(runner: InlineRunner, fn, input, timeout=5.0):
    return runner.run(Activity(fn, fn.__name__, inline=True), input, timeout, "i")


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

    async def main():
        return await asyncio.gather(
            _run(runner, append, value), _run(runner, boom, 1), _run(runner, lock, 1)
        )

    (ok1, out1), (ok2, out2), (ok3, out3) = asyncio.run(main())
    assert ok1 and out1 == ["x", "y"] and value == ["x"]
    assert not ok2 and out2.error_type == "KeyError"
    assert not ok3 and out3.error_type == "SerializationError"
    runner.close()


def test_the_runner_bounds_its_threads_and_abandons_what_runs_too_long():
    seen: list[list[Work]] = []
    runner = InlineRunner("hub", seen.append, threads=2)
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
        results = await asyncio.gather(*(_run(runner, busy, 0.05) for _ in range(6)))
        return timed_out, results

    (ok, failure), results = asyncio.run(main())
    release.set()
    assert not ok and failure.error_type == ActivityTimeoutError.__name__
    assert "ran past its timeout of 0.2 s" in failure.message
    assert runner.abandoned == 1
    assert results == [(True, 0.05)] * 6
    assert now["most"] == 2  # the abandoned thread freed its slot; never more than two
    assert max(len(works) for works in seen) <= 3  # two slots and the abandoned one
    runner.close()
