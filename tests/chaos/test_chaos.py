"""The chaos suite under pytest: one seed per placement on SQLite, one on PostgreSQL.

Each seed runs ``python -m tests.chaos`` in a process of its own, which starts a Ray of
its own and stops it once mid-run (the session's Ray is not touched). Other seeds, more
waves, a soak: ``python -m tests.chaos --help``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

#: The runner starts and stops its own Ray: this module needs none from the session.
OWN_CLUSTER = True

ROOT = Path(__file__).resolve().parents[2]
SEED = 1


def run_chaos(*args: str) -> subprocess.CompletedProcess:
    """``python -m tests.chaos ARGS`` from the repository's root; its output is printed."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.chaos", *args],
        cwd=ROOT,
        env={**os.environ},
        capture_output=True,
        text=True,
        timeout=1200,
    )
    print(done.stdout)
    return done


def report(done: subprocess.CompletedProcess) -> str:
    """What a failed run said: its report and the end of its errors."""
    lines = [line for line in done.stdout.splitlines() if line.startswith(("chaos:", "  "))]
    return "\n".join(lines + done.stderr.splitlines()[-20:])


@pytest.mark.slow
@pytest.mark.timeout(1300)
@pytest.mark.parametrize("placement", ["pooled", "dedicated"])
def test_chaos_seed_on_sqlite(placement):
    done = run_chaos("--seed", str(SEED), "--placement", placement, "--store", "sqlite")
    assert done.returncode == 0, report(done)
    assert f"chaos: seed {SEED} PASSED" in done.stdout, report(done)


@pytest.mark.slow
@pytest.mark.timeout(1300)
def test_chaos_seed_on_postgresql(postgres):
    url = postgres.database()  # the session's throw-away server, a fresh database
    done = run_chaos("--seed", str(SEED), "--placement", "pooled", "--store-url", url)
    assert done.returncode == 0, report(done)
    assert f"chaos: seed {SEED} PASSED" in done.stdout, report(done)
