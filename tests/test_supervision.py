"""The supervisor's parts, unit-tested on a real SQLite store with fake host actors (no Ray)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import pytest
from helpers import event_loop
from ray.exceptions import ActorDiedError

import runtime.actors.lease
from runtime.actors.routing import pool_host, pool_index
from runtime.actors.supervision.completions import Completions
from runtime.actors.supervision.control import InstanceControl
from runtime.actors.supervision.core import SupervisorCore
from runtime.actors.supervision.outbox import OutboxDelivery
from runtime.actors.supervision.pool import HostPool
from runtime.actors.supervision.timers import TimerService
from runtime.config import HubConfig
from runtime.errors import (
    InstanceExistsError,
    InstanceNotFoundError,
    InvalidOperationError,
    OrchestratorNotFoundError,
)
from runtime.messages import EntitySignal, OutboxKind, encode_message
from runtime.orchestration import history as h
from runtime.orchestration.codec import decode_event, encode_event
from runtime.store import Checkpoint, open_store

PURE = True


class FakeHost:
    """Stands in for a HostHandle: its calls recorded; ``fail`` fails the next activations."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.activated: list[list[str]] = []
        self.pokes: list[str] = []
        self.ops: list[tuple[Any, ...]] = []
        self.fail: list[BaseException] = []
        self.dead = asyncio.get_event_loop().create_future()
        self.block_ops: asyncio.Event | None = None

    async def _activate(self, ids: list[str]) -> None:
        if self.fail:
            raise self.fail.pop(0)
        self.activated.append(list(ids))

    def activate(self, ids: list[str]) -> Any:
        return self._activate(ids)

    def poke(self, instance_id: str) -> None:
        self.pokes.append(instance_id)

    def watch(self) -> Any:
        return self.dead

    async def _op(self, *op: Any) -> bytes:
        if self.block_ops is not None:
            await self.block_ops.wait()
        self.ops.append(op)
        return b""

    def entity_op(self, *op: Any) -> Any:
        return self._op(*op)


class FakeActors:
    """An ActorSystem of FakeHosts: a name answers with one host until it is killed."""

    def __init__(self) -> None:
        self.live: dict[str, FakeHost] = {}
        self.created: list[str] = []
        self.killed: list[str] = []

    def host(
        self, host_class: Any, name: str, resources: Any, *args: Any, kept: bool = False
    ) -> FakeHost:
        if name not in self.live:
            self.live[name] = FakeHost(name)
            self.created.append(name)
        return self.live[name]

    def kill(self, name: str, handle: Any = None) -> None:
        self.killed.append(name)
        self.live.pop(name, None)

    def stop_keepers(self) -> None:
        self.keepers_stopped = True

    async def kept_hosts(self) -> list[str]:
        return [name for name in self.live if "/host-" in name]


def run(coro: Any) -> Any:
    return asyncio.get_event_loop().run_until_complete(coro)


@pytest.fixture
def loop():
    with event_loop() as loop:
        yield loop


@pytest.fixture
def parts(loop, tmp_path, request):
    """Pool, control and completions of one hub, on a real store, with fake hosts."""
    placement = getattr(request, "param", "pooled")
    hub = f"u-{uuid.uuid4().hex[:6]}"
    config = HubConfig(hub=hub, store=f"sqlite:///{tmp_path / 'hub.db'}", placement=placement)
    assert config.store is not None
    store = open_store(config.store, hub)
    store.register_code("orchestrator", "wf", "v1", b"code")
    actors = FakeActors()
    failed: list[str] = []

    async def on_failed(name: str) -> None:
        failed.append(name)

    pool = HostPool(config, store, actors, object, lambda: (), on_failed)
    completions = Completions(config, store, pool)
    control = InstanceControl(config, store, pool, completions, lambda: 1000.0)
    yield pool, control, completions, actors, store, failed
    store.close()


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def start(control: InstanceControl, iid: str, name: str = "wf") -> str:
    blob = encode_event(h.ExecutionStarted(name, None, "v1"))
    return run(control.start_new(name, None, b"\x80\x04N.", blob, iid))


# -- HostPool --------------------------------------------------------------------------------


def test_pooled_placement_is_stable_and_dedicated_takes_the_warm_spare_first(parts):
    pool, *_ = parts
    assert pool.place("abc") == pool_host(pool.config.hub, pool_index("abc", 4))
    pool.config = HubConfig(hub=pool.config.hub, store=pool.config.store)  # dedicated
    pool.refill_spares()
    spare = pool.spares[0]
    assert pool.place("x") == spare and pool.spares == []
    fresh = pool.place("y")
    assert fresh.startswith(f"{pool.config.hub}/host-") and fresh != spare
    pool.unplace(fresh)
    assert pool.spares == [fresh]


@pytest.mark.parametrize("parts", ["dedicated"], indirect=True)
def test_a_dedicated_host_whose_instance_ended_is_the_next_spare_up_to_warm_hosts(parts):
    pool, control, completions, actors, store, _ = parts
    start(control, "i1")  # a new host; a warm spare is started beside it
    first = store.load_instance("i1").host
    run(settle())
    assert len(pool.spares) == 1 and pool.spares[0] in actors.created
    pool.recycle(first)  # i1 still runs there: it stays i1's
    assert first not in pool.spares and first not in actors.killed
    store.set_status("i1", "Completed")
    pool.recycle(first)
    assert pool.spares[0] == first  # first in line: its process is up
    start(control, "i2")
    assert store.load_instance("i2").host == first and actors.created.count(first) == 1
    store.set_status("i2", "Completed")
    pool.spares.append(f"{pool.config.hub}/host-extra")  # more than warm_hosts spares
    pool.recycle(first)
    assert first in actors.killed and first not in pool.spares
    pool.spares.clear()
    start(control, "i3")  # a new host, as no spare is left
    third = store.load_instance("i3").host
    store.set_status("i3", "Completed")
    run(completions.instance_done("i3", "Completed", None, third, False))
    assert third in actors.killed and third not in pool.spares  # inline work still ran there


@pytest.mark.parametrize("parts", ["dedicated"], indirect=True)
def test_a_host_given_to_a_start_not_committed_yet_is_not_recycled_meanwhile(parts):
    """A late report of its previous instance's end must not hand it to a second start."""
    pool, control, _, actors, store, _ = parts
    start(control, "i1")
    first = store.load_instance("i1").host
    store.set_status("i1", "Completed")
    pool.recycle(first)
    pool.spares.remove(first)
    pool.spares.insert(0, first)
    blob = encode_event(h.ExecutionStarted("wf", None, "v1"))

    async def start_with_a_late_report() -> None:
        starting = asyncio.ensure_future(control.start_new("wf", None, b"N.", blob, "i2"))
        await asyncio.sleep(0)  # placed on ``first``; its commit runs off the loop
        assert first in pool.placing
        pool.recycle(first)  # i1's end, reported again
        await starting

    run(start_with_a_late_report())
    assert store.load_instance("i2").host == first
    assert first not in pool.spares and first not in actors.killed and not pool.placing


def test_concurrent_starts_and_messages_share_transactions(parts, monkeypatch):
    _, control, _, actors, store, _ = parts
    batches: list[int] = []
    for name in ("create_instances", "append_inbox_many"):
        write = getattr(store, name)

        def counted(items: Any, write: Any = write) -> Any:
            batches.append(len(items))
            return write(items)

        monkeypatch.setattr(store, name, counted)
    control = InstanceControl(
        control.config, store, control.pool, control.completions, lambda: 1000.0
    )
    blob = encode_event(h.ExecutionStarted("wf", None, "v1"))

    async def many() -> list[Any]:
        starts = [control.start_new("wf", None, b"N.", blob, f"i{n}") for n in range(50)]
        await asyncio.gather(*starts)
        events = [
            control.deliver(f"i{n % 55}", encode_event(h.EventRaised("go", n))) for n in range(55)
        ]
        return await asyncio.gather(*events, return_exceptions=True)

    answers = run(many())
    assert sum(batches) == 50 + 55 and len(batches) < 20  # a few transactions, not 105
    assert [a for a in answers[:50] if a is not None] == []
    assert all(isinstance(a, InstanceNotFoundError) for a in answers[50:])  # i50..i54
    assert all(len(store.load_inbox(f"i{n}")) == 2 for n in range(50))


@pytest.mark.parametrize("parts", ["dedicated"], indirect=True)
def test_a_new_supervisor_stops_the_hosts_no_live_instance_uses(parts):
    """A host whose instance ended while no supervisor ran told nobody: it is not left running,
    and neither is an earlier supervisor's spare; the host of a live instance stays."""
    pool, control, _, actors, store, _ = parts
    start(control, "live")
    start(control, "ended")
    live, ended = store.load_instance("live").host, store.load_instance("ended").host
    store.set_status("ended", "Completed")  # its host's report to the supervisor was lost
    spare = pool.spares[0]
    fresh = HostPool(pool.config, store, actors, object, lambda: (), pool.on_failed)
    run(fresh.retire_unplaced({r.host for r in store.active_instances()}))
    assert ended in actors.killed and spare in actors.killed
    assert live not in actors.killed and live in actors.live


def test_a_host_that_dies_is_revived_with_every_instance_the_store_places_there(parts):
    pool, control, _, actors, store, failed = parts
    start(control, "i1")
    name = store.load_instance("i1").host
    run(settle())
    host = actors.live[name]
    assert host.activated == [["i1"]]
    host.fail = [RuntimeError("restarting"), RuntimeError("restarting")]
    host.dead.set_exception(RuntimeError("host died"))
    host.dead = asyncio.get_event_loop().create_future()  # the next incarnation lives
    run(asyncio.sleep(0.3))
    assert failed == [name]
    assert host.activated[-1] == ["i1"] and not host.fail  # taken after two failures


def test_a_host_gone_for_good_is_replaced_under_its_name(parts):
    pool, control, _, actors, store, _ = parts
    start(control, "i1")
    name = store.load_instance("i1").host
    run(settle())
    actors.live[name].fail = [ActorDiedError()]
    del actors.live[name]  # the actor object is gone: a new one takes the name
    run(pool.activate_on(name, ["i1"]))
    assert actors.created.count(name) == 2
    assert actors.live[name].activated == [["i1"]]


def test_a_killed_host_is_never_revived(parts):
    pool, control, _, actors, store, failed = parts
    start(control, "i1")
    name = store.load_instance("i1").host
    run(settle())
    host = actors.live[name]
    pool.kill(name)
    host.dead.set_exception(RuntimeError("killed"))
    run(settle())
    assert failed == [] and name in actors.killed and name not in actors.live


# -- InstanceControl and Completions -----------------------------------------------------------


def test_start_of_an_unknown_orchestrator_writes_nothing(parts):
    _, control, _, actors, store, _ = parts
    with pytest.raises(OrchestratorNotFoundError):
        start(control, "i1", name="nope")
    assert store.load_instance("i1") is None and store.load_inbox("i1") == []


def test_start_stores_the_instance_pending_with_its_start_then_activates_it(parts):
    _, control, _, actors, store, _ = parts
    assert start(control, "i1") == "i1"
    record = store.load_instance("i1")
    assert record.status == "Pending" and record.version == "v1"
    (message,) = store.load_inbox("i1")
    assert isinstance(decode_event(message.event), h.ExecutionStarted)
    run(settle())
    assert actors.live[record.host].activated == [["i1"]]


def test_a_burst_of_starts_costs_each_host_a_few_activation_calls_not_one_each(parts):
    """Starts that arrive while a host's activation call is on its way go in the next one."""
    pool, control, _, actors, store, _ = parts
    blob = encode_event(h.ExecutionStarted("wf", None, "v1"))

    async def burst() -> None:
        await asyncio.gather(
            *(control.start_new("wf", None, b"N.", blob, f"i{n}") for n in range(60))
        )
        await settle()

    run(burst())
    calls = {name: host.activated for name, host in actors.live.items()}
    activated = sorted(iid for batches in calls.values() for ids in batches for iid in ids)
    assert activated == sorted(f"i{n}" for n in range(60))  # each once, none lost
    assert all(
        store.load_instance(iid).host == name
        for name, b in calls.items()
        for ids in b
        for iid in ids
    )
    assert sum(map(len, calls.values())) <= 3 * len(calls) < 60


def test_an_activation_that_fails_is_retried_with_the_ids_queued_meanwhile(parts):
    pool, _, _, actors, _, _ = parts
    host = actors.host(object, "h1", None)
    pool.hosts["h1"] = host
    host.fail.append(RuntimeError("restarting"))

    async def activations() -> None:
        pool.activate_soon("h1", ["a"])
        await settle()  # the call failed; activate_on waits to try again
        pool.activate_soon("h1", ["b", "c"])
        await asyncio.sleep(0.3)  # HOST_ACTIVATION's pause before the retry

    run(activations())
    assert host.activated == [["a"], ["b", "c"]]  # "a" again after the failure, then the rest
    assert pool._to_activate == {}


@pytest.mark.parametrize("parts", ["dedicated"], indirect=True)
def test_a_host_that_recovery_places_an_instance_on_is_recycled_when_it_ends(parts):
    """Only a start holds its host back from recycling until its commit: recovery, which
    places an instance that lost its host, does not (its host would never be recycled)."""
    pool, control, completions, actors, store, _ = parts
    start(control, "i1")
    first = store.load_instance("i1").host
    store.set_host("i1", None)  # its dedicated host was stopped
    core = SupervisorCore.__new__(SupervisorCore)
    core.config, core.store, core.pool = pool.config, store, pool
    core._tags = {"hub": pool.config.hub}
    core.outbox = OutboxDelivery.__new__(OutboxDelivery)
    flushed: list[bool] = []

    async def flush() -> None:
        flushed.append(True)

    core.outbox.flush = flush  # type: ignore[method-assign]
    run(asyncio.sleep(0))
    core._recover_once([store.load_instance("i1")], 0.0)
    run(settle())
    second = store.load_instance("i1").host
    assert second and not pool.placing and flushed
    assert actors.live[second].activated == [["i1"]]
    store.set_status("i1", "Completed")
    run(completions.instance_done("i1", "Completed", None, second, False))
    assert second in actors.killed and first != second


@pytest.mark.parametrize("parts", ["dedicated"], indirect=True)
def test_a_refused_dedicated_start_returns_its_host_to_the_spares(parts):
    pool, control, _, actors, *_ = parts
    start(control, "i1")
    spares, created = list(pool.spares), list(actors.created)
    with pytest.raises(InstanceExistsError):
        start(control, "i1")
    assert pool.spares == spares and actors.created == created  # the same warm host waits


def test_an_event_for_an_ended_instance_is_refused_and_nothing_is_written(parts):
    _, control, _, actors, store, _ = parts
    start(control, "i1")
    store.set_status("i1", "Completed")
    before = store.load_inbox("i1")
    with pytest.raises(InvalidOperationError, match="nothing was changed"):
        run(control.deliver("i1", encode_event(h.EventRaised("go", 1))))
    assert store.load_inbox("i1") == before


def test_suspend_and_resume_answer_from_the_stored_status(parts):
    _, control, _, actors, store, _ = parts
    start(control, "i1")
    run(control.suspend("i1", "why"))
    assert store.load_instance("i1").status == "Suspended"
    run(control.suspend("i1", "again"))  # a no-op, not an error
    run(control.resume("i1", "go"))
    assert store.load_instance("i1").status == "Running"
    with pytest.raises(InvalidOperationError, match="not Suspended"):
        run(control.resume("i1", "twice"))


def test_a_waiter_wakes_when_the_host_reports_the_end(parts):
    _, control, completions, actors, store, _ = parts
    start(control, "i1")

    async def scenario() -> Any:
        waiting = asyncio.ensure_future(completions.wait("i1", 30))
        await settle()
        assert not waiting.done()
        store.set_status("i1", "Completed")
        await completions.instance_done("i1", "Completed")
        return await asyncio.wait_for(waiting, 1)

    assert run(scenario()).status == "Completed"


# -- timers and outbox -------------------------------------------------------------------------


def _checkpoint_with_timer(store: Any, iid: str, fire_at: float) -> None:
    record = store.load_instance(iid)
    store.commit([Checkpoint(iid, record.execution_id, [], 0, timers=[(7, fire_at)])])


def test_due_timers_fire_into_live_instances_and_drop_for_ended_executions(parts):
    pool, control, _, actors, store, _ = parts
    start(control, "live")
    start(control, "gone")
    _checkpoint_with_timer(store, "live", 500.0)
    _checkpoint_with_timer(store, "gone", 500.0)
    store.set_status("gone", "Completed")
    pokes: list[tuple[str, str]] = []
    timers = TimerService(
        store, lambda: 1000.0, lambda host, iid: pokes.append((host, iid)), {"hub": "h"}
    )
    assert timers.round() == 60.0  # nothing left: sleep the longest
    assert pokes == [(store.load_instance("live").host, "live")]
    fired = [decode_event(m.event) for m in store.load_inbox("live")]
    assert isinstance(fired[-1], h.TimerFired) and fired[-1].seq == 7
    assert not any(
        isinstance(decode_event(m.event), h.TimerFired) for m in store.load_inbox("gone")
    )


def test_a_blocked_signal_lane_holds_back_neither_unlocks_nor_other_targets(parts, loop):
    pool, control, _, actors, store, _ = parts
    hosts = {"A@1": FakeHost("a"), "B@1": FakeHost("b")}
    hosts["A@1"].block_ops = asyncio.Event()

    class Router:
        async def ahandle(self, eid: Any) -> FakeHost:
            return hosts[str(eid)]

        def forget(self, eid: Any) -> None:
            pass

    rows = [encode_message(EntitySignal(t, "add", b"\x80\x04K\x01.")) for t in ("A@1", "B@1")]
    record = store.load_instance(start(control, "i1"))
    store.commit([Checkpoint("i1", record.execution_id, [], 0, outbox=rows)])
    started: list[Any] = []

    async def start_new(*args: Any) -> str:
        started.append(args)
        return args[-1]

    outbox = OutboxDelivery(store, Router(), start_new, "hub")  # type: ignore[arg-type]
    run(outbox.flush())
    run(settle())
    assert [op[1] for op in hosts["B@1"].ops] == ["add"] and hosts["A@1"].ops == []
    assert [m.target for m in store.load_outbox()] == ["A@1"]  # kept until delivered
    hosts["A@1"].block_ops.set()
    run(settle())
    assert store.load_outbox() == [] and [op[1] for op in hosts["A@1"].ops] == ["add"]
    assert OutboxKind.SIGNAL.value == "signal"


# -- SupervisorCore: recovery and control loops never give up ----------------------------------


def test_recovery_retries_until_it_succeeds_and_a_failing_round_never_ends_a_loop(
    loop, tmp_path, monkeypatch, caplog
):
    monkeypatch.setattr(
        runtime.actors.lease, "cluster_identity", lambda: ("gcs", "cluster", "actor")
    )
    monkeypatch.setattr("runtime.actors.supervision.core.RETRY_ROUND_SECONDS", 0.01)
    hub = f"u-{uuid.uuid4().hex[:6]}"
    config = HubConfig(hub=hub, store=f"sqlite:///{tmp_path / 'hub.db'}", placement="pooled")
    core = SupervisorCore(config, lambda: 1000.0, FakeActors(), object)
    real = core.store.active_instances
    failures = iter([RuntimeError("store away"), RuntimeError("still away")])

    def flaky(*args: Any, **kwargs: Any) -> Any:
        for exc in failures:
            raise exc
        return real(*args, **kwargs)

    core.store.active_instances = flaky  # type: ignore[method-assign]
    rounds = {"n": 0}

    def failing_round() -> float:
        rounds["n"] += 1
        if rounds["n"] == 1:
            raise RuntimeError("timer round broke")
        return 0.01

    core.timers.round = failing_round  # type: ignore[method-assign]
    with caplog.at_level(logging.ERROR, logger="ray_durable.supervisor"):
        run(asyncio.wait_for(asyncio.shield(core.ready), 5))
        run(asyncio.sleep(0.2))
    assert core.ready.done() and core.ready.exception() is None
    assert sum("recovery failed" in r.getMessage() for r in caplog.records) == 2
    assert any("timers round failed" in r.getMessage() for r in caplog.records)
    assert rounds["n"] > 2  # the loop went on after its failed round
    run(core.shutdown())
    core.store.close()
