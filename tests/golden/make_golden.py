"""Write the golden histories that tests/test_golden.py replays.

Usage: ``python tests/golden/make_golden.py`` (about a minute; needs no running cluster).

Runs a handful of orchestrations end to end on today's code (a real local Ray, a real SQLite
store, a ManualClock for the timers) and writes one JSON file per orchestration instance
next to this script. Each file holds the instance's stored history twice, base64-encoded:

- ``history``: the blobs exactly as the store holds them (the codec's format);
- ``legacy_history``: the same events as the code before the codec stored them (a
  cloudpickle of each dataclass), so the legacy read path is replayed too;

with the orchestrator (``module:attribute`` in tests/), the instance id, the terminal
status and the ``repr`` of the output. Commit the files: later code must replay them
unchanged. Regenerate only on purpose (a deliberate format change), never to make
test_golden.py pass; add a scenario by appending to ``SCENARIOS``.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent
# Ray workers import the orchestrators and activities by module name, as in conftest.py.
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(TESTS), str(TESTS.parent), os.environ.get("PYTHONPATH", "")) if p
)
sys.path[:0] = [str(TESTS), str(TESTS.parent)]

import entity_defs as ed  # noqa: E402
import patterns as pt  # noqa: E402
import ray  # noqa: E402
import workflows as wf  # noqa: E402

from runtime import Runtime  # noqa: E402
from runtime.orchestration import history as h  # noqa: E402
from runtime.orchestration.codec import FORMAT_VERSION, decode_event  # noqa: E402
from runtime.serialization import dumps  # noqa: E402
from runtime.store import open_store  # noqa: E402
from runtime.testing import ManualClock  # noqa: E402

START = datetime(2026, 1, 1, tzinfo=timezone.utc)


def wait_until(predicate: Callable[[], Any], timeout: float = 60.0) -> Any:
    """Poll ``predicate`` until it is truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def has_event(client: Any, iid: str, kind: type, count: int = 1) -> bool:
    """True once the instance's history holds ``count`` events of ``kind``."""
    state = client.get_status(iid, show_history=True)
    return state is not None and sum(isinstance(e, kind) for e in state.history or []) >= count


def chaining(client: Any, clock: ManualClock, tmp: str) -> list[tuple[str, str]]:
    """Two activities in sequence, one named by object and one by name."""
    return [(client.start_new(wf.chain, input=3, instance_id="g-chain"), "workflows:chain")]


def fan_out(client: Any, clock: ManualClock, tmp: str) -> list[tuple[str, str]]:
    """Five activities in parallel, joined with task_all."""
    iid = client.start_new(wf.fan_out_fan_in, input=5, instance_id="g-fan-out")
    return [(iid, "workflows:fan_out_fan_in")]


def caught_failure(client: Any, clock: ManualClock, tmp: str) -> list[tuple[str, str]]:
    """An activity that raises, caught by the orchestrator (TaskFailed and its details)."""
    iid = client.start_new(wf.compensate, input="no stock", instance_id="g-compensate")
    return [(iid, "workflows:compensate")]


def approval_event(client: Any, clock: ManualClock, tmp: str) -> list[tuple[str, str]]:
    """An external event that wins against a 72-hour timer."""
    iid = client.start_new(pt.approval, input="budget", instance_id="g-approval-event")
    wait_until(lambda: has_event(client, iid, h.TimerCreated))
    client.raise_event(iid, "ApprovalEvent", "yes")
    return [(iid, "patterns:approval")]


def approval_timeout(client: Any, clock: ManualClock, tmp: str) -> list[tuple[str, str]]:
    """The 72-hour timer fires first (ManualClock): the request escalates."""
    iid = client.start_new(pt.approval, input="trip", instance_id="g-approval-timeout")
    wait_until(lambda: has_event(client, iid, h.TimerCreated))
    clock.advance(timedelta(hours=72, seconds=1))
    return [(iid, "patterns:approval")]


def sub_orchestrations(client: Any, clock: ManualClock, tmp: str) -> list[tuple[str, str]]:
    """A parent fanning out to two children; the children are golden too."""
    iid = client.start_new(pt.parent, input=2, instance_id="g-parent")
    client.wait_for_completion(iid, timeout=120)
    return [
        (iid, "patterns:parent"),
        (f"{iid}:0", "patterns:child"),
        (f"{iid}:1", "patterns:child"),
    ]


def retry(client: Any, clock: ManualClock, tmp: str) -> list[tuple[str, str]]:
    """An activity that fails once, retried after a durable 5-minute timer."""
    log = os.path.join(tmp, "tries")
    iid = client.start_new(pt.retrying, input=(log, 1), instance_id="g-retry")
    wait_until(lambda: has_event(client, iid, h.TimerCreated))
    clock.advance(timedelta(minutes=5, seconds=1))
    return [(iid, "patterns:retrying")]


def continue_as_new(client: Any, clock: ManualClock, tmp: str) -> list[tuple[str, str]]:
    """Three executions through continue_as_new (only the last one's history is stored)."""
    iid = client.start_new(pt.ticker, input=(0, 3), instance_id="g-ticker")
    return [(iid, "patterns:ticker")]


def eternal(client: Any, clock: ManualClock, tmp: str) -> list[tuple[str, str]]:
    """Events raised while the instance continues as new (carried over)."""
    iid = client.start_new(pt.eternal_counter, input=0, instance_id="g-eternal")
    for op in ("incr", "incr", "decr", "incr", "end"):
        client.raise_event(iid, "operation", op)
    return [(iid, "patterns:eternal_counter")]


def entity_call_and_signal(client: Any, clock: ManualClock, tmp: str) -> list[tuple[str, str]]:
    """Two signals then a call to a Counter entity."""
    iid = client.start_new(ed.counter_user, input="golden", instance_id="g-counter-user")
    return [(iid, "entity_defs:counter_user")]


def entity_lock(client: Any, clock: ManualClock, tmp: str) -> list[tuple[str, str]]:
    """A transfer in a critical section holding two Account entities."""
    client.signal_entity("Account@g-a", "deposit", 100)
    client.signal_entity("Account@g-b", "deposit", 10)
    iid = client.start_new(
        ed.transfer, input=("Account@g-a", "Account@g-b", 30), instance_id="g-transfer"
    )
    return [(iid, "entity_defs:transfer")]


SCENARIOS: list[Callable[[Any, ManualClock, str], list[tuple[str, str]]]] = [
    chaining,
    fan_out,
    caught_failure,
    approval_event,
    approval_timeout,
    sub_orchestrations,
    retry,
    continue_as_new,
    eternal,
    entity_call_and_signal,
    entity_lock,
]


def _b64(blob: bytes) -> str:
    return base64.b64encode(blob).decode("ascii")


def _commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True, text=True
        )
        return out.stdout.strip()
    except OSError:
        return ""


def main() -> None:
    """Run every scenario on one hub and write one golden file per instance."""
    tmp = tempfile.mkdtemp(prefix="golden-")
    url = f"sqlite:///{tmp}/hub.db"
    hub = "golden"
    clock = ManualClock(start=START)
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    rt = Runtime.start(
        hub=hub,
        store=url,
        placement="pooled",
        pool_size=2,
        register=wf.ALL + pt.ALL + ed.ALL,
        clock=clock,
    )
    store = open_store(url, hub)
    try:
        client = rt.client
        for scenario in SCENARIOS:
            for iid, function in scenario(client, clock, tmp):
                state = client.wait_for_completion(iid, timeout=120)
                blobs = store.load_history(iid)
                golden = {
                    "scenario": scenario.__name__,
                    "about": (scenario.__doc__ or "").strip(),
                    "written_by": f"ray-durable {_commit()}",
                    "format_version": FORMAT_VERSION,
                    "function": function,
                    "orchestrator": state.name,
                    "instance_id": iid,
                    "status": str(state.runtime_status),
                    "output_repr": repr(state.output),
                    "history": [_b64(b) for b in blobs],
                    # What the store held before the codec: a cloudpickle of each dataclass.
                    "legacy_history": [_b64(dumps(decode_event(b))) for b in blobs],
                }
                path = HERE / f"{iid.replace(':', '-')}.json"
                path.write_text(json.dumps(golden, indent=1) + "\n")
                print(
                    f"{path.name}: {golden['status']} {golden['output_repr']}, {len(blobs)} events"
                )
    finally:
        rt.shutdown()
        clock.close()
        ray.shutdown()


if __name__ == "__main__":
    main()
