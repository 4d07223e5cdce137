"""A second driver: signal entities of a hub that runs on a Ray cluster, from anywhere.

Start it on any machine that can reach the cluster (and the store), while the hub runs
(``batch_job.py`` left it running, or any other driver started it):

    python examples/cluster/signal_entities.py --address HEAD:6379 --keys 10 --signals 1000

It attaches to the hub of ``durable.yaml`` (nothing is started twice), pipelines
``--signals`` one-way ``add`` operations over ``--keys`` counters, then reads them back.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

from entities import entity
from runtime import Runtime

HERE = os.path.dirname(os.path.abspath(__file__))


@entity
class Tally:
    """A counter entity: one per key, each on its own host."""

    def __init__(self) -> None:
        self.value = 0

    def add(self, amount: int) -> None:
        """Add to the count."""
        self.value += amount

    def get(self) -> int:
        """The count."""
        return self.value


def main(argv: Sequence[str] | None = None) -> dict[str, int]:
    """Signal the counters, wait until every signal is applied, print their values."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", default="auto", help="the Ray cluster")
    parser.add_argument("--config", default=os.path.join(HERE, "durable.yaml"))
    parser.add_argument("--hub", help="overrides the file's hub")
    parser.add_argument("--store", help="overrides the file's store URL")
    parser.add_argument("--keys", type=int, default=10)
    parser.add_argument("--signals", type=int, default=1_000)
    args = parser.parse_args(argv)
    overrides = {k: v for k, v in (("hub", args.hub), ("store", args.store)) if v}
    rt = Runtime.start(config=args.config, address=args.address, register=[Tally], **overrides)
    keys = [f"Tally@k{i}" for i in range(args.keys)]
    before = {key: rt.client.call_entity(key, "get") for key in keys}
    pending = [
        rt.client.signal_entity(keys[i % len(keys)], "add", 1, wait=False)
        for i in range(args.signals)
    ]
    for future in pending:
        assert future is not None
        future.result(timeout=300)
    counts = {key: rt.client.call_entity(key, "get") - before[key] for key in keys}
    print(f"signalled {args.signals} times over {len(keys)} counters on hub {rt.config.hub}")
    for key, added in counts.items():
        print(f"{key}: +{added}")
    return counts


if __name__ == "__main__":
    main()
