"""Benchmarks of ray-durable entities against plain Ray actors, in one Ray session.

Run: ``python benchmarks/bench_entities.py [--quick] [--repeats 3] [--only a,b,c]``.

Cases (see benchmarks/README.md):

- a: one Counter entity, ``add`` signals from one driver, every operation checkpointed
  (operations/s), sent one after the other and pipelined, with the entity type placed
  "pooled" and "dedicated"; against a plain Ray actor's ``add`` called the same two ways;
- b: 100,000 distinct small pooled entities, one pipelined signal each (operations/s),
  and the total resident memory of the pool hosts after; against as many plain actors,
  each holding a dict;
- c: cold activation of a dedicated entity from its checkpoint (its actor had been
  retired after passivation): the first ``call_entity`` (median and p90 ms); against
  creating a plain actor and getting the answer of its first call.

Each figure is the median over ``--repeats`` repeats; plain Ray is measured in the same
repeat, right before the durable run, so both see the same machine load. Entity classes
are defined here, in ``__main__``, so they travel to the hub by value (cloudpickle), like
the orchestrators of bench_orchestrations.py.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, wait
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

from entities import EntityContext, EntityId, entity
from runtime import Runtime
from runtime.actors.routing import NAMESPACE, entity_host, pool_host, pool_index

CASES = ("a", "b", "c")
PLACEMENTS = ("pooled", "dedicated")
TIMEOUT = 600.0

# -- durable entities (module level: pickled by value, as this file runs as __main__) --


class _CounterState:
    """The state of the Counter entities: an int that ``add`` increases."""

    def __init__(self) -> None:
        self.value = 0

    def add(self, amount: int) -> None:
        """Add ``amount``."""
        self.value += amount

    def get(self) -> int:
        """The current value."""
        return self.value


@entity(name="PooledCounter", placement="pooled")
class PooledCounter(_CounterState):
    """Case a, on a pool host."""


@entity(name="DedicatedCounter", placement="dedicated")
class DedicatedCounter(_CounterState):
    """Case a, on an actor of its own."""


@entity(name="SleepyCounter", placement="dedicated", passivate_after=0.5)
class SleepyCounter(_CounterState):
    """Case c: its actor is retired half a second after its last operation."""


@entity(name="Tally", placement="pooled")
def tally(ctx: EntityContext) -> None:
    """Case b: a small entity whose state is a bare int."""
    if ctx.operation_name == "add":
        ctx.set_state(ctx.get_state(int) + ctx.get_input())
    elif ctx.operation_name == "get":
        ctx.set_result(ctx.get_state(int))
    else:
        raise ValueError(f"Tally has no operation {ctx.operation_name!r}")


ENTITIES = [PooledCounter, DedicatedCounter, SleepyCounter]

# -- plain Ray baselines ---------------------------------------------------------------


@ray.remote(num_cpus=0)
class PlainCounter:
    """A plain Ray actor with the Counter's operations (num_cpus=0, as entity hosts)."""

    def __init__(self) -> None:
        self.value = 0

    def add(self, amount: int) -> None:
        """Add ``amount``."""
        self.value += amount

    def get(self) -> int:
        """The current value."""
        return self.value


@ray.remote(num_cpus=0)
class PlainTallies:
    """Plain Ray counterpart of a pool host: a dict of ints, one per key."""

    def __init__(self) -> None:
        self.values: dict[str, int] = {}

    def add(self, key: str, amount: int) -> None:
        """Add ``amount`` to ``key``'s value."""
        self.values[key] = self.values.get(key, 0) + amount

    def stats(self) -> tuple[int, int]:
        """(number of keys, sum of values)."""
        return len(self.values), sum(self.values.values())

    def pid(self) -> int:
        """The actor's process id."""
        return os.getpid()


# -- sizes and results -----------------------------------------------------------------


@dataclass(frozen=True)
class Sizes:
    """How big each case is."""

    sync_ops: int
    pipelined_ops: int
    entities: int
    cold: int


FULL = Sizes(sync_ops=2_000, pipelined_ops=20_000, entities=100_000, cold=20)
QUICK = Sizes(sync_ops=200, pipelined_ops=2_000, entities=10_000, cold=5)


def p90(samples: list[float]) -> float:
    """The 90th percentile (inclusive method; the value itself for one sample)."""
    if len(samples) < 2:
        return samples[0]
    return statistics.quantiles(samples, n=10, method="inclusive")[8]


# -- measurement helpers ---------------------------------------------------------------


def vm_rss_kib(pid: int) -> int:
    """The resident set (VmRSS, KiB) of a local process."""
    kib = proc_status_kib(pid, "VmRSS")
    if kib is None:
        raise RuntimeError(f"no VmRSS for process {pid}")
    return kib


def pipeline(
    submit: Callable[[int], Any], n: int, window: int, check: Callable[[list[Any]], None]
) -> float:
    """Seconds to submit n calls keeping at most ``window`` in flight, until all answered.

    When the window is full, ``ray.wait`` drains a quarter of it (one ray.wait per call
    would cost more than the calls); ``check`` sees every answer.
    """
    chunk = max(1, window // 4)
    inflight: list[Any] = []
    start = time.perf_counter()
    for i in range(n):
        inflight.append(submit(i))
        if len(inflight) >= window:
            done, inflight = ray.wait(inflight, num_returns=chunk)
            check(ray.get(done))
    check(ray.get(inflight))
    return time.perf_counter() - start


def pipeline_futures(submit: Callable[[int], Future], n: int, window: int) -> float:
    """Like ``pipeline`` for the client's pipelined signals (futures; a failure raises)."""
    chunk = max(1, window // 4)
    inflight: set[Future] = set()
    start = time.perf_counter()
    for i in range(n):
        inflight.add(submit(i))
        if len(inflight) >= window:
            while len(inflight) > window - chunk:
                done, inflight = wait(inflight, return_when=FIRST_COMPLETED)
                for future in done:
                    future.result()
    for future in inflight:
        future.result(timeout=TIMEOUT)
    return time.perf_counter() - start


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    """Poll ``predicate`` every 50 ms; TimeoutError naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout} s")
        time.sleep(0.05)


# -- case a: one entity, sync and pipelined signals ------------------------------------


def verified(name: str, signals: int, before: int, after: int) -> str:
    """The correctness line of one run: the counter grew by exactly the signals sent."""
    if after - before != signals:
        raise RuntimeError(
            f"{name}: counter went from {before:,} to {after:,} after {signals:,} signals"
        )
    return f"counter +{after - before:,} = {signals:,} signals: ok"


def plain_sync(actor: Any, n: int) -> tuple[float, str]:
    """(ops/s, check) of n plain actor calls, each awaited with ray.get."""
    before = ray.get(actor.get.remote())

    def run() -> None:
        for _ in range(n):
            ray.get(actor.add.remote(1))

    rate = n / timed(run)
    return rate, verified("plain", n, before, ray.get(actor.get.remote()))


def plain_pipelined(actor: Any, n: int, window: int) -> tuple[float, str]:
    """(ops/s, check) of n plain actor calls with up to ``window`` in flight."""
    before = ray.get(actor.get.remote())
    rate = n / pipeline(lambda _: actor.add.remote(1), n, window, lambda _: None)
    return rate, verified("plain", n, before, ray.get(actor.get.remote()))


def durable_sync(rt: Runtime, eid: str, n: int) -> tuple[float, str]:
    """(ops/s, check) of n ``signal_entity`` calls, each returning once committed."""
    client = rt.client
    before = client.call_entity(eid, "get", timeout=TIMEOUT)

    def run() -> None:
        for _ in range(n):
            client.signal_entity(eid, "add", 1)

    rate = n / timed(run)
    return rate, verified(eid, n, before, client.call_entity(eid, "get", timeout=TIMEOUT))


def durable_pipelined(rt: Runtime, eid: str, n: int, window: int) -> tuple[float, str]:
    """(ops/s, check) of n ``signal_entity(wait=False)`` with up to ``window`` in flight."""
    client = rt.client
    before = client.call_entity(eid, "get", timeout=TIMEOUT)
    elapsed = pipeline_futures(lambda _: client.signal_entity(eid, "add", 1, wait=False), n, window)
    return n / elapsed, verified(eid, n, before, client.call_entity(eid, "get", timeout=TIMEOUT))


def at_least_2000(row: Row) -> bool:
    """Case a's goal: at least 2,000 operations/s."""
    return row.durable is not None and row.durable >= 2_000


def case_a(rt: Runtime, args: argparse.Namespace, sizes: Sizes) -> list[Row]:
    """One Counter: sync and pipelined signals, pooled and dedicated."""
    counters = {"pooled": "PooledCounter@a", "dedicated": "DedicatedCounter@a"}
    plain = PlainCounter.remote()
    ray.get(plain.get.remote())  # its process is up before anything is timed
    for eid in counters.values():
        rt.client.call_entity(eid, "get", timeout=TIMEOUT)  # activates (and creates) it
    sync_rows = {
        p: Row(f"a: {sizes.sync_ops:,} sync signals, 1 entity", p, "/s") for p in PLACEMENTS
    }
    pipe_rows = {
        p: Row(
            f"a: {sizes.pipelined_ops:,} pipelined signals ({args.window} in flight), 1 entity",
            p,
            "/s",
            goal=at_least_2000,
            goal_text=">= 2,000/s",
        )
        for p in PLACEMENTS
    }
    samples: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for rep in range(args.repeats):
        for placement, eid in counters.items():
            p_rate, p_check = plain_sync(plain, sizes.sync_ops)
            d_rate, d_check = durable_sync(rt, eid, sizes.sync_ops)
            samples.setdefault(("sync", placement), []).append((p_rate, d_rate))
            say(
                f"a[{rep}] sync {placement}: plain {p_rate:,.0f}/s ({p_check}), "
                f"durable {d_rate:,.0f}/s ({d_check})"
            )
            p_rate, p_check = plain_pipelined(plain, sizes.pipelined_ops, args.window)
            d_rate, d_check = durable_pipelined(rt, eid, sizes.pipelined_ops, args.window)
            samples.setdefault(("pipelined", placement), []).append((p_rate, d_rate))
            say(
                f"a[{rep}] pipelined {placement}: plain {p_rate:,.0f}/s ({p_check}), "
                f"durable {d_rate:,.0f}/s ({d_check})"
            )
    ray.kill(plain)
    rows = []
    for placement in PLACEMENTS:
        for mode, row in (("sync", sync_rows[placement]), ("pipelined", pipe_rows[placement])):
            pairs = samples[(mode, placement)]
            row.plain = median_of([p for p, _ in pairs])
            row.durable = median_of([d for _, d in pairs])
            row.notes.append(
                f"final counters verified every repeat ({len(pairs)} of {len(pairs)} ok)"
            )
            rows.append(row)
    return rows


# -- case b: many small pooled entities ------------------------------------------------


def pool_pids(hub: str, pool_size: int) -> list[int]:
    """Process ids of a hub's pool hosts."""
    handles = [ray.get_actor(pool_host(hub, i), namespace=NAMESPACE) for i in range(pool_size)]
    return ray.get([h.pid.remote() for h in handles])


def warm_keys(prefix: str, pool_size: int) -> list[str]:
    """One key per pool index (by the routing hash), so every host gets a first call."""
    keys: dict[int, str] = {}
    i = 0
    while len(keys) < pool_size:
        keys.setdefault(pool_index(f"Tally@{prefix}{i}", pool_size), f"{prefix}{i}")
        i += 1
    return list(keys.values())


def plain_many(n: int, pool_size: int, window: int, rep: int) -> tuple[float, int]:
    """(ops/s, total RSS KiB after) of n pipelined calls over pool_size dict actors."""
    actors = [PlainTallies.remote() for _ in range(pool_size)]
    ray.get([a.add.remote("warm", 0) for a in actors])
    keys = [f"r{rep}-{i}" for i in range(n)]

    def submit(i: int) -> Any:
        # Routed by the same hash as pooled entities, inside the timing as theirs is.
        return actors[pool_index(f"Tally@{keys[i]}", pool_size)].add.remote(keys[i], 1)

    elapsed = pipeline(submit, n, window, lambda _: None)
    stats = ray.get([a.stats.remote() for a in actors])
    if sum(k for k, _ in stats) != n + pool_size or sum(v for _, v in stats) != n:
        raise RuntimeError(f"plain actors hold {stats} after {n:,} calls")
    rss = sum(vm_rss_kib(pid) for pid in ray.get([a.pid.remote() for a in actors]))
    for actor in actors:
        ray.kill(actor)
    return n / elapsed, rss


def durable_many(
    args: argparse.Namespace, n: int, tmp: str, rep: int
) -> tuple[float, int, int, str]:
    """(ops/s, RSS KiB before, RSS KiB after, check) of one signal to each of n entities.

    Each repeat has a hub of its own, so the memory figure is that of exactly n entities.
    """
    hub = f"bench-entities-b{rep}"
    rt = start_hub(hub, tmp, args, register=[tally])
    try:
        client = rt.client
        for key in warm_keys("warm-", args.pool_size):
            client.call_entity(f"Tally@{key}", "get", timeout=TIMEOUT)
        pids = pool_pids(hub, args.pool_size)
        before = sum(vm_rss_kib(pid) for pid in pids)
        eids = [EntityId("Tally", f"r{rep}-{i}") for i in range(n)]
        elapsed = pipeline_futures(
            lambda i: client.signal_entity(eids[i], "add", 1, wait=False), n, args.window
        )
        after = sum(vm_rss_kib(pid) for pid in pids)
        handles = [ray.get_actor(pool_host(hub, i), namespace=NAMESPACE) for i in range(len(pids))]
        live = sum(len(x) for x in ray.get([h.live_entities.remote() for h in handles]))
        expected_live = n + args.pool_size  # plus the warm-up entities
        sample = [eids[0], eids[n // 2], eids[-1]]
        values = [client.call_entity(e, "get", timeout=TIMEOUT) for e in sample]
        if live != expected_live or values != [1, 1, 1]:
            raise RuntimeError(
                f"{live:,} entities in memory (expected {expected_live:,}); "
                f"sampled values {values} (expected [1, 1, 1])"
            )
        check = f"{n:,} acknowledged, {live - args.pool_size:,} live, sampled values 1: ok"
    finally:
        rt.shutdown()
    return n / elapsed, before, after, check


def case_b(args: argparse.Namespace, sizes: Sizes, tmp: str) -> list[Row]:
    """n distinct pooled entities, one pipelined signal each; hosts' memory after."""
    n, pool = sizes.entities, args.pool_size
    label = f"pooled/{pool}"
    rate = Row(f"b: {n:,} entities, 1 pipelined signal each", label, "/s")
    memory = Row(f"b: host RSS after {n:,} entities", label, "MiB")
    if n == 100_000:
        rate.goal = lambda r: r.durable is not None and r.durable >= 5_000
        rate.goal_text = ">= 5,000/s"
        memory.goal = lambda r: r.durable is not None and r.durable < 2_048
        memory.goal_text = "< 2 GiB in all"
    rates, rss, grown = [], [], []
    for rep in range(args.repeats):
        p_rate, p_rss = plain_many(n, pool, args.window, rep)
        d_rate, d_before, d_after, check = durable_many(args, n, tmp, rep)
        rates.append((p_rate, d_rate))
        rss.append((p_rss / 1024, d_after / 1024))
        grown.append(d_after - d_before)
        say(
            f"b[{rep}] {n:,} entities: plain {p_rate:,.0f}/s (RSS {p_rss / 1024:,.0f} MiB), "
            f"durable {d_rate:,.0f}/s (host RSS {d_before / 1024:,.0f} -> "
            f"{d_after / 1024:,.0f} MiB; {check})"
        )
    rate.plain, rate.durable = median_of([p for p, _ in rates]), median_of([d for _, d in rates])
    memory.plain, memory.durable = median_of([p for p, _ in rss]), median_of([d for _, d in rss])
    rate.notes.append(f"{args.window} in flight; plain: {pool} actors each holding a dict")
    memory.notes.append(
        f"sum of VmRSS of the {pool} pool hosts (plain: of the {pool} dict actors); the hosts "
        f"grew by {median_of(grown) / 1024:,.0f} MiB, "
        f"{median_of(grown) * 1024 / n:,.0f} bytes per entity"
    )
    return [rate, memory]


# -- case c: cold activation of a dedicated entity -------------------------------------


def actor_gone(name: str) -> bool:
    """True once no actor of that name exists in the hub's namespace."""
    try:
        ray.get_actor(name, namespace=NAMESPACE)
        return False
    except ValueError:
        return True


def plain_cold(n: int) -> list[float]:
    """Seconds, for each of n plain actors, from creation to the answer of its first call."""
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        actor = PlainCounter.remote()
        ray.get(actor.get.remote())
        samples.append(time.perf_counter() - start)
        ray.kill(actor)
    return samples


def durable_cold(rt: Runtime, n: int, rep: int) -> tuple[list[float], str]:
    """Seconds of the first ``call_entity`` of n dedicated entities whose actors retired."""
    client = rt.client
    eids = [EntityId("SleepyCounter", f"r{rep}-{i}") for i in range(n)]
    futures = [client.signal_entity(e, "add", 1, wait=False) for e in eids]  # all at once
    for future in futures:
        future.result(timeout=TIMEOUT)
    names = [entity_host(rt.config.hub, e) for e in eids]
    start = time.perf_counter()
    for name in names:
        wait_until(lambda name=name: actor_gone(name), f"retirement of {name}")
    retired_after = time.perf_counter() - start
    samples = []
    for eid in eids:
        start = time.perf_counter()
        value = client.call_entity(eid, "get", timeout=TIMEOUT)
        samples.append(time.perf_counter() - start)
        if value != 1:
            raise RuntimeError(f"{eid} came back with {value!r}, not 1")
    return samples, f"all retired {retired_after:.1f} s after creation; values 1: ok"


def case_c(rt: Runtime, args: argparse.Namespace, sizes: Sizes) -> list[Row]:
    """Dedicated entities activated from their checkpoint after their actor retired."""
    n = sizes.cold
    med = Row(f"c: cold activation, median of {n}", "dedicated", "ms")
    tail = Row(f"c: cold activation, p90 of {n}", "dedicated", "ms")
    plain_runs, durable_runs = [], []
    for rep in range(args.repeats):
        plain = plain_cold(n)
        durable, check = durable_cold(rt, n, rep)
        plain_runs.append(plain)
        durable_runs.append(durable)
        say(
            f"c[{rep}] cold activation: plain median {1000 * statistics.median(plain):.0f} ms, "
            f"p90 {1000 * p90(plain):.0f} ms; durable median "
            f"{1000 * statistics.median(durable):.0f} ms, p90 {1000 * p90(durable):.0f} ms "
            f"({check})"
        )
    med.plain = 1000 * median_of([statistics.median(s) for s in plain_runs])
    med.durable = 1000 * median_of([statistics.median(s) for s in durable_runs])
    tail.plain = 1000 * median_of([p90(s) for s in plain_runs])
    tail.durable = 1000 * median_of([p90(s) for s in durable_runs])
    med.notes.append(
        "durable: first call_entity(get) after the entity's actor was retired (passivate_after"
        "=0.5 s): a new actor process, then its checkpoint loaded; plain: PlainCounter.remote()"
        " then ray.get of its first call"
    )
    return [med, tail]


# -- driver ----------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description="ray-durable entities vs plain Ray actors")
    add_common_options(parser, repeats_help="repeats per case (median)")
    common.add_store_option(parser)
    parser.add_argument("--only", default="a,b,c", help="comma-separated cases: a,b,c")
    parser.add_argument(
        "--window", type=int, default=256, help="calls in flight when pipelining (a, b)"
    )
    args = parser.parse_args(argv)
    args.only = set(parse_choices(parser, "--only", args.only, CASES))
    if args.repeats < 1 or args.pool_size < 1 or args.window < 1:
        parser.error("--repeats, --pool-size and --window must be at least 1")
    return args


def run_cases(args: argparse.Namespace, sizes: Sizes, tmp: str, rows: list[Row]) -> None:
    """The selected cases, in order, each adding its rows (kept if a later one fails)."""
    rt = None
    if args.only & {"a", "c"}:
        rt = start_hub("bench-entities", tmp, args, register=ENTITIES)
    try:
        for case in CASES:
            if case not in args.only:
                continue
            say(f"\n== case {case} ==")
            if case == "a":
                rows += case_a(rt, args, sizes)
            elif case == "b":
                rows += case_b(args, sizes, tmp)
            else:
                rows += case_c(rt, args, sizes)
    finally:
        if rt is not None:
            rt.shutdown()


def main(argv: list[str] | None = None) -> int:
    """Run the selected cases and print the table."""
    args = parse_args(argv)
    sizes = QUICK if args.quick else FULL
    say(f"sizes: {sizes}, window {args.window}")
    rows: list[Row] = []
    with local_ray():
        try:
            with store_dir("bench-entities-", args.store, args.durability) as tmp:
                run_cases(args, sizes, tmp, rows)
        finally:
            common.print_table(
                rows,
                args,
                "latency rows: 'x slower' = durable/plain; "
                "throughput and memory rows: durable/plain",
                extra=f", pool_size={args.pool_size}",
                quick="b goals are for the full size",
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
