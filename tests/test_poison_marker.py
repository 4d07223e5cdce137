"""The crash marker and the pure parts of poison handling (no Ray)."""

from __future__ import annotations

from runtime.actors.hosting.poison import CrashMarker, Work, backoff, open_locks
from runtime.orchestration import history as h

PURE = True


def test_a_mark_left_by_a_dead_process_is_read_once_by_the_next(tmp_path):
    path = str(tmp_path / "marker")
    first = CrashMarker(path)
    first.mark(Work("entity", "Counter@k", "operation add", "driver-1", 7))
    # No clear: the process "dies" here. Its successor opens the same file.
    assert CrashMarker(path).previous() == Work(
        "entity", "Counter@k", "operation add", "driver-1", 7
    )
    assert CrashMarker(path).previous() is None  # read once, then cleared


def test_work_that_ran_to_its_end_blames_nothing(tmp_path):
    path = str(tmp_path / "marker")
    marker = CrashMarker(path)
    marker.mark(Work("orchestration", "order-7", "step"))
    marker.clear()
    assert CrashMarker(path).previous() is None


def test_an_unreadable_mark_blames_nothing(tmp_path):
    path = tmp_path / "marker"
    CrashMarker(str(path)).mark(Work("orchestration", "order-7", "step"))
    data = bytearray(path.read_bytes())
    data[4:8] = b"\xff\xfe\x00\x01"  # a write cut by the death
    path.write_bytes(bytes(data))
    assert CrashMarker(str(path)).previous() is None


def test_work_ids_name_what_the_quarantine_lists():
    assert Work("orchestration", "order-7", "replay").id == "orchestration:order-7"
    assert Work("entity", "Counter@k", "operation add", "d", 3).id == "entity:Counter@k:d:3"


def test_the_backoff_doubles_up_to_its_cap():
    assert [backoff(n) for n in (1, 2, 3, 4, 10)] == [0.5, 1.0, 2.0, 4.0, 8.0]


def test_open_locks_are_read_from_history_without_running_code():
    history = [
        h.LockRequested(0, ("A@1", "B@2"), (1, 1)),
        h.LockGranted(0),
        h.LockReleased(1, ("A@1", "B@2"), 0, (1, 1)),
        h.LockRequested(2, ("C@3",), (1,)),
    ]
    assert open_locks(history) == [h.LockReleased(0, ("C@3",), 2, (1,))]
