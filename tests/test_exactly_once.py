"""Exactly-once across re-deliveries: each test delivers a message again on purpose and
checks that the store's keys recognise it (real Ray, real store)."""

from __future__ import annotations

import entity_defs as ed
import exactly_once_defs as eo
import pytest
import workflows as wf
from helpers import (
    assert_no_duplicate_completions,
    query_store,
    start_ray,
    stop_runtime,
    wait_until,
    write_store,
)

from runtime import DurableClient, InvalidArgumentError, OrchestrationStatus, Runtime
from runtime.messages import StartOrchestration
from runtime.orchestration import history as h
from runtime.orchestration.codec import encode_event
from runtime.serialization import dumps


@pytest.fixture
def hub(hub_name, store_url, placement):
    start_ray()
    rt = Runtime.start(
        hub=hub_name, store=store_url, placement=placement, register=wf.ALL + eo.ALL + [ed.Counter]
    )
    yield rt
    stop_runtime(rt)


def _execution(url: str, hub: str, iid: str) -> tuple:
    return query_store(
        url,
        "SELECT execution_id, status, history_length, start_id FROM instances "
        "WHERE hub=? AND instance_id=?",
        (hub, iid),
    )[0]


@pytest.mark.parametrize("placement", ["pooled"])
def test_a_redelivered_entity_start_does_not_run_its_ended_instance_again(hub, store_url):
    client, name = hub.client, hub.config.hub
    iid = client.call_entity("Launcher@k", "launch", 4)
    wait_until(lambda: client.get_status(iid) is not None, timeout=30)  # after the outbox
    assert client.wait_for_completion(iid, timeout=60).output == 10
    before = _execution(store_url, name, iid)
    assert before[3] is not None and before[3].startswith("outbox:"), before
    # The row the entity's commit wrote, delivered again (as after a crash between the
    # delivery and the row's deletion).
    row_id = int(before[3].split(":", 1)[1])
    start = encode_event(h.ExecutionStarted("chain", 4, ""))
    payload = StartOrchestration(iid, "chain", "", dumps(4), start).payload()
    write_store(
        store_url,
        "INSERT INTO outbox (id, hub, kind, target, payload, sender) VALUES (?,?,?,?,?,?)",
        (row_id, name, "start", iid, payload, "Launcher@k"),
    )
    wait_until(
        lambda: not query_store(store_url, "SELECT id FROM outbox WHERE hub=?", (name,)),
        timeout=30,
    )
    assert _execution(store_url, name, iid) == before
    assert client.wait_for_completion(iid, timeout=10).output == 10


@pytest.mark.parametrize("placement", ["pooled"])
def test_a_client_start_retried_after_its_instance_ended_changes_nothing(hub, store_url):
    client, name = hub.client, hub.config.hub
    args = client._start_args(wf.chain, 1, "retried", None)
    assert client._starts.add(args).result() == "retried"
    assert client.wait_for_completion("retried", timeout=60).output == 4
    before = _execution(store_url, name, "retried")
    # The same call again, as the client's retry after an answer lost with the supervisor:
    # sent as a first try, so only the supervisor's start-id check can make it a no-op.
    assert client._starts.add(args).result() == "retried"
    assert _execution(store_url, name, "retried") == before
    # A new call under the same id is the user's own restart: it replaces the ended run.
    client.start_new(wf.chain, input=2, instance_id="retried")
    assert client.wait_for_completion("retried", timeout=60).output == 6
    assert _execution(store_url, name, "retried")[0] != before[0]


@pytest.mark.parametrize("placement", ["dedicated", "pooled"])
def test_every_execution_of_an_eternal_orchestration_runs_its_own_child(hub):
    client = hub.client
    iid = client.start_new(eo.generations, input=3)
    state = client.wait_for_completion(iid, timeout=120)
    assert state.runtime_status == OrchestrationStatus.COMPLETED, state.failure_details
    assert state.output == 2  # chain(0): (0 + 1) * 2
    assert_no_duplicate_completions(client, iid)


@pytest.mark.parametrize("placement", ["pooled"])
def test_a_lock_the_entity_refuses_fails_the_lock_and_releases_the_others(hub):
    client = hub.client
    iid = client.start_new(eo.locks_unknown)
    state = client.wait_for_completion(iid, timeout=60)
    assert state.runtime_status == OrchestrationStatus.COMPLETED, state.failure_details
    assert state.output[0] == "NotRegisteredError", state.output
    # Launcher@l, taken before Nope@a refused, was released: another sender gets through.
    assert isinstance(client.call_entity("Launcher@l", "launch", 2, timeout=60), str)


@pytest.mark.parametrize("placement", ["pooled"])
def test_a_named_sender_sends_again_under_its_numbers_and_each_applies_once(hub):
    name = hub.config.hub
    first = DurableClient.connect(name, sender_id="billing-1")
    for k in range(1, 6):
        first.signal_entity("Counter@s", "add", k, sequence=k)
    assert first.call_entity("Counter@s", "get", sequence=6) == 15
    # The driver restarts: a new client of the same sender sends everything again.
    again = DurableClient.connect(name, sender_id="billing-1")
    assert again.last_sequence("Counter@s") == 6
    for k in range(1, 6):
        again.signal_entity("Counter@s", "add", k, sequence=k)
    assert again.call_entity("Counter@s", "get", sequence=6) == 15  # the first answer
    # Numbered by the client, it goes on after the recorded numbers.
    again.signal_entity("Counter@s", "add", 10)
    assert again.last_sequence("Counter@s") == 7
    assert hub.client.call_entity("Counter@s", "get") == 25
    with pytest.raises(InvalidArgumentError):
        hub.client.signal_entity("Counter@s", "add", 1, sequence=8)  # no sender_id
    with pytest.raises(InvalidArgumentError):
        DurableClient.connect(name, sender_id="a:b")
    assert hub.client.call_entity("Counter@s", "get") == 25


@pytest.mark.parametrize("placement", ["pooled"])
def test_an_event_sent_again_under_its_id_is_accepted_once(hub):
    from runtime.actors.ray_seam import SupervisorHandle
    from runtime.orchestration.codec import encode_event

    client = hub.client
    iid = client.start_new(eo.two_events)
    one = encode_event(h.EventRaised("e", 1))
    # The client's retry after an answer lost with the supervisor: the same call again.
    for _ in range(2):
        client._call(SupervisorHandle.deliver, iid, one, "event-1")
    client.raise_event(iid, "e", 2)
    assert client.wait_for_completion(iid, timeout=60).output == [1, 2]
    client._call(SupervisorHandle.deliver, iid, one, "event-1")  # ended: still no error
    assert_no_duplicate_completions(client, iid)
