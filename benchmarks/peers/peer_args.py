"""The sizes every peer runner takes, as ``run.py`` passes them.

Standard library only: the runners import it from their own folder, in the peer's venv.
"""

from __future__ import annotations

import argparse


def parse_args(description: str, argv: list[str] | None = None) -> argparse.Namespace:
    """A peer runner's options: repeats and the size of each shape."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--chain-runs", type=int, default=50)
    parser.add_argument("--chain-warmup", type=int, default=5)
    parser.add_argument("--sequential", type=int, default=200)
    parser.add_argument("--fan-out", type=int, default=1_000)
    parser.add_argument("--orchestrations", type=int, default=1_000)
    parser.add_argument("--threads", type=int, default=16, help="concurrent starters")
    return parser.parse_args(argv)
