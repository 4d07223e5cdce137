"""The PostgreSQL server crashes and comes back in the middle of an end-to-end workload.

A hub on the session's throw-away server runs a chain and a fan-out in the middle of their
activities while a driver pipelines signals to a counter entity; the test stops the server
as a crash (``pg_ctl stop -m immediate``), waits, and starts it again. Operations block
and retry meanwhile; a write the crash cut off is re-run from the store by its host. The
driver sees nothing but the wait: every signal resolves without error, every orchestration
completes with its output, no history records a completion twice, and the counter is
exact. Skipped without PostgreSQL (``DURABLE_TEST_POSTGRES=required`` makes it run).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from concurrent.futures import Future

import entity_defs as ed
import psycopg
import pytest
import workflows as wf
from helpers import start_ray, wait_until
from test_recovery import assert_no_duplicate_completions, completed_seqs

from runtime import OrchestrationStatus, Runtime

pytestmark = pytest.mark.timeout(600)

#: Seconds the server stays down.
OUTAGE_SECONDS = 3.0
CHAIN, FAN = 10, 400


@pytest.fixture(params=["pooled", "dedicated"])
def hub(request, postgres):
    start_ray()
    rt = Runtime.start(
        hub=f"t-{uuid.uuid4().hex[:8]}",
        store=postgres.database(),
        placement=request.param,
        pool_size=2,
        register=wf.ALL + ed.ALL,
    )
    yield rt
    try:
        rt.shutdown()
    except Exception:
        pass  # the server may be down if the test failed in the middle


def crash_in_a_write(
    postgres, url: str, table: str, where: str, params: tuple, live: str = "TRUE"
) -> None:
    """Crash the server while a hub's write transaction is half done, then start it again.

    The test locks one row that the hub writes; the hub's next write of it takes the hub's
    lock, does its first statements and waits on that row: the crash cuts it in the middle.
    ``live`` is true of the row while the hub will still write it (an instance not ended).
    """
    blocker = psycopg.connect(url, autocommit=True)
    blocker.execute("BEGIN")
    query = f"SELECT {live} FROM {table} WHERE {where} FOR UPDATE"
    [(alive,)] = blocker.execute(query, params).fetchall()
    assert alive, f"the hub wrote its {table} row for the last time before the test locked it"
    waiting = "SELECT count(*) FROM pg_locks WHERE locktype='transactionid' AND NOT granted"
    wait_until(lambda: blocker.execute(waiting).fetchone()[0] > 0, timeout=120)
    postgres.stop("immediate")  # as a crash: every connection of every host is cut
    blocker.close()
    time.sleep(OUTAGE_SECONDS)
    postgres.start()


def test_the_database_restarting_mid_workload_loses_and_repeats_nothing(hub, postgres, tmp_path):
    client, url, name = hub.client, hub.config.store, hub.config.hub
    chain_log, fan_log = str(tmp_path / "chain"), str(tmp_path / "fan")
    chain = client.start_new(wf.slow_chain, input=(chain_log, CHAIN, 0.5))
    fan = client.start_new(wf.slow_fan_out, input=(fan_log, FAN, 0.05))
    client.call_entity("Counter@pg", "add", 0)  # the entity's row exists before the outage
    futures: list[Future] = []
    stop = threading.Event()

    def signal() -> None:
        while not stop.is_set():
            futures.append(client.signal_entity("Counter@pg", "add", 1, wait=False))
            time.sleep(0.01)

    sender = threading.Thread(target=signal, daemon=True)
    sender.start()
    # Once in an orchestration's commit, once in an entity's. The fan-out is locked at its
    # first completion: far from done, and it cannot end while its row is locked (a later
    # lock could find it ended, its row never written again).
    wait_until(lambda: completed_seqs(client, fan), timeout=120)
    fan_row = "hub=%s AND instance_id=%s"
    crash_in_a_write(postgres, url, "instances", fan_row, (name, fan), "status='Running'")
    entity_row = "hub=%s AND name='Counter' AND key='pg'"
    crash_in_a_write(postgres, url, "entities", entity_row, (name,))
    after = len(futures)
    wait_until(lambda: len(futures) > after + 50)  # and signals after the last restart
    stop.set()
    sender.join()

    errors = [f.exception(timeout=300) for f in futures]
    assert errors == [None] * len(futures), [e for e in errors if e is not None][:3]
    assert client.call_entity("Counter@pg", "get", timeout=120) == len(futures)

    state = client.wait_for_completion(chain, timeout=300)
    assert state.runtime_status == OrchestrationStatus.COMPLETED, state.failure_details
    assert state.output == list(range(CHAIN))
    state = client.wait_for_completion(fan, timeout=300)
    assert state.runtime_status == OrchestrationStatus.COMPLETED, state.failure_details
    assert state.output == sum(range(FAN))
    for iid in (chain, fan):
        assert_no_duplicate_completions(client, iid)
    # Activities are at-least-once: every one ran, a repeat only where a result was cut off.
    assert set(Counter(wf.executions(chain_log))) == {str(i) for i in range(CHAIN)}
    assert set(Counter(wf.executions(fan_log))) == {str(i) for i in range(FAN)}
