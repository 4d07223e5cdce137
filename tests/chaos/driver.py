"""A driver process of the chaos suite: a named sender that signals and calls entities.

``python -m tests.chaos.driver HUB ADDRESS SEED N ACKS SIZE_JSON``. It sends every
operation of ``workload.driver_plan`` in order under its own sequence numbers and appends
``entity seq`` to ``ACKS`` once each is acknowledged. Killed and started again, it sends
them all again from the first: each is applied once, because the entity knows the numbers.
"""

from __future__ import annotations

import json
import sys
import time

from workflows import record

from runtime import DurableClient
from tests.chaos import workload


def main(argv: list[str]) -> int:
    """Send the driver's plan; exit 0 once every operation is acknowledged."""
    hub, address, seed, n, acks, size_json = argv
    size = workload.Size(**json.loads(size_json))
    client = DurableClient.connect(hub, address=address, sender_id=f"driver-{n}")
    for eid, op, amount, seq in workload.driver_plan(int(seed), int(n), size):
        if op in ("add", "deposit"):
            client.signal_entity(eid, op, amount, sequence=seq)
        else:
            client.call_entity(eid, op, sequence=seq)
        record(acks, f"{eid}|{seq}")
        time.sleep(0.03)  # spread over the wave, so kills find it mid-way
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
