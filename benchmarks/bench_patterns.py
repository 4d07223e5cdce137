"""Benchmarks of the orchestration patterns (external events, timers, sub-orchestrations).

Run: ``python benchmarks/bench_patterns.py [--quick] [--repeats 3]``. Prints medians over
repeats; the plain-Ray baseline for events is a Ray actor receiving the same number of calls.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from datetime import datetime, timezone

import ray
from common import add_common_options, local_ray, median_of, say, start_hub, store_dir

from runtime import Runtime, activity, orchestrator

FULL = {"events": 1000, "timers": 1000, "children": 100}
QUICK = {"events": 100, "timers": 50, "children": 10}


@activity
def inc(x: int) -> int:
    """A trivial activity."""
    return x + 1


@orchestrator
def collect(ctx, n):
    """Wait for n external events, in order."""
    total = 0
    for _ in range(n):
        total += yield ctx.wait_for_external_event("item")
    return total


@orchestrator
def sleep_until(ctx, fire_at_epoch):
    """Wait on one durable timer, then report how late it fired (seconds)."""
    due = datetime.fromtimestamp(fire_at_epoch, tz=timezone.utc)
    yield ctx.create_timer(due)
    return (ctx.current_utc_datetime - due).total_seconds()


@orchestrator
def child(ctx, i):
    """A child calling one activity."""
    return (yield ctx.call_activity(inc, i))


@orchestrator
def parent(ctx, n):
    """Fan out to n children."""
    return sum((yield ctx.task_all([ctx.call_sub_orchestrator(child, i) for i in range(n)])))


@ray.remote(num_cpus=0)
class Sink:
    """Plain Ray baseline: an actor receiving events."""

    def __init__(self) -> None:
        self.total = 0

    def add(self, x: int) -> None:
        """Receive one event."""
        self.total += x

    def get(self) -> int:
        """The sum received."""
        return self.total


def events(rt: Runtime, n: int) -> tuple[float, float, float]:
    """(plain Ray calls/s, durable events/s one by one, pipelined) for n events to one
    waiting instance, start of sending to the instance's completion."""
    sink = Sink.remote()
    ray.get(sink.get.remote())
    start = time.perf_counter()
    for i in range(n):
        sink.add.remote(i)
    ray.get(sink.get.remote())
    plain = n / (time.perf_counter() - start)
    rates = []
    for wait in (True, False):
        iid = rt.client.start_new(collect, input=n)
        start = time.perf_counter()
        sent = [rt.client.raise_event(iid, "item", i, wait=wait) for i in range(n)]
        state = rt.client.wait_for_completion(iid, timeout=600)
        assert state.output == sum(range(n)), state
        assert all(f is None or f.result() is None for f in sent)
        rates.append(n / (time.perf_counter() - start))
    return plain, rates[0], rates[1]


def timers(rt: Runtime, n: int) -> float:
    """Worst lateness (s) of n timers due at the same moment, measured by the clock."""
    due = time.time() + 5.0 + n / 200
    ids = [rt.client.start_new(sleep_until, input=due) for _ in range(n)]
    late = [rt.client.wait_for_completion(i, timeout=600).output for i in ids]
    return max(late)


def children(rt: Runtime, n: int) -> float:
    """Seconds for a parent with n sub-orchestrations."""
    start = time.perf_counter()
    iid = rt.client.start_new(parent, input=n)
    assert rt.client.wait_for_completion(iid, timeout=600).output == sum(range(1, n + 1))
    return time.perf_counter() - start


def median(fn: Callable[[], float], repeats: int) -> float:
    """Median of repeated measurements."""
    return median_of([fn() for _ in range(repeats)])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; --quick shrinks the sizes not given."""
    parser = argparse.ArgumentParser(description=__doc__)
    add_common_options(parser, repeats_help="repeats per case (median)")
    parser.add_argument("--events", type=int, default=None, help="default 1000, quick 100")
    parser.add_argument("--timers", type=int, default=None, help="default 1000, quick 50")
    parser.add_argument("--children", type=int, default=None, help="default 100, quick 10")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    for name, value in sizes.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


def main(argv: list[str] | None = None) -> None:
    """Run every case and print a table."""
    args = parse_args(argv)
    with local_ray(), store_dir("bench-patterns-") as tmp:
        rt = start_hub("bench-patterns", tmp, args)
        try:
            children(rt, 4)  # warm-up: worker processes and code caches
            ev = [events(rt, args.events) for _ in range(args.repeats)]
            plain_ev = median_of([p for p, _, _ in ev])
            one_by_one = median_of([d for _, d, _ in ev])
            pipelined = median_of([d for _, _, d in ev])
            late = median(lambda: timers(rt, args.timers), args.repeats)
            kids = median(lambda: children(rt, args.children), args.repeats)
        finally:
            rt.shutdown()
    quick = ", QUICK sizes (goals are for the full sizes)" if args.quick else ""
    say(
        f"\nmedians of {args.repeats} runs, pooled placement, {args.pool_size} hosts, "
        f"{args.durability}{quick}"
    )
    say(
        f"{args.events} external events to one instance, raise_event(wait=False): "
        f"{pipelined:,.0f} events/s (plain Ray actor calls {plain_ev:,.0f}/s, ratio "
        f"{pipelined / plain_ev:.2f}); goal >= 1,000/s"
    )
    say(f"  the same, each raise_event waited for: {one_by_one:,.0f} events/s")
    say(f"{args.timers} timers due at once: latest fired {late:.2f} s after due; goal <= 2 s")
    say(f"{args.children} sub-orchestrations: {kids:.2f} s; goal < 5 s")


if __name__ == "__main__":
    main()
