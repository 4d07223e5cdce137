"""HostCore on a real SQLite store with a fake ActorSystem: activities run in-process (no Ray)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from helpers import event_loop

from runtime import activity, orchestrator
from runtime.actors.hosts import HostCore
from runtime.errors import SerializationError
from runtime.orchestration import history as h
from runtime.orchestration.codec import decode_event, encode_event
from runtime.registry import encode_code
from runtime.serialization import dumps, loads
from runtime.store import InstanceRecord, open_store

PURE = True


@activity
def double(x: int) -> int:
    """An activity the fake runs in this process."""
    return 2 * x


@activity
def refuse(x: int) -> int:
    """An activity that fails."""
    raise ValueError(f"no {x}")


@orchestrator
def chain(ctx, x):
    """Two activities in a row."""
    y = yield ctx.call_activity(double, x)
    return (yield ctx.call_activity(double, y))


@orchestrator
def caught(ctx, x):
    """Catches its activity's failure."""
    try:
        yield ctx.call_activity(refuse, x)
    except Exception as exc:
        return f"caught {type(exc).__name__}"


@orchestrator
def spread(ctx, n):
    """n activities at once, then their sum."""
    return sum((yield ctx.task_all([ctx.call_activity(double, i) for i in range(n)])))


class FakeSupervisor:
    """Records what a host tells the supervisor."""

    def __init__(self) -> None:
        self.told: list[tuple[str, tuple[Any, ...]]] = []

    def __getattr__(self, method: str) -> Any:
        return lambda *args: self.told.append((method, args))


class FakeActors:
    """Activities run at once in this process; the supervisor is a recorder."""

    def __init__(self) -> None:
        self.sup = FakeSupervisor()
        self.ran: list[tuple[str, Any, dict[str, Any]]] = []
        self.answer_first: int | None = None  # later tasks never answer (their host "dies")
        self.in_flight = self.most_in_flight = 0

    def task(self, function: Any, options: dict[str, Any]) -> Any:
        fake = self

        def answer(on_done: Any, result: Any) -> None:
            fake.in_flight -= 1
            on_done(result)

        class Remote:
            def submit(self, on_done: Any, *args: Any) -> None:
                fake.ran.append((function.__name__, args[0], options))
                fake.in_flight += 1
                fake.most_in_flight = max(fake.most_in_flight, fake.in_flight)
                if fake.answer_first is None or len(fake.ran) <= fake.answer_first:
                    asyncio.get_event_loop().call_soon(answer, on_done, function(*args))

        return Remote()

    def supervisor(self) -> FakeSupervisor:
        return self.sup


@pytest.fixture
def host(tmp_path):
    with event_loop() as loop:
        hub = f"h-{uuid.uuid4().hex[:6]}"
        url = f"sqlite:///{tmp_path / 'hub.db'}"
        store = open_store(url, hub)
        for obj in (chain, caught, double, refuse, spread):
            store.register_code(*encode_code(obj))
        actors = FakeActors()
        core = HostCore(hub, url, "process", None, None, {"num_cpus": 0}, None, actors)
        yield core, store, actors, loop
    store.close()


def start(store: Any, name: str, value: Any) -> str:
    iid = uuid.uuid4().hex
    record = InstanceRecord(
        iid, name, "", "Pending", uuid.uuid4().hex, 1.0, 1.0, dumps(value), host="fake"
    )
    store.create_instance(record, [], [encode_event(h.ExecutionStarted(name, value, ""))])
    return iid


def run_until_ended(core: HostCore, store: Any, loop: Any, iid: str) -> Any:
    async def wait() -> Any:
        await core.activate([iid])
        for _ in range(500):
            record = store.load_instance(iid)
            if record.status in ("Completed", "Failed"):
                return record
            await asyncio.sleep(0.01)
        raise AssertionError(f"{iid} is still {record.status}")

    return loop.run_until_complete(wait())


def test_a_chain_runs_its_activities_commits_its_history_and_reports_the_end(host):
    core, store, actors, loop = host
    iid = start(store, "chain", 3)
    record = run_until_ended(core, store, loop, iid)
    assert record.status == "Completed" and loads(record.output) == 12
    assert [(name, value) for name, value, _ in actors.ran] == [("double", 3), ("double", 6)]
    assert actors.ran[0][2]["num_cpus"] == 0  # the hub's activity defaults reach the task
    kinds = [type(decode_event(b)).__name__ for b in store.load_history(iid)]
    assert kinds.count("TaskScheduled") == 2 and kinds.count("TaskCompleted") == 2
    assert kinds[-1] == "ExecutionCompleted"
    # Pooled: no host name; its inline threads are idle, so it could serve again.
    assert ("instance_done", (iid, "Completed", None, None, True)) in actors.sup.told
    assert store.load_inbox(iid) == []  # the start was consumed by the first checkpoint


def test_an_activity_failure_reaches_the_orchestrator_with_its_type(host):
    core, store, actors, loop = host
    iid = start(store, "caught", 5)
    record = run_until_ended(core, store, loop, iid)
    assert record.status == "Completed" and loads(record.output) == "caught TaskFailedError"
    failed = [decode_event(b) for b in store.load_history(iid)]
    (failure,) = [e for e in failed if isinstance(e, h.TaskFailed)]
    assert failure.failure.error_type == "ValueError" and "no 5" in failure.failure.message


def test_an_instance_whose_code_cannot_load_holds_back_no_other_of_its_batch(host):
    core, store, actors, loop = host
    store.register_code("orchestrator", "broken", "", b"not a pickle")
    bad, good = start(store, "broken", 1), start(store, "chain", 1)
    with pytest.raises(SerializationError):  # raised, so that the supervisor retries it
        loop.run_until_complete(core.activate([bad, good]))
    assert good in core.live  # activated by that very call
    assert run_until_ended(core, store, loop, good).status == "Completed"
    assert store.load_instance(bad).status == "Pending" and bad not in core.live


def test_a_new_incarnation_dispatches_only_what_history_leaves_open(host, tmp_path):
    core, store, actors, loop = host
    actors.answer_first = 1
    iid = start(store, "chain", 1)

    async def second_scheduled() -> None:
        await core.activate([iid])
        while (
            sum(isinstance(decode_event(b), h.TaskScheduled) for b in store.load_history(iid)) < 2
        ):
            await asyncio.sleep(0.01)

    loop.run_until_complete(asyncio.wait_for(second_scheduled(), 5))
    core.live.clear()  # the host dies with the second activity's result
    fresh = FakeActors()
    again = HostCore(core.hub, f"sqlite:///{tmp_path / 'hub.db'}", "process", actors=fresh)
    record = run_until_ended(again, store, loop, iid)
    assert loads(record.output) == 4
    assert [(name, value) for name, value, _ in fresh.ran] == [("double", 2)]  # only the open one


def test_a_wide_fan_out_keeps_at_most_a_window_of_activities_in_flight(host, monkeypatch):
    core, store, actors, loop = host
    monkeypatch.setattr("runtime.actors.hosting.dispatch.MAX_IN_FLIGHT", 3)
    iid = start(store, "spread", 20)
    record = run_until_ended(core, store, loop, iid)
    assert record.status == "Completed" and loads(record.output) == 2 * sum(range(20))
    assert sorted(value for _, value, _ in actors.ran) == list(range(20))  # each one once
    assert actors.most_in_flight == 3
