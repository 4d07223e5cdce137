"""Golden histories: what earlier code stored must replay on today's code (no Ray).

Each tests/golden/*.json file was written by tests/golden/make_golden.py from a real run.
Replaying it with the engine must reach the recorded end without a NonDeterminismError, in
both stored forms (the codec's and the cloudpickle of the code before it), and the codec
must write the same bytes again. A failure here means a change would break instances in
flight: keep the old behaviour (or version the orchestrator), do not regenerate the files.
"""

from __future__ import annotations

import base64
import importlib
import json
from pathlib import Path

import pytest

from runtime.orchestration.codec import decode_event, encode_event
from runtime.orchestration.engine import OrchestrationExecutor

GOLDEN = Path(__file__).resolve().parent / "golden"
FILES = sorted(GOLDEN.glob("*.json"))


#: No Ray for this module (tests/conftest.py): the code under test is pure.
PURE = True


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


def _function(spec: str):
    module, name = spec.split(":")
    return getattr(importlib.import_module(module), name).fn


def test_there_are_golden_histories():
    assert len(FILES) >= 10
    kinds = {
        type(decode_event(base64.b64decode(b))).__name__
        for path in FILES
        for b in _load(path)["history"]
    }
    for kind in ("TimerFired", "EventRaised", "SubOrchestrationCompleted", "LockGranted"):
        assert kind in kinds
    assert {"TaskFailed", "EntityResponded", "EntitySignaled", "LockReleased"} <= kinds


@pytest.mark.parametrize("form", ["history", "legacy_history"])
@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_golden_history_replays_to_its_recorded_end(path, form):
    golden = _load(path)
    history = [decode_event(base64.b64decode(b)) for b in golden[form]]
    step = OrchestrationExecutor(_function(golden["function"]), golden["instance_id"]).execute(
        history, []
    )
    failure = step.failure
    assert failure is None or failure.error_type != "NonDeterminismError", failure.message
    assert str(step.status) == golden["status"], failure
    assert repr(step.output) == golden["output_repr"]
    assert step.new_events == [], "a finished history asked for more work on replay"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_golden_history_reencodes_byte_for_byte(path):
    golden = _load(path)
    for b64, legacy in zip(golden["history"], golden["legacy_history"], strict=True):
        blob = base64.b64decode(b64)
        assert encode_event(decode_event(blob)) == blob
        # The legacy blob holds the same event, so it is written in the same new form.
        assert encode_event(decode_event(base64.b64decode(legacy))) == blob


def test_a_changed_orchestrator_fails_its_golden_replay():
    """The replay really checks: chain calling its activities the other way round diverges."""

    def chain_reordered(ctx, x):
        a = yield ctx.call_activity("double", x)
        return (yield ctx.call_activity("inc", a))

    golden = _load(GOLDEN / "g-chain.json")
    history = [decode_event(base64.b64decode(b)) for b in golden["history"]]
    step = OrchestrationExecutor(chain_reordered, golden["instance_id"]).execute(history, [])
    assert step.failure is not None and step.failure.error_type == "NonDeterminismError"
