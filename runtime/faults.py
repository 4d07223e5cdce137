"""Fault hooks: crash a runtime process at a named dangerous moment, for failure tests.

A test arms points through the environment of the Ray processes it starts (as Ray
Serve's controller tests do): ``DURABLE_FAULTS`` lists ``point@hub`` entries, comma
separated, and ``DURABLE_FAULTS_DIR`` names a directory. Each armed point crashes the
first process of that hub to reach it, once: the crash leaves a file in the directory,
so the restarted process goes past the point. Unarmed, a point costs one set lookup.

The points:

- ``host.after_commit``: a host committed a step; its activities are on their way, its
  other actions (timers, children, entity messages) not yet;
- ``host.before_result``: an activity's result reached its host and is not recorded yet;
- ``store.mid_group_commit``: a group commit wrote one instance's checkpoint of several
  and has not committed;
- ``outbox.after_delivery``: the supervisor delivered an outbox message and has not
  deleted it.

Two more are switches rather than crashes, on while their file exists in the directory
(the test creates and removes it): ``store.full`` (SQLite's ``max_page_count`` pinned to
the file's size, so a write that needs a page fails as on a full disk) and
``store.read_only`` (every write transaction refused as by a read-only database).
"""

from __future__ import annotations

import os

#: The exit status of a process a fault hook ended.
FAULT_EXIT_CODE = 75

POINTS = frozenset(
    (
        "host.after_commit",
        "host.before_result",
        "store.mid_group_commit",
        "outbox.after_delivery",
        "store.full",
        "store.read_only",
    )
)


def _armed() -> frozenset[tuple[str, str]]:
    entries = [e.strip() for e in os.environ.get("DURABLE_FAULTS", "").split(",") if e.strip()]
    armed = set()
    for entry in entries:
        point, _, hub = entry.partition("@")
        if point not in POINTS or not hub:
            raise ValueError(f"DURABLE_FAULTS: {entry!r} is not 'point@hub' (points: {POINTS})")
        armed.add((point, hub))
    return frozenset(armed)


_ARMED = _armed()


def crash_point(point: str, hub: str) -> None:
    """End this process here if ``point`` is armed for ``hub`` and has not fired yet."""
    if not _ARMED or (point, hub) not in _ARMED:
        return
    directory = os.environ.get("DURABLE_FAULTS_DIR") or "."
    try:
        fd = os.open(
            os.path.join(directory, f"{point}@{hub}"), os.O_CREAT | os.O_EXCL | os.O_WRONLY
        )
    except FileExistsError:
        return  # fired once already: the restarted process goes on
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    os._exit(FAULT_EXIT_CODE)


def switched_on(point: str, hub: str) -> bool:
    """True while the switch ``point`` is armed for ``hub`` and its file exists."""
    if not _ARMED or (point, hub) not in _ARMED:
        return False
    directory = os.environ.get("DURABLE_FAULTS_DIR") or "."
    return os.path.exists(os.path.join(directory, f"{point}@{hub}"))


def armed(point: str, hub: str) -> bool:
    """True if ``point`` is armed for ``hub`` at all (its hook must run)."""
    return (point, hub) in _ARMED
