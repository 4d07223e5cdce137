"""ManualClock's file: shared by copies in other processes, removed by its creator only."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest

from runtime import InvalidOperationError
from runtime.testing import ManualClock

#: No Ray for this module (tests/conftest.py): the code under test is pure.
PURE = True

START = datetime(2026, 1, 1, tzinfo=timezone.utc)


def test_the_creating_process_leaves_no_clock_file():
    script = (
        "from datetime import datetime, timedelta, timezone\n"
        "from runtime.testing import ManualClock\n"
        "kept = ManualClock(start=datetime(2026, 1, 1, tzinfo=timezone.utc))\n"
        "kept.advance(timedelta(hours=1))\n"
        "closed = ManualClock()\n"
        "closed.close()\n"
        "print(kept.path)\n"
        "print(closed.path)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    paths = done.stdout.split()
    assert len(paths) == 2 and all(os.path.basename(p).startswith("durable-clock-") for p in paths)
    left = [p for p in paths for name in (p, f"{p}.tmp") if os.path.exists(name)]
    assert left == []


def test_copies_follow_the_clock_and_stand_still_once_it_is_closed():
    clock = ManualClock(start=START)
    copy = pickle.loads(pickle.dumps(clock))  # what the supervisor and hosts hold
    elsewhere = subprocess.run(
        [
            sys.executable,
            "-c",
            "import pickle, sys; print(pickle.loads(sys.stdin.buffer.read())())",
        ],
        input=pickle.dumps(clock),
        capture_output=True,
    )
    assert float(elsewhere.stdout) == START.timestamp(), elsewhere.stderr
    assert os.path.exists(clock.path)  # a copy's process exiting removes nothing
    clock.advance(timedelta(hours=72))
    assert copy.now() == clock.now() == START + timedelta(hours=72)
    clock.close()
    assert not os.path.exists(clock.path)
    assert copy.now() == clock.now() == START + timedelta(hours=72)
    with pytest.raises(InvalidOperationError, match="ManualClock is closed"):
        clock.advance(timedelta(seconds=1))
    clock.close()  # twice is fine
