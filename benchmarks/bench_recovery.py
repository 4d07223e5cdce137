"""How soon a hub recovers: a killed pooled host, a killed supervisor, a dedicated hub.

Run on an otherwise quiet machine (medians of --repeats, each on a fresh hub and SQLite
store, one local Ray of the benchmark's own). Every hub holds --instances live instances
that each commit a step every second on a durable timer (recovery_defs.ticker), so what
is timed is recovery, not queues of activities:

- pooled host: SIGKILL one of the pool's hosts, then time from the kill until the first
  and the last of its instances commit a new step (their history grows);
- supervisor (pooled and dedicated): SIGKILL it, then time until a client's status read
  answers again;
- dedicated re-activation: stop Ray, start it again on the same store, and time from
  ``Runtime.start`` until every instance has committed a new step;
- keeper (dedicated): SIGKILL the node's keeper, which takes every dedicated host with
  it, then time until the first and the last instance commit a new step.

    python benchmarks/bench_recovery.py --repeats 3 --instances 60

The goals of issue 12 (quiet 2-core machine): pooled host 2 s median, 5 s max with 60
live instances; supervisor 3 s; dedicated hub 60 instances in 10 s.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.join(os.path.dirname(HERE), "tests")
sys.path.insert(0, TESTS)
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (HERE, TESTS, os.path.dirname(HERE), os.environ.get("PYTHONPATH", "")) if p
)

import ray  # noqa: E402
import recovery_defs as rd  # noqa: E402
from common import RAY_ARGS  # noqa: E402
from helpers import history_lengths, wait_until  # noqa: E402

from runtime import Runtime  # noqa: E402
from runtime.actors.ray_seam import find_actor, keeper_name  # noqa: E402
from runtime.actors.routing import pool_index  # noqa: E402

POOL = 4


def _hub(store: str, placement: str) -> tuple[Runtime, list[str]]:
    hub = f"r-{uuid.uuid4().hex[:8]}"
    rt = Runtime.start(
        hub=hub, store=store, placement=placement, pool_size=POOL, register=[rd.ticker]
    )
    return rt, [rt.client.start_new(rd.ticker, input=10_000) for _ in range(ARGS.instances)]


def _progress(store: str, iids: list[str], killed_at: float) -> tuple[float, float]:
    """(first, last) seconds from ``killed_at`` until each of ``iids`` committed a step."""
    before = history_lengths(store, iids)
    moved: set[str] = set()
    first = None
    while len(moved) < len(iids):
        now = history_lengths(store, iids)
        moved |= {i for i in iids if now.get(i, 0) > before[i]}
        if moved and first is None:
            first = time.monotonic() - killed_at
        if time.monotonic() - killed_at > 300:
            raise TimeoutError(f"{len(iids) - len(moved)} instances made no progress in 300 s")
        time.sleep(0.02)
    return first or 0.0, time.monotonic() - killed_at


def pooled_host(store: str) -> tuple[float, float]:
    """Kill one pool host; (first, last) progress of its instances."""
    rt, iids = _hub(store, "pooled")
    try:
        wait_until(lambda: all(n >= 6 for n in history_lengths(store, iids).values()), 120)
        victim = [i for i in iids if pool_index(i, POOL) == 0]
        pid = ray.get(rt.client.host_of(victim[0]).pid.remote())
        killed_at = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        return _progress(store, victim, killed_at)
    finally:
        rt.shutdown()


def supervisor(store: str, placement: str) -> float:
    """Kill the supervisor; seconds until a status read answers."""
    rt, iids = _hub(store, placement)
    try:
        wait_until(lambda: all(n >= 4 for n in history_lengths(store, iids).values()), 240)
        killed_at = time.monotonic()
        os.kill(rt.client.supervisor_pid(), signal.SIGKILL)
        rt.client.get_status(iids[0])
        return time.monotonic() - killed_at
    finally:
        rt.shutdown()


def dedicated_restart(store: str) -> tuple[float, float]:
    """Stop Ray under a dedicated hub, start again; (first, last) re-activated progress."""
    rt, iids = _hub(store, "dedicated")
    hub = rt.config.hub
    wait_until(lambda: all(n >= 4 for n in history_lengths(store, iids).values()), 240)
    ray.shutdown()
    ray.init(**RAY_ARGS, log_to_driver=False)
    started = time.monotonic()
    rt = Runtime.start(hub=hub, store=store, placement="dedicated", register=[rd.ticker])
    try:
        return _progress(store, iids, started)
    finally:
        rt.shutdown()


def keeper(store: str) -> tuple[float, float]:
    """Kill a dedicated hub's keeper (its hosts die with it); (first, last) progress."""
    rt, iids = _hub(store, "dedicated")
    try:
        wait_until(lambda: all(n >= 4 for n in history_lengths(store, iids).values()), 240)
        node = ray.get_runtime_context().get_node_id()
        pid = ray.get(find_actor(keeper_name(rt.config.hub, node)).pid.remote())
        killed_at = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        return _progress(store, iids, killed_at)
    finally:
        rt.shutdown()


def _line(name: str, samples: list[float]) -> str:
    return f"{name:<44} median {statistics.median(samples):6.2f} s   max {max(samples):6.2f} s"


def main() -> None:
    """Run each scenario --repeats times and print medians and maxima."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--instances", type=int, default=60)
    parser.add_argument(
        "--only",
        choices=("pooled", "supervisor", "dedicated", "keeper"),
        action="append",
        default=[],
    )
    global ARGS
    ARGS = parser.parse_args()
    only = set(ARGS.only) or {"pooled", "supervisor", "dedicated", "keeper"}
    results: dict[str, list[float]] = {}
    ray.init(**RAY_ARGS, log_to_driver=False)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-recovery-") as tmp:
            for repeat in range(ARGS.repeats):

                def store() -> str:
                    return f"sqlite:///{tmp}/{uuid.uuid4().hex[:8]}.db"

                if "pooled" in only:
                    first, last = pooled_host(store())
                    results.setdefault("pooled host killed: first progress", []).append(first)
                    results.setdefault("pooled host killed: every instance", []).append(last)
                if "supervisor" in only:
                    for placement in ("pooled", "dedicated"):
                        took = supervisor(store(), placement)
                        results.setdefault(f"supervisor killed ({placement}): answers", []).append(
                            took
                        )
                if "dedicated" in only:
                    first, last = dedicated_restart(store())
                    results.setdefault("dedicated hub restarted: first instance", []).append(first)
                    results.setdefault("dedicated hub restarted: every instance", []).append(last)
                if "keeper" in only:
                    first, last = keeper(store())
                    results.setdefault("keeper killed: first instance", []).append(first)
                    results.setdefault("keeper killed: every instance", []).append(last)
                print(f"repeat {repeat + 1} done", flush=True)
    finally:
        ray.shutdown()
    print(f"{ARGS.instances} live instances, pool of {POOL}, {ARGS.repeats} repeats")
    for name, samples in results.items():
        print(_line(name, samples))


ARGS = argparse.Namespace(instances=60)

if __name__ == "__main__":
    main()
