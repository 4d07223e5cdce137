"""What tracing costs: the same shapes on a hub with tracing off and on traced ones.

Hubs of the same placement run side by side in one Ray session; each repeat measures
plain Ray, then the hub without tracing, then each traced hub, so all see the same
load. Shapes: the 4-step chain (latency, ms) and a fan-out/fan-in of 1,000 activities
(activities/s). Each traced hub exports every span: ``jsonl`` writes them to a file in the
committing thread, ``otlp`` sends them over HTTP (a background thread) to a
receiver on 127.0.0.1 that this script runs in a process of its own (so that decoding
the exports does not take the driver's time), counting what arrives.

    python benchmarks/bench_tracing.py                 # 3 repeats, medians
    python benchmarks/bench_tracing.py --exporters otlp --placements pooled,dedicated
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import common
from bench_orchestrations import (
    chain4,
    chain_latency,
    fan_out,
    inc,
    plain_inc,
    run_durable,
    warm_up,
)
from common import say, timed

#: The issue's bound: tracing on costs at most this much of latency and throughput.
GOAL = 0.15


class _Receiver(BaseHTTPRequestHandler):
    """An OTLP/HTTP endpoint that accepts every export and counts its requests."""

    requests: Any = None  # a multiprocessing.Value, set in the receiver's process

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with self.requests.get_lock():
            self.requests.value += 1
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def _receive(port: Any, requests: Any) -> None:
    """The receiver's process: serve until killed."""
    _Receiver.requests = requests
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    port.value = server.server_port
    server.serve_forever()


def fan_out_rate(rt: Any, n: int) -> float:
    """Activities/s of one fan-out/fan-in of ``n``, start to completion."""
    return n / timed(lambda: run_durable(rt, fan_out, n, sum(range(1, n + 1))))


def plain_fan_out_rate(n: int) -> float:
    """Tasks/s of ``n`` plain Ray tasks submitted at once."""
    import ray

    return n / timed(lambda: ray.get([plain_inc.remote(i) for i in range(n)]))


def measure(hubs: dict[str, Any], runs: int, n: int, turn: int) -> dict[str, tuple[float, float]]:
    """One repeat: (chain ms, fan-out /s) of plain Ray and of each hub; the hubs take turns
    to go first (repeat ``turn``), so that none is always measured on a warmer machine."""
    out: dict[str, tuple[float, float]] = {}
    order = list(hubs.items())
    order = order[turn % len(order) :] + order[: turn % len(order)]
    for label, rt in order:
        plain, durable = chain_latency(rt, runs, 3)
        out.setdefault("plain Ray", (plain, plain_fan_out_rate(n)))
        out[label] = (durable, fan_out_rate(rt, n))
    return out


def main() -> None:
    """Parse the options, run the repeats, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_common_options(parser, "repeats (medians are reported)")
    parser.add_argument("--exporters", default="jsonl,otlp", help="traced hubs: jsonl,otlp")
    parser.add_argument("--placements", default="pooled", help="pooled,dedicated")
    args = parser.parse_args()
    exporters = common.parse_choices(parser, "--exporters", args.exporters, ("jsonl", "otlp"))
    placements = common.parse_choices(
        parser, "--placements", args.placements, ("pooled", "dedicated")
    )
    runs, n = (10, 200) if args.quick else (30, 1000)
    port, requests = multiprocessing.Value("i", 0), multiprocessing.Value("i", 0)
    receiver = multiprocessing.Process(target=_receive, args=(port, requests), daemon=True)
    receiver.start()  # before Ray starts: the fork copies no Ray state
    while not port.value:
        pass
    endpoint = f"http://127.0.0.1:{port.value}/v1/traces"
    with common.local_ray(), common.store_dir("bench-tracing-") as tmp:
        for placement in placements:
            settings = {
                "jsonl": {"exporter": "jsonl", "path": os.path.join(tmp, f"{placement}.jsonl")},
                "otlp": {"exporter": "otlp", "endpoint": endpoint},
            }
            register = [chain4, fan_out, inc]
            hubs = {
                "tracing off": common.start_hub(f"off-{placement}", tmp, args, placement, register)
            }
            for name in exporters:
                hubs[f"tracing on ({name})"] = common.start_hub(
                    f"{name}-{placement}", tmp, args, placement, register, tracing=settings[name]
                )
            for rt in hubs.values():
                warm_up(rt, args.pool_size if placement == "pooled" else 1)
            samples = []
            for repeat in range(args.repeats):
                samples.append(measure(hubs, runs, n, repeat))
                say(f"[{placement}] repeat {repeat + 1}: {samples[-1]}")
            report(placement, samples, args)
            for rt in hubs.values():
                rt.shutdown()
            path = settings["jsonl"]["path"]
            if "jsonl" in exporters and os.path.exists(path):
                with open(path, "rb") as spans:
                    say(f"spans written to the file: {sum(1 for _ in spans):,}")
    receiver.terminate()
    if "otlp" in exporters:
        say(f"the OTLP receiver took {requests.value} export requests")


def report(placement: str, samples: list[dict[str, tuple[float, float]]], args: Any) -> None:
    """The medians of each column and the cost of each traced hub against the goal."""
    medians = {
        label: tuple(statistics.median(s[label][i] for s in samples) for i in range(2))
        for label in samples[0]
    }
    off = medians["tracing off"]
    say(f"\n== {placement}: medians of {args.repeats} repeat(s), durability={args.durability} ==")
    lines = [("", "4-step chain", "fan-out 1,000", "cost: chain", "cost: fan-out")]
    for label, (chain, rate) in medians.items():
        costs = ("", "")
        if label.startswith("tracing on"):
            costs = (_verdict(chain / off[0] - 1), _verdict(1 - rate / off[1]))
        lines.append((label, f"{chain:,.1f} ms", f"{rate:,.0f} activities/s", *costs))
    common.print_columns(lines)


def _verdict(cost: float) -> str:
    return f"{cost:+.1%} ({'met' if cost <= GOAL else 'MISSED'} <= 15%)"


if __name__ == "__main__":
    main()
