"""The store contract: what every Store must do, tested through the abstract API alone.

No Ray: a real store, SQLite in a temporary folder or a fresh database on the session's
throw-away PostgreSQL server. Each test takes ``open_hub``, a factory of stores of one
kind; a new kind of store joins by adding a parameter to the ``store_kind`` fixture, and
passes the same tests.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from runtime.errors import (
    FencedError,
    HubConfigError,
    HubLeaseHeldError,
    InstanceExistsError,
    PayloadMissingError,
    StaleEntityWriteError,
)
from runtime.store import (
    Checkpoint,
    DueTimer,
    EntityCheckpoint,
    GuardedMessage,
    HubHealth,
    InstanceQuery,
    InstanceRecord,
    NewInstance,
    Quarantined,
    Store,
    open_store,
)
from runtime.store.base import Lease, LeaseHolder
from runtime.store.sql import SCHEMA_VERSION

PURE = True

OpenHub = Callable[..., Store]


@pytest.fixture(params=["sqlite", "postgresql"])
def store_kind(request) -> str:
    return request.param


@pytest.fixture
def store_url(store_kind, tmp_path, request) -> str:
    if store_kind == "postgresql":
        return request.getfixturevalue("postgres").database()
    return f"sqlite:///{tmp_path / 'hub.db'}"


@pytest.fixture
def open_hub(store_url):
    """``open_hub(hub="shop", **options)``: a store of the hub on one shared database."""
    url = store_url
    opened: list[Store] = []

    def open_(hub: str = "shop", **options) -> Store:
        store = open_store(url, hub, durability="process", **options)
        opened.append(store)
        return store

    yield open_
    for store in opened:
        store.close()


@pytest.fixture
def store(open_hub) -> Store:
    return open_hub()


def record(iid: str, status: str = "Running", created: float = 0.0, **fields) -> InstanceRecord:
    return InstanceRecord(iid, "flow", "1", status, f"x-{iid}", created, created, **fields)


def ids(records: list[InstanceRecord]) -> list[str]:
    return [r.instance_id for r in records]


def inbox_events(store: Store, iid: str) -> list[bytes]:
    return [m.event for m in store.load_inbox(iid)]


# -- instances -----------------------------------------------------------------------------


def test_create_and_load_an_instance_with_its_history_and_inbox(store):
    new = record("a", input=b"in", parent_instance_id="p", parent_seq=3, host="h1")
    store.create_instance(new, [b"e0", b"e1"], [b"m0", b"m1"])
    loaded = store.load_instance("a")
    assert loaded == InstanceRecord(**{**vars(new), "history_length": 2})
    assert store.load_history("a") == [b"e0", b"e1"]
    assert inbox_events(store, "a") == [b"m0", b"m1"]
    assert store.load_instance("nobody") is None
    assert store.load_history("nobody") == [] and store.load_inbox("nobody") == []


def test_create_refuses_a_live_instance_of_the_same_id_and_changes_nothing(store):
    store.create_instance(record("a"), [b"e0"], [b"m0"])
    with pytest.raises(InstanceExistsError) as refused:
        store.create_instance(record("a", created=5.0), [b"other"], [b"other"])
    assert (refused.value.instance_id, refused.value.status) == ("a", "Running")
    assert store.load_instance("a").created_time == 0.0
    assert store.load_history("a") == [b"e0"] and inbox_events(store, "a") == [b"m0"]


def test_create_replaces_a_terminal_instance_with_its_history_inbox_and_timers(store):
    store.create_instance(record("a"), [b"e0", b"e1"], [b"m0"])
    store.commit([Checkpoint("a", "x-a", [], 2, status="Completed", timers=[(1, 10.0)])])
    store.create_instance(record("a", created=5.0), [b"new"])
    assert store.load_instance("a").created_time == 5.0
    assert store.load_history("a") == [b"new"] and store.load_inbox("a") == []
    assert store.due_timers(now=100.0) == []


def test_creating_many_in_one_transaction_gives_each_start_its_own_outcome(store):
    store.create_instance(record("live"), [b"e0"], [b"m0"])
    again = record("again", start_id="s1")
    store.create_instance(again, [], [b"m0"])
    outcomes = store.create_instances(
        [
            NewInstance(record("a"), [], [b"start-a"]),
            NewInstance(record("live", created=5.0), [b"other"], [b"other"]),
            NewInstance(record("again", created=5.0, start_id="s1"), [], [b"other"]),
            NewInstance(record("b"), [b"e0"]),
        ]
    )
    assert outcomes[0] is True and outcomes[2] is False and outcomes[3] is True
    assert isinstance(outcomes[1], InstanceExistsError) and outcomes[1].instance_id == "live"
    assert inbox_events(store, "a") == [b"start-a"] and store.load_history("b") == [b"e0"]
    # the refused and the repeated start wrote nothing
    assert store.load_instance("live").created_time == 0.0
    assert store.load_history("live") == [b"e0"] and inbox_events(store, "live") == [b"m0"]
    assert store.load_instance("again").created_time == 0.0
    assert inbox_events(store, "again") == [b"m0"]


def test_set_status_and_host_and_the_instances_that_are_active(store):
    store.create_instance(record("a"), [])
    store.create_instance(record("b", status="Pending"), [])
    store.create_instance(record("c", status="Completed"), [])
    store.set_host("a", "h1")
    store.set_host("b", "h2")
    store.set_status("b", "Suspended")
    assert store.load_instance("b").status == "Suspended"
    assert store.load_instance("b").last_updated_time > 0.0
    assert sorted(ids(store.active_instances())) == ["a", "b"]
    assert ids(store.active_instances(host="h1")) == ["a"]
    assert store.active_instances(host="h3") == []


def test_children_are_the_instances_an_instance_started(store):
    store.create_instance(record("parent"), [])
    store.create_instance(record("c1", parent_instance_id="parent", parent_seq=0), [])
    store.create_instance(record("c2", parent_instance_id="parent", parent_seq=1), [])
    store.create_instance(record("other", parent_instance_id="else", parent_seq=0), [])
    assert sorted(ids(store.children("parent"))) == ["c1", "c2"]
    assert store.children("c1") == []


def test_delete_removes_an_instance_with_its_history_inbox_and_timers(store):
    store.create_instance(record("a"), [b"e0"], [b"m0"])
    store.create_instance(record("b"), [b"b0"], [b"bm"])
    store.commit([Checkpoint("a", "x-a", [], 1, timers=[(1, 1.0)])])
    assert store.delete_instance("a") is True
    assert store.load_instance("a") is None and store.load_history("a") == []
    assert store.load_inbox("a") == [] and store.due_timers(now=10.0) == []
    assert store.delete_instance("a") is False
    assert store.load_history("b") == [b"b0"] and inbox_events(store, "b") == [b"bm"]


# -- the hot path: checkpoints -------------------------------------------------------------


def test_commit_appends_history_and_sets_only_the_fields_it_names(store):
    store.create_instance(record("a", input=b"in"), [b"e0"], [b"m0", b"m1"])
    consumed = store.load_inbox("a")[0].id
    cp = Checkpoint(
        "a",
        "x-a",
        [b"e1", b"e2"],
        1,
        status="Completed",
        output=b"out",
        custom_status=b"cs",
        consumed_inbox=[consumed],
        timers=[(4, 50.0)],
        outgoing=[("b", b"to-b")],
        outbox=[("start", "child", b"payload")],
    )
    store.commit([cp])
    loaded = store.load_instance("a")
    assert (loaded.status, loaded.output, loaded.custom_status) == ("Completed", b"out", b"cs")
    assert (loaded.input, loaded.failure, loaded.history_length) == (b"in", None, 3)
    assert store.load_history("a") == [b"e0", b"e1", b"e2"]
    assert inbox_events(store, "a") == [b"m1"]
    assert inbox_events(store, "b") == [b"to-b"]
    assert store.due_timers(now=50.0) == [DueTimer("a", "x-a", 4, 50.0)]
    [message] = store.load_outbox()
    assert (message.kind, message.target, message.payload, message.sender) == (
        "start",
        "child",
        b"payload",
        "a",
    )
    store.commit([Checkpoint("a", "x-a", [b"e3"], 3, failure=b"f")])
    loaded = store.load_instance("a")
    assert (loaded.status, loaded.output, loaded.failure) == ("Completed", b"out", b"f")


def test_commit_of_many_checkpoints_is_one_transaction(store):
    store.create_instance(record("a"), [b"a0"])
    store.create_instance(record("b"), [b"b0"])
    store.commit(
        [Checkpoint("a", "x-a", [b"a1"], 1), Checkpoint("b", "x-b", [b"b1"], 1, status="Failed")]
    )
    assert store.load_history("a") == [b"a0", b"a1"]
    assert store.load_history("b") == [b"b0", b"b1"]
    # A second writer of a recorded slot fails, and takes the rest of its batch with it.
    with pytest.raises(Exception):  # noqa: B017 - each store raises its database's error
        store.commit(
            [
                Checkpoint("a", "x-a", [b"a2"], 2, status="Completed"),
                Checkpoint("b", "x-b", [b"fork"], 1),
            ]
        )
    assert store.load_history("a") == [b"a0", b"a1"]
    assert store.load_history("b") == [b"b0", b"b1"]
    assert store.load_instance("a").status == "Running"


def test_a_timer_recorded_twice_is_kept_once(store):
    store.create_instance(record("a"), [])
    store.commit([Checkpoint("a", "x-a", [], 0, timers=[(1, 5.0)])])
    store.commit([Checkpoint("a", "x-a", [], 0, timers=[(1, 5.0)])])
    assert store.timer_stats() == (1, 5.0)


def test_a_checkpoint_that_ends_an_instance_drops_its_timers(store):
    store.create_instance(record("a"), [])
    store.create_instance(record("b"), [])
    store.commit([Checkpoint("a", "x-a", [], 0, timers=[(1, 50.0)])])
    store.commit([Checkpoint("b", "x-b", [], 0, timers=[(1, 60.0)])])
    store.commit([Checkpoint("a", "x-a", [b"done"], 0, status="Completed", output=b"o")])
    assert store.due_timers(now=100.0) == [DueTimer("b", "x-b", 1, 60.0)]


def test_continue_as_new_replaces_the_history_and_drops_timers(store):
    store.create_instance(record("a", input=b"old"), [b"e0", b"e1"])
    store.commit([Checkpoint("a", "x-a", [], 2, output=b"out", timers=[(1, 5.0)])])
    store.commit(
        [Checkpoint("a", "x-2", [b"n0"], 0, input=b"new", replace_history=True, timers=[(0, 9.0)])]
    )
    loaded = store.load_instance("a")
    assert (loaded.execution_id, loaded.input, loaded.output) == ("x-2", b"new", None)
    assert (loaded.history_length, store.load_history("a")) == (1, [b"n0"])
    assert store.due_timers(now=100.0) == [DueTimer("a", "x-2", 0, 9.0)]


# -- the inbox and its conditional writes --------------------------------------------------


def test_inbox_keeps_arrival_order_per_instance_and_reads_after_an_id(store):
    first = store.append_inbox("a", b"m0")
    store.append_inbox("b", b"other")
    second = store.append_inbox("a", b"m1")
    third = store.append_inbox("a", b"m2")
    assert first < second < third
    assert [(m.id, m.instance_id, m.event) for m in store.load_inbox("a")] == [
        (first, "a", b"m0"),
        (second, "a", b"m1"),
        (third, "a", b"m2"),
    ]
    assert [m.event for m in store.load_inbox("a", after_id=second)] == [b"m2"]
    assert inbox_events(store, "b") == [b"other"]


def test_append_inbox_if_writes_only_while_the_status_matches(store):
    assert store.append_inbox_if("nobody", b"m", ("Running",)) is None
    assert store.load_inbox("nobody") == []

    store.create_instance(record("a", status="Completed"), [])
    found = store.append_inbox_if("a", b"m", ("Running", "Suspended"), new_status="Terminated")
    assert found is not None and found.status == "Completed"
    assert store.load_inbox("a") == [] and store.load_instance("a").status == "Completed"

    store.create_instance(record("b"), [])
    found = store.append_inbox_if("b", b"m", ("Running",), new_status="Terminating")
    assert found is not None and found.status == "Running"  # as found, before the write
    assert inbox_events(store, "b") == [b"m"]
    assert store.load_instance("b").status == "Terminating"
    store.append_inbox_if("b", b"m2", ("Terminating",))
    assert inbox_events(store, "b") == [b"m", b"m2"]
    assert store.load_instance("b").status == "Terminating"


def test_many_messages_in_one_transaction_each_as_append_inbox_if_would(store):
    store.create_instance(record("a"), [])
    store.create_instance(record("done", status="Completed"), [])
    found = store.append_inbox_many(
        [
            GuardedMessage("a", b"m1", ("Running",), message_id="x"),
            GuardedMessage("nobody", b"m", ("Running",)),
            GuardedMessage("done", b"m", ("Running",)),
            GuardedMessage("a", b"m1", ("Running",), message_id="x"),  # the same, again
            GuardedMessage("a", b"m2", ("Running",), new_status="Suspended"),
            GuardedMessage("a", b"m3", ("Running",)),  # sees the status the one before set
        ]
    )
    assert found[1] is None and found[2].status == "Completed"
    assert [r.status for r in (found[0], found[3], found[4], found[5])] == [
        "Running",
        "Running",
        "Running",
        "Suspended",
    ]
    assert inbox_events(store, "a") == [b"m1", b"m2"]
    assert store.load_instance("a").status == "Suspended"
    assert store.load_inbox("done") == [] and store.load_inbox("nobody") == []


def test_delete_instance_if_removes_only_while_the_status_matches(store):
    assert store.delete_instance_if("nobody", ("Completed",)) is None
    store.create_instance(record("a"), [b"e0"], [b"m0"])
    found = store.delete_instance_if("a", ("Completed", "Failed"))
    assert found is not None and found.status == "Running"
    assert store.load_history("a") == [b"e0"] and inbox_events(store, "a") == [b"m0"]
    store.set_status("a", "Failed")
    found = store.delete_instance_if("a", ("Completed", "Failed"))
    assert found is not None and found.status == "Failed"
    assert store.load_instance("a") is None
    assert store.load_history("a") == [] and store.load_inbox("a") == []


# -- timers --------------------------------------------------------------------------------


def test_due_timers_in_time_order_and_their_stats(store):
    assert store.timer_stats() == (0, None)
    store.create_instance(record("a"), [])
    store.create_instance(record("b"), [])
    store.commit(
        [
            Checkpoint("a", "x-a", [], 0, timers=[(1, 30.0), (2, 10.0)]),
            Checkpoint("b", "x-b", [], 0, timers=[(0, 20.0), (1, 99.0)]),
        ]
    )
    assert store.timer_stats() == (4, 10.0)
    assert store.due_timers(now=30.0) == [
        DueTimer("a", "x-a", 2, 10.0),
        DueTimer("b", "x-b", 0, 20.0),
        DueTimer("a", "x-a", 1, 30.0),
    ]
    assert store.due_timers(now=30.0, limit=1) == [DueTimer("a", "x-a", 2, 10.0)]
    assert store.due_timers(now=9.9) == []


def test_fire_timers_drops_them_and_queues_their_messages_at_once(store):
    store.create_instance(record("a"), [])
    store.commit([Checkpoint("a", "x-a", [], 0, timers=[(1, 1.0), (2, 2.0), (3, 50.0)])])
    due = store.due_timers(now=10.0)
    queued = store.fire_timers(due, [b"fired-1", None])
    assert len(queued) == 1
    assert [(m.id, m.event) for m in store.load_inbox("a")] == [(queued[0], b"fired-1")]
    assert store.due_timers(now=10.0) == [] and store.timer_stats() == (1, 50.0)


# -- queries -------------------------------------------------------------------------------


def test_query_filters_by_status_time_and_prefix_oldest_first(store):
    for iid, status, created in [
        ("order-2", "Running", 0.5),
        ("order-1", "Completed", 1.0),
        ("order_x", "Failed", 3.0),
        ("other", "Running", 4.0),
        ("order-0", "Running", 1.0),  # same time as order-1: the id decides
    ]:
        store.create_instance(record(iid, status=status, created=created), [])
    everything = ["order-2", "order-0", "order-1", "order_x", "other"]
    assert ids(store.query(InstanceQuery())) == everything
    running = ids(store.query(InstanceQuery(statuses=("Running",))))
    assert running == ["order-2", "order-0", "other"]
    ended = ids(store.query(InstanceQuery(statuses=("Completed", "Failed"))))
    assert ended == ["order-1", "order_x"]
    between = ids(store.query(InstanceQuery(created_from=1.0, created_to=3.0)))
    assert between == ["order-0", "order-1", "order_x"]
    assert ids(store.query(InstanceQuery(prefix="order-"))) == ["order-2", "order-0", "order-1"]
    # A prefix is text, not a pattern: "_" and "%" match themselves only.
    assert ids(store.query(InstanceQuery(prefix="order_"))) == ["order_x"]
    assert store.query(InstanceQuery(prefix="%")) == []
    both = InstanceQuery(statuses=("Running",), prefix="order", created_from=0.8)
    assert ids(store.query(both)) == ["order-0"]


def test_query_pages_with_limit_and_offset(store):
    for i in range(7):
        store.create_instance(record(f"i{i}", created=float(i)), [])
    pages = [ids(store.query(InstanceQuery(limit=3, offset=k))) for k in (0, 3, 6, 9)]
    assert pages == [["i0", "i1", "i2"], ["i3", "i4", "i5"], ["i6"], []]
    assert ids(store.query(InstanceQuery(statuses=("Running",), limit=2, offset=1))) == [
        "i1",
        "i2",
    ]


def test_query_pages_by_keyset_in_both_orders_with_ties_and_filters(store):
    # Ties on created_time are ordered by id, so a page boundary inside a tie loses nothing.
    for i in range(9):
        status = "Completed" if i % 3 == 0 else "Running"
        store.create_instance(record(f"i{i}", status=status, created=float(i // 2)), [])

    def walk(size: int, **filters) -> list[list[str]]:
        pages, after = [], None
        while True:
            page = store.query(InstanceQuery(limit=size, after=after, **filters))
            if not page:
                return pages
            pages.append(ids(page))
            after = (page[-1].created_time, page[-1].instance_id)

    oldest = [f"i{i}" for i in range(9)]
    assert sum(walk(2), []) == oldest
    assert walk(4) == [oldest[:4], oldest[4:8], oldest[8:]]
    assert sum(walk(2, newest_first=True), []) == oldest[::-1]
    running = [f"i{i}" for i in range(9) if i % 3]
    assert sum(walk(2, statuses=("Running",), newest_first=True), []) == running[::-1]
    # the keyset starts after a row that no longer exists, or one of another status
    assert ids(store.query(InstanceQuery(after=(2.0, "i4x"), limit=2))) == ["i5", "i6"]


def test_query_filters_by_orchestrator_name(store):
    store.create_instance(record("a", created=1.0), [])
    other = InstanceRecord("b", "other", "1", "Running", "x-b", 2.0, 2.0)
    store.create_instance(other, [])
    assert ids(store.query(InstanceQuery(name="other"))) == ["b"]
    assert ids(store.query(InstanceQuery(name="flow"))) == ["a"]
    assert store.query(InstanceQuery(name="nobody")) == []


def test_overview_counts_statuses_rates_entities_hosts_and_timers(store):
    now = 1_000_000.0 * 60  # a whole minute
    for iid, status, created, host in [
        ("a", "Running", now - 30, "h1"),
        ("b", "Running", now - 90, "h1"),
        ("c", "Completed", now - 100, "h2"),
        ("d", "Pending", now - 5000, None),  # before the window
    ]:
        fields = {"host": host} if host else {}
        store.create_instance(record(iid, status=status, created=created, **fields), [])
    store.commit_entities([entity("k1"), entity("k2")])
    ov = store.overview(now - 3600)
    assert ov.by_status == {"Running": 2, "Completed": 1, "Pending": 1}
    # per whole minute: a (now-30) in the minute before now; b and c two minutes before
    assert ov.started_per_minute == {int(now) - 60: 1, int(now) - 120: 2}
    assert ov.finished_per_minute == {int(now) - 120: 1}
    assert ov.entities_by_name == {"Counter": 2}
    assert ov.live_by_host == {"h1": 2, "": 1}
    assert (ov.pending_timers, ov.next_timer) == (0, None)
    assert ov.health.oldest_pending == now - 5000
    assert ov.lease is None


# -- entities and their senders ------------------------------------------------------------


def entity(key: str, sender: str = "driver", seq: int = 1, **fields) -> EntityCheckpoint:
    fields.setdefault("state", f"state-{key}".encode())
    fields.setdefault("exists", True)
    return EntityCheckpoint("Counter", key, sender=sender, seq=seq, result=b"r", **fields)


def test_entity_state_lock_and_sender_round_trip(store):
    assert store.load_entity("Counter", "a") is None
    assert store.load_sender("Counter", "a", "driver") is None
    store.commit_entities([entity("a", locked_by="orch-1"), entity("b", sender="x", seq=4)])
    assert store.load_entity("Counter", "a") == (b"state-a", True, "orch-1")
    assert store.load_entity("Counter", "b") == (b"state-b", True, None)
    assert store.load_sender("Counter", "b", "x") == (4, b"r")
    assert store.load_sender("Counter", "b", "driver") is None
    store.commit_entities([entity("a", seq=2, state=None, exists=False)])
    assert store.load_entity("Counter", "a") == (None, False, None)
    assert store.load_sender("Counter", "a", "driver") == (2, b"r")


def test_a_batch_of_one_entitys_operations_keeps_the_last_state_and_numbers(store):
    store.commit_entities(
        [
            entity("a", seq=1, state=b"1", outbox=[("signal", "Counter@b", b"p1")]),
            entity("a", sender="other", seq=7, state=b"2"),
            entity("a", seq=2, state=b"3", outbox=[("signal", "Counter@b", b"p2")]),
            entity("a", sender="other", seq=8, state=b"ignored", state_changed=False),
        ]
    )
    assert store.load_entity("Counter", "a") == (b"3", True, None)
    assert store.load_sender("Counter", "a", "driver") == (2, b"r")
    assert store.load_sender("Counter", "a", "other") == (8, b"r")
    assert [m.payload for m in store.load_outbox()] == [b"p1", b"p2"]


def test_a_refused_entity_operation_writes_only_its_sender(store):
    store.commit_entities([entity("a")])
    refused = entity("a", sender="other", seq=7, state=b"ignored", state_changed=False)
    store.commit_entities([refused])
    assert store.load_entity("Counter", "a") == (b"state-a", True, None)
    assert store.load_sender("Counter", "a", "other") == (7, b"r")


def test_entity_messages_go_to_the_outbox_in_order_until_delivered(store):
    store.commit_entities([entity("a", outbox=[("signal", "Counter@b", b"p1")])])
    store.commit_entities([entity("b", outbox=[("reply", "orch-1", b"p2")])])
    sent = store.load_outbox()
    assert [(m.kind, m.target, m.payload, m.sender) for m in sent] == [
        ("signal", "Counter@b", b"p1", "Counter@a"),
        ("reply", "orch-1", b"p2", "Counter@b"),
    ]
    assert sent[0].id < sent[1].id
    assert store.load_outbox(limit=1) == sent[:1]
    store.delete_outbox([sent[0].id])
    assert store.load_outbox() == sent[1:]


def test_list_entities_filters_by_name_and_pages(store):
    store.commit_entities([entity(k) for k in ("c", "a", "b")])
    store.commit_entities([EntityCheckpoint("Account", "z", b"s", True, "driver", 1, b"r")])
    listed = store.list_entities(None, limit=10, offset=0)
    assert [(n, k, e) for n, k, e, _ in listed] == [
        ("Account", "z", True),
        ("Counter", "a", True),
        ("Counter", "b", True),
        ("Counter", "c", True),
    ]
    assert all(modified > 0 for *_, modified in listed)
    page = store.list_entities("Counter", limit=2, offset=1)
    assert [(n, k) for n, k, _, _ in page] == [("Counter", "b"), ("Counter", "c")]


def test_clean_entities_removes_the_empty_unlocked_ones_and_their_senders(store):
    store.commit_entities(
        [
            entity("kept"),
            entity("empty", state=None, exists=False),
            entity("locked", state=None, exists=False, locked_by="orch-1"),
        ]
    )
    assert store.clean_entities() == 1
    assert store.load_entity("Counter", "empty") is None
    assert store.load_sender("Counter", "empty", "driver") is None
    assert store.load_entity("Counter", "locked") == (None, False, "orch-1")
    assert store.load_entity("Counter", "kept") == (b"state-kept", True, None)
    assert store.clean_entities() == 0


# -- registered code and settings ----------------------------------------------------------


def test_registered_code_by_version_the_latest_and_the_names(store):
    assert store.load_code("orchestrator", "flow") is None
    store.register_code("orchestrator", "flow", "1", b"v1")
    time.sleep(0.01)  # registration time orders versions
    store.register_code("orchestrator", "flow", "2", b"v2")
    store.register_code("activity", "step", "", b"s")
    assert store.load_code("orchestrator", "flow") == ("2", b"v2")
    assert store.load_code("orchestrator", "flow", "1") == ("1", b"v1")
    assert store.load_code("orchestrator", "flow", "3") is None
    assert store.load_code("activity", "flow") is None
    store.register_code("orchestrator", "flow", "1", b"v1-again")
    assert store.load_code("orchestrator", "flow", "1") == ("1", b"v1-again")
    store.register_code("orchestrator", "another", "1", b"a")
    assert store.code_names("orchestrator") == ["another", "flow"]
    assert store.code_names("entity") == []


def test_meta_settings(store):
    assert store.get_meta("spares") is None
    store.set_meta("spares", "2")
    store.set_meta("spares", "3")
    assert store.get_meta("spares") == "3"


# -- hubs, durability ----------------------------------------------------------------------


def test_hubs_on_one_database_see_nothing_of_each_other(open_hub):
    blue, green = open_hub("blue"), open_hub("green")
    blue.create_instance(record("a"), [b"e0"], [b"m0"])
    blue.commit([Checkpoint("a", "x-a", [], 1, timers=[(1, 1.0)])])
    blue.commit_entities([entity("k", outbox=[("signal", "Counter@j", b"p")])])
    blue.register_code("orchestrator", "flow", "1", b"v1")
    blue.set_meta("spares", "2")
    assert green.load_instance("a") is None and green.query(InstanceQuery()) == []
    assert green.load_history("a") == [] and green.load_inbox("a") == []
    assert green.due_timers(now=10.0) == [] and green.timer_stats() == (0, None)
    assert green.load_entity("Counter", "k") is None and green.load_outbox() == []
    assert green.list_entities(None, 10, 0) == [] and green.code_names("orchestrator") == []
    assert green.get_meta("spares") is None
    green.create_instance(record("a", created=7.0), [b"g0"])  # the same id, another hub
    assert blue.load_history("a") == [b"e0"] and green.load_history("a") == [b"g0"]


def test_what_one_store_committed_another_opened_later_reads(open_hub):
    first = open_hub()
    first.create_instance(record("a"), [b"e0"])
    first.commit_entities([entity("k")])
    first.close()
    again = open_hub()
    assert again.load_history("a") == [b"e0"]
    assert again.load_entity("Counter", "k") == (b"state-k", True, None)


def test_threads_sharing_one_store_read_write_and_roll_back_at_once(store):
    # A host's event loop reads while its executor threads commit, all on one store object.
    writers, rounds = 4, 15
    for n in range(writers):
        store.create_instance(record(f"i{n}"), [])
    errors: list[BaseException] = []

    def guarded(work: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                work()
            except BaseException as exc:  # reported below: a thread's error is otherwise lost
                errors.append(exc)

        return run

    def write(n: int) -> None:
        for k in range(rounds):
            store.append_inbox(f"i{n}", f"m{k}".encode())
            store.commit([Checkpoint(f"i{n}", f"x-i{n}", [f"e{k}".encode()], k)])

    def read(n: int) -> None:
        for _ in range(2 * rounds):
            history = store.load_history(f"i{n}")
            assert history == [f"e{k}".encode() for k in range(len(history))]
            events = inbox_events(store, f"i{n}")
            assert events == [f"m{k}".encode() for k in range(len(events))]
            assert len(events) >= len(history)  # each message is appended before its event

    def refuse(n: int) -> None:
        # Refused writes roll back: only their own transaction, never another thread's.
        for _ in range(rounds):
            with pytest.raises(InstanceExistsError):
                store.create_instance(record(f"i{n}"), [b"other"])

    threads = [
        threading.Thread(target=guarded(lambda n=n, work=work: work(n)))
        for n in range(writers)
        for work in (write, read, refuse)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for n in range(writers):
        assert store.load_history(f"i{n}") == [f"e{k}".encode() for k in range(rounds)]
        assert inbox_events(store, f"i{n}") == [f"m{k}".encode() for k in range(rounds)]
        assert store.load_instance(f"i{n}").history_length == rounds


# -- the lease and fencing -----------------------------------------------------------------


def holder(cluster: str, pid: int = 4242) -> LeaseHolder:
    return LeaseHolder(f"host-{cluster}", "machine", pid, "127.0.0.1:6379", cluster, "actor")


def never(lease: Lease) -> bool:
    return False


def test_lease_epochs_go_up_only_when_another_cluster_takes_it(open_hub):
    a, b = open_hub(), open_hub()
    assert a.load_lease() is None
    first = a.acquire_lease(holder("A"), 60, never)
    assert (first.hub, first.epoch, first.holder) == ("shop", 1, holder("A"))
    assert b.load_lease() == first
    with pytest.raises(HubLeaseHeldError) as held:
        b.acquire_lease(holder("B"), 60, never)
    assert (held.value.hub, held.value.pid) == ("shop", 4242)
    assert b.load_lease() == first
    assert a.acquire_lease(holder("A", pid=4343), 60, never).epoch == 1  # same cluster
    renewed = a.renew_lease(1, 120)
    assert renewed.epoch == 1 and renewed.expires_at > first.expires_at
    assert b.acquire_lease(holder("B"), 60, lambda lease: True).epoch == 2  # holder gone
    with pytest.raises(FencedError):
        a.renew_lease(1, 60)
    b.release_lease(2)
    assert b.load_lease().expires_at <= time.time()
    assert a.acquire_lease(holder("A"), 60, never).epoch == 3  # released: free at once


def test_a_fenced_store_writes_nothing_and_reports_it(open_hub):
    owner = open_hub()
    owner.acquire_lease(holder("A"), 60, never)
    owner.create_instance(record("a"), [b"e0"])
    fenced: list[Exception] = []
    stale = open_hub(epoch=7, on_fenced=fenced.append)
    with pytest.raises(FencedError) as refused:
        stale.commit([Checkpoint("a", "x-a", [b"e1"], 1, status="Completed")])
    assert (refused.value.epoch, refused.value.current) == (7, 1)
    with pytest.raises(FencedError) as again:
        stale.append_inbox("a", b"m")
    assert fenced == [refused.value, again.value]
    assert owner.load_history("a") == [b"e0"] and owner.load_inbox("a") == []
    current = open_hub(epoch=1)
    current.commit([Checkpoint("a", "x-a", [b"e1"], 1, status="Completed")])
    assert owner.load_history("a") == [b"e0", b"e1"]


# -- opening -------------------------------------------------------------------------------


def test_an_unsupported_store_url_is_a_config_error():
    with pytest.raises(HubConfigError) as refused:
        open_store("mysql://somewhere/db", "shop")
    assert "sqlite:///" in str(refused.value)


def test_a_sqlite_url_without_a_file_or_a_bad_durability_is_a_config_error(tmp_path):
    with pytest.raises(HubConfigError):
        open_store("sqlite:///", "shop")
    with pytest.raises(HubConfigError):
        open_store(f"sqlite:///{tmp_path / 'hub.db'}", "shop", durability="sometimes")


# -- out-of-line payloads ------------------------------------------------------------------

LIMIT = 1024


def big(tag: str, size: int = 5 * LIMIT) -> bytes:
    """A blob above LIMIT, distinct per tag."""
    return (tag.encode() * size)[:size]


def raw(store: Store, sql: str, *params) -> list[tuple]:
    """Rows as stored, references unresolved (the store's own connection, ``?`` placeholders)."""
    with store._connection() as db:
        return [tuple(row) for row in db.execute(sql, params).fetchall()]


def payloads(store: Store, iid: str) -> list[bytes]:
    rows = raw(store, "SELECT data FROM payloads WHERE hub=? AND instance_id=?", store.hub, iid)
    return sorted(bytes(row[0]) for row in rows)


def stored_sizes(store: Store, table: str, column: str, iid: str) -> list[int]:
    sql = f"SELECT length({column}) FROM {table} WHERE hub=? AND instance_id=?"
    return sorted(row[0] for row in raw(store, sql, store.hub, iid))


def test_blobs_above_the_limit_are_stored_once_out_of_line_and_read_back_as_written(open_hub):
    store = open_hub(payload_inline_limit=LIMIT)
    fields = {"input": big("in"), "custom_status": big("cs")}
    store.create_instance(record("a", **fields), [b"e0", big("e1")], [big("m0"), b"m1"])
    loaded = store.load_instance("a")
    assert (loaded.input, loaded.custom_status, loaded.output) == (big("in"), big("cs"), None)
    assert store.load_history("a") == [b"e0", big("e1")]
    assert inbox_events(store, "a") == [big("m0"), b"m1"]
    assert stored_sizes(store, "history", "event", "a") == [2, 36]
    assert stored_sizes(store, "inbox", "event", "a") == [2, 36]
    assert stored_sizes(store, "instances", "input", "a") == [36]
    assert payloads(store, "a") == sorted([big("in"), big("cs"), big("e1"), big("m0")])
    # Every read path resolves: queries, the active list, a parent's children.
    assert store.query(InstanceQuery())[0].input == big("in")
    assert store.active_instances()[0].custom_status == big("cs")


def test_the_limit_is_inclusive_and_a_blob_like_a_reference_still_round_trips(open_hub):
    store = open_hub(payload_inline_limit=LIMIT)
    looks_like_a_reference = b"RDP\x01" + bytes(32)
    events = [b"x" * LIMIT, b"y" * (LIMIT + 1), looks_like_a_reference, b"RDP\x01tiny"]
    store.create_instance(record("a"), events)
    assert store.load_history("a") == events
    assert payloads(store, "a") == sorted(events[1:])
    assert stored_sizes(store, "history", "event", "a") == [36, 36, 36, LIMIT]


def test_a_checkpoint_writes_its_payloads_and_their_references_together(open_hub):
    store = open_hub(payload_inline_limit=LIMIT)
    store.create_instance(record("parent"), [])
    store.create_instance(record("a", parent_instance_id="parent"), [b"e0"])
    same = big("result")  # the same blob twice: stored once
    cp = Checkpoint(
        "a",
        "x-a",
        [same, b"e2", same],
        1,
        status="Completed",
        output=big("out"),
        failure=big("f"),
        custom_status=big("cs"),
        outgoing=[("parent", big("answer"))],
    )
    store.commit([cp])
    loaded = store.load_instance("a")
    assert (loaded.output, loaded.failure) == (big("out"), big("f"))
    assert loaded.custom_status == big("cs")
    assert store.load_history("a") == [b"e0", same, b"e2", same]
    assert payloads(store, "a") == sorted([same, big("out"), big("f"), big("cs")])
    assert inbox_events(store, "parent") == [big("answer")]
    assert payloads(store, "parent") == [big("answer")]
    assert store.children("parent")[0].output == big("out")


def test_a_refused_checkpoint_leaves_no_payload_behind(open_hub):
    store = open_hub(payload_inline_limit=LIMIT)
    store.create_instance(record("a"), [b"e0"])
    with pytest.raises(Exception):  # noqa: B017 - each store raises its database's error
        store.commit([Checkpoint("a", "x-a", [big("fork")], 0, output=big("out"))])
    assert payloads(store, "a") == [] and store.load_history("a") == [b"e0"]
    assert store.load_instance("a").output is None


def test_purge_deletes_the_payloads_of_the_instance_only(open_hub):
    store = open_hub(payload_inline_limit=LIMIT)
    for iid in ("a", "b", "c"):
        store.create_instance(record(iid, input=big(iid)), [big(f"{iid}-e")], [big(f"{iid}-m")])
    assert store.delete_instance("a") is True
    assert payloads(store, "a") == []
    store.commit([Checkpoint("b", "x-b", [], 1, status="Completed")])
    assert store.delete_instance_if("b", ("Completed",)) is not None
    assert payloads(store, "b") == []
    assert store.load_history("c") == [big("c-e")] and inbox_events(store, "c") == [big("c-m")]
    assert len(payloads(store, "c")) == 3
    store.commit([Checkpoint("c", "x-c", [], 1, status="Failed")])
    store.create_instance(record("c", input=b"small"), [b"new"])  # replaces the ended one
    assert payloads(store, "c") == [] and store.load_instance("c").input == b"small"


def test_continue_as_new_drops_the_old_executions_payloads_but_not_the_inboxs(open_hub):
    store = open_hub(payload_inline_limit=LIMIT)
    store.create_instance(record("a", input=big("in-1")), [big("e-1")], [big("waiting")])
    store.commit([Checkpoint("a", "x-a", [big("e-2")], 1, custom_status=big("cs"))])
    cp = Checkpoint("a", "x2", [big("e-new")], 0, input=big("in-2"), replace_history=True)
    store.commit([cp])
    assert store.load_history("a") == [big("e-new")]
    loaded = store.load_instance("a")
    assert (loaded.input, loaded.custom_status) == (big("in-2"), big("cs"))
    assert inbox_events(store, "a") == [big("waiting")]
    assert payloads(store, "a") == sorted([big("e-new"), big("in-2"), big("cs"), big("waiting")])


def test_timer_messages_and_inbox_writes_keep_large_events_out_of_line(open_hub):
    store = open_hub(payload_inline_limit=LIMIT)
    store.create_instance(record("a"), [])
    store.commit([Checkpoint("a", "x-a", [], 0, timers=[(1, 5.0)])])
    store.fire_timers(store.due_timers(now=10.0), [big("fired")])
    store.append_inbox("a", big("event"))
    assert store.append_inbox_if("a", big("raised"), ("Running",)).status == "Running"
    assert inbox_events(store, "a") == [big("fired"), big("event"), big("raised")]
    assert stored_sizes(store, "inbox", "event", "a") == [36, 36, 36]


def test_a_reference_whose_payload_is_gone_is_a_typed_error(open_hub):
    store = open_hub(payload_inline_limit=LIMIT)
    store.create_instance(record("a"), [big("e")])
    with store._connection() as db:
        db.execute("DELETE FROM payloads WHERE hub=?", (store.hub,))
    with pytest.raises(PayloadMissingError, match=r"instance 'a' refers to payload [0-9a-f]{64}"):
        store.load_history("a")


def test_a_store_without_a_limit_keeps_64_kib_inline(open_hub):
    store = open_hub()
    store.create_instance(record("a"), [b"x" * 65536, b"y" * 65537])
    assert stored_sizes(store, "history", "event", "a") == [36, 65536]
    assert store.load_history("a") == [b"x" * 65536, b"y" * 65537]


def test_a_version_2_schema_gains_the_payloads_table_when_opened(open_hub):
    store = open_hub()
    store.create_instance(record("a"), [b"e0"])
    with store._connection() as db:
        for table in ("payloads", "crashes", "quarantine", "delivered"):  # versions 3 and 4
            db.execute(f"DROP TABLE {table}")
        db.execute("ALTER TABLE instances DROP COLUMN start_id")
        db.execute("UPDATE schema_version SET version=2")
    again = open_hub(payload_inline_limit=LIMIT)
    assert raw(again, "SELECT version FROM schema_version") == [(SCHEMA_VERSION,)]
    again.commit([Checkpoint("a", "x-a", [big("e1")], 1)])
    assert again.load_history("a") == [b"e0", big("e1")] and payloads(again, "a") == [big("e1")]


# -- poison and starts ------------------------------------------------------------------


def test_a_start_already_stored_is_recognised_by_its_id(store):
    store.create_instance(record("a", start_id="s1"), [b"e0"], [b"m0"])
    store.commit([Checkpoint("a", "x-a", [b"e1"], 1, status="Completed")])
    # The same start again (a retry, a re-delivered message): nothing changes.
    assert store.create_instance(record("a", created=5.0, start_id="s1"), [b"new"]) is False
    assert store.load_instance("a").status == "Completed"
    assert store.load_history("a") == [b"e0", b"e1"]
    # Another start of the same id replaces the ended instance, as before.
    assert store.create_instance(record("a", created=5.0, start_id="s2"), [b"new"]) is True
    assert store.load_history("a") == [b"new"] and store.load_instance("a").start_id == "s2"


def test_crash_counts_go_up_and_start_again_once_forgotten(store):
    assert [store.record_crash("orchestration:a") for _ in range(3)] == [1, 2, 3]
    assert store.record_crash("entity:C@k:s:1") == 1
    store.forget_crashes("orchestration:a")
    assert store.record_crash("orchestration:a") == 1


def _item(kind: str = "orchestration", target: str = "a", **fields) -> Quarantined:
    work = f"{kind}:{target}" if kind == "orchestration" else f"entity:{target}:s:7"
    return Quarantined(work, kind, target, 5, "step", 1.0, **fields)


def test_a_quarantined_instance_fails_and_a_retry_runs_it_again(store):
    store.create_instance(record("a"), [b"e0"])
    store.record_crash("orchestration:a")
    store.quarantine_instance(Checkpoint("a", "x-a", [], 1, status="Failed", failure=b"f"), _item())
    assert store.load_instance("a").status == "Failed" and store.load_history("a") == [b"e0"]
    assert store.list_quarantined() == [_item()]
    assert store.health().quarantined == 1
    assert store.record_crash("orchestration:a") == 1  # its count went with the quarantine

    assert store.release_quarantined("a", None) is None  # not an item's id
    assert store.release_quarantined("orchestration:a", lambda item: []) == _item()
    back = store.load_instance("a")
    assert (back.status, back.failure) == ("Running", None)
    assert store.list_quarantined() == [] and store.health().quarantined == 0


def test_a_dead_lettered_operation_is_answered_and_resent_on_retry(store):
    letter = _item("entity", "Counter@k", operation="add", sender="s", seq=7, input=b"in")
    store.dead_letter(EntityCheckpoint("Counter", "k", None, False, "s", 7, b"err"), letter)
    assert store.load_sender("Counter", "k", "s") == (7, b"err")
    assert store.list_quarantined() == [letter]
    store.release_quarantined(letter.id, lambda item: [("signal", item.target, item.input)])
    [sent] = store.load_outbox()
    assert (sent.kind, sent.target, sent.payload, sent.sender) == (
        "signal",
        "Counter@k",
        b"in",
        "quarantine",
    )
    assert store.health().outbox_depth == 1


def test_a_discarded_item_leaves_its_instance_failed(store):
    store.create_instance(record("a"), [b"e0"])
    store.quarantine_instance(Checkpoint("a", "x-a", [], 1, status="Failed", failure=b"f"), _item())
    store.release_quarantined("orchestration:a", None)
    assert store.load_instance("a").status == "Failed" and store.list_quarantined() == []


def test_health_names_the_oldest_pending_instance(store):
    assert store.health() == HubHealth(0, 0, None)
    store.create_instance(record("old", status="Pending", created=3.0), [])
    store.create_instance(record("new", status="Pending", created=9.0), [])
    store.create_instance(record("run", status="Running", created=1.0), [])
    assert store.health().oldest_pending == 3.0


def test_an_entity_commit_from_a_writer_that_read_an_old_number_is_refused(store):
    store.commit_entities([entity("a", seq=1, prev_seq=0), entity("a", seq=2, prev_seq=1)])
    # A second host that still believes the sender is at 1 (it never saw seq 2) is refused,
    # and nothing of its batch is stored.
    stale = [entity("a", seq=2, prev_seq=1, state=b"twice"), entity("b", seq=1, prev_seq=0)]
    with pytest.raises(StaleEntityWriteError) as refused:
        store.commit_entities(stale)
    assert (refused.value.expected, refused.value.found) == (1, 2)
    assert store.load_entity("Counter", "a")[0] == b"state-a"
    assert store.load_entity("Counter", "b") is None
    store.commit_entities([entity("a", seq=3, prev_seq=2)])  # the right number goes through
    assert store.load_sender("Counter", "a", "driver") == (3, b"r")


def test_a_message_accepted_under_its_id_is_accepted_once(store):
    store.create_instance(record("a"), [b"e0"])
    live = ("Running",)
    assert store.append_inbox_if("a", b"m", live, None, "id-1").status == "Running"
    assert store.append_inbox_if("a", b"m", live, None, "id-1").status == "Running"
    assert [m.event for m in store.load_inbox("a")] == [b"m"]
    store.commit([Checkpoint("a", "x-a", [b"e1"], 1, status="Completed")])
    # Ended since: the same id is still recognised (answered as taken), a new one refused.
    assert store.append_inbox_if("a", b"m", live, None, "id-1").status == "Running"
    assert store.append_inbox_if("a", b"m", live, None, "id-2").status == "Completed"
    assert [m.event for m in store.load_inbox("a")] == [b"m"]
