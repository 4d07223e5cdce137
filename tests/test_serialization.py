"""Code shipped by value keeps the user's file name and source lines (no Ray needed).

Each payload is loaded in a new Python process where the user's file no longer exists, as
on a Ray node that never had it.
"""

from __future__ import annotations

import importlib.util
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import cloudpickle
import pytest

from runtime.errors import SerializationError
from runtime.serialization import dumps, loads

#: No Ray for this module (tests/conftest.py): the code under test is pure.
PURE = True

USER_CODE = textwrap.dedent(
    """
    from runtime import activity, orchestrator


    def helper(x):
        return [1 / y for y in x]


    @activity
    def divide(x):
        raise ValueError(f"cannot divide {x}")


    @orchestrator
    def flow(ctx, x):
        yield helper(x)
    """
)

LOADER = textwrap.dedent(
    """
    import pickle, sys, traceback
    from runtime.serialization import loads
    blob = open(sys.argv[1], "rb").read()
    obj = pickle.loads(blob) if sys.argv[2] == "pickle" else loads(blob)
    call = {"flow": lambda: next(obj.fn(None, [0])), "divide": lambda: obj.run(3)}[sys.argv[3]]
    try:
        call()
    except Exception:
        traceback.print_exc(file=sys.stdout)
    """
)


def _user_module(tmp_path: Path) -> tuple[object, Path]:
    path = tmp_path / "user_flows.py"
    path.write_text(USER_CODE)
    spec = importlib.util.spec_from_file_location("user_flows", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["user_flows"] = module
    spec.loader.exec_module(module)
    # As for a driver's __main__: the module is not importable where the code runs.
    cloudpickle.register_pickle_by_value(module)
    return module, path


def _traceback_elsewhere(tmp_path: Path, blob: bytes, how: str, call: str) -> str:
    payload = tmp_path / "payload.bin"
    payload.write_bytes(blob)
    out = subprocess.run(
        [sys.executable, "-c", LOADER, str(payload), how, call],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path.parent,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.fixture
def user_module(tmp_path):
    module, path = _user_module(tmp_path)
    yield module, path
    cloudpickle.unregister_pickle_by_value(module)
    del sys.modules["user_flows"]


def test_shipped_orchestrator_traceback_names_file_and_line(tmp_path, user_module):
    module, path = user_module
    blob = dumps(module.flow)
    path.unlink()  # the loading process must get the lines from the payload
    trace = _traceback_elsewhere(tmp_path, blob, "codec", "flow")
    assert f'File "{path}", line 6, in helper' in trace
    assert "return [1 / y for y in x]" in trace
    assert f'File "{path}", line 16, in flow' in trace
    assert "<dynamic-code>" not in trace


def test_activity_shipped_by_rays_pickler_carries_its_source(tmp_path, user_module):
    module, path = user_module
    blob = pickle.dumps(module.divide)  # Ray pickles the activity it sends to a worker
    path.unlink()
    trace = _traceback_elsewhere(tmp_path, blob, "pickle", "divide")
    assert f'File "{path}", line 11, in divide' in trace
    assert 'raise ValueError(f"cannot divide {x}")' in trace


def test_source_lines_are_written_once_per_payload(user_module):
    module, _ = user_module
    one = len(dumps(module.helper))
    both = len(dumps([module.helper, module.flow]))
    assert both < 2 * one


def test_round_trip_of_plain_values_is_unchanged():
    value = {"a": [1, 2.5, None], "b": ("x", b"y"), "c": {1, 2}}
    assert loads(dumps(value)) == value


def test_unpicklable_value_is_a_typed_error():
    with pytest.raises(SerializationError, match="input"):
        dumps(__import__("threading").Lock(), "input")
