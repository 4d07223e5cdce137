"""What every benchmark script shares: Ray and the hub, options, timing, medians, the table.

The scripts import it as ``common`` (run as ``python benchmarks/bench_x.py``, the script's
folder is first on ``sys.path``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray

from runtime import Runtime

#: Every benchmark's Ray: its own, whatever other cluster runs or is recorded on the machine.
RAY_ARGS = {"address": "local", "num_cpus": 2, "include_dashboard": False}


# -- Ray, the hub and the options ------------------------------------------------------


@contextmanager
def local_ray() -> Iterator[None]:
    """A local Ray of the benchmark's own for the ``with`` block."""
    ray.init(**RAY_ARGS)
    try:
        yield
    finally:
        ray.shutdown()


@contextmanager
def store_dir(prefix: str, store: str = "sqlite", durability: str = "fsync") -> Iterator[str]:
    """Where the hubs' stores go, removed afterwards: a temporary folder for SQLite files,
    or (``postgresql``) the URL of a throw-away PostgreSQL server started for the run."""
    if store == "sqlite":
        with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
            yield tmp
        return
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from postgres_server import PostgresServer

    # fsync as the SQLite store's durability asks: the same promise on both stores.
    server = PostgresServer(fsync=durability == "fsync")
    try:
        yield server.url
    finally:
        server.close()


def store_url(where: str, hub: str) -> str:
    """The store of one hub: a SQLite file in the folder, or a new database on the server."""
    if not where.startswith("postgresql://"):
        return f"sqlite:///{os.path.join(where, hub)}.db"
    import psycopg

    name = hub.replace("-", "_").replace("/", "_")
    with psycopg.connect(where, autocommit=True) as db:
        db.execute(f"DROP DATABASE IF EXISTS {name}")
        db.execute(f"CREATE DATABASE {name}")
    return where.rsplit("/", 1)[0] + f"/{name}"


def start_hub(
    hub: str,
    tmp: str,
    args: argparse.Namespace,
    placement: str = "pooled",
    register: Sequence[Any] = (),
    **settings: Any,
) -> Runtime:
    """A hub on its own store in ``tmp`` (see ``store_dir``), sized by the common options."""
    return Runtime.start(
        hub=hub,
        store=store_url(tmp, hub),
        placement=placement,
        pool_size=args.pool_size,
        durability=args.durability,
        register=list(register),
        **settings,
    )


def add_common_options(parser: argparse.ArgumentParser, repeats_help: str) -> None:
    """--quick, --repeats, --pool-size and --durability, as every benchmark takes them."""
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--repeats", type=int, default=3, help=repeats_help)
    parser.add_argument("--pool-size", type=int, default=2, help="hosts of the pooled hub")
    parser.add_argument("--durability", choices=["fsync", "process"], default="fsync")


def add_store_option(parser: argparse.ArgumentParser) -> None:
    """--store: the hubs' store (postgresql: a throw-away server started for the run)."""
    parser.add_argument(
        "--store",
        choices=["sqlite", "postgresql"],
        default="sqlite",
        help="store of the hubs (postgresql: Debian's binaries, a server of the run's own)",
    )


def parse_choices(
    parser: argparse.ArgumentParser, option: str, text: str, allowed: Sequence[str]
) -> list[str]:
    """A comma-separated option's values, in order; a parser error unless some of ``allowed``."""
    chosen = [part.strip() for part in text.split(",") if part.strip()]
    if not chosen or not set(chosen) <= set(allowed):
        parser.error(f"{option}: expected some of {','.join(allowed)}")
    return chosen


# -- measuring -------------------------------------------------------------------------


def say(message: str) -> None:
    """Progress line, flushed at once (Ray logs interleave on stderr)."""
    print(message, flush=True)


def timed(fn: Callable[[], Any]) -> float:
    """Seconds one call of ``fn`` takes."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def median_of(samples: Sequence[float]) -> float:
    """Median of the repeats."""
    return statistics.median(samples)


def proc_status_kib(pid: int, key: str) -> int | None:
    """A ``/proc/<pid>/status`` figure in KiB (``VmRSS``, ``VmHWM``); None once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(f"{key}:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


# -- the summary table -----------------------------------------------------------------


@dataclass
class Row:
    """One line of a durable-vs-plain table."""

    case: str
    placement: str
    unit: str  # "ms" (latency: lower is better), "/s" (higher is better), "MiB" (lower)
    plain: float | None = None
    durable: float | None = None
    goal: Callable[[Row], bool] | None = None
    goal_text: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def ratio(self) -> float | None:
        """durable/plain: "x slower" for latency, "x of plain" for throughput and memory."""
        if not self.plain or self.durable is None:
            return None
        return self.durable / self.plain


def fmt_value(value: float | None, unit: str) -> str:
    """A figure with its unit."""
    if value is None:
        return "-"
    if unit == "ms":
        return f"{value:,.1f} ms"
    if unit == "MiB":
        return f"{value:,.0f} MiB"
    return f"{value:,.0f} {unit}"


def fmt_ratio(row: Row) -> str:
    """The ratio column, labelled by direction."""
    ratio = row.ratio
    if ratio is None:
        return "-"
    return f"{ratio:.2f}x slower" if row.unit == "ms" else f"{ratio:.2f}x of plain"


def print_columns(lines: Sequence[Sequence[str]]) -> None:
    """A header line, a rule, then the rows, each column padded to its widest cell."""
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    for i, line in enumerate(lines):
        say("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip())
        if i == 0:
            say("  ".join("-" * w for w in widths))


def print_notes(notes: Sequence[str]) -> None:
    """The notes under a table, if any."""
    if notes:
        say("\nnotes:")
        for note in notes:
            say(f"- {note}")


def print_table(
    rows: Sequence[Row], args: argparse.Namespace, legend: str, extra: str = "", quick: str = ""
) -> None:
    """The summary: its title, a legend, one line per case and placement, then the notes.

    ``extra`` follows the title's settings; ``quick`` says what --quick sizes mean.
    """
    header = ("case", "placement", "plain Ray", "ray-durable", "durable vs plain", "goal")
    lines = [header]
    for row in rows:
        goal = "-"
        if row.goal is not None:
            goal = f"{row.goal_text}: {'met' if row.goal(row) else 'MISSED'}"
        lines.append(
            (
                row.case,
                row.placement,
                fmt_value(row.plain, row.unit),
                fmt_value(row.durable, row.unit),
                fmt_ratio(row),
                goal,
            )
        )
    title = f"summary: medians of {args.repeats} repeat(s), durability={args.durability}"
    title += f", store={getattr(args, 'store', 'sqlite')}"
    quick_text = f", QUICK sizes ({quick})" if args.quick and quick else ""
    say(f"\n== {title}{extra}{quick_text} ==")
    say(legend)
    print_columns(lines)
    print_notes([f"{row.case} [{row.placement}]: {note}" for row in rows for note in row.notes])
