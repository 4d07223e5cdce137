"""Poison work: code that kills its host every time it runs is quarantined, and the rest of
the hub goes on (real Ray, real host processes that die by ``os._exit``)."""

from __future__ import annotations

import json

import poison_defs
import pytest
import workflows as wf
from helpers import (
    assert_no_duplicate_completions,
    same_pool_host,
    start_hub,
    stop_runtime,
    wait_until,
)

from runtime import OrchestrationStatus, QuarantinedError, QuarantineItemNotFoundError
from runtime.driver.cli import main

LIMIT = 3


@pytest.fixture
def hub(hub_name, store_url, placement):
    rt = start_hub(hub_name, store_url, placement, wf.ALL + poison_defs.ALL, quarantine_after=LIMIT)
    yield rt
    stop_runtime(rt)


@pytest.mark.parametrize("placement", ["dedicated", "pooled"])
def test_an_instance_that_kills_its_host_is_quarantined_and_its_neighbours_finish(
    hub, tmp_path, placement
):
    client = hub.client
    flag = tmp_path / "poison"
    flag.touch()
    log = str(tmp_path / "runs")
    poison_id, good_id = same_pool_host("p", 2)
    client.start_new(wf.slow_chain, input=(log, 6, 0.3), instance_id=good_id)
    client.start_new(poison_defs.poison_step, input=str(flag), instance_id=poison_id)

    state = client.wait_for_completion(poison_id, timeout=240)
    assert state.runtime_status == OrchestrationStatus.FAILED
    assert state.failure_details.error_type == "QuarantinedError", state.failure_details
    assert f"died {LIMIT} times" in state.failure_details.message
    good = client.wait_for_completion(good_id, timeout=240)
    assert good.runtime_status == OrchestrationStatus.COMPLETED, good.failure_details
    assert good.output == list(range(6))
    assert_no_duplicate_completions(client, good_id)

    [item] = client.list_quarantined()
    assert (item.id, item.kind, item.target, item.crashes) == (
        f"orchestration:{poison_id}",
        "orchestration",
        poison_id,
        LIMIT,
    )
    # Fixed (the flag is gone): a retry resumes it from its checkpoint, and it completes.
    flag.unlink()
    client.retry_quarantined(item.id)
    state = client.wait_for_completion(poison_id, timeout=120)
    assert state.runtime_status == OrchestrationStatus.COMPLETED, state.failure_details
    assert state.output == 3
    assert_no_duplicate_completions(client, poison_id)
    assert client.list_quarantined() == []
    with pytest.raises(QuarantineItemNotFoundError):
        client.discard_quarantined(item.id)


@pytest.mark.parametrize("placement", ["pooled"])
def test_an_entity_operation_that_kills_its_host_is_dead_lettered(hub, tmp_path, placement, capsys):
    client = hub.client
    flag = tmp_path / "poison"
    flag.touch()
    client.call_entity("Bomb@a", "add", 1)

    with pytest.raises(QuarantinedError) as raised:
        client.call_entity("Bomb@a", "explode", str(flag), timeout=240)
    assert raised.value.crashes == LIMIT
    # The entity keeps serving, its state as before the poison.
    client.call_entity("Bomb@a", "add", 2)
    assert client.call_entity("Bomb@a", "get") == 3

    # An orchestration that calls poison gets a typed failure it can catch.
    iid = client.start_new(poison_defs.calls_bomb, input=("b", str(flag)))
    state = client.wait_for_completion(iid, timeout=240)
    assert state.runtime_status == OrchestrationStatus.COMPLETED, state.failure_details
    assert state.output == ["QuarantinedError", 0] or state.output == ("QuarantinedError", 0)

    items = {item.target: item for item in client.list_quarantined()}
    assert set(items) == {"Bomb@a", "Bomb@b"}
    assert items["Bomb@a"].operation == "explode" and items["Bomb@a"].kind == "entity"
    # The CLI lists the same, with the operation's input as JSON.
    hub_args = ["--hub", hub.config.hub]
    capsys.readouterr()
    assert main([*hub_args, "--json", "quarantine", "list"]) == 0
    # Ray's own log lines (worker deaths) may share stdout: take the command's line.
    out = capsys.readouterr().out.splitlines()
    listed = json.loads(next(line for line in out if line.startswith("[")))
    assert {i["target"]: i["input"] for i in listed} == {"Bomb@a": str(flag), "Bomb@b": str(flag)}
    assert main([*hub_args, "quarantine", "discard", "entity:nope"]) == 1
    assert "nothing quarantined has the id 'entity:nope'" in capsys.readouterr().err
    # Retried once fixed: the operation runs (as a signal); discarded: it never does.
    flag.unlink()
    client.retry_quarantined(items["Bomb@a"].id)
    assert main([*hub_args, "quarantine", "discard", items["Bomb@b"].id]) == 0
    assert f"discarded {items['Bomb@b'].id}" in capsys.readouterr().out.splitlines()
    wait_until(lambda: client.call_entity("Bomb@a", "get") == 103, timeout=60)
    assert client.call_entity("Bomb@b", "get") == 0
    assert client.list_quarantined() == []
