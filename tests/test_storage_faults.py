"""Storage faults: the disk fills up or the store turns read-only in the middle of a run.

SQLite's own limit (``PRAGMA max_page_count``) fills the "disk", and a failure injected at
the store seam makes it read-only (runtime/faults.py; as root, chmod would not stop a
write). Writes fail with a typed error, nothing is half-written, and the hub goes on once
the store takes writes again. A corrupt store file is refused without being touched.
"""

from __future__ import annotations

from collections import Counter

import pytest
import workflows as wf
from helpers import (
    armed_ray,
    assert_no_duplicate_completions,
    completed_seqs,
    query_store,
    stop_runtime,
    wait_until,
)

from runtime import OrchestrationStatus, Runtime, StoreUnavailableError
from runtime.errors import StoreCorruptError, StoreWriteRefusedError
from runtime.store import open_store

OWN_CLUSTER = True  # this module's Ray carries the armed switches in its environment

SWITCHES = {"full": "store.full", "ro": "store.read_only"}


@pytest.fixture(scope="module")
def faults_dir(tmp_path_factory):
    """A Ray whose processes have both switches armed, one hub per switch."""
    directory = tmp_path_factory.mktemp("storage-faults")
    with armed_ray(directory, [f"{p}@storage-{h}" for h, p in SWITCHES.items()]):
        yield directory


def _integrity(url: str, hub: str) -> None:
    """Every history is contiguous from 0 and as long as its instance row says."""
    rows = query_store(
        url,
        "SELECT i.instance_id, i.history_length, COUNT(h.idx), COALESCE(MAX(h.idx), -1) "
        "FROM instances i LEFT JOIN history h ON h.hub=i.hub AND h.instance_id=i.instance_id "
        "WHERE i.hub=? GROUP BY i.instance_id, i.history_length",
        (hub,),
    )
    for iid, length, count, top in rows:
        assert length == count == top + 1, f"{iid}: row says {length}, history has {count}"
    assert query_store(url, "PRAGMA integrity_check") == [("ok",)]


@pytest.mark.parametrize("kind", ["full", "ro"])
@pytest.mark.parametrize("placement", ["dedicated", "pooled"])
def test_a_store_that_refuses_writes_mid_run_loses_nothing_and_the_hub_goes_on(
    faults_dir, tmp_path, kind, placement
):
    hub = f"storage-{kind}"
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    rt = Runtime.start(hub=hub, store=url, placement=placement, pool_size=1, register=wf.ALL)
    try:
        client = rt.client
        log = str(tmp_path / "runs")
        iid = client.start_new(wf.slow_chain, input=(log, 6, 0.3))
        wait_until(lambda: len(completed_seqs(client, iid)) >= 2, timeout=60)
        switch = faults_dir / f"{SWITCHES[kind]}@{hub}"
        switch.touch()
        try:
            # A write of the client's own is refused, typed and readable (large enough to
            # need new pages: a small row may still fit in the file's free space).
            with pytest.raises(StoreUnavailableError) as refused:
                client.start_new(wf.chain, input="x" * 500_000, instance_id="refused")
            assert isinstance(refused.value, StoreWriteRefusedError), refused.value
            assert "nothing was half-applied" in str(refused.value)
            wait_until(lambda: len(wf.executions(log)) >= 4, timeout=60)  # work goes on...
            _integrity(url, hub)  # ...and whatever it tried to write, nothing is half-written
            assert client.get_status(iid).runtime_status == OrchestrationStatus.RUNNING
            assert client.get_status("refused") is None
        finally:
            switch.unlink()
        state = client.wait_for_completion(iid, timeout=180)
        assert state.runtime_status == OrchestrationStatus.COMPLETED, state.failure_details
        assert state.output == list(range(6))
        assert set(Counter(wf.executions(log))) == {str(i) for i in range(6)}
        assert_no_duplicate_completions(client, iid)
        # The hub takes new work again.
        assert client.wait_for_completion(client.start_new(wf.chain, input=1), 60).output == 4
        _integrity(url, hub)
    finally:
        stop_runtime(rt)


def test_a_corrupt_store_file_is_refused_and_left_as_it_was(tmp_path):
    path = tmp_path / "hub.db"
    garbage = b"this is not a database " * 400
    path.write_bytes(garbage)
    with pytest.raises(StoreCorruptError) as refused:
        open_store(f"sqlite:///{path}", "shop")
    assert "cannot be read as a SQLite database" in str(refused.value)
    assert "restore it from a backup" in str(refused.value)
    assert path.read_bytes() == garbage
