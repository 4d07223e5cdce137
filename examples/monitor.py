"""Monitor: poll an activity on a durable timer until a condition holds or time runs out.

A monitor checks the state of an external job every ``interval``; between checks it
sleeps on a durable timer (held by the store, so the monitor costs nothing while it
waits and survives restarts). It stops when the job is done, or gives up at an expiry
time. ``main`` runs two monitors: one on a job that is ready after a few checks, one on a
job that never finishes and expires. Intervals are a second of real time so it runs fast;
in production they would be minutes and the expiry hours.
Run from the repository root: ``python examples/monitor.py``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Generator
from datetime import timedelta
from typing import Any

from runtime import OrchestrationContext, Runtime, Task, activity, orchestrator


@activity(name="CheckJob")
def check_job(job: dict[str, Any]) -> dict[str, Any]:
    """Ask for the job's state; this stand-in job is ready on its ``ready_after``-th check."""
    # The poll count lives in a file because each check may run in another worker process.
    with open(job["path"], "a+") as f:
        f.write("checked\n")
        f.seek(0)
        checks = len(f.readlines())
    ready = job["ready_after"] is not None and checks >= job["ready_after"]
    return {"checks": checks, "ready": ready}


@activity(name="SendAlert")
def send_alert(message: str) -> str:
    """Tell someone the job is done (stands in for an email or a pager)."""
    return f"alert sent: {message}"


@orchestrator
def monitor_job(
    ctx: OrchestrationContext, job: dict[str, Any]
) -> Generator[Task, Any, dict[str, Any]]:
    """Check the job every ``interval`` seconds until it is ready or ``expiry`` passes."""
    interval = timedelta(seconds=job["interval"])
    expiry = ctx.current_utc_datetime + timedelta(seconds=job["expiry"])
    polls = 0
    while ctx.current_utc_datetime < expiry:
        state = yield ctx.call_activity(check_job, job)
        polls += 1
        ctx.set_custom_status({"polls": polls, "ready": state["ready"]})
        if state["ready"]:
            alert = yield ctx.call_activity(send_alert, f"job {job['name']} is ready")
            return {"job": job["name"], "outcome": "ready", "polls": polls, "alert": alert}
        # Never sleep past the expiry, so an expired monitor ends on time.
        yield ctx.create_timer(min(ctx.current_utc_datetime + interval, expiry))
    return {"job": job["name"], "outcome": "expired", "polls": polls}


def main(
    hub: str = "example-monitor",
    store: str | None = None,
    interval: float = 1.0,
    ready_after: int = 3,
    expiry: float = 4.0,
    timeout: float = 120.0,
) -> dict[str, Any]:
    """Monitor a job that becomes ready and one that never does; return both outcomes."""
    # Activities run in Ray workers on this machine: a temporary folder is shared with them.
    data_dir = tempfile.mkdtemp(prefix="durable-monitor-")
    jobs = [
        {"name": "build-42", "ready_after": ready_after, "expiry": 60 * interval},
        {"name": "stuck-job", "ready_after": None, "expiry": expiry},
    ]
    rt = Runtime.start(hub=hub, store=store)
    try:
        started = time.perf_counter()
        ids = [
            rt.client.start_new(
                monitor_job,
                input={**job, "interval": interval, "path": os.path.join(data_dir, job["name"])},
            )
            for job in jobs
        ]
        results: dict[str, Any] = {}
        for iid in ids:
            state = rt.client.wait_for_completion(iid, timeout=timeout)
            output = state.output or {}
            print(f"instance {iid}: {state.runtime_status}, {output}")
            results[output.get("job", iid)] = {"status": str(state.runtime_status), **output}
        print(f"elapsed: {time.perf_counter() - started:.2f} s (checks every {interval} s)")
        return results
    finally:
        rt.shutdown()
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
