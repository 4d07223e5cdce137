"""The dashboard at scale: the instance list over 100,000 stored instances, and the timeline
of a 10,000-activity fan-out drawn by a real browser.

Run: ``python benchmarks/bench_dashboard.py [--instances 100000] [--fan-out 10000]
[--requests 20] [--store sqlite|postgresql] [--no-browser]``.

The store is filled with ``--instances`` finished instances (four orchestrator names,
three terminal statuses, created over the last week) by bulk insert, untimed; then a
pooled hub starts on it and ``serve_http`` serves its dashboard. Each listing is
requested ``--requests`` times over HTTP from this process (keep-alive, 127.0.0.1) and
the median is printed: the first page, each filter, and the 50th page reached by keyset
(each next page costs what the first does). The same queries straight on the store are
printed beside, to split store time from the rest. Then one fan-out of ``--fan-out``
activities runs and Debian's chromium loads its page three times: the median time from
navigation to the load event, with the number of bars drawn. Goals (issue 14): first page
under 300 ms, filters under 500 ms, the 10,000-bar timeline under 2 s.
"""

from __future__ import annotations

import argparse
import dataclasses
import http.client
import os
import random
import shutil
import sqlite3
import statistics
import time
import urllib.parse
import uuid
from typing import Any

from common import add_store_option, local_ray, say, store_dir, store_url

from runtime import Runtime, activity, orchestrator
from runtime.driver.http_api import serve_http, stop_http
from runtime.store import InstanceQuery, open_store

TOKEN_ENV = "RAY_DURABLE_BENCH_TOKEN"
NAMES = ["order", "refund", "invoice", "shipment"]
STATUSES = ["Completed", "Completed", "Completed", "Failed", "Terminated"]
COLUMNS = (
    "hub, instance_id, name, version, status, execution_id, created_time, "
    "last_updated_time, history_length"
)


@activity
def square(x: int) -> int:
    return x * x


@orchestrator
def wide(ctx, width: int):
    results = yield ctx.task_all([ctx.call_activity(square, i) for i in range(width)])
    return len(results)


def fill(url: str, hub: str, count: int) -> None:
    """``count`` finished instances in the hub's store, in one bulk insert."""
    open_store(url, hub).close()  # the schema, as the hub makes it
    now = time.time()
    rng = random.Random(7)
    rows = []
    for i in range(count):
        created = now - rng.uniform(0, 7 * 86400)
        name = NAMES[i % len(NAMES)]
        rows.append(
            (hub, f"{name}-{i:06d}", name, "", rng.choice(STATUSES), uuid.uuid4().hex,
             created, created + rng.uniform(0.01, 5), 4)
        )  # fmt: skip
    marks = ",".join(["?"] * 9)
    if url.startswith("sqlite:///"):
        with sqlite3.connect(url[len("sqlite:///") :]) as db:
            db.executemany(f"INSERT INTO instances ({COLUMNS}) VALUES ({marks})", rows)
        return
    import psycopg

    with psycopg.connect(url) as db, db.cursor() as cur:
        with cur.copy(f"COPY instances ({COLUMNS}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)


class Client:
    """One keep-alive connection to the dashboard, with the bearer token."""

    def __init__(self, base: str, token: str) -> None:
        parts = urllib.parse.urlsplit(base)
        self.path = parts.path
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        self.headers = {"Authorization": f"Bearer {token}"}

    def get(self, path: str) -> tuple[float, bytes]:
        """(seconds, body) of one GET; AssertionError unless 200."""
        start = time.perf_counter()
        self.conn.request("GET", self.path + path, headers=self.headers)
        response = self.conn.getresponse()
        body = response.read()
        took = time.perf_counter() - start
        assert response.status == 200, (path, response.status, body[:300])
        return took, body


def next_link(body: bytes) -> str:
    """The path of the page after this one."""
    text = body.decode()
    start = text.index('rel="next" href="') + len('rel="next" href="')
    href = text[start : text.index('"', start)].replace("&amp;", "&")
    return href[len("/dashboard/") :]


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def listings(base: str, token: str, url: str, hub: str, requests: int) -> list[tuple]:
    """(what, HTTP median ms, store median ms, rows) of each listing."""
    client = Client(base, token)
    day = time.time() - 86400
    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(day - 3600))
    until = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(day))
    cases: list[tuple[str, str, InstanceQuery]] = [
        ("first page", "instances", InstanceQuery()),
        ("status=Failed", "instances?status=Failed", InstanceQuery(statuses=("Failed",))),
        ("name=refund", "instances?name=refund", InstanceQuery(name="refund")),
        ("id prefix order-0123", "instances?prefix=order-0123", InstanceQuery(prefix="order-0123")),
        (
            "created in one hour",
            f"instances?from={since}&to={until}",
            InstanceQuery(created_from=day - 3600, created_to=day),
        ),
        ("overview", "", InstanceQuery()),
    ]
    store = open_store(url, hub)
    out = []
    for what, path, query in cases:
        client.get(path)  # warm
        http_times, body = [], b""
        for _ in range(requests):
            took, body = client.get(path)
            http_times.append(took)
        paged = dataclasses.replace(query, limit=51, newest_first=True)
        store_times = []
        for _ in range(requests):
            start = time.perf_counter()
            store.query(paged) if path else store.overview(time.time() - 3600)
            store_times.append(time.perf_counter() - start)
        rows = body.count(b"<tr>") - 1
        out.append((what, median_ms(http_times), median_ms(store_times), max(rows, 0)))
    # Page 50 by keyset: follow the next links, then time that page alone.
    path = "instances"
    for _ in range(49):
        path = next_link(client.get(path)[1])
    deep = [client.get(path)[0] for _ in range(requests)]
    out.append(("page 50 (keyset)", median_ms(deep), None, 50))
    store.close()
    return out


def browser_timeline(base: str, token: str, iid: str) -> tuple[float, int] | None:
    """(median ms from navigation to load, bars drawn) of the instance's page; None if
    chromium or Playwright is missing."""
    chromium = shutil.which("chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    if chromium is None:
        return None
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium)
        context = browser.new_context(extra_http_headers={"Authorization": f"Bearer {token}"})
        page = context.new_page()
        times, bars = [], 0
        for _ in range(3):
            page.goto(base + "instances/" + urllib.parse.quote(iid, safe=""), wait_until="load")
            timing = page.evaluate(
                "(() => { const n = performance.getEntriesByType('navigation')[0];"
                " return n.loadEventEnd - n.startTime; })()"
            )
            times.append(float(timing))
            bars = page.locator("svg.timeline rect.bar").count()
        browser.close()
    return statistics.median(times), bars


def main() -> None:
    """Fill, serve, measure, print."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=100_000)
    parser.add_argument("--fan-out", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--no-browser", action="store_true")
    add_store_option(parser)
    args = parser.parse_args()
    token = uuid.uuid4().hex
    os.environ[TOKEN_ENV] = token
    hub = f"dash-{uuid.uuid4().hex[:6]}"
    with store_dir("bench-dashboard-", args.store) as where, local_ray():
        url = store_url(where, hub)
        start = time.perf_counter()
        fill(url, hub, args.instances)
        say(f"stored {args.instances} instances in {time.perf_counter() - start:.1f} s")
        runtime = Runtime.start(hub=hub, store=url, placement="pooled", register=[wide, square])
        try:
            api = serve_http(runtime.client, port=0, token_env=TOKEN_ENV)
            base: Any = api.dashboard
            rows = listings(base, token, url, hub, args.requests)
            say(f"\n{args.store}, {args.instances} instances, median of {args.requests}:")
            say(f"{'listing':<24}{'HTTP ms':>10}{'store ms':>10}{'rows':>6}")
            for what, http_ms, store_ms, count in rows:
                shown = "-" if store_ms is None else f"{store_ms:.1f}"
                say(f"{what:<24}{http_ms:>10.1f}{shown:>10}{count:>6}")
            if not args.no_browser:
                start = time.perf_counter()
                iid = runtime.client.start_new(wide, args.fan_out)
                runtime.client.wait_for_completion(iid, timeout=1800)
                say(f"\nfan-out of {args.fan_out}: {time.perf_counter() - start:.1f} s")
                drawn = browser_timeline(base, token, iid)
                if drawn is None:
                    say("no chromium or Playwright: timeline not measured")
                else:
                    say(f"timeline page: {drawn[0]:.0f} ms to load, {drawn[1]} bars (median of 3)")
            stop_http()
        finally:
            runtime.shutdown()


if __name__ == "__main__":
    main()
