"""Pure tests of the entity core: admission, locks, per-sender order, dedup (no Ray, no store)."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from entities import current_context, entity
from runtime.entity import LOCK, UNLOCK, Delivery, EntityMachine, Record
from runtime.entity_id import EntityId
from runtime.errors import (
    InvalidArgumentError,
    InvalidOperationError,
    NotRegisteredError,
    SerializationError,
    UnknownOperationError,
)
from runtime.messages import EntitySignal, LockOwner, Outcome, SenderId, StartOrchestration
from runtime.orchestration import history as h
from runtime.orchestration.codec import decode_event
from runtime.registry import as_registrable, orchestrator
from runtime.serialization import dumps, loads

#: No Ray for this module (tests/conftest.py): the code under test is pure.
PURE = True


@entity
class Counter:
    def __init__(self):
        self.value = 0

    def add(self, n):
        self.value += n
        return self.value

    def get(self):
        return self.value

    def add_then_fail(self, n):
        self.value += n
        raise ValueError("boom")

    def refuse(self):
        raise InvalidOperationError("not now")

    def leak(self):
        return threading.Lock()

    def fan_out(self, key):
        ctx = current_context()
        ctx.signal_entity(EntityId("Counter", key), "add", self.value)
        ctx.start_new_orchestration("flow", self.value, "child-1")
        ctx.start_new_orchestration(flow)

    def signal_badly(self):
        self.value += 100
        current_context().signal_entity("Counter@other", "add", threading.Lock())


@entity(name="Log", passivate_after=5.0)
def log_entity(ctx):
    """A function entity: keeps every input in arrival order."""
    ctx.set_state([*ctx.get_state(list), ctx.get_input()])
    ctx.set_result(len(ctx.get_state()))


@orchestrator
def flow(ctx, x):
    return x


C = EntityId("Counter", "c")
L = EntityId("Log", "l")
ORCH = SenderId("order-7", "e1")
OWNER = LockOwner(ORCH, 0)


class FakeLoader:
    """The store and code registry as plain dicts; records commit into them."""

    def __init__(self):
        self.types = {"Counter": Counter, "Log": log_entity}
        self.entities: dict[EntityId, tuple] = {}
        self.senders: dict[tuple[EntityId, str], tuple] = {}
        self.registered: list[str] = []

    def entity_type(self, name):
        if name not in self.types:
            raise NotRegisteredError("entity", name, tuple(self.types))
        return self.types[name]

    def load_entity(self, eid):
        return self.entities.get(eid)

    def load_sender(self, eid, sender):
        return self.senders.get((eid, sender))

    def register_orchestrator(self, obj):
        reg = as_registrable(obj)
        self.registered.append(reg.name)
        return reg.name, reg.version

    def commit(self, record: Record) -> None:
        if record.state_changed:
            owner = None if record.locked_by is None else str(record.locked_by)
            self.entities[record.eid] = (record.state, record.exists, owner)
        self.senders[(record.eid, record.sender)] = (record.seq, record.result)


class Host:
    """Drives the machine the way the host's shell does: rounds, commits, released first."""

    def __init__(self, loader: FakeLoader | None = None):
        self.store = loader or FakeLoader()
        self.machine = EntityMachine(self.store)
        self.queue: list[Delivery] = []
        self.answers: dict[str, Outcome] = {}
        self.records: list[Record] = []

    def round(self, *ops: Delivery):
        """One batch: what is queued (released ops first), then ``ops``; returns answer labels."""
        batch, self.queue = [*self.queue, *ops], []
        done = self.machine.step(batch, now=0.0)
        self.queue[:0] = done.released
        for record in done.records:
            self.store.commit(record)
        self.records += done.records
        for op, blob in [*done.failed, *done.answered]:
            self.answers[op.reply] = Outcome.decode(blob)
        self.last = done
        return [op.reply for op, _ in [*done.failed, *done.answered]]

    def value(self, label: str):
        outcome = self.answers[label]
        assert outcome.ok, outcome.failure
        return outcome.value

    def state(self, eid: EntityId):
        blob, exists, _ = self.store.entities[eid]
        return loads(blob) if exists else None


def op(eid, operation, input=None, sender="client-a", seq=1, ordered=True, label=None):
    label = label or f"{sender}#{seq}"
    return Delivery(eid, operation, dumps(input), sender, seq, ordered, reply=label)


def lock(eid=C, owner=OWNER, seq=1):
    return Delivery(eid, LOCK, owner.encode(), str(owner.sender), seq, True, reply="lock")


def unlock(eid=C, owner=OWNER, seq=1):
    # As the supervisor delivers it: unordered, numbered by the lock request's counter.
    return Delivery(eid, UNLOCK, owner.encode(), str(owner.sender), seq, False, reply="unlock")


# -- per-sender order --------------------------------------------------------------------


def test_a_senders_operations_run_in_its_order_whatever_order_they_arrive_in():
    host = Host()
    assert host.round(op(L, "put", "third", seq=3)) == []  # parked: 1 and 2 are missing
    assert host.records == [] and L in host.machine.live
    assert host.round(op(L, "put", "first", seq=1)) == ["client-a#1"]
    assert host.round(op(L, "put", "second", seq=2)) == ["client-a#2", "client-a#3"]
    assert host.state(L) == ["first", "second", "third"]
    assert [r.seq for r in host.records] == [1, 2, 3]
    assert host.value("client-a#3") == 3


def test_early_arrivals_released_together_run_in_order_within_one_batch():
    host = Host()
    arrived = [op(L, "put", n, seq=n) for n in (4, 2, 3, 1)]
    assert host.round(*arrived) == ["client-a#1", "client-a#2", "client-a#3", "client-a#4"]
    assert host.state(L) == [1, 2, 3, 4]


def test_senders_are_ordered_apart_so_one_senders_gap_holds_no_other():
    host = Host()
    assert host.round(op(L, "put", "a2", sender="a", seq=2)) == []
    assert host.round(op(L, "put", "b1", sender="b", seq=1)) == ["b#1"]
    assert host.state(L) == ["b1"]
    assert host.round(op(L, "put", "a1", sender="a", seq=1)) == ["a#1", "a#2"]
    assert host.state(L) == ["b1", "a1", "a2"]


def test_unordered_messages_run_as_they_arrive():
    host = Host()
    signal = op(L, "put", "x", sender="Other@o", seq=17, ordered=False)
    assert host.round(signal) == ["Other@o#17"]
    assert host.state(L) == ["x"] and host.records[0].seq == 17


def test_a_sender_continues_from_its_stored_number_after_reactivation():
    store = FakeLoader()
    store.entities[L] = (dumps(["old"]), True, None)
    store.senders[(L, "client-a")] = (5, Outcome(1).encode())
    host = Host(store)
    assert host.round(op(L, "put", "seven", seq=7)) == []  # 6 is missing
    assert host.round(op(L, "put", "six", seq=6)) == ["client-a#6", "client-a#7"]
    assert host.state(L) == ["old", "six", "seven"]


# -- deduplication -----------------------------------------------------------------------


def test_a_repeated_number_is_answered_from_its_record_and_applies_nothing():
    host = Host()
    host.round(op(C, "add", 5, seq=1))
    assert host.value("client-a#1") == 5
    assert host.round(op(C, "add", 5, seq=1, label="again")) == ["again"]
    assert host.value("again") == 5  # the first answer, not 10
    assert host.last.records == [] and host.state(C).value == 5
    host.round(op(C, "add", 1, seq=2))
    assert host.round(op(C, "add", 5, seq=1, label="older")) == ["older"]
    assert host.value("older") is None and host.last.records == []  # only the last is kept
    assert host.state(C).value == 6


def test_a_repeat_after_reactivation_is_answered_from_the_store():
    store = FakeLoader()
    store.entities[C] = (dumps(Counter.target()), True, None)
    store.senders[(C, "client-a")] = (1, Outcome(42).encode())
    host = Host(store)
    assert host.round(op(C, "add", 5, seq=1)) == ["client-a#1"]
    assert host.value("client-a#1") == 42 and host.records == []
    assert host.state(C).value == 0


# -- locks -------------------------------------------------------------------------------


def test_a_lock_holds_other_senders_until_its_owner_unlocks():
    host = Host()
    assert host.round(lock()) == ["lock"]
    assert host.records[-1].locked_by == OWNER
    assert host.store.entities[C][2] == "order-7:e1|0"
    assert host.round(op(C, "add", 1, sender="client-b", seq=1)) == []  # waits
    assert host.last.records == [] and C in host.machine.live
    owned = op(C, "add", 10, sender=str(ORCH), seq=2, label="owner")
    assert host.round(owned) == ["owner"]  # the owner's operations pass its lock
    assert host.value("owner") == 10
    assert host.round(unlock()) == ["unlock"]
    assert host.records[-1].locked_by is None
    assert host.round() == ["client-b#1"]  # released, run in the next round
    assert host.value("client-b#1") == 11


def test_a_lock_taken_earlier_in_a_batch_holds_the_operations_after_it():
    host = Host()
    assert host.round(lock(), op(C, "add", 1, sender="client-b", seq=1)) == ["lock"]


def test_an_unlock_releases_the_waiters_in_arrival_order_ahead_of_newer_arrivals():
    host = Host()
    host.round(lock())
    waiting = [
        op(C, "add", 1, sender="b", seq=1),
        op(C, "add", 10, sender="d", seq=1),
        op(C, "add", 100, sender="b", seq=2),
    ]
    assert host.round(*waiting) == []
    assert host.round(unlock()) == ["unlock"]
    assert [d.reply for d in host.queue] == ["b#1", "d#1", "b#2"]
    newer = op(C, "add", 1000, sender="e", seq=1)
    assert host.round(newer) == ["b#1", "d#1", "b#2", "e#1"]
    assert [host.value(k) for k in ("b#1", "d#1", "b#2", "e#1")] == [1, 11, 111, 1111]


def test_an_unlock_of_another_owner_neither_waits_behind_the_lock_nor_releases_it():
    host = Host()
    host.round(lock())
    before = LockOwner(SenderId("order-7", "e0"), 0)  # the execution before this one
    assert host.round(unlock(owner=before)) == ["unlock"]
    assert host.records[-1].locked_by == OWNER and host.store.entities[C][2] == str(OWNER)
    assert host.round(op(C, "add", 1, sender="b", seq=1)) == []


def test_an_unlock_before_its_lock_makes_the_late_lock_a_repeat():
    host = Host()
    # The owner ended first: its unlock arrives before the lock request (same number).
    assert host.round(unlock(seq=3)) == ["unlock"]
    assert (host.records[-1].seq, host.records[-1].sender) == (3, "order-7:e1")
    assert host.round(lock(seq=3)) == ["lock"]
    assert host.value("lock") is None and host.last.records == []
    assert host.round(op(C, "add", 1, sender="b", seq=1)) == ["b#1"]  # not held


def test_an_unlock_of_a_lock_already_released_changes_nothing():
    host = Host()
    host.round(lock())
    host.round(unlock())
    assert host.round(unlock()) == ["unlock"]
    assert host.last.records == []


def test_a_lock_survives_reactivation_from_its_stored_row():
    store = FakeLoader()
    store.entities[C] = (dumps(Counter.target()), True, str(OWNER))
    host = Host(store)
    assert host.round(op(C, "add", 1, sender="b", seq=1)) == []
    host.round(unlock())
    assert host.round() == ["b#1"]


def test_a_lock_request_without_a_valid_owner_is_refused_and_holds_nothing():
    host = Host()
    bad = Delivery(C, LOCK, dumps("not-an-owner"), "order-7:e1", 1, True, reply="bad")
    assert host.round(bad) == ["bad"]
    assert isinstance(host.answers["bad"].error, InvalidArgumentError)
    assert host.records[-1].state_changed is False and host.records[-1].locked_by is None
    assert host.round(op(C, "add", 1, sender="b", seq=1)) == ["b#1"]


# -- refusal and rollback ----------------------------------------------------------------


def test_an_ordered_unknown_operation_is_refused_its_number_kept_its_state_untouched():
    host = Host()
    host.round(op(C, "add", 5, seq=1))
    before = host.store.entities[C]
    assert host.round(op(C, "nope", seq=2)) == ["client-a#2"]
    error = host.answers["client-a#2"].error
    assert isinstance(error, UnknownOperationError) and error.operation == "nope"
    assert "add" in error.known
    (record,) = host.last.records
    assert record.state_changed is False and record.seq == 2
    assert host.store.entities[C] == before  # committed: only the sender's row changed
    assert host.round(op(C, "add", 1, seq=3)) == ["client-a#3"]  # the gap is filled
    assert host.value("client-a#3") == 6


def test_an_unordered_unknown_operation_is_refused_and_nothing_is_stored():
    host = Host()
    host.round(op(C, "add", 5, seq=1))
    signal = op(C, "_private", sender="Other@o", seq=9, ordered=False)
    assert host.round(signal) == ["Other@o#9"]
    assert isinstance(host.answers["Other@o#9"].error, UnknownOperationError)
    assert host.last.records == [] and host.last.refused == [signal]
    assert (C, "Other@o") not in host.store.senders and host.state(C).value == 5


def test_a_failing_operation_is_rolled_back_to_the_last_committed_state():
    host = Host()
    host.round(op(C, "add", 5, seq=1))
    assert host.round(op(C, "add_then_fail", 100, seq=2)) == ["client-a#2"]
    outcome = host.answers["client-a#2"]
    assert not outcome.ok and outcome.error is None
    assert (outcome.failure.error_type, outcome.failure.message) == ("ValueError", "boom")
    (record,) = host.last.records
    assert loads(record.state).value == 5 and record.seq == 2
    host.round(op(C, "get", seq=3))
    assert host.value("client-a#3") == 5  # memory was rolled back too, not only the store


def test_a_typed_error_of_an_operation_reaches_the_caller_whole():
    host = Host()
    host.round(op(C, "refuse", seq=1))
    assert isinstance(host.answers["client-a#1"].error, InvalidOperationError)


@pytest.mark.parametrize("operation", ["leak", "signal_badly"])
def test_a_value_that_does_not_pickle_fails_the_operation_that_made_it(operation):
    host = Host()
    host.round(op(C, "add", 5, seq=1))
    host.round(op(C, operation, seq=2))
    assert isinstance(host.answers["client-a#2"].error, SerializationError)
    assert host.last.records[0].outbox == () and host.state(C).value == 5
    host.round(op(C, "get", seq=3))
    assert host.value("client-a#3") == 5


def test_an_entity_that_cannot_be_loaded_fails_its_operation_and_stores_nothing():
    host = Host()
    nowhere = EntityId("Nowhere", "n")
    assert host.round(op(nowhere, "add", seq=1)) == ["client-a#1"]
    assert isinstance(host.answers["client-a#1"].error, NotRegisteredError)
    assert host.last.failed and host.records == [] and nowhere not in host.machine.live


# -- messages out ------------------------------------------------------------------------


def test_an_operations_signals_and_starts_are_records_outbox_messages():
    host = Host()
    host.round(op(C, "add", 3, seq=1))
    host.round(op(C, "fan_out", "k", seq=2))
    signal, by_name, by_object = host.last.records[0].outbox
    assert signal == EntitySignal(EntityId("Counter", "k"), "add", dumps(3, "signal input"))
    assert isinstance(by_name, StartOrchestration) and isinstance(by_object, StartOrchestration)
    assert (by_name.instance_id, by_name.name, by_name.version) == ("child-1", "flow", "")
    assert loads(by_name.input) == 3
    assert decode_event(by_name.start) == h.ExecutionStarted("flow", 3, "")
    # Started without an id: it gets one in the operation, stored with the start (issue 12:
    # a re-delivered start then names the same instance).
    assert by_object.name == "flow" and len(by_object.instance_id) == 32
    assert host.store.registered == ["flow"]  # the object's code is kept for the hub


def test_an_operation_without_messages_has_an_empty_outbox():
    host = Host()
    host.round(op(C, "add", 1, seq=1))
    assert host.records[0].outbox == ()


# -- memory ------------------------------------------------------------------------------


def test_passivation_drops_idle_entities_but_keeps_those_with_work_waiting():
    host = Host()
    host.round(op(C, "add", 1, seq=1), op(L, "put", "x", seq=1))
    host.round(op(EntityId("Log", "parked"), "put", "y", seq=2))
    assert host.machine.passivate(now=3.0, idle_seconds=None) == 0  # no limit for Counter
    assert host.machine.passivate(now=3.0, idle_seconds=1.0) == 1  # Counter; Log's own is 5
    assert host.machine.passivate(now=6.0, idle_seconds=None) == 1  # Log@l, not Log@parked
    assert set(host.machine.live) == {EntityId("Log", "parked")}


def test_forgetting_an_entity_returns_its_waiters_and_reloads_it_from_the_store():
    host = Host()
    host.round(lock())
    waiter = op(C, "add", 1, sender="b", seq=1)
    host.round(waiter)
    assert host.machine.forget(C) == [waiter]
    assert C not in host.machine.live and host.machine.forget(C) == []
    assert host.round(op(C, "add", 1, sender="c", seq=1)) == []  # still locked in the store


def test_the_core_imports_without_ray():
    code = (
        "import sys\n"
        "import runtime.entity, runtime.entity.core, runtime.messages\n"
        "loaded = sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.'))\n"
        "assert not loaded, loaded[:3]\n"
        "assert 'sqlite3' not in sys.modules and 'asyncio' not in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
