"""The Durable Functions compatible HTTP management API, served by Ray Serve.

``serve_http(hub)`` deploys one FastAPI ingress (a Serve application) whose replica
connects to the hub's supervisor by name and answers below ``/runtime/webhooks/durabletask/``
with Durable Functions' paths, status codes and JSON, so its HTTP clients (and the
official ``azure-functions-durable`` client) work against a Ray hub.

The API speaks JSON only: request bodies are parsed with ``json`` and never unpickled.
Bad input gets a 4xx with a JSON error body (Durable Functions' ``Message`` /
``ExceptionMessage`` / ``ExceptionType``) before anything is stored; so does a query parameter
that does not fit its declaration (400, not FastAPI's 422). The routes' parameters and
answers are declared (runtime.driver.http_schema), and the OpenAPI schema is served at
``openapi.json`` below the same prefix, behind the same bearer token. Serve has one HTTP
proxy per cluster (one host and port), so one hub's API is served at a time.
"""

# No ``from __future__ import annotations`` here: FastAPI reads the routes' annotations at
# run time, and Serve's class-based views cannot resolve them from strings.

import hashlib
import hmac
import inspect
import json
import logging
import os
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Annotated, Any, cast

import ray
from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from ray import serve
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import logs, tracing
from ..actors.ray_seam import ACTOR_LOST
from ..config import HttpConfig
from ..entity_id import EntityId, InvalidEntityIdError
from ..errors import (
    ArgumentTypeError,
    DurableError,
    HubConfigError,
    InstanceExistsError,
    InstanceNotFoundError,
    InvalidArgumentError,
    InvalidOperationError,
    NotRegisteredError,
    QuarantineItemNotFoundError,
    SerializationError,
    UnavailableError,
    UnknownOperationError,
)
from ..orchestration.status import OrchestrationStatus
from ..store import InstanceQuery
from .client import DurableClient
from .http_json import (
    BASE_PATH,
    entity_payload,
    is_running,
    management_urls,
    page_token,
    parse_page_token,
    quarantined_payload,
    state_view,
    status_payload,
)
from .http_schema import (
    CHECK_STATUS,
    ENTITY_PAGE,
    ERROR,
    MAX_COUNT,
    OPENAPI_PATH,
    PURGED,
    QUARANTINED,
    STATUS,
    Continuation,
    FetchState,
    Flag,
    PageSize,
    Prefix,
    Statuses,
    TaskHub,
    answers,
    body_doc,
    flag,
    openapi,
    time_query,
    validation_message,
)
from .hub import Runtime

__all__ = ["APP_NAME", "BASE_PATH", "HttpApiError", "HttpApiUrl", "serve_http", "stop_http"]

#: The Serve application's name (one per Ray cluster).
APP_NAME = "ray-durable-http"
#: The dashboard's Serve application (``runtime.driver.dashboard.app``), beside the API.
DASHBOARD_APP = "ray-durable-dashboard"
#: Page size of instance and entity listings when ``top`` is not given (as Durable Functions).
DEFAULT_PAGE_SIZE = 100
#: Seconds a poller is asked to wait: after a start (10) and while an instance runs (5).
RETRY_AFTER_START, RETRY_AFTER_RUNNING = "10", "5"
CONTINUATION_HEADER = "x-ms-continuation-token"
READY_TIMEOUT_SECONDS = 60.0

log = logging.getLogger("ray_durable.http")


class HttpApiError(DurableError):
    """A request the API refuses, with the HTTP status it answers."""

    def __init__(
        self, status: int, message: str, error_type: str = "", headers: dict | None = None
    ) -> None:
        super().__init__(status, message, error_type, headers)
        self.status, self.message = status, message
        self.error_type = error_type or type(self).__name__
        self.headers = headers

    def __str__(self) -> str:
        return f"HTTP {self.status}: {self.message}"

    def response(self) -> JSONResponse:
        """The JSON error response (Durable Functions' HttpError shape)."""
        body = {"Message": self.message, "ExceptionMessage": self.message}
        body["ExceptionType"] = self.error_type
        return JSONResponse(body, status_code=self.status, headers=self.headers)


QUARANTINE_LIST = {"type": "array", "items": QUARANTINED}

#: Typed runtime errors -> HTTP status; the first matching class wins.
ERROR_STATUS: tuple[tuple[type[BaseException], int], ...] = (
    (InstanceNotFoundError, 404),
    (QuarantineItemNotFoundError, 404),
    (InstanceExistsError, 409),
    (NotRegisteredError, 400),
    (InvalidEntityIdError, 400),
    (UnknownOperationError, 400),
    (InvalidArgumentError, 400),
    (ArgumentTypeError, 400),
    (SerializationError, 400),
    (InvalidOperationError, 409),
    (HubConfigError, 500),
    (ValueError, 400),  # the client's own argument checks
    (TimeoutError, 504),
    (UnavailableError, 503),
    *((lost, 503) for lost in ACTOR_LOST),
)


def error_of(exc: BaseException) -> HttpApiError:
    """The HttpApiError a runtime error answers as."""
    if isinstance(exc, HttpApiError):
        return exc
    status = next((code for cls, code in ERROR_STATUS if isinstance(exc, cls)), 500)
    return HttpApiError(status, str(exc) or type(exc).__name__, type(exc).__name__)


# -- the request guard: bearer token and body size, before any route runs -------------------


@dataclass(frozen=True)
class GuardSettings:
    """What the guard checks: the token's SHA-256 (None: no token) and the body limit."""

    token_sha256: str | None
    max_body_bytes: int

    def authorized(self, header: str | None) -> bool:
        """True if no token is required or ``header`` is ``Bearer <the token>``."""
        if self.token_sha256 is None:
            return True
        scheme, _, presented = (header or "").partition(" ")
        if scheme.lower() != "bearer" or not presented:
            return False
        digest = hashlib.sha256(presented.strip().encode()).hexdigest()
        return hmac.compare_digest(digest, self.token_sha256)


class RequestGuard:
    """ASGI middleware: 401 without the bearer token, 413 past the body limit.

    The body is read here, up to the limit, and handed on whole: a route never sees a
    request that was too large, whether it announced its length or streamed it.
    """

    def __init__(self, app: Callable[..., Any]) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        """Check the request, then pass it (with its buffered body) to the app."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        settings: GuardSettings | None = getattr(scope["app"].state, "guard", None)
        refusal = self._refusal(settings, Headers(scope=scope))
        body: bytes | None = b""
        if refusal is None and settings is not None:
            body, refusal = await self._read(receive, settings.max_body_bytes)
            if body is None:
                return  # the client went away mid-body: a partial body must not be acted on
        if refusal is not None:
            await refusal.response()(scope, receive, send)
            return
        path = scope["path"]
        if len(path) > 1 and path.endswith("/"):
            # Durable Functions trims slashes: ``instances/`` is ``instances``.
            scope = {**scope, "path": path.rstrip("/")}
        await self.app(scope, replay_body(body or b"", receive), send)

    @staticmethod
    def _refusal(settings: GuardSettings | None, headers: Headers) -> HttpApiError | None:
        if settings is None:
            return HttpApiError(503, "the HTTP API is starting")
        if not settings.authorized(headers.get("authorization")):
            message = "missing or wrong bearer token (Authorization: Bearer ...)"
            return HttpApiError(401, message, headers={"WWW-Authenticate": "Bearer"})
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > settings.max_body_bytes):
            return _too_large(settings.max_body_bytes)
        return None

    @staticmethod
    async def _read(receive: Callable, limit: int) -> tuple[bytes | None, HttpApiError | None]:
        """(the whole body, None), (b"", 413 error), or (None, None) if the client left."""
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return None, None
            body += message.get("body", b"")
            if len(body) > limit:
                return b"", _too_large(limit)
            if not message.get("more_body", False):
                return bytes(body), None


def _too_large(limit: int) -> HttpApiError:
    return HttpApiError(413, f"request body larger than the limit of {limit} bytes")


def replay_body(body: bytes, receive: Callable) -> Callable:
    """An ASGI receive that hands out ``body`` whole first, then what ``receive`` gives."""
    sent = False

    async def replay() -> dict:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


# -- request parsing ------------------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def json_body(body: bytes) -> Any:
    """The request's JSON value (None for an empty body); 400 for anything else."""
    if not body.strip():
        return None
    try:
        return json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise HttpApiError(400, f"Invalid JSON content: {exc}", "JsonReaderException") from None


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def moment(value: str | None, name: str) -> datetime | None:
    """An ISO 8601 time query parameter; UTC when it names no offset."""
    if not value:
        return None
    text = value.strip().replace(" ", "+")  # an unescaped '+' of an offset arrives as ' '
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise HttpApiError(
            400, f"query parameter {name}: not an ISO 8601 time: {value!r}"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def statuses(values: list[str] | None) -> tuple[str, ...] | None:
    """``runtimeStatus`` values (comma-separated and/or repeated), or None for any."""
    names = [n.strip() for v in values or () for n in v.split(",")]
    names = [n for n in names if n]
    if not names:
        return None
    known = {s.value.lower(): s.value for s in OrchestrationStatus}
    unknown = [n for n in names if n.lower() not in known]
    if unknown:
        raise HttpApiError(
            400, f"unknown runtimeStatus {unknown[0]!r}; one of {', '.join(known.values())}"
        )
    return tuple(dict.fromkeys(known[n.lower()] for n in names))


def continuation(token: str | None) -> int:
    """The offset a ``x-ms-continuation-token`` header continues from."""
    token = (token or "").strip()
    if token in ("", "null"):
        return 0
    if not token.isdigit() or int(token) > MAX_COUNT:
        raise HttpApiError(400, f"invalid {CONTINUATION_HEADER} header {token!r}")
    return int(token)


def instance_continuation(token: str | None) -> tuple[int, tuple[float, str] | None]:
    """(offset, keyset) an instance listing's token continues from: a keyset token (what
    this API hands out) or a bare offset (what it handed out before)."""
    key = parse_page_token((token or "").strip())
    return (0, key) if key is not None else (continuation(token), None)


def _origin(request: Request) -> str:
    return f"{request.url.scheme}://{request.url.netloc}"


def _timestamp(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


# -- the application ------------------------------------------------------------------------


def _task_hub(request: Request, task_hub: TaskHub = None) -> None:
    """Every route's ``taskHub``: another hub's name is 404, as Durable Functions answers."""
    served = getattr(request.app.state, "hub", None)
    if task_hub and served is not None and task_hub != served:
        raise HttpApiError(404, f"this API serves task hub {served!r}, not {task_hub!r}")


# The schema is served below the API's prefix (``.../durabletask/openapi.json``), behind the
# same guard (bearer token) as every route; the interactive docs pages are not served.
app = FastAPI(
    title="ray-durable",
    description="Durable Functions compatible management API of a ray-durable task hub",
    docs_url=None,
    redoc_url=None,
    openapi_url=OPENAPI_PATH,
    dependencies=[Depends(_task_hub)],
)
app.add_middleware(RequestGuard)
setattr(app, "openapi", lambda: openapi(app))  # noqa: B010 (a method FastAPI calls)


@app.exception_handler(HttpApiError)
async def _api_error(request: Request, exc: HttpApiError) -> JSONResponse:
    return exc.response()


@app.exception_handler(DurableError)
async def _durable_error(request: Request, exc: DurableError) -> JSONResponse:
    # A typed error a route raises itself, outside ``_run`` (an entity id from the path).
    return error_of(exc).response()


@app.exception_handler(StarletteHTTPException)
async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    return HttpApiError(exc.status_code, str(exc.detail), "HttpException").response()


@app.exception_handler(RequestValidationError)
async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    # 400, not FastAPI's 422: Durable Functions answers a bad query value with 400.
    return HttpApiError(400, validation_message(exc), "ValidationError").response()


async def run_client(hub: str, fn: Callable[..., Any], *args: Any) -> Any:
    """Run a client call (awaited if async, else in a thread); map its errors to HTTP."""
    try:
        if inspect.iscoroutinefunction(fn):
            return await fn(*args)
        return await run_in_threadpool(fn, *args)
    except Exception as exc:
        error = error_of(exc)
        if error.status >= 500:
            logs.event(log, logging.ERROR, "request failed", exc_info=True, hub=hub)
        raise error from exc


async def instance_action(
    client: DurableClient,
    instance_id: str,
    action: str,
    *,
    reason: str = "",
    new_id: bool = True,
    event: tuple[str, Callable[[], Awaitable[Any]]] | None = None,
) -> Any:
    """One management action on an instance, checked as Durable Functions checks it.

    ``action`` is one of terminate, suspend, resume, restart, purge, rewind or raiseEvent
    (with ``event``: its name and a coroutine giving its data, read once the instance is
    known to run). The API's routes and the dashboard's buttons both come here.
    """

    async def run(fn: Callable[..., Any], *args: Any) -> Any:
        return await run_client(client.hub, fn, *args)

    record, _ = await run(client.get_record_async, instance_id, False)
    if record is None:
        raise HttpApiError(404, f"no orchestration instance with id {instance_id!r}")
    if action == "restart":
        return await run(client.restart, instance_id, new_id)
    if action == "purge":
        if is_running(record.status):
            raise HttpApiError(412, f"instance {instance_id!r} is {record.status}; terminate it")
        return await run(client.purge_instance_history, instance_id)
    if action == "rewind":
        if record.status != OrchestrationStatus.FAILED:
            raise HttpApiError(412, f"instance {instance_id!r} is {record.status}, not Failed")
        raise HttpApiError(501, "rewind is not supported; restart the instance instead")
    if not is_running(record.status):
        raise HttpApiError(410, f"instance {instance_id!r} is {record.status}")
    if action == "raiseEvent" and event is not None:
        name, data = event
        return await run(client.raise_event, instance_id, name, await data())
    if action not in OPERATIONS:
        raise HttpApiError(404, f"no operation {action!r} on instances")
    return await run(getattr(client, action), instance_id, reason)


def _accepted() -> Response:
    return Response(status_code=202)


def _text(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise HttpApiError(400, "request content is neither JSON nor UTF-8 text") from None


#: the operations of ``POST instances/{id}/{operation}`` (``restart`` has a route of its own)
OPERATIONS = ("terminate", "suspend", "resume", "rewind")
Operation = Annotated[str, Path(json_schema_extra={"enum": list(OPERATIONS)})]
Reason = Annotated[str | None, Query(description="recorded in the history")]
NewId = Annotated[Flag, flag("restartWithNewInstanceId", "restart under a new instance id")]
ShowInput = Annotated[Flag, flag("showInput", "include the instance's input")]
EVENT_BODY = body_doc("the event's data (JSON)")
START_BODY = body_doc("the orchestration's input (JSON)")
SIGNAL_BODY = body_doc("the operation's input (JSON, or text passed as a string)", text=True)
PURGED_OR_ERROR = {"anyOf": [PURGED, ERROR]}
#: What a route answers that accepts work (202 without a body) or starts an instance (202
#: with its check-status payload); any other status is the error body (``answers``).
ACCEPTED: dict[str, Any] = {
    "status_code": 202,
    "response_class": Response,
    "responses": answers(s202=("accepted", None)),
}
STARTED: dict[str, Any] = {"status_code": 202, "responses": answers(s202=("started", CHECK_STATUS))}


#: The Serve deployment options of the API's and the dashboard's replicas. No CPU: a
#: replica waits on the hub; its access log goes to Serve's files only.
REPLICA_OPTIONS: dict[str, Any] = {
    "ray_actor_options": {
        "num_cpus": 0,
        "runtime_env": {"env_vars": {"RAY_SERVE_LOG_TO_STDERR": "0"}},
    },
    "max_ongoing_requests": 32,
}


# Serve pickles this class when it is decorated: whatever its methods use must be defined
# above this line.
@serve.deployment(**REPLICA_OPTIONS)
@serve.ingress(app)
class DurableHttpApi:
    """The Serve replica: routes of the management API over one DurableClient."""

    def __init__(self, hub: str, token_sha256: str | None, max_body_bytes: int) -> None:
        logs.configure()
        self.hub = hub
        self.client = DurableClient.connect(hub=hub)
        app.state.hub = hub
        app.state.guard = GuardSettings(token_sha256, max_body_bytes)

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await run_client(self.hub, fn, *args)

    def _check_status(self, request: Request, instance_id: str) -> JSONResponse:
        payload = management_urls(_origin(request), instance_id, self.hub)
        headers = {"Location": payload["statusQueryGetUri"], "Retry-After": RETRY_AFTER_START}
        return JSONResponse(payload, status_code=202, headers=headers)

    # -- orchestrations -------------------------------------------------------------------

    @app.post("/orchestrators/{name}", **STARTED, openapi_extra=START_BODY)
    async def start(self, request: Request, name: str, version: str | None = None) -> JSONResponse:
        """Start an orchestration; 202 with the check-status payload."""
        return await self._start(request, name, None, version)

    @app.post("/orchestrators/{name}/{instance_id}", **STARTED, openapi_extra=START_BODY)
    async def start_with_id(
        self, request: Request, name: str, instance_id: str, version: str | None = None
    ) -> JSONResponse:
        """Start an orchestration with a chosen instance id."""
        return await self._start(request, name, instance_id, version)

    async def _start(
        self, request: Request, name: str, instance_id: str | None, version: str | None
    ) -> JSONResponse:
        data = json_body(await request.body())
        # A caller's W3C trace context: the start, and the instance's spans, join its trace.
        with tracing.activated(request.headers.get("traceparent")):
            iid = await self._run(
                self.client.start_new_async, name, data, instance_id, version or None
            )
        return self._check_status(request, iid)

    @app.get(
        "/instances/{instance_id}",
        responses=answers(
            s200=("finished", STATUS),
            s202=("still running", STATUS),
            s500=("failed, with returnInternalServerErrorOnFailure=true", STATUS),
        ),
    )
    async def get_status(
        self,
        request: Request,
        instance_id: str,
        show_history: Annotated[Flag, flag("showHistory", "include the history")] = False,
        show_output: Annotated[Flag, flag("showHistoryOutput", "with outputs")] = False,
        show_input: ShowInput = True,
        failure_500: Annotated[
            Flag, flag("returnInternalServerErrorOnFailure", "answer 500 if it failed")
        ] = False,
    ) -> JSONResponse:
        """An instance's status: 202 while it runs, 200 once finished, 404 if unknown."""
        record, history = await self._run(self.client.get_record_async, instance_id, show_history)
        if record is None:
            raise HttpApiError(404, f"no orchestration instance with id {instance_id!r}")
        body = status_payload(
            record, show_input=show_input, history=history, show_history_output=show_output
        )
        if is_running(record.status):
            headers = {"Location": str(request.url), "Retry-After": RETRY_AFTER_RUNNING}
            return JSONResponse(body, status_code=202, headers=headers)
        failed = record.status == OrchestrationStatus.FAILED
        return JSONResponse(body, status_code=500 if failed and failure_500 else 200)

    @app.get("/instances", responses=answers(s200=("a page", {"type": "array", "items": STATUS})))
    async def query(
        self,
        runtime_status: Statuses = None,
        created_from: Annotated[str | None, time_query("createdTimeFrom", "from")] = None,
        created_to: Annotated[str | None, time_query("createdTimeTo", "to")] = None,
        prefix: Prefix = None,
        top: PageSize = DEFAULT_PAGE_SIZE,
        show_input: ShowInput = True,
        token: Continuation = None,
    ) -> JSONResponse:
        """Instances matching the filters, a page at a time (``x-ms-continuation-token``)."""
        offset, after = instance_continuation(token)
        query = InstanceQuery(
            statuses(runtime_status),
            _timestamp(moment(created_from, "createdTimeFrom")),
            _timestamp(moment(created_to, "createdTimeTo")),
            prefix or None,
            top + 1,  # one more than asked tells whether a next page exists
            offset,
            after,
        )
        records = await self._run(self.client.query_records_async, query)
        body = [status_payload(r, show_input=show_input) for r in records[:top]]
        response = JSONResponse(body)
        if len(records) > top:
            # Keyset, not offset: the next page costs the same however deep it is.
            response.headers[CONTINUATION_HEADER] = page_token(records[top - 1])
        return response

    @app.post(
        "/instances/{instance_id}/raiseEvent/{event_name}", **ACCEPTED, openapi_extra=EVENT_BODY
    )
    async def raise_event(self, request: Request, instance_id: str, event_name: str) -> Response:
        """Send an external event (JSON body); 410 once the instance finished."""

        async def data() -> Any:
            if _media_type(request) != "application/json":
                raise HttpApiError(400, "Only application/json request content is supported")
            return json_body(await request.body())

        await instance_action(self.client, instance_id, "raiseEvent", event=(event_name, data))
        return _accepted()

    @app.post("/instances/{instance_id}/restart", **STARTED)
    async def restart(self, request: Request, instance_id: str, new_id: NewId = True) -> Response:
        """Start a finished (or running) instance again with its input; 202 with its URLs."""
        iid = await instance_action(self.client, instance_id, "restart", new_id=new_id)
        return self._check_status(request, iid)

    @app.post("/instances/{instance_id}/{operation}", **ACCEPTED)
    async def operate(
        self,
        request: Request,
        instance_id: str,
        operation: Operation,
        reason: Reason = None,
        new_id: NewId = True,
    ) -> Response:
        """terminate, suspend, resume (202; 410 once finished), rewind."""
        op = operation.lower()
        if op == "restart":  # any case, as before the route of its own
            return await self.restart(request, instance_id, new_id)
        if op not in OPERATIONS:
            raise HttpApiError(404, f"no operation {operation!r} on instances")
        await instance_action(self.client, instance_id, op, reason=reason or "")
        return _accepted()

    @app.delete("/instances/{instance_id}", responses=answers(s200=("purged", PURGED)))
    async def purge(self, instance_id: str) -> JSONResponse:
        """Delete a finished instance's history; 412 while it runs."""
        deleted = await instance_action(self.client, instance_id, "purge")
        return JSONResponse({"instancesDeleted": deleted})

    @app.delete(
        "/instances",
        responses=answers(s200=("purged", PURGED), s404=("none matched", PURGED_OR_ERROR)),
    )
    async def purge_by(
        self,
        runtime_status: Statuses = None,
        created_from: Annotated[str | None, time_query("createdTimeFrom", "required")] = None,
        created_to: Annotated[str | None, time_query("createdTimeTo", "default: now")] = None,
        prefix: Prefix = None,
    ) -> JSONResponse:
        """Delete finished instances by filter (``createdTimeFrom`` required); 404 if none."""
        since = moment(created_from, "createdTimeFrom")
        if since is None:
            raise HttpApiError(400, "Please provide value for 'createdTimeFrom' parameter.")
        until = moment(created_to, "createdTimeTo") or datetime.now(timezone.utc)
        deleted = await self._run(
            self.client.purge_instance_history_by,
            since,
            until,
            statuses(runtime_status),
            prefix or None,
        )
        body = {"instancesDeleted": deleted}
        return JSONResponse(body, status_code=200 if deleted else 404)

    # -- entities -------------------------------------------------------------------------

    @app.post("/entities/{name}/{key}", **ACCEPTED, openapi_extra=SIGNAL_BODY)
    async def signal(
        self,
        request: Request,
        name: str,
        key: str,
        op: Annotated[str, Query(min_length=1, description="the operation (?op=add)")],
    ) -> Response:
        """Signal an entity operation (``?op=``); 202 once it is durably applied."""
        body = await request.body()
        data: Any = None
        if body and _media_type(request) == "application/json":
            data = json_body(body)
        elif body:
            data = _text(body)  # Durable Functions passes other content as a string
        await self._run(self.client.signal_entity, EntityId(name, key), op, data)
        return _accepted()

    @app.delete("/entities/{name}/{key}", **ACCEPTED)
    async def delete_entity(self, name: str, key: str) -> Response:
        """Signal the entity's ``delete`` operation (as Durable Functions does)."""
        await self._run(self.client.signal_entity, EntityId(name, key), "delete", None)
        return _accepted()

    @app.get("/entities/{name}/{key}", responses=answers(s200=("its state", {})))
    async def read_entity(self, name: str, key: str) -> JSONResponse:
        """The entity's state as JSON; 404 if it has none."""
        eid = EntityId(name, key)
        row = await self._run(self.client.read_entity_record_async, eid)
        if row is None or not row[1]:
            raise HttpApiError(404, f"entity {eid} has no state")
        return JSONResponse(state_view(row[0]))

    @app.get("/entities", responses=answers(s200=("a page", ENTITY_PAGE)))
    async def list_all_entities(
        self,
        top: PageSize = DEFAULT_PAGE_SIZE,
        state: FetchState = False,
        token: Continuation = None,
    ) -> JSONResponse:
        """Every stored entity, a page at a time."""
        return await self._list_entities(None, top, state, token)

    @app.get("/entities/{name}", responses=answers(s200=("a page", ENTITY_PAGE)))
    async def list_entities(
        self,
        name: str,
        top: PageSize = DEFAULT_PAGE_SIZE,
        state: FetchState = False,
        token: Continuation = None,
    ) -> JSONResponse:
        """Stored entities of one name, a page at a time."""
        return await self._list_entities(name, top, state, token)

    async def _list_entities(
        self, name: str | None, top: int, fetch_state: bool, token: str | None
    ) -> JSONResponse:
        offset = continuation(token)
        page, more = await self._run(self.client.get_entities, name, top, offset)
        body = []
        for meta in page:
            if not meta.exists:
                continue
            eid = meta.entity_id
            state = None
            if fetch_state:
                row = await self._run(self.client.read_entity_record_async, eid)
                state = state_view(row[0]) if row else None
            when = meta.last_modified_time.timestamp()
            body.append(entity_payload(eid.name, eid.key, when, state, fetch_state))
        response = JSONResponse(body)
        if more is not None:
            response.headers[CONTINUATION_HEADER] = str(more)
        return response

    # -- quarantined work ----------------------------------------------------------------

    @app.get("/quarantine", responses=answers(s200=("the list", QUARANTINE_LIST)))
    async def quarantined(self) -> JSONResponse:
        """Work set aside as poison, oldest first."""
        items = await self._run(self.client.list_quarantined)
        return JSONResponse([quarantined_payload(item) for item in items])

    @app.post("/quarantine/{item_id}/retry", responses=answers(s200=("retried", QUARANTINED)))
    async def retry_quarantined(self, item_id: str) -> JSONResponse:
        """Run a quarantined item again; 404 if the list has no such id."""
        item = await self._run(self.client.retry_quarantined, item_id)
        return JSONResponse(quarantined_payload(item))

    @app.delete("/quarantine/{item_id}", responses=answers(s200=("discarded", QUARANTINED)))
    async def discard_quarantined(self, item_id: str) -> JSONResponse:
        """Drop a quarantined item from the list (the instance stays Failed)."""
        item = await self._run(self.client.discard_quarantined, item_id)
        return JSONResponse(quarantined_payload(item))


# -- starting and stopping ------------------------------------------------------------------


class HttpApiUrl(str):
    """The API's base URL (a str); ``stop()`` stops the API, for callers that hold on to it."""

    #: the dashboard's URL when it is served too (None: not served)
    dashboard: str | None = None

    def stop(self) -> None:
        """Stop the HTTP API (``stop_http``)."""
        stop_http()


def serve_http(
    client_or_hub: DurableClient | Runtime | str | None,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    token_env: str | None = None,
    max_body_bytes: int = 1_048_576,
    hub: str | None = None,
    dashboard: bool = True,
) -> str:
    """Serve a running hub's management API with Ray Serve; returns its base URL.

    ``client_or_hub`` is a DurableClient (or Runtime) or a hub name; ``hub`` names it
    instead. ``port=0`` picks a free port. With ``token_env``, the environment variable
    it names holds a token every request must present as ``Authorization: Bearer``.
    With ``dashboard``, the web dashboard is served too, at ``/dashboard/`` on the same
    host and port, behind the same token (``HttpApiUrl.dashboard`` is its address).
    """
    hub_name = _hub_of(client_or_hub, hub)
    HttpConfig(
        host=host,
        port=port,
        token_env=token_env,
        max_body_bytes=max_body_bytes,
        dashboard=dashboard,
    )
    token = _token(token_env)
    if not isinstance(client_or_hub, DurableClient):
        DurableClient.connect(hub=hub_name)  # a clear error now if the hub is not running
    running = _serve_address()
    if port == 0:
        port = running[1] if running and running[0] == host else _free_port(host)
    if running is None:
        serve.start(http_options={"host": host, "port": port})
    elif running != (host, port):
        raise HubConfigError(
            f"Ray Serve already listens on {running[0]}:{running[1]}, not {host}:{port}; "
            "call stop_http() (or serve.shutdown()) first, or use that address"
        )
    digest = None if token is None else hashlib.sha256(token.encode()).hexdigest()
    serve.run(
        cast(Any, DurableHttpApi).bind(hub_name, digest, max_body_bytes),
        name=APP_NAME,
        route_prefix=BASE_PATH,
    )
    origin = f"http://{_url_host(host)}:{port}"
    url = HttpApiUrl(f"{origin}{BASE_PATH}/")
    _wait_until_served(url + "instances?top=1", token)
    if dashboard:
        from .dashboard.app import ROOT, deploy  # the dashboard imports this module

        deploy(hub_name, digest, max_body_bytes)
        url.dashboard = f"{origin}{ROOT}/"
        _wait_until_served(url.dashboard + "static/dashboard.css", token)
    elif DASHBOARD_APP in serve.status().applications:
        serve.delete(DASHBOARD_APP)
    return url


def stop_http() -> None:
    """Delete the API's Serve application; stop Serve too if nothing else runs on it."""
    if not ray.is_initialized():
        return
    applications = serve.status().applications
    for name in (DASHBOARD_APP, APP_NAME):
        if name in applications:
            serve.delete(name)
    applications = serve.status().applications
    if not applications:
        _shutdown_serve()


def _shutdown_serve(timeout: float = READY_TIMEOUT_SECONDS) -> None:
    """``serve.shutdown()``, without the warning each of its calls prints.

    serve.shutdown() waits in a call to the controller that lasts until the controller
    kills itself, and the controller's calls are retried forever, so Ray reports "Task
    ServeController.graceful_shutdown failed ... killed by `ray.kill`" to the driver. Asking
    for the shutdown without waiting in that call, then watching the controller's name go,
    stops Serve as completely with nothing pending at the moment the controller dies.
    """
    try:
        from ray.serve._private.constants import SERVE_CONTROLLER_NAME, SERVE_NAMESPACE
        from ray.serve.context import _disconnect, _get_global_client  # no public API

        client: Any = _get_global_client()
        controller = client._controller
        client.shutdown_cached_handles()
        ray.get(controller.graceful_shutdown.remote(False), timeout=timeout)
    except Exception:  # no controller, or Serve's private API changed: its own way
        serve.shutdown()
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            ray.get_actor(SERVE_CONTROLLER_NAME, namespace=SERVE_NAMESPACE)
        except ValueError:
            break  # the controller released its proxies, replicas and name, then exited
        time.sleep(0.1)
    else:
        log.warning("Ray Serve did not stop within %g s; stopping it the blunt way", timeout)
        serve.shutdown()
        return
    client._shutdown = True
    _disconnect()


def _hub_of(client_or_hub: Any, hub: str | None) -> str:
    client = getattr(client_or_hub, "client", client_or_hub)  # a Runtime carries its client
    name: str | None
    if isinstance(client, DurableClient):
        name = client.hub
    elif isinstance(client, str) or client is None:
        name = client
    else:
        raise ArgumentTypeError.of(
            "serve_http", "a DurableClient, a Runtime or a hub name", client_or_hub
        )
    if hub is not None and (not isinstance(hub, str) or not hub):
        raise InvalidArgumentError.of("serve_http(hub=)", "a non-empty hub name or None", hub)
    if name is not None and hub is not None and name != hub:
        raise InvalidArgumentError.of(
            "serve_http(hub=)", f"None or the hub of the client given ({name!r})", hub
        )
    name = name or hub
    if not name:
        raise InvalidArgumentError.of(
            "serve_http", "the hub to serve: a hub name, a DurableClient or hub=", client_or_hub
        )
    return name


def _token(token_env: str | None) -> str | None:
    if token_env is None:
        return None
    token = os.environ.get(token_env, "").strip()
    if not token:
        raise HubConfigError(
            f"http.token_env: environment variable {token_env!r} is not set or empty; "
            "set it to the bearer token clients must present"
        )
    return token


def _free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _url_host(host: str) -> str:
    # A wildcard address is where the server listens, not where a client connects.
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def _serve_address() -> tuple[str, int] | None:
    """(host, port) of the running Serve proxy; None if Serve is not running."""
    try:
        from ray.serve.context import _get_global_client  # no public getter exists

        config = cast(Any, _get_global_client()).http_config
    except Exception:  # RayServeException when no controller runs, or a changed private API
        return None
    return config.host, config.port


def _wait_until_served(url: str, token: str | None) -> None:
    """Block until the proxy routes requests to ``url``'s application."""
    probe = urllib.request.Request(url)
    if token is not None:
        probe.add_header("Authorization", f"Bearer {token}")
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while True:
        try:
            with urllib.request.urlopen(probe, timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass  # not listening or not routed yet
        if time.monotonic() > deadline:
            raise DurableError(
                f"the HTTP API did not answer at {url} within {READY_TIMEOUT_SECONDS:g} s"
            )
        time.sleep(0.2)
