"""The peer benchmark's four shapes on DBOS, its default SQLite system database in a temp dir.

Run by ``benchmarks/peers/run.py`` in DBOS's own venv (so it imports nothing from the
project): ``python dbos_shapes.py --repeats 3 --chain-runs 50 ...``. Progress goes to
stderr; the last line on stdout is JSON: ``{"engine": "dbos", "variants": {"dbos":
{shape: [one figure per repeat]}}}``.

Steps run in the workflow's own process (DBOS has no other kind), so DBOS pairs with
ray-durable's inline activities on the chain and sequential rows. The fan-out enqueues
each step on a DBOS queue from the workflow, then waits for every handle, as DBOS's
queue tutorial does for parallel work; queues and handles keep DBOS's default polling
intervals (1 s), which bound how soon a fan-out's steps start and are seen finished.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import version
from typing import Any

from dbos import DBOS
from peer_args import parse_args

CITIES = ("Tokyo", "Seattle", "London", "Cairo", "Lima")
GREETINGS = [f"Hello {city}!" for city in CITIES]
QUEUE = "bench_fan_out"


@DBOS.step()
def inc(x: int) -> int:
    """A trivial step."""
    return x + 1


@DBOS.step()
def say_hello(city: str) -> str:
    """The HelloCities step."""
    return f"Hello {city}!"


@DBOS.workflow()
def chain4(x: int) -> int:
    """Four steps in sequence."""
    for _ in range(4):
        x = inc(x)
    return x


@DBOS.workflow()
def sequence(n: int) -> int:
    """n steps in sequence."""
    x = 0
    for _ in range(n):
        x = inc(x)
    return x


@DBOS.workflow()
def fan_out(n: int) -> int:
    """n steps in parallel on a queue, then their sum."""
    queue = DBOS.retrieve_queue(QUEUE)
    assert queue is not None
    handles = [queue.enqueue(inc, i) for i in range(n)]
    return sum(handle.get_result() for handle in handles)


@DBOS.workflow()
def hello_cities5(cities: list[str]) -> list[str]:
    """HelloCities: one greeting step per city, in sequence."""
    return [say_hello(city) for city in cities]


def say(message: str) -> None:
    """A progress line on stderr (stdout carries the JSON)."""
    print(message, file=sys.stderr, flush=True)


def timed(fn: Callable[[], Any]) -> float:
    """Seconds one call of ``fn`` takes."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run(workflow: Callable[..., Any], value: Any, expect: Any) -> None:
    """Start one workflow, wait for it and check its output."""
    output = DBOS.start_workflow(workflow, value).get_result()
    if output != expect:
        raise RuntimeError(f"{workflow.__name__} returned {str(output)[:200]!r}")


def cities(n: int, threads: int) -> float:
    """Workflows/s of n HelloCities5 started at once from ``threads`` threads."""
    cities = list(CITIES)
    with ThreadPoolExecutor(max_workers=threads) as pool:
        start = time.perf_counter()
        handles = list(pool.map(lambda _: DBOS.start_workflow(hello_cities5, cities), range(n)))
        outputs = list(pool.map(lambda handle: handle.get_result(), handles))
        elapsed = time.perf_counter() - start
    if any(out != GREETINGS for out in outputs):
        raise RuntimeError("a HelloCities5 workflow returned something else")
    return n / elapsed


def repeat(args: argparse.Namespace) -> dict[str, float]:
    """One repeat of the four shapes."""
    for i in range(args.chain_warmup):
        run(chain4, i, i + 4)
    chain = [timed(lambda i=i: run(chain4, i, i + 4)) for i in range(args.chain_runs)]
    seq = args.sequential / timed(lambda: run(sequence, args.sequential, args.sequential))
    total = sum(range(1, args.fan_out + 1))
    fan = args.fan_out / timed(lambda: run(fan_out, args.fan_out, total))
    orch = cities(args.orchestrations, args.threads)
    return {
        "chain4_ms": 1000 * statistics.median(chain),
        "sequential_per_s": seq,
        "fan_out_per_s": fan,
        "orchestrations_per_s": orch,
    }


def main(argv: list[str] | None = None) -> int:
    """Launch DBOS on a temporary SQLite file, run the repeats, print the JSON."""
    args = parse_args("the peer shapes on DBOS", argv)
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-dbos-") as tmp:
        config: Any = {
            "name": "bench_peers",
            "system_database_url": f"sqlite:///{tmp}/bench_peers.sqlite",
            "log_level": "WARNING",
        }
        DBOS(config=config)
        DBOS.launch()
        try:
            DBOS.register_queue(QUEUE)
            # Untimed: the first workflow of each kind, the queue's worker, SQLite's pages.
            run(fan_out, 20, sum(range(1, 21)))
            run(hello_cities5, list(CITIES), GREETINGS)
            for rep in range(args.repeats):
                figures = repeat(args)
                say(f"dbos[{rep}] " + ", ".join(f"{k} {v:,.1f}" for k, v in figures.items()))
                for key, value in figures.items():
                    results.setdefault(key, []).append(value)
        finally:
            DBOS.destroy()
    found = f"dbos {version('dbos')}"
    print(
        json.dumps({"engine": "dbos", "version": found, "variants": {"dbos": results}}), flush=True
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
