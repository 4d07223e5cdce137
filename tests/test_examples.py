"""The examples run end to end: each ``main`` on a fresh hub and a temporary store."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent


def example(name: str) -> ModuleType:
    """Import ``examples.<name>`` by module name, as Ray workers will import it."""
    # conftest puts the root on the workers' PYTHONPATH; the driver may lack it (bare pytest).
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return importlib.import_module(f"examples.{name}")


def test_human_interaction_approves_one_and_escalates_the_other(hub_name, store_url):
    result = example("human_interaction").main(hub=hub_name, store=store_url)
    approved, timed_out = result["approved"], result["timed_out"]
    assert approved["status"] == timed_out["status"] == "Completed"
    assert approved["custom_status"] == "approved"
    assert approved["output"] == "'new laptop' approved by alice"
    assert timed_out["custom_status"] == "escalated"
    assert timed_out["output"].startswith("'team offsite' escalated after 72 h")


def test_counter_actor_counts_every_event_across_continue_as_new(hub_name, store_url):
    result = example("counter_actor").main(hub=hub_name, store=store_url, n=100)
    assert result["expected"] == 50
    assert result["custom_status"] == result["output"] == 50
    assert result["status"] == "Completed"
    assert result["history_length"] < 10  # continue_as_new keeps the history short


def test_monitor_stops_when_ready_and_gives_up_at_expiry(hub_name, store_url):
    result = example("monitor").main(hub=hub_name, store=store_url, interval=0.5, expiry=2.0)
    ready, stuck = result["build-42"], result["stuck-job"]
    assert ready["status"] == stuck["status"] == "Completed"
    assert ready["outcome"] == "ready" and ready["polls"] == 3
    assert ready["alert"] == "alert sent: job build-42 is ready"
    assert stuck["outcome"] == "expired" and 1 <= stuck["polls"] <= 5


def test_sub_orchestrations_aggregate_100_children(hub_name, store_url):
    result = example("sub_orchestrations").main(hub=hub_name, store=store_url, n=100)
    assert result["status"] == "Completed"
    assert result["output"] == result["expected"]
    assert result["output"]["children"] == result["children_completed"] == 100


def test_counter_entity_signalled_called_and_orchestrated(hub_name, store_url):
    result = example("counter_entity").main(hub=hub_name, store=store_url)
    assert result["after_signals"] == 55
    assert result["orchestration_output"] == 66
    assert result["entity_exists"] and result["state_value"] == 166


def test_bank_transfers_under_locks_conserve_money(hub_name, store_url):
    result = example("bank_transfer").main(hub=hub_name, store=store_url, transfers=50)
    assert result["statuses"] == {"Completed": 50}
    assert result["moved"] + result["refused"] == 50 and result["moved"] > 0
    assert result["total_before"] == result["total_after"] == 500
    assert all(balance >= 0 for balance in result["after"].values())
