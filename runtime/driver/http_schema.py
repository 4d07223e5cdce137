"""The HTTP API's declared inputs and documented answers: what its OpenAPI schema says.

The routes of ``runtime.driver.http_api`` take their query parameters and headers with the
types below, spelled as Durable Functions spells them (``taskHub``, ``showHistory``,
``restartWithNewInstanceId``...), so FastAPI both checks them and writes them into the
schema served at ``openapi.json``. A value that does not fit its declaration is refused
with 400 and the API's error body (``Message`` / ``ExceptionMessage`` / ``ExceptionType``
``ValidationError``), never FastAPI's 422 shape: Durable Functions answers a bad query
value with 400, and so does every other refusal of this API. Request bodies are read by
the routes themselves (the JSON rules are stricter than FastAPI's), so they are described
here with ``openapi_extra`` rather than declared as parameters.
"""

# No ``from __future__ import annotations``: FastAPI reads these annotations at run time.

from typing import Annotated, Any

from fastapi import Header, Query
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from pydantic import BeforeValidator
from pydantic_core import PydanticUseDefault

from ..orchestration.status import OrchestrationStatus

#: Largest page size and continuation offset: Durable Functions' own are 32-bit integers,
#: and a bigger number could not be bound to the store's LIMIT and OFFSET.
MAX_COUNT = 2**31 - 1


def _blank_is_default(value: Any) -> Any:
    # ``?top=`` means "not given", as it did when the routes read the parameters by hand.
    if value == "":
        raise PydanticUseDefault()
    return value


def _true_or_false(value: Any) -> bool:
    # Durable Functions parses flags with bool.Parse: true or false, any case, nothing else.
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ValueError("expected true or false")


#: A boolean query parameter: ``true`` or ``false`` in any case; empty is the default.
Flag = Annotated[bool, BeforeValidator(_true_or_false), BeforeValidator(_blank_is_default)]
#: A page size: an integer from 1; empty is the default.
PageSize = Annotated[int, Query(ge=1, le=MAX_COUNT), BeforeValidator(_blank_is_default)]

STATUS_NAMES = [s.value for s in OrchestrationStatus]
#: Where the schema is served, below the API's prefix.
OPENAPI_PATH = "/openapi.json"


def flag(alias: str, description: str) -> Any:
    """The Query declaration of a boolean parameter named ``alias``."""
    return Query(alias=alias, description=description)


def time_query(alias: str, description: str) -> Any:
    """An ISO 8601 time parameter: checked by the route (it also takes an unescaped '+')."""
    return Query(alias=alias, description=description, json_schema_extra={"format": "date-time"})


TaskHub = Annotated[
    str | None, Query(alias="taskHub", description="the task hub; another hub's name is 404")
]
Statuses = Annotated[
    list[str] | None,
    Query(
        alias="runtimeStatus",
        description="statuses to match, comma-separated or repeated (any case): "
        + ", ".join(STATUS_NAMES),
    ),
]
FetchState = Annotated[Flag, Query(alias="fetchState", description="include each state")]
Prefix = Annotated[str | None, Query(alias="instanceIdPrefix", description="id prefix")]
Continuation = Annotated[
    str | None,
    Header(
        alias="x-ms-continuation-token",
        description="the token of the page to read, from the previous page's answer",
    ),
]


def validation_message(exc: RequestValidationError) -> str:
    """One readable line per refused parameter: ``query parameter top: ..., got '0'``."""
    parts = []
    for error in exc.errors():
        loc = [str(part) for part in error.get("loc", ())]
        where = f"{loc[0]} parameter {loc[-1]}" if len(loc) >= 2 else "request"
        got = "" if error.get("type") == "missing" else f", got {error.get('input')!r}"
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{where}: {message}{got}")
    return "; ".join(parts) or "invalid request"


# -- documented answers ---------------------------------------------------------------------

ERROR = {
    "type": "object",
    "required": ["Message", "ExceptionMessage", "ExceptionType"],
    "properties": {
        "Message": {"type": "string"},
        "ExceptionMessage": {"type": "string"},
        "ExceptionType": {"type": "string"},
    },
}
_URL = {"type": "string"}
CHECK_STATUS = {
    "type": "object",
    "required": ["id", "statusQueryGetUri", "sendEventPostUri", "terminatePostUri"],
    "properties": {
        "id": {"type": "string"},
        **{
            name: _URL
            for name in (
                "statusQueryGetUri",
                "sendEventPostUri",
                "terminatePostUri",
                "purgeHistoryDeleteUri",
                "restartPostUri",
                "suspendPostUri",
                "resumePostUri",
            )
        },
    },
}
STATUS = {
    "type": "object",
    "required": ["name", "instanceId", "runtimeStatus", "createdTime", "lastUpdatedTime"],
    "properties": {
        "name": {"type": "string"},
        "instanceId": {"type": "string"},
        "runtimeStatus": {"type": "string", "enum": STATUS_NAMES},
        "input": {},
        "customStatus": {},
        "output": {},
        "createdTime": {"type": "string"},
        "lastUpdatedTime": {"type": "string"},
        "historyEvents": {"type": ["array", "null"], "items": {"type": "object"}},
        "failureDetails": {"type": ["object", "null"]},
        "version": {"type": "string"},
    },
}
ENTITY_ROW = {
    "type": "object",
    "required": ["entityId", "lastOperationTime"],
    "properties": {
        "entityId": {
            "type": "object",
            "required": ["name", "key"],
            "properties": {"name": {"type": "string"}, "key": {"type": "string"}},
        },
        "lastOperationTime": {"type": "string"},
        "state": {},
    },
}
ENTITY_PAGE = {"type": "array", "items": ENTITY_ROW}
QUARANTINED = {
    "type": "object",
    "required": ["id", "kind", "target", "crashes", "detail", "quarantinedAt"],
    "properties": {
        "id": {"type": "string"},
        "kind": {"type": "string", "enum": ["orchestration", "entity"]},
        "target": {"type": "string"},
        "crashes": {"type": "integer", "minimum": 1},
        "detail": {"type": "string"},
        "quarantinedAt": {"type": "string"},
        "operation": {"type": ["string", "null"]},
        "sender": {"type": ["string", "null"]},
        "sequence": {"type": ["integer", "null"]},
        "input": {},
    },
}
PURGED = {
    "type": "object",
    "required": ["instancesDeleted"],
    "properties": {"instancesDeleted": {"type": "integer", "minimum": 0}},
}


def _json(description: str, schema: dict) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def answers(**codes: tuple[str, dict | None]) -> dict:
    """Route ``responses``: ``s202=("accepted", None)``; every other status is the error body."""
    documented: dict[int | str, dict] = {"default": _json("refused (4xx) or failed", ERROR)}
    for code, (description, schema) in codes.items():
        status = int(code.removeprefix("s"))
        documented[status] = (
            {"description": description} if schema is None else _json(description, schema)
        )
    return documented


def body_doc(description: str, required: bool = False, text: bool = False) -> dict:
    """``openapi_extra`` describing a body the route reads itself (any JSON; text if asked)."""
    content: dict[str, Any] = {"application/json": {"schema": {}}}
    if text:
        content["text/plain"] = {"schema": {"type": "string"}}
    body = {"description": description, "required": required, "content": content}
    return {"requestBody": body}


def openapi(app: Any) -> dict:
    """The app's OpenAPI schema, without the 422 answers FastAPI adds but the API never gives."""
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        for path in schema.get("paths", {}).values():
            for operation in path.values():
                operation.get("responses", {}).pop("422", None)
        components = schema.get("components", {}).get("schemas", {})
        for unused in ("HTTPValidationError", "ValidationError"):
            components.pop(unused, None)
        if not components:
            schema.pop("components", None)
        app.openapi_schema = schema
    return app.openapi_schema
