"""Benchmarks of ray-durable orchestrations against plain Ray, in one Ray session.

Run: ``python benchmarks/bench_orchestrations.py [--quick] [--repeats 3] [--only a,b,c]``;
``--only b --placements pooled --n 100000 --repeats 1`` measures one large fan-out.

Cases (see benchmarks/README.md):

- a: a 4-step chain (median latency) and one orchestration of sequential activities
  (activities/s), against the same plain Ray tasks called one after the other;
- b: fan-out/fan-in of trivial activities (activities/s) against ``ray.get`` of as many
  plain Ray tasks, with the peak RSS of the orchestration's host process and the bytes of
  its history (rows and out-of-line payloads) in the store;
- c: "HelloCities5": many orchestrations of 5 sequential activities started at once
  (orchestrations/s) against as many concurrent chains of 5 plain Ray tasks;
- i: case a with inline activities (run in the host's process, no Ray task), against the
  same plain Ray tasks.

Every durable case runs on a pooled hub and on a dedicated hub (HelloCities5: 1,000 on the
pooled hub, a burst of 200 on the dedicated one, each instance a host process of its own).
Each figure is the median over ``--repeats`` repeats; plain Ray is measured in the same
repeat, right before the durable run, so both see the same machine load.
"""

from __future__ import annotations

import argparse
import dataclasses
import sqlite3
import statistics
import sys
import threading
import time
from collections.abc import Generator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import common
import ray
from common import (
    Row,
    add_common_options,
    local_ray,
    median_of,
    parse_choices,
    proc_status_kib,
    say,
    start_hub,
    store_dir,
    timed,
)

from runtime import OrchestrationContext, OrchestrationStatus, Runtime, activity, orchestrator

CITIES = ("Tokyo", "Seattle", "London", "Cairo", "Lima")
GREETINGS = [f"Hello {city}!" for city in CITIES]
TIMEOUT = 1800.0
PLACEMENTS = ("pooled", "dedicated")
CASES = ("a", "b", "c", "i")

# -- plain Ray baselines ---------------------------------------------------------------


@ray.remote
def plain_inc(x: int) -> int:
    """A trivial plain Ray task."""
    return x + 1


@ray.remote
def plain_hello(city: str, greetings: list[str]) -> list[str]:
    """One HelloCities step as a plain Ray task: greet, after the previous step's result."""
    return [*greetings, f"Hello {city}!"]


# -- durable activities and orchestrators (module level: pickled by value) -------------


@activity
def inc(x: int) -> int:
    """A trivial activity."""
    return x + 1


@activity
def say_hello(city: str) -> str:
    """The HelloCities activity."""
    return f"Hello {city}!"


@orchestrator
def chain4(ctx: OrchestrationContext, x: int) -> Generator[Any, Any, int]:
    """Four activities in sequence."""
    for _ in range(4):
        x = yield ctx.call_activity(inc, x)
    return x


@orchestrator
def sequence(ctx: OrchestrationContext, n: int) -> Generator[Any, Any, int]:
    """n activities in sequence."""
    x = 0
    for _ in range(n):
        x = yield ctx.call_activity(inc, x)
    return x


@orchestrator
def chain4_inline(ctx: OrchestrationContext, x: int) -> Generator[Any, Any, int]:
    """Four inline activities in sequence."""
    for _ in range(4):
        x = yield ctx.call_activity(inc, x, inline=True)
    return x


@orchestrator
def sequence_inline(ctx: OrchestrationContext, n: int) -> Generator[Any, Any, int]:
    """n inline activities in sequence."""
    x = 0
    for _ in range(n):
        x = yield ctx.call_activity(inc, x, inline=True)
    return x


@orchestrator
def fan_out(ctx: OrchestrationContext, n: int) -> Generator[Any, Any, int]:
    """n activities in parallel, then their sum."""
    parts = yield ctx.task_all([ctx.call_activity(inc, i) for i in range(n)])
    return sum(parts)


@orchestrator
def hello_cities5(ctx: OrchestrationContext, cities: list[str]) -> Generator[Any, Any, list]:
    """HelloCities: one greeting activity per city, in sequence."""
    greetings = []
    for city in cities:
        greetings.append((yield ctx.call_activity(say_hello, city)))
    return greetings


# -- sizes and results -----------------------------------------------------------------


@dataclass(frozen=True)
class Sizes:
    """How big each case is."""

    chain_runs: int
    chain_warmup: int
    sequential: int
    fan_out: tuple[int, ...]
    cities: int
    #: HelloCities5 on the dedicated hub: a burst of starts, each a host of its own.
    dedicated_cities: int


FULL = Sizes(
    chain_runs=50,
    chain_warmup=5,
    sequential=200,
    fan_out=(1_000, 10_000),
    cities=1_000,
    dedicated_cities=200,
)
QUICK = Sizes(
    chain_runs=10,
    chain_warmup=2,
    sequential=20,
    fan_out=(100, 1_000),
    cities=50,
    dedicated_cities=20,
)


# -- measurement helpers ---------------------------------------------------------------


class PeakSampler:
    """Samples a process's VmHWM in a thread (a dedicated host exits when it is done)."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self.pid = pid
        self.interval = interval
        self.peak_kib: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        value = proc_status_kib(self.pid, "VmHWM")
        if value is not None:
            self.peak_kib = max(self.peak_kib or 0, value)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def stop(self) -> int | None:
        """Stop sampling (one last sample first); the peak seen, in KiB."""
        self._stop.set()
        self._thread.join()
        self._sample()
        return self.peak_kib


def run_durable(rt: Runtime, orch: Any, value: Any, expect: Any) -> None:
    """Start one orchestration, wait for it and check its output."""
    iid = rt.client.start_new(orch, value)
    check(rt.client.wait_for_completion(iid, timeout=TIMEOUT), expect)


def check(state: Any, expect: Any) -> None:
    """Fail loudly when an orchestration did not produce the expected output."""
    if state.runtime_status != OrchestrationStatus.COMPLETED or state.output != expect:
        raise RuntimeError(
            f"orchestration {state.instance_id} ended {state.runtime_status} with output "
            f"{str(state.output)[:200]!r} (expected {str(expect)[:200]!r}); "
            f"failure: {state.failure_details}"
        )


def warm_up(rt: Runtime, hosts: int) -> None:
    """Untimed runs: worker processes, code caches and (pooled) every pool host."""
    ray.get([plain_inc.remote(i) for i in range(8)])
    ray.get(plain_hello.remote("Oslo", []))
    # Pooled: several instances at once, so every pool host (placed by hash) gets one.
    ids = [rt.client.start_new(chain4, i) for i in range(4 * hosts)]
    for i, iid in enumerate(ids):
        check(rt.client.wait_for_completion(iid, timeout=TIMEOUT), i + 4)
    run_durable(rt, sequence, 3, 3)
    run_durable(rt, fan_out, 20, sum(range(1, 21)))
    run_durable(rt, hello_cities5, list(CITIES), GREETINGS)


# -- case a: chain latency and sequential throughput -----------------------------------


def plain_chain4(x: int) -> int:
    """Four plain Ray tasks called one after the other."""
    for _ in range(4):
        x = ray.get(plain_inc.remote(x))
    return x


def chain_latency(rt: Runtime, runs: int, warmup: int, chain: Any = chain4) -> tuple[float, float]:
    """(plain, durable) median latency in ms of a 4-step chain over ``runs`` runs."""
    for i in range(warmup):
        plain_chain4(i)
        run_durable(rt, chain, i, i + 4)
    plain = [timed(lambda i=i: plain_chain4(i)) for i in range(runs)]
    durable = [timed(lambda i=i: run_durable(rt, chain, i, i + 4)) for i in range(runs)]
    return 1000 * statistics.median(plain), 1000 * statistics.median(durable)


def sequential(rt: Runtime, n: int, orch: Any = sequence) -> tuple[float, float]:
    """(plain, durable) activities/s of n activities called in sequence."""

    def plain_run() -> None:
        x = 0
        for _ in range(n):
            x = ray.get(plain_inc.remote(x))
        assert x == n

    plain = n / timed(plain_run)
    durable = n / timed(lambda: run_durable(rt, orch, n, n))
    return plain, durable


# -- case b: fan-out/fan-in ------------------------------------------------------------


def history_bytes(rt: Runtime, iid: str) -> tuple[int, int]:
    """(history rows, their bytes with the out-of-line payloads) of an instance."""
    assert rt.config.store is not None
    db = sqlite3.connect(rt.config.store[len("sqlite:///") :])
    try:
        key = (rt.config.hub, iid)
        rows, size = db.execute(
            "SELECT count(*), coalesce(sum(length(event)), 0) FROM history "
            "WHERE hub=? AND instance_id=?",
            key,
        ).fetchone()
        (outlined,) = db.execute(
            "SELECT coalesce(sum(length(data)), 0) FROM payloads WHERE hub=? AND instance_id=?",
            key,
        ).fetchone()
    finally:
        db.close()
    return rows, size + outlined


def fan_out_in(
    rt: Runtime, n: int, track_rss: bool, dedicated: bool
) -> tuple[float, float, int | None, tuple[int, int]]:
    """(plain, durable) activities/s of n parallel trivial activities; host peak RSS KiB;
    (history rows, history bytes)."""

    def plain_run() -> None:
        assert sum(ray.get([plain_inc.remote(i) for i in range(n)])) == sum(range(1, n + 1))

    plain = n / timed(plain_run)
    start = time.perf_counter()
    iid = rt.client.start_new(fan_out, n)
    sampler = None
    if track_rss:
        # Asked right after the start: a dedicated host is killed once its instance ends
        # (host_of answers None for it then).
        host = rt.client.host_of(iid)
        sampler = PeakSampler(ray.get(host.pid.remote())) if host is not None else None
        if sampler and dedicated and rt.client.get_status(iid).is_terminal:
            sampler.stop()
            sampler = None  # finished before the pid was read: it may not be its host
    state = rt.client.wait_for_completion(iid, timeout=TIMEOUT)
    durable = n / (time.perf_counter() - start)
    peak = sampler.stop() if sampler else None
    check(state, sum(range(1, n + 1)))
    return plain, durable, peak, history_bytes(rt, iid)


# -- case c: HelloCities5 --------------------------------------------------------------


def plain_cities(n: int) -> float:
    """Plain Ray: n chains of 5 tasks as nested ObjectRefs, all submitted at once."""
    start = time.perf_counter()
    ends = []
    for _ in range(n):
        ref: Any = []
        for city in CITIES:
            ref = plain_hello.remote(city, ref)
        ends.append(ref)
    results = ray.get(ends)
    elapsed = time.perf_counter() - start
    assert all(r == GREETINGS for r in results)
    return n / elapsed


def durable_cities(rt: Runtime, n: int, threads: int) -> tuple[float, float]:
    """(orchestrations/s, start_new calls/s): n HelloCities5 started at once."""
    client = rt.client
    cities = list(CITIES)
    with ThreadPoolExecutor(max_workers=threads) as pool:
        start = time.perf_counter()
        ids = list(pool.map(lambda _: client.start_new(hello_cities5, cities), range(n)))
        started = time.perf_counter()
        states = list(pool.map(lambda i: client.wait_for_completion(i, timeout=TIMEOUT), ids))
        elapsed = time.perf_counter() - start
    for state in states:
        check(state, GREETINGS)
    return n / elapsed, n / (started - start)


# -- driver ----------------------------------------------------------------------------


def run_placement(placement: str, args: argparse.Namespace, sizes: Sizes, tmp: str) -> list[Row]:
    """Start one hub, run the selected cases on it, shut it down; the table rows."""
    hub = f"bench-orch-{placement}"
    say(f"\n== {placement} placement (hub {hub!r}) ==")
    rt = start_hub(hub, tmp, args, placement=placement)
    rows: list[Row] = []
    label = f"pooled/{args.pool_size}" if placement == "pooled" else placement
    try:
        hosts = args.pool_size if placement == "pooled" else 1
        say(f"warm-up: {timed(lambda: warm_up(rt, hosts)):.1f} s")
        if "a" in args.only:
            rows += case_a(rt, label, args.repeats, sizes)
        if "i" in args.only:
            rows += case_a(rt, label, args.repeats, sizes, inline=True)
        if "b" in args.only:
            rows += case_b(rt, label, args.repeats, sizes)
        if "c" in args.only:
            n = sizes.dedicated_cities if placement == "dedicated" else sizes.cities
            rows += case_c(rt, label, args.repeats, n, args.threads)
    finally:
        rt.shutdown()
    return rows


def case_a(rt: Runtime, label: str, repeats: int, sizes: Sizes, inline: bool = False) -> list[Row]:
    """4-step chain latency and sequential activities (case i: inline activities)."""
    case, kind = ("i", "inline activities") if inline else ("a", "activities")
    chain, orch = (chain4_inline, sequence_inline) if inline else (chain4, sequence)
    lat = Row(
        f"{case}: 4-step chain latency",
        label,
        "ms",
        goal=(lambda r: r.durable is not None and r.durable <= 3.0)
        if inline
        else (lambda r: r.ratio is not None and r.ratio < 3.0),
        goal_text="<= 3 ms" if inline else "< 3x slower",
    )
    least = 2_000 if inline else 400
    seq = Row(
        f"{case}: {sizes.sequential} sequential {kind}",
        label,
        "/s",
        goal=lambda r: r.durable is not None and r.durable >= least,
        goal_text=f">= {least:,}/s",
    )
    lats, seqs = [], []
    for rep in range(repeats):
        lats.append(chain_latency(rt, sizes.chain_runs, sizes.chain_warmup, chain))
        say(
            f"{case}[{rep}] chain latency: plain {lats[-1][0]:.1f} ms, durable {lats[-1][1]:.1f} ms"
        )
        seqs.append(sequential(rt, sizes.sequential, orch))
        say(f"{case}[{rep}] sequential: plain {seqs[-1][0]:,.0f}/s, durable {seqs[-1][1]:,.0f}/s")
    lat.plain, lat.durable = median_of([p for p, _ in lats]), median_of([d for _, d in lats])
    seq.plain, seq.durable = median_of([p for p, _ in seqs]), median_of([d for _, d in seqs])
    lat.notes.append(f"median of {sizes.chain_runs} runs per repeat")
    if label == "dedicated" and not inline:
        lat.notes.append(
            "each instance runs on the host the last one left (warm_hosts), whose activity "
            "workers its node's keeper shares; see benchmarks/README.md"
        )
    return [lat, seq]


def case_b(rt: Runtime, label: str, repeats: int, sizes: Sizes) -> list[Row]:
    """Fan-out/fan-in at each size; peak host RSS for the largest."""
    rows = []
    for n in sizes.fan_out:
        largest = n == max(sizes.fan_out)
        row = Row(f"b: fan-out/fan-in {n:,}", label, "/s")
        if n == 10_000:
            row.goal = lambda r: r.ratio is not None and r.ratio >= 0.6
            row.goal_text = ">= 0.60x of plain"
        samples, peaks = [], []
        for rep in range(repeats):
            plain, durable, peak, (events, size) = fan_out_in(rt, n, largest, label == "dedicated")
            samples.append((plain, durable))
            if peak is not None:
                peaks.append(peak)
            rss = f", host VmHWM {peak / 1024:,.0f} MiB" if peak is not None else ""
            say(
                f"b[{rep}] fan-out {n:,}: plain {plain:,.0f}/s, durable {durable:,.0f}/s{rss}, "
                f"history {events:,} rows, {size / 1e6:,.1f} MB ({size / n:,.0f} B/activity)"
            )
        row.plain = median_of([p for p, _ in samples])
        row.durable = median_of([d for _, d in samples])
        row.notes.append(f"history {size / 1e6:,.1f} MB ({size / n:,.0f} bytes/activity)")
        if largest:
            if peaks:
                scope = "lifetime peak of the pool host" if label != "dedicated" else "sampled"
                row.notes.append(f"host peak RSS {max(peaks) / 1024:,.0f} MiB ({scope})")
            else:
                row.notes.append("host peak RSS n/a (host gone before it was read)")
        rows.append(row)
    return rows


def case_c(rt: Runtime, label: str, repeats: int, n: int, threads: int) -> list[Row]:
    """HelloCities5: many 5-step orchestrations started at once."""
    row = Row(f"c: HelloCities5 x {n:,}", label, "/s")
    if n == 1_000 and label != "dedicated":
        row.goal = lambda r: r.durable is not None and r.durable >= 150
        row.goal_text = ">= 150/s"
    samples, starts = [], []
    for rep in range(repeats):
        plain = plain_cities(n)
        durable, start_rate = durable_cities(rt, n, threads)
        samples.append((plain, durable))
        starts.append(start_rate)
        say(
            f"c[{rep}] HelloCities5 x {n:,}: plain {plain:,.0f}/s, durable {durable:,.0f}/s "
            f"(start_new {start_rate:,.0f}/s)"
        )
    row.plain = median_of([p for p, _ in samples])
    row.durable = median_of([d for _, d in samples])
    row.notes.append(
        f"plain: nested ObjectRefs f.remote(city, f.remote(...)) submitted at once; "
        f"durable: start_new from {threads} threads ({median_of(starts):,.0f}/s), "
        "then wait_for_completion"
    )
    return [row]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description="ray-durable vs plain Ray benchmarks")
    add_common_options(parser, repeats_help="repeats per case (median)")
    common.add_store_option(parser)
    parser.add_argument("--only", default="a,b,c,i", help="comma-separated cases: a,b,c,i")
    parser.add_argument(
        "--placements", default="pooled,dedicated", help="comma-separated: pooled,dedicated"
    )
    parser.add_argument(
        "--threads", type=int, default=16, help="driver threads calling start_new/wait in c"
    )
    parser.add_argument(
        "--n", type=int, default=None, help="one fan-out size for b (instead of the defaults)"
    )
    args = parser.parse_args(argv)
    args.only = set(parse_choices(parser, "--only", args.only, CASES))
    args.placements = parse_choices(parser, "--placements", args.placements, PLACEMENTS)
    if args.repeats < 1 or args.pool_size < 1 or args.threads < 1 or (args.n or 1) < 1:
        parser.error("--repeats, --pool-size, --threads and --n must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the selected cases on each placement and print the table."""
    args = parse_args(argv)
    sizes = QUICK if args.quick else FULL
    if args.n is not None:
        sizes = dataclasses.replace(sizes, fan_out=(args.n,))
    say(f"sizes: {sizes}")
    rows: list[Row] = []
    with local_ray():
        try:
            with store_dir("bench-orch-", args.store, args.durability) as tmp:
                for placement in args.placements:
                    rows += run_placement(placement, args, sizes, tmp)
        finally:
            common.print_table(
                rows,
                args,
                "latency rows: 'x slower' = durable/plain latency; "
                "throughput rows: durable/plain rate",
                quick="goals are for the full sizes",
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
