"""Every DurableError subclass crosses a process: pickled, it keeps its type, fields and message.

The classes are found by walking ``DurableError``'s subclasses, so a new error class is
covered without a new test; one built from arguments of a type not listed in ``SAMPLES``
fails here until a sample value is added for it.
"""

from __future__ import annotations

import importlib
import inspect
import pickle
from typing import Any

import pytest

from runtime.errors import DurableError, FailureDetails

PURE = True

# Load every error class there is: each public name of the packages (they import lazily),
# and the HTTP API's own error. Ray is imported by some of them, never started.
for _package in ("runtime", "runtime.orchestration", "entities"):
    _loaded = importlib.import_module(_package)
    for _name in getattr(_loaded, "__all__", ()):
        getattr(_loaded, _name)
importlib.import_module("runtime.driver.http_api")

#: a value per constructor annotation, unlike every default: args that cannot rebuild the error show
SAMPLES: dict[str, Any] = {
    "str": "sample",
    "str | None": "v2",
    "int": 7,
    "int | None": 3,
    "float": 2.5,
    "tuple[str, ...]": ("one", "two"),
    "FailureDetails": FailureDetails("ValueError", "bad value", "Traceback: line 1"),
    "dict | None": {"Retry-After": "1"},
}


def error_classes() -> list[type[DurableError]]:
    """DurableError and every subclass loaded, each once, in a stable order."""
    found: dict[str, type[DurableError]] = {}
    todo: list[type[DurableError]] = [DurableError]
    while todo:
        cls = todo.pop()
        found[f"{cls.__module__}.{cls.__qualname__}"] = cls
        todo.extend(cls.__subclasses__())
    return [found[name] for name in sorted(found)]


def sample_error(cls: type[DurableError]) -> DurableError:
    """An instance of ``cls`` built from a sample value for each constructor parameter."""
    if cls.__init__ in (Exception.__init__, BaseException.__init__):
        return cls("a sample message")
    values = {}
    for name, param in inspect.signature(cls.__init__).parameters.items():
        if name == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        annotation = param.annotation
        if not isinstance(annotation, str):  # a module without postponed annotations
            annotation = inspect.formatannotation(annotation)
        if annotation not in SAMPLES:
            pytest.fail(f"{cls.__name__}({name}: {annotation}): add a sample value to SAMPLES")
        value = SAMPLES[annotation]
        values[name] = f"{name}-{value}" if isinstance(value, str) else value
    return cls(**values)


CLASSES = error_classes()


def test_the_walk_finds_the_error_classes_of_every_layer():
    names = {cls.__name__ for cls in CLASSES}
    layers = {"DurableError", "HistoryFormatError", "EventTimeoutError", "InvalidEntityIdError"}
    assert layers | {"EntityOperationFailedError", "HttpApiError"} <= names


@pytest.mark.parametrize("cls", CLASSES, ids=[cls.__name__ for cls in CLASSES])
def test_error_pickles_with_its_fields_and_message(cls):
    error = sample_error(cls)
    text = str(error)
    assert text and not text.startswith(("(", "<")), text
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is cls
    assert again.args == error.args
    assert vars(again) == vars(error)
    assert str(again) == text
