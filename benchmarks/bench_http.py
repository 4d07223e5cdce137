"""Starting orchestrations over the HTTP API against a trivial Ray Serve endpoint.

Run: ``python benchmarks/bench_http.py [--quick] [--repeats 3] [--connections 32]``.

One local Ray, one pooled hub, and one Ray Serve instance serving two applications
through the same proxy: the hub's HTTP API (``serve_http``) and a trivial FastAPI
deployment answering a small JSON on POST (the baseline). A load generator in this
process (threads of the standard library, one keep-alive ``http.client`` connection each)
sends N POSTs to each, baseline first, and measures requests/s and per-request latency
(p50, p99). Each durable POST ``orchestrators/bench_echo`` answers 202 once the instance
is durably created; afterwards every started instance is looked up in the hub and waited
for (untimed). A third, diagnostic figure: the same number of ``client.start_new`` calls
from as many driver threads, without HTTP. See benchmarks/README.md.
"""

# No ``from __future__ import annotations`` here: FastAPI reads the baseline route's
# annotations at run time, and Serve's class-based views cannot resolve them from strings.

import argparse
import http.client
import json
import statistics
import sys
import threading
import time
import urllib.parse
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import ray
from common import (
    add_common_options,
    local_ray,
    print_columns,
    print_notes,
    say,
    start_hub,
    store_dir,
)
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from ray import serve

from runtime import OrchestrationContext, OrchestrationStatus, Runtime, orchestrator
from runtime.driver.http_api import APP_NAME, serve_http, stop_http

HUB = "bench-http"
ORCHESTRATOR = "bench_echo"
#: The baseline's Serve application: its own name and route prefix, next to APP_NAME.
BASELINE_APP = "bench-http-baseline"
BASELINE_PREFIX = "/bench-http-baseline"
REQUEST_TIMEOUT = 120.0
COMPLETION_TIMEOUT = 600.0
GOAL_RATIO = 0.5
GOAL_CONNECTIONS = 32
HEADERS = {"Content-Type": "application/json"}


# -- the durable side: a trivial orchestrator ------------------------------------------


@orchestrator(name=ORCHESTRATOR)
def bench_echo(ctx: OrchestrationContext, value: Any) -> Any:
    """Return the input: no activity, so a start costs only the instance and one replay."""
    return value


# -- the baseline: a trivial Serve endpoint, deployed like the hub's API ---------------

baseline_api = FastAPI(title="bench-http-baseline", docs_url=None, redoc_url=None, openapi_url=None)


@serve.deployment(
    # As DurableHttpApi: no CPU reserved, 32 requests at a time, access log to files only.
    ray_actor_options={
        "num_cpus": 0,
        "runtime_env": {"env_vars": {"RAY_SERVE_LOG_TO_STDERR": "0"}},
    },
    max_ongoing_requests=32,
)
@serve.ingress(baseline_api)
class Baseline:
    """Parses the JSON body and answers 202 with a small JSON (an id and the input)."""

    @baseline_api.post("/start")
    async def start(self, request: Request) -> JSONResponse:
        """The trivial endpoint."""
        body = await request.body()
        data = json.loads(body) if body.strip() else None
        return JSONResponse({"id": uuid.uuid4().hex, "input": data}, status_code=202)


# -- sizes and results -----------------------------------------------------------------


@dataclass(frozen=True)
class Sizes:
    """How many requests a timed run and a warm-up send."""

    requests: int
    warmup: int


FULL = Sizes(requests=2_000, warmup=200)
QUICK = Sizes(requests=300, warmup=50)


@dataclass
class LoadResult:
    """One timed run: successes, errors, wall time, latencies and (optionally) bodies."""

    requests: int
    elapsed: float
    latencies: list[float]  # seconds, successful requests only
    errors: Counter = field(default_factory=Counter)
    first_error: str = ""
    answers: list[tuple[int, bytes]] = field(default_factory=list)  # (request number, body)

    @property
    def ok(self) -> int:
        """Requests answered with the expected status."""
        return len(self.latencies)

    @property
    def rate(self) -> float:
        """Successful requests per second of wall time."""
        return self.ok / self.elapsed if self.elapsed > 0 else 0.0

    def percentile_ms(self, q: float) -> float:
        """The q-th percentile latency (nearest rank), in ms."""
        return 1000 * percentile(self.latencies, q)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile of ``values`` (q in 0..100); NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil(n * q / 100), at least 1
    return ordered[min(len(ordered), int(rank)) - 1]


@dataclass
class Row:
    """One line of the summary: medians over the repeats."""

    target: str
    rates: list[float] = field(default_factory=list)
    p50s: list[float] = field(default_factory=list)
    p99s: list[float] = field(default_factory=list)
    errors: int = 0

    def add(self, result: LoadResult) -> None:
        """Record one repeat."""
        self.rates.append(result.rate)
        self.p50s.append(result.percentile_ms(50))
        self.p99s.append(result.percentile_ms(99))
        self.errors += sum(result.errors.values())

    @property
    def rate(self) -> float | None:
        """Median requests/s."""
        return statistics.median(self.rates) if self.rates else None


def body_of(i: int) -> bytes:
    """The JSON body of request number ``i`` (the orchestration's input)."""
    return json.dumps({"n": i}).encode()


# -- the load generator ----------------------------------------------------------------


def run_load(
    url: str, requests: int, connections: int, expect: int, keep_answers: bool = False
) -> LoadResult:
    """POST ``requests`` JSON bodies to ``url`` over ``connections`` keep-alive connections.

    One thread per connection takes the next request number until all are sent; each
    thread connects before the clock starts. Latency is from sending a request to having
    read its whole answer; only answers with status ``expect`` count as successes.
    """
    parts = urllib.parse.urlsplit(url)
    host, port, path = parts.hostname or "127.0.0.1", parts.port or 80, parts.path
    lock = threading.Lock()
    next_number = 0
    barrier = threading.Barrier(connections + 1)
    outcomes: list[tuple[list[float], list[tuple[int, bytes]], Counter, str]] = []

    def take() -> int:
        nonlocal next_number
        with lock:
            number, next_number = next_number, next_number + 1
        return number

    def worker() -> None:
        latencies: list[float] = []
        answers: list[tuple[int, bytes]] = []
        errors: Counter = Counter()
        first_error = ""
        conn = http.client.HTTPConnection(host, port, timeout=REQUEST_TIMEOUT)
        try:
            conn.connect()
        except OSError as exc:
            errors[f"connect: {type(exc).__name__}"] += 1
            first_error = repr(exc)
        barrier.wait()
        while (i := take()) < requests:
            payload = body_of(i)
            start = time.perf_counter()
            try:
                conn.request("POST", path, body=payload, headers=HEADERS)
                response = conn.getresponse()
                data = response.read()
            except (OSError, http.client.HTTPException) as exc:
                errors[type(exc).__name__] += 1
                first_error = first_error or repr(exc)
                conn.close()  # http.client reconnects on the next request
                continue
            latency = time.perf_counter() - start
            if response.status != expect:
                errors[f"HTTP {response.status}"] += 1
                first_error = first_error or f"HTTP {response.status}: {data[:300]!r}"
                continue
            latencies.append(latency)
            if keep_answers:
                answers.append((i, data))
        conn.close()
        with lock:
            outcomes.append((latencies, answers, errors, first_error))

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(connections)]
    for thread in threads:
        thread.start()
    barrier.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    result = LoadResult(requests, time.perf_counter() - start, [])
    for latencies, answers, errors, first_error in outcomes:
        result.latencies += latencies
        result.answers += answers
        result.errors.update(errors)
        result.first_error = result.first_error or first_error
    return result


# -- checking the durable side ---------------------------------------------------------


def started_ids(result: LoadResult) -> dict[str, int]:
    """Instance id -> request number, from the 202 check-status payloads."""
    return {json.loads(data)["id"]: i for i, data in result.answers}


def verify_stored(rt: Runtime, ids: dict[str, int], since: float) -> int:
    """How many of ``ids`` the hub lists among the instances created since ``since``."""
    created_from = datetime.fromtimestamp(since - 5.0, tz=timezone.utc)
    states = rt.client.get_status_by(created_time_from=created_from)
    listed = {state.instance_id for state in states}
    return len(ids.keys() & listed)


def wait_all(rt: Runtime, ids: dict[str, int]) -> tuple[float, int]:
    """(seconds until every instance ended, how many Completed with their input as output)."""

    def wait(item: tuple[str, int]) -> bool:
        iid, i = item
        state = rt.client.wait_for_completion(iid, timeout=COMPLETION_TIMEOUT)
        return state.runtime_status == OrchestrationStatus.COMPLETED and state.output == {"n": i}

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=16) as pool:
        good = sum(pool.map(wait, ids.items()))
    return time.perf_counter() - start, good


def direct_starts(rt: Runtime, requests: int, threads: int) -> tuple[LoadResult, dict[str, int]]:
    """``client.start_new`` from ``threads`` driver threads, timed like the HTTP runs."""
    client = rt.client
    lock = threading.Lock()
    latencies: list[float] = []
    ids: dict[str, int] = {}

    def start_one(i: int) -> None:
        begin = time.perf_counter()
        iid = client.start_new(ORCHESTRATOR, {"n": i})
        latency = time.perf_counter() - begin
        with lock:
            latencies.append(latency)
            ids[iid] = i

    with ThreadPoolExecutor(max_workers=threads) as pool:
        start = time.perf_counter()
        list(pool.map(start_one, range(requests)))
        elapsed = time.perf_counter() - start
    return LoadResult(requests, elapsed, latencies), ids


# -- driver ----------------------------------------------------------------------------


def deploy_baseline() -> None:
    """Run the baseline as a second application on the Serve instance serve_http started."""
    serve.run(Baseline.bind(), name=BASELINE_APP, route_prefix=BASELINE_PREFIX)


def origin_of(base: str) -> str:
    """``http://host:port`` of a URL."""
    parts = urllib.parse.urlsplit(base)
    return f"{parts.scheme}://{parts.netloc}"


def describe(result: LoadResult) -> str:
    """One progress line's figures."""
    text = (
        f"{result.rate:,.0f} req/s, p50 {result.percentile_ms(50):.1f} ms, "
        f"p99 {result.percentile_ms(99):.1f} ms ({result.ok:,}/{result.requests:,} ok "
        f"in {result.elapsed:.2f} s)"
    )
    if result.errors:
        text += f"; errors {dict(result.errors)}, first: {result.first_error}"
    return text


def run_repeat(
    rep: int,
    rt: Runtime,
    urls: tuple[str, str],
    args: argparse.Namespace,
    rows: dict[str, Row],
    notes: list[str],
) -> None:
    """One repeat: baseline, durable over HTTP (then its checks), direct start_new."""
    baseline_url, durable_url = urls
    n, c = args.requests, args.connections
    base = run_load(baseline_url, n, c, expect=202)
    rows["baseline"].add(base)
    say(f"[{rep}] Serve baseline:  {describe(base)}")

    since = time.time()
    durable = run_load(durable_url, n, c, expect=202, keep_answers=True)
    rows["durable"].add(durable)
    say(f"[{rep}] durable start:   {describe(durable)}")
    ids = started_ids(durable)
    stored = verify_stored(rt, ids, since)
    drain, completed = wait_all(rt, ids)
    check = (
        f"[{rep}] durable check: {stored:,}/{len(ids):,} started instances stored; "
        f"{completed:,} Completed with their input as output, all ended "
        f"{drain:.2f} s after the last response (untimed)"
    )
    say(check)
    if stored != len(ids) or completed != len(ids):
        notes.append(f"repeat {rep}: MISMATCH: {check}")

    if not args.skip_direct:
        direct, direct_ids = direct_starts(rt, n, c)
        rows["direct"].add(direct)
        say(f"[{rep}] start_new x {c} threads (no HTTP): {describe(direct)}")
        wait_all(rt, direct_ids)


def warm_up(rt: Runtime, urls: tuple[str, str], args: argparse.Namespace, count: int) -> None:
    """Untimed: every connection, the replicas, the hub's pool hosts and worker processes."""
    baseline_url, durable_url = urls
    for url in urls:
        result = run_load(url, count, args.connections, expect=202, keep_answers=url == durable_url)
        if result.errors:
            raise RuntimeError(f"warm-up of {url} failed: {describe(result)}")
        if url == durable_url:
            wait_all(rt, started_ids(result))
    if not args.skip_direct:
        _, ids = direct_starts(rt, min(count, 50), args.connections)
        wait_all(rt, ids)


def print_summary(rows: dict[str, Row], args: argparse.Namespace, notes: list[str]) -> None:
    """The summary table, the goal and the notes."""
    baseline = rows["baseline"].rate
    header = ("target", "requests/s", "p50", "p99", "vs baseline", "goal")
    lines = [header]
    for key, row in rows.items():
        if not row.rates:
            continue
        ratio = row.rate / baseline if baseline and row.rate is not None else None
        goal = "-"
        if key == "durable" and ratio is not None:
            goal = f">= {GOAL_RATIO:.2f}x: {'met' if ratio >= GOAL_RATIO else 'MISSED'}"
        lines.append(
            (
                row.target,
                f"{row.rate:,.0f}/s",
                f"{statistics.median(row.p50s):,.1f} ms",
                f"{statistics.median(row.p99s):,.1f} ms",
                "-" if key == "baseline" or ratio is None else f"{ratio:.2f}x",
                goal,
            )
        )
    caveats = []
    if args.quick:
        caveats.append("QUICK sizes")
    if args.connections != GOAL_CONNECTIONS:
        caveats.append(f"the goal is for {GOAL_CONNECTIONS} connections")
    say(
        f"\n== summary: medians of {args.repeats} repeat(s), {args.requests:,} requests over "
        f"{args.connections} connections, pooled/{args.pool_size}, "
        f"durability={args.durability}{''.join(f', {c}' for c in caveats)} =="
    )
    print_columns(lines)
    errors = {row.target: row.errors for row in rows.values() if row.errors}
    if errors:
        notes.append(f"failed requests (not counted in requests/s or latency): {errors}")
    print_notes(notes)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        description="orchestration starts over HTTP vs a trivial Ray Serve endpoint"
    )
    add_common_options(parser, repeats_help="timed runs per target (median)")
    parser.add_argument("--connections", type=int, default=GOAL_CONNECTIONS, help="concurrent")
    parser.add_argument("--requests", type=int, default=None, help="requests per timed run")
    parser.add_argument(
        "--skip-direct", action="store_true", help="skip the start_new (no HTTP) diagnostic"
    )
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    args.requests = sizes.requests if args.requests is None else args.requests
    args.warmup = sizes.warmup
    if min(args.repeats, args.connections, args.requests, args.pool_size) < 1:
        parser.error("--repeats, --connections, --requests and --pool-size must be at least 1")
    return args


def run_all(rt: Runtime, args: argparse.Namespace, rows: dict[str, Row], notes: list[str]) -> None:
    """Serve the hub's API and the baseline, warm both up, then run the repeats."""
    base = serve_http(rt.client, port=0)  # starts Serve on a free port
    deploy_baseline()
    urls = (
        f"{origin_of(base)}{BASELINE_PREFIX}/start",
        f"{base}orchestrators/{ORCHESTRATOR}",
    )
    say(f"Serve apps {BASELINE_APP!r} and {APP_NAME!r}: {urls[0]} , {urls[1]}")
    started = time.perf_counter()
    warm_up(rt, urls, args, args.warmup)
    say(f"warm-up: {time.perf_counter() - started:.1f} s")
    for rep in range(args.repeats):
        run_repeat(rep, rt, urls, args, rows, notes)


def main(argv: list[str] | None = None) -> int:
    """Start Ray, the hub, its HTTP API and the baseline; run the repeats; print the table."""
    args = parse_args(argv)
    say(
        f"requests: {args.requests:,} per run ({args.warmup} warm-up), "
        f"connections: {args.connections}, repeats: {args.repeats}"
    )
    rows = {
        "baseline": Row("Serve baseline (POST, small JSON)"),
        "durable": Row(f"durable start (POST orchestrators/{ORCHESTRATOR})"),
        "direct": Row(f"start_new, {args.connections} driver threads (no HTTP)"),
    }
    notes: list[str] = []
    with local_ray():
        try:
            with store_dir("bench-http-") as tmp:
                rt = start_hub(HUB, tmp, args, register=[bench_echo])
                try:
                    run_all(rt, args, rows, notes)
                finally:
                    try:
                        if ray.is_initialized() and BASELINE_APP in serve.status().applications:
                            serve.delete(BASELINE_APP)
                    finally:
                        stop_http()  # deletes the API's app, then stops Serve: no app is left
                        rt.shutdown()
        finally:
            print_summary(rows, args, notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
