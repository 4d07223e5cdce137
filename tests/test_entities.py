"""Durable entities end to end: real Ray, real SQLite, real killed processes."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time

import entity_defs as ed
import pytest
import ray
from helpers import entity_host_pid, query_store, start_ray, wait_until

from entities import EntityId, InvalidEntityIdError, UnknownOperationError, entity
from runtime import (
    EntityOperationFailedError,
    NotRegisteredError,
    Runtime,
    SerializationError,
    orchestrator,
)
from runtime.actors.routing import NAMESPACE, entity_host


@pytest.fixture
def ent(hub_name, store_url, placement):
    start_ray()
    rt = Runtime.start(
        hub=hub_name, store=store_url, placement=placement, pool_size=2, register=ed.ALL
    )
    yield rt
    try:
        rt.shutdown()
    except Exception:
        pass


def host_pid(rt, eid: str) -> int:
    return entity_host_pid(rt.client, rt.config.hub, rt.config.placement, eid)


def test_counter_signal_call_and_read(ent):
    c = ent.client
    for i in range(10):
        c.signal_entity("Counter@a", "add", i)
    assert c.call_entity(EntityId("Counter", "a"), "get") == 45
    assert c.call_entity("Counter@a", "whoami") == "Counter@a"
    state = c.read_entity_state("Counter@a")
    assert state.entity_exists and state.entity_state.value == 45
    assert not c.read_entity_state("Counter@never").entity_exists


def test_function_entity_state_delete_list_and_clean(ent):
    c = ent.client
    c.signal_entity("Account@x", "deposit", 10)
    c.signal_entity("Account@y", "deposit", 5)
    assert c.call_entity("Account@x", "balance") == 10
    c.signal_entity("Account@y", "close")
    assert not c.read_entity_state("Account@y").entity_exists
    page, token = c.get_entities(name="Account", page_size=1)
    assert [str(e.entity_id) for e in page] == ["Account@x"] and token == 1
    page, token = c.get_entities(name="Account", page_size=1, continuation_token=token)
    assert [str(e.entity_id) for e in page] == ["Account@y"]
    assert c.clean_entity_storage() == 1
    assert [str(e.entity_id) for e in c.get_entities()[0]] == ["Account@x"]


def test_failing_operation_rolls_back_and_entity_stays_usable(ent):
    c = ent.client
    c.signal_entity("Counter@r", "add", 1)
    with pytest.raises(EntityOperationFailedError, match="rejected after changing state"):
        c.call_entity("Counter@r", "add_then_fail", 100)
    assert c.call_entity("Counter@r", "get") == 1
    with pytest.raises(SerializationError, match="state of Counter@r"):
        c.call_entity("Counter@r", "keep_unpicklable")
    assert c.call_entity("Counter@r", "get") == 1


def test_bad_input_is_refused_with_typed_errors(ent):
    c = ent.client
    c.signal_entity("Counter@b", "add", 2)
    with pytest.raises(UnknownOperationError, match="no operation 'nope'"):
        c.signal_entity("Counter@b", "nope")
    with pytest.raises(NotRegisteredError, match="no entity named 'Ghost'"):
        c.signal_entity("Ghost@1", "add", 1)
    for text in ("no-at-sign", "@key", "name@"):
        with pytest.raises(InvalidEntityIdError):
            c.signal_entity(text, "add", 1)
    with pytest.raises(SerializationError):
        c.signal_entity("Counter@b", "add", threading.Lock())
    assert c.call_entity("Counter@b", "get") == 2


def entity_rows(rt, eid: str) -> tuple[list, list]:
    """The stored rows of one entity: its state row and the rows of its senders."""
    name, key = eid.split("@", 1)
    where = "WHERE hub=? AND name=? AND key=?"
    params = (rt.config.hub, name, key)
    state = query_store(rt.config.store, f"SELECT * FROM entities {where}", params)
    senders = query_store(
        rt.config.store, f"SELECT * FROM entity_senders {where} ORDER BY sender", params
    )
    return state, senders


REFUSED = ("nope", "__init__", "_private", "__lock__", "__unlock__", "__class__")


def test_refused_operations_leave_the_store_untouched_and_later_ops_work(ent):
    c = ent.client
    c.signal_entity("Counter@z", "add", 3)
    before = entity_rows(ent, "Counter@z")
    for operation in REFUSED:
        with pytest.raises(UnknownOperationError, match=f"no operation '{operation}'"):
            c.signal_entity("Counter@z", operation, 1)
        with pytest.raises(UnknownOperationError):
            c.call_entity("Counter@z", operation, 1)
        with pytest.raises(UnknownOperationError):
            c.signal_entity("Counter@z", operation, 1, wait=False).result(timeout=60)
        assert entity_rows(ent, "Counter@z") == before, operation
    # A refused op used no sequence number: the next ones of the same client are applied.
    c.signal_entity("Counter@z", "add", 4)
    assert c.signal_entity("Counter@z", "add", 5, wait=False).result(timeout=60) is None
    assert c.call_entity("Counter@z", "get") == 12

    # Never stored, still not stored; then usable by the same client.
    with pytest.raises(UnknownOperationError, match="operations: add, add_then_fail"):
        c.signal_entity("Counter@fresh", "nope")
    with pytest.raises(UnknownOperationError):
        c.signal_entity("Account@fresh", "__init__")  # a function entity: '_' names are not ops
    assert entity_rows(ent, "Counter@fresh") == entity_rows(ent, "Account@fresh") == ([], [])
    c.signal_entity("Counter@fresh", "add", 1)
    c.signal_entity("Account@fresh", "deposit", 2)
    assert c.call_entity("Counter@fresh", "get") == 1
    assert c.call_entity("Account@fresh", "balance") == 2


def test_unknown_entity_type_uses_no_sequence_number(ent):
    c = ent.client
    with pytest.raises(NotRegisteredError):
        c.signal_entity("Late@1", "add", 1)
    late = entity(name="Late")(ed.Counter.target)
    c.register(late)
    # Before: this waited forever for the number the refused signal had taken.
    assert c.signal_entity("Late@1", "add", 2, wait=False).result(timeout=60) is None
    assert c.call_entity("Late@1", "get", timeout=60) == 2


@orchestrator
def calls_a_refused_operation(ctx, key):
    """Calls and signals an operation Counter does not have, then uses the entity."""
    counter = EntityId("Counter", key)
    ctx.signal_entity(counter, "nope", 1)
    try:
        yield ctx.call_entity(counter, "nope", 1)
    except Exception as exc:
        refused = type(exc).__name__
    ctx.signal_entity(counter, "add", 2)
    return refused, (yield ctx.call_entity(counter, "get"))


def test_orchestration_refused_operation_keeps_its_later_ones_in_order(ent):
    c = ent.client
    c.signal_entity("Counter@o", "add", 1)
    c.register(calls_a_refused_operation)
    iid = c.start_new(calls_a_refused_operation, "o")
    assert c.wait_for_completion(iid, timeout=60).output == ("TaskFailedError", 3)
    wait_until(lambda: c.call_entity("Counter@o", "get") == 3, timeout=30)


def test_orchestration_signals_then_calls_in_order(ent):
    c = ent.client
    iid = c.start_new(ed.counter_user, input="o")
    assert c.wait_for_completion(iid, timeout=60).output == 11


@pytest.mark.parametrize(
    "ending, status, total",
    [("return", "Completed", 1), ("failure", "Failed", 1), ("continue_as_new", "Completed", 6)],
)
def test_signal_in_the_step_that_ends_the_execution_is_delivered(ent, ending, status, total):
    c = ent.client
    iid = c.start_new(ed.signal_then_end, input=[ending, ending, 1])
    assert c.wait_for_completion(iid, timeout=60).runtime_status == status
    wait_until(lambda: c.call_entity(f"Counter@{ending}", "get") == total, timeout=30)
    history = c.get_status(iid, show_history=True).history
    assert any(type(e).__name__ == "EntitySignaled" for e in history)


def test_entity_signals_another_entity_through_the_outbox(ent):
    c = ent.client
    c.signal_entity("Counter@src", "add", 7)
    c.signal_entity("Counter@src", "forward", "Counter@dst")
    wait_until(lambda: c.call_entity("Counter@dst", "get") == 7, timeout=30)


def test_killed_entity_host_loses_no_acknowledged_signal_and_applies_none_twice(ent):
    c = ent.client
    acknowledged = 0
    c.signal_entity("Counter@k", "add", 1)
    acknowledged += 1
    os.kill(host_pid(ent, "Counter@k"), signal.SIGKILL)  # between signals
    done = threading.Event()

    def burst():
        nonlocal acknowledged
        for _ in range(300):
            c.signal_entity("Counter@k", "add", 1)
            acknowledged += 1
        done.set()

    sender = threading.Thread(target=burst)
    sender.start()
    wait_until(lambda: acknowledged > 50, timeout=60)
    os.kill(host_pid(ent, "Counter@k"), signal.SIGKILL)  # during the burst
    sender.join(timeout=120)
    assert done.is_set()
    assert c.call_entity("Counter@k", "get") == acknowledged == 301


def stuck_transfers(rt, ids) -> str:
    """What a hung transfer test needs to be understood: who holds what, who waits."""
    c = rt.client
    hub = (rt.config.hub,)
    locks = query_store(rt.config.store, "SELECT key, locked_by FROM entities WHERE hub=?", hub)
    lines = [f"lock {key}: {owner}" for key, owner in locks]
    outbox = query_store(
        rt.config.store, "SELECT kind, target, sender FROM outbox WHERE hub=?", hub
    )
    lines += [f"outbox {row}" for row in outbox]
    for iid in ids:
        state = c.get_status(iid, show_history=True)
        if not state.is_terminal:
            events = [type(e).__name__ for e in state.history]
            lines.append(f"{iid} {state.input}: {events[-4:]}")
    return "\n".join(lines)


@pytest.mark.parametrize("placement", ["pooled"])
def test_concurrent_locked_transfers_with_host_kills_conserve_money(ent):
    c = ent.client
    accounts = [f"Account@{i}" for i in range(10)]
    for account in accounts:
        c.signal_entity(account, "deposit", 100)
    rng = random.Random(7)
    ids = []
    for n in range(100):
        source, target = rng.sample(accounts, 2)
        ids.append(c.start_new(ed.transfer, input=(source, target, rng.randint(1, 60))))
        if n in (30, 70):
            os.kill(host_pid(ent, accounts[n % 10]), signal.SIGKILL)
    try:
        wait_until(lambda: all(c.get_status(i).is_terminal for i in ids), timeout=180, every=1)
    except AssertionError:
        raise AssertionError(stuck_transfers(ent, ids)) from None
    outcomes = [c.get_status(i) for i in ids]
    assert all(o.runtime_status == "Completed" for o in outcomes), [
        o.failure_details for o in outcomes if o.runtime_status != "Completed"
    ]
    assert any(o.output for o in outcomes)
    assert sum(c.call_entity(a, "balance") for a in accounts) == 1000


def test_lock_holds_other_senders_until_its_owner_ends(ent):
    c = ent.client
    holder = c.start_new(ed.hold, input="Account@h")
    wait_until(lambda: c.get_status(holder).custom_status == "holding")
    queued = c.start_new(ed.hold, input="Account@h")  # waits for the lock
    signal = c.signal_entity("Account@h", "deposit", 10, wait=False)  # waits too
    mover = c.start_new(ed.transfer, input=("Account@h", "Account@z", 5))
    wait_until(
        lambda: any(
            type(e).__name__ == "LockRequested"
            for e in c.get_status(mover, show_history=True).history
        )
    )
    time.sleep(0.5)  # time enough to be granted, were the lock not held
    assert c.read_entity_state("Account@h").entity_state == 1
    assert c.get_status(mover).runtime_status == "Running"
    # Ending a waiter before its lock arrives must not leave the entity locked for it.
    c.terminate(queued, "not needed")
    c.wait_for_completion(queued, timeout=30)
    c.terminate(holder, "ends inside its critical section")
    assert c.wait_for_completion(holder, timeout=30).runtime_status == "Terminated"
    signal.result(timeout=60)
    assert c.wait_for_completion(mover, timeout=60).output is True
    assert c.call_entity("Account@h", "balance", timeout=30) == 6
    assert c.call_entity("Account@z", "balance", timeout=30) == 5


@pytest.mark.parametrize("placement", ["pooled"])
def test_idle_entities_passivate_and_come_back_from_their_checkpoint(ent):
    c = ent.client
    c.signal_entity("Sleepy@s", "add", 2)
    name = entity_host(ent.config.hub, EntityId("Sleepy", "s"))
    ray.get_actor(name, namespace=NAMESPACE)  # its own actor while in use

    def retired() -> bool:
        try:
            ray.get_actor(name, namespace=NAMESPACE)
            return False
        except ValueError:
            return True

    wait_until(retired, timeout=30)
    # Pipelined, to a retired actor: the client sends it again to the new one, once.
    c.signal_entity("Sleepy@s", "add", 3, wait=False).result(timeout=60)
    assert c.call_entity("Sleepy@s", "get", timeout=60) == 5

    c.signal_entity("PooledSleepy@p", "add", 4)
    pool = c._router.handle(EntityId("PooledSleepy", "p")).actor
    wait_until(lambda: "PooledSleepy@p" not in ray.get(pool.live_entities.remote()), timeout=30)
    c.signal_entity("PooledSleepy@p", "add", 1)
    assert c.call_entity("PooledSleepy@p", "get") == 5


@pytest.mark.parametrize("placement", ["pooled", "dedicated"])
def test_pipelined_signals_survive_a_killed_host_and_apply_once(ent):
    c = ent.client
    c.signal_entity("Counter@p", "add", 0)
    futures = [c.signal_entity("Counter@p", "add", 1, wait=False) for _ in range(1500)]
    os.kill(host_pid(ent, "Counter@p"), signal.SIGKILL)  # batches in flight, some applied
    futures += [c.signal_entity("Counter@p", "add", 1, wait=False) for _ in range(500)]
    for future in futures:
        future.result(timeout=120)
    assert c.call_entity("Counter@p", "get", timeout=60) == 2000


DRIVER = textwrap.dedent(
    """
    import sys, ray
    from runtime import DurableClient
    ray.init(address=sys.argv[4])
    client = DurableClient.connect(hub=sys.argv[1])
    worker, keys = int(sys.argv[2]), int(sys.argv[3])
    for i in range(500):
        client.signal_entity(f"Counter@{(worker * 500 + i) % keys}", "add", 1)
    """
)


def run_drivers(rt, tmp_path, keys: int) -> None:
    script = tmp_path / "signaller.py"
    script.write_text(DRIVER)
    address = ray.get_runtime_context().gcs_address  # "auto" is ambiguous with other clusters
    procs = [
        subprocess.Popen([sys.executable, str(script), rt.config.hub, str(w), str(keys), address])
        for w in range(8)
    ]
    for proc in procs:
        assert proc.wait(timeout=300) == 0


@pytest.mark.slow
@pytest.mark.parametrize("placement", ["dedicated"])
def test_eight_drivers_signal_one_counter_exactly_4000_times(ent, tmp_path):
    run_drivers(ent, tmp_path, keys=1)
    assert ent.client.call_entity("Counter@0", "get") == 4000


@pytest.mark.slow
@pytest.mark.parametrize("placement", ["pooled"])
def test_eight_drivers_signal_1000_pooled_counters(ent, tmp_path):
    run_drivers(ent, tmp_path, keys=1000)
    values = [ent.client.call_entity(f"Counter@{k}", "get") for k in range(1000)]
    assert values == [4] * 1000


def test_entities_survive_a_whole_ray_restart(ent, store_url):
    c = ent.client
    c.signal_entity("Counter@durable", "add", 41)
    c.signal_entity("Account@durable", "deposit", 9)
    hub, placement = ent.config.hub, ent.config.placement
    ray.shutdown()
    start_ray()
    rt = Runtime.start(hub=hub, store=store_url, placement=placement, pool_size=2)
    try:
        rt.client.signal_entity("Counter@durable", "add", 1)
        assert rt.client.call_entity("Counter@durable", "get") == 42
        assert rt.client.call_entity("Account@durable", "balance") == 9
    finally:
        rt.shutdown()
