"""A 10,000-activity fan-out end to end (real Ray, the session's store), with a few results
above the inline limit: the sum is exact, every activity is recorded once, and history rows
stay small because the large results sit once in the payloads table. And the hub's
``payload_inline_limit`` reaches the supervisor and the hosts that write.
"""

from __future__ import annotations

import hashlib

import pytest
from helpers import query_store, start_ray, stop_runtime

from runtime import OrchestrationStatus, Runtime, activity, orchestrator
from runtime.orchestration import history as h
from runtime.store.payloads import DEFAULT_INLINE_LIMIT

N = 10_000
#: The activities whose result is above the limit: each a different 200 KB blob.
LARGE = (7, 4_321, 9_998)
LARGE_SIZE = 200_000


def blob_of(i: int) -> bytes:
    """The large result of activity ``i``."""
    return hashlib.sha256(str(i).encode()).digest() * (LARGE_SIZE // 32)


@activity
def part(i: int) -> object:
    """``i``, or for the few in LARGE, ``i`` with a large blob."""
    return (i, blob_of(i)) if i in LARGE else i


@orchestrator
def wide(ctx, n):
    """n activities at once; the exact sum, and what the large results held."""
    results = yield ctx.task_all([ctx.call_activity(part, i) for i in range(n)])
    large = {r[0]: hashlib.sha256(r[1]).hexdigest() for r in results if isinstance(r, tuple)}
    return sum(r[0] if isinstance(r, tuple) else r for r in results), large


@pytest.mark.parametrize("placement", ["pooled", "dedicated"])
def test_a_10k_fan_out_sums_exactly_and_its_large_results_stay_out_of_its_rows(runtime):
    client = runtime.client
    iid = client.start_new(wide, input=N)
    state = client.wait_for_completion(iid, timeout=600)
    assert state.runtime_status == OrchestrationStatus.COMPLETED, state.failure_details
    total, large = state.output
    assert total == sum(range(N))
    assert large == {i: hashlib.sha256(blob_of(i)).hexdigest() for i in LARGE}
    history = client.get_status(iid, show_history=True).history
    done = [e.seq for e in history if isinstance(e, h.TaskCompleted)]
    assert len(done) == len(set(done)) == N  # each activity recorded once

    url, key = runtime.config.store, (runtime.config.hub, iid)
    rows, largest = query_store(
        url, "SELECT count(*), max(length(event)) FROM history WHERE hub=? AND instance_id=?", key
    )[0]
    assert rows == len(history) and largest < 1024  # references, not 200 KB blobs
    stored = query_store(url, "SELECT data FROM payloads WHERE hub=? AND instance_id=?", key)
    assert len(stored) == len(LARGE)  # one row per large result, each blob once
    for i in LARGE:
        assert sum(blob_of(i) in bytes(data) for (data,) in stored) == 1
    assert all(len(data) > DEFAULT_INLINE_LIMIT for (data,) in stored)


@activity
def echo_twice(text: str) -> str:
    """Its input, twice."""
    return text * 2


@orchestrator
def twice(ctx, text):
    """One activity."""
    return (yield ctx.call_activity(echo_twice, text))


@pytest.mark.parametrize("placement", ["pooled", "dedicated"])
def test_the_hubs_inline_limit_reaches_the_supervisor_and_the_hosts(hub_name, store_url, placement):
    start_ray()
    rt = Runtime.start(
        hub=hub_name, store=store_url, placement=placement, pool_size=1, payload_inline_limit=2048
    )
    try:
        text = "z" * 3000  # inline under the default limit, out of line under 2 KiB
        iid = rt.client.start_new(twice, input=text)
        state = rt.client.wait_for_completion(iid, timeout=120)
        assert state.output == text * 2 and state.input == text
    finally:
        stop_runtime(rt)
    key = (hub_name, iid)
    (row,) = query_store(
        store_url,
        "SELECT length(input), length(output) FROM instances WHERE hub=? AND instance_id=?",
        key,
    )
    assert row == (36, 36)  # the supervisor wrote the input, the host the output: references
    sizes = query_store(
        store_url, "SELECT length(event) FROM history WHERE hub=? AND instance_id=?", key
    )
    assert max(size for (size,) in sizes) < 2048
    (count,) = query_store(
        store_url, "SELECT count(*) FROM payloads WHERE hub=? AND instance_id=?", key
    )[0]
    assert count >= 4  # input, start event, scheduled input, result, completion, output
