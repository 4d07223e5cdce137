"""The chaos suite's command: ``python -m tests.chaos`` from the repository's root.

    python -m tests.chaos --seed 1 --placement pooled --store sqlite
    python -m tests.chaos --seed 1 --seeds 5 --placement dedicated   # seeds 1..5
    python -m tests.chaos --seed 7 --duration 1800                   # a 30-minute soak

Each seed starts a Ray of its own (``ray.init(address="local")``: other Rays on the
machine are never touched), a hub on a fresh store (a SQLite file in a temporary
directory, or a throw-away PostgreSQL server), runs waves of the mixed workload (one, or
more until ``--duration`` seconds have passed) while the seeded injector kills hosts, the
keepers of dedicated hosts, entity hosts, the supervisor, activity workers and driver
processes, stops the whole Ray once per wave and starts the hub again on the same store,
then checks every invariant of tests/chaos/invariants.py. It prints the seed first, each
fault as it happens, and at the end the faults per kind with their recovery times and every
violation. Exit status 1 if any seed found a violation.
"""

from __future__ import annotations

import argparse
import sys

from tests.chaos.runner import run_seed
from tests.chaos.workload import Size


def main(argv: list[str] | None = None) -> int:
    """Run the seeds asked for; 0 if every invariant held in every one."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.chaos", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--seed", type=int, required=True, help="the first seed")
    parser.add_argument("--seeds", type=int, default=1, help="how many consecutive seeds")
    parser.add_argument("--placement", choices=("dedicated", "pooled"), default="pooled")
    parser.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument(
        "--duration",
        type=float,
        default=0.0,
        help="run waves until this many seconds have passed (a soak)",
    )
    parser.add_argument(
        "--store-url", help="an empty PostgreSQL database to use instead of a throw-away server"
    )
    parser.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="multiply the number of instances of each kind per wave",
    )
    args = parser.parse_args(argv)
    size = Size()
    if args.scale != 1.0:
        for name in (
            "chains",
            "fans",
            "approvals",
            "timers",
            "eternals",
            "parents",
            "retries",
            "feeders",
            "transfers",
            "driver_ops",
        ):
            setattr(size, name, max(1, round(getattr(size, name) * args.scale)))
    failed = []
    for seed in range(args.seed, args.seed + args.seeds):
        store = args.store_url or args.store
        report = run_seed(seed, args.placement, store, size, args.duration)
        if report.violations:
            failed.append(seed)
    if failed:
        print(f"chaos: FAILED seeds {failed}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
