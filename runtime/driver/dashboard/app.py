"""The web dashboard: a Serve application of its own at ``/dashboard/``, beside the HTTP API.

Pages are rendered on the server (``views``) from what the hub's supervisor answers, the
same reads the HTTP API makes; the buttons post to ``/dashboard/api/...``, which run the
API's own checks and client calls (``http_api.instance_action``). Its two assets are files
of the package: nothing is fetched from elsewhere at run time.

With a bearer token configured, every route but the login form needs it: as an
``Authorization: Bearer`` header, or as the session cookie the login form sets (HttpOnly,
SameSite=Strict, scoped to ``/dashboard``, holding an HMAC of the token's digest rather
than the token). Posts must also carry ``X-Dashboard-Action: 1``, which a page of another
site cannot send, so a cookie alone never acts.
"""

# No ``from __future__ import annotations``: FastAPI reads the routes' annotations at run
# time (as in http_api).

import hmac
import json
import secrets
import time
from collections.abc import Callable
from importlib import resources
from typing import Any, cast
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from ray import serve
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers

from ... import logs
from ...entity_id import EntityId
from ...errors import DurableError
from ...orchestration.status import OrchestrationStatus
from ...store import InstanceQuery
from ..client import DurableClient
from ..http_api import (
    DASHBOARD_APP,
    REPLICA_OPTIONS,
    GuardSettings,
    HttpApiError,
    RequestGuard,
    error_of,
    instance_action,
    moment,
    replay_body,
    run_client,
)
from ..http_json import history_event, parse_page_token, state_view, status_payload
from . import views

ROOT = views.ROOT
PAGE_SIZE = 50
#: Rows of the history table (the timeline draws every event).
HISTORY_ROWS = 1000
COOKIE = "durable_dashboard"
ASSETS = {"dashboard.css": "text/css", "dashboard.js": "text/javascript"}
#: No inline script or style, no other origin: markup that slipped into a value cannot run.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


#: How long a session cookie lasts (seconds); the login form asks again after it.
SESSION_SECONDS = 12 * 3600


def session_value(session_key: bytes, issued: int) -> str:
    """A session cookie's value: when it was issued, and an HMAC of that under a key made
    for this deployment (not derived from the token, so the token's digest forges none)."""
    mac = hmac.new(session_key, str(issued).encode(), "sha256").hexdigest()
    return f"{issued}.{mac}"


def session_valid(session_key: bytes, presented: str, now: float) -> bool:
    """True for a cookie ``session_value`` made with this key, not older than a session."""
    issued, _, _ = presented.partition(".")
    if not issued.isdigit() or not presented.isascii():
        return False
    if not 0 <= now - int(issued) <= SESSION_SECONDS:
        return False
    return hmac.compare_digest(presented.encode(), session_value(session_key, int(issued)).encode())


def _cookie(headers: Headers, name: str) -> str | None:
    for part in headers.get("cookie", "").split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


class DashboardGuard:
    """ASGI middleware: the token (header or cookie) on every route but the login form,
    the action header on posts, the body limit, and the security headers on every answer."""

    def __init__(self, app: Callable[..., Any]) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        """Refuse or pass the request; add the security headers to whatever is answered."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def secured(message: Any) -> None:
            if message["type"] == "http.response.start":
                extra = [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        settings: GuardSettings | None = getattr(scope["app"].state, "guard", None)
        path = _relative(scope)
        refusal = self._refusal(settings, scope, path)
        if refusal is not None:
            await refusal(scope, receive, secured)
            return
        assert settings is not None
        body, too_large = await RequestGuard._read(receive, settings.max_body_bytes)
        if body is None:
            return
        if too_large is not None:
            await too_large.response()(scope, receive, secured)
            return
        await self.app(scope, replay_body(body, receive), secured)

    @staticmethod
    def _refusal(settings: GuardSettings | None, scope: dict, path: str) -> Response | None:
        headers, method = Headers(scope=scope), scope["method"]
        if settings is None:
            return HttpApiError(503, "the dashboard is starting").response()
        if path == "/login":
            return None
        if not _signed_in(settings, scope["app"].state.session_key, headers):
            if method == "GET" and not path.startswith(("/api/", "/static/")):
                return HTMLResponse(views.login(next_url=_asked(scope)), status_code=401)
            message = "missing or wrong bearer token (Authorization: Bearer ...)"
            return HttpApiError(401, message, headers={"WWW-Authenticate": "Bearer"}).response()
        if method == "POST" and headers.get("x-dashboard-action") != "1":
            refused = "dashboard actions need the X-Dashboard-Action header"
            return HttpApiError(403, refused).response()
        return None


def _asked(scope: dict) -> str:
    """The URL asked for, as sent (still percent-encoded, with its query)."""
    raw = scope.get("raw_path") or scope["path"].encode()
    query = scope.get("query_string") or b""
    url = raw.decode("latin-1") + ("?" + query.decode("latin-1") if query else "")
    return _local(url)


def _relative(scope: dict) -> str:
    path, root = scope["path"], scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    return path or "/"


def _signed_in(settings: GuardSettings, key: bytes, headers: Headers) -> bool:
    if settings.token_sha256 is None:
        return True
    if headers.get("authorization") and settings.authorized(headers.get("authorization")):
        return True
    presented = _cookie(headers, COOKIE)
    return presented is not None and session_valid(key, presented, time.time())


dashboard = FastAPI(title="ray-durable dashboard", docs_url=None, redoc_url=None, openapi_url=None)
dashboard.add_middleware(DashboardGuard)


@dashboard.exception_handler(HttpApiError)
async def _api_error(request: Request, exc: HttpApiError) -> Response:
    return exc.response()


@dashboard.exception_handler(DurableError)
async def _durable_error(request: Request, exc: DurableError) -> Response:
    return error_of(exc).response()


def _html(request: Request, hub: str, title: str, body: str, live: bool = False) -> HTMLResponse:
    """The page, or just its main element when the page refreshes itself."""
    if request.headers.get("x-dashboard-partial") == "1":
        return HTMLResponse(views.main(title, body, live))
    return HTMLResponse(views.page(hub, title, body, live))


def _datetime_local(value: str, name: str) -> float | None:
    moment_ = moment(value, name)
    return None if moment_ is None else moment_.timestamp()


async def _json_body(request: Request) -> dict[str, Any]:
    try:
        value = json.loads((await request.body()) or b"{}")
    except ValueError as exc:
        raise HttpApiError(400, f"Invalid JSON content: {exc}") from None
    if not isinstance(value, dict):
        raise HttpApiError(400, "the body must be a JSON object")
    return value


def _local(url: str) -> str:
    """``url`` if it is a path of the dashboard (no open redirect), else the overview."""
    if url.startswith(ROOT) and not url.startswith("//") and "\\" not in url:
        return url
    return ROOT + "/"


# Serve pickles the class when it is decorated: what its methods use is defined above.
@serve.deployment(**REPLICA_OPTIONS)
@serve.ingress(dashboard)
class DurableDashboard:
    """The Serve replica: the dashboard's pages and actions over one DurableClient."""

    def __init__(self, hub: str, token_sha256: str | None, max_body_bytes: int) -> None:
        logs.configure()
        self.hub = hub
        self.client = DurableClient.connect(hub=hub)
        self.token_sha256 = token_sha256
        # Made here, never stored or sent: a new replica ends the sessions of the old one.
        self.session_key = secrets.token_bytes(32)
        dashboard.state.session_key = self.session_key
        dashboard.state.guard = GuardSettings(token_sha256, max_body_bytes)

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await run_client(self.hub, fn, *args)

    # -- signing in -------------------------------------------------------------------------

    @dashboard.get("/login")
    async def login_form(self, next: str = ROOT + "/") -> HTMLResponse:
        """The token form."""
        return HTMLResponse(views.login(next_url=_local(next)))

    @dashboard.post("/login")
    async def login(self, request: Request) -> Response:
        """Check the token; set the session cookie and go on, or show the form again."""
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        token = (form.get("token") or [""])[0].strip()
        next_url = _local((form.get("next") or [ROOT + "/"])[0])
        settings = GuardSettings(self.token_sha256, 0)
        if self.token_sha256 is None:
            return RedirectResponse(next_url, status_code=303)
        if not token or not settings.authorized(f"Bearer {token}"):
            return HTMLResponse(views.login(failed=True, next_url=next_url), status_code=401)
        response = RedirectResponse(next_url, status_code=303)
        response.set_cookie(
            COOKIE,
            session_value(self.session_key, int(time.time())),
            max_age=SESSION_SECONDS,
            httponly=True,
            samesite="strict",
            path=ROOT,
        )
        return response

    # -- pages ------------------------------------------------------------------------------

    @dashboard.get("/")
    async def home(self, request: Request) -> HTMLResponse:
        """The hub overview."""
        ov = await self._run(self.client.overview_async, 3600.0)
        body = views.overview(self.hub, ov, time.time())
        return _html(request, self.hub, f"Hub {self.hub}", body, live=True)

    @dashboard.get("/instances")
    async def instances(
        self,
        request: Request,
        status: str = "",
        name: str = "",
        prefix: str = "",
        after: str = "",
    ) -> HTMLResponse:
        """The instance list, newest first, a keyset page at a time."""
        params = request.query_params
        filters = views.Filters(status, name, params.get("from", ""), params.get("to", ""), prefix)
        if status and status not in views.STATUSES:
            raise HttpApiError(400, f"unknown status {status!r}")
        key = parse_page_token(after) if after else None
        if after and key is None:
            raise HttpApiError(400, f"invalid page token {after!r}")
        query = InstanceQuery(
            statuses=(status,) if status else None,
            created_from=_datetime_local(filters.created_from, "from"),
            created_to=_datetime_local(filters.created_to, "to"),
            prefix=prefix or None,
            limit=PAGE_SIZE + 1,
            after=key,
            newest_first=True,
            name=name or None,
        )
        records = await self._run(self.client.query_records_async, query)
        body = views.instances(records, filters, len(records) > PAGE_SIZE, PAGE_SIZE)
        return _html(request, self.hub, "Instances", body)

    @dashboard.get("/instances/{instance_id:path}")
    async def instance(self, request: Request, instance_id: str) -> HTMLResponse:
        """One instance's page."""
        record, blobs = await self._run(self.client.get_record_async, instance_id, True)
        if record is None:
            page = views.not_found(self.hub, f"No orchestration instance {instance_id!r}.")
            return HTMLResponse(page, status_code=404)
        events = [history_event(blob) for blob in blobs or []]
        view = status_payload(record)
        log = await run_in_threadpool(logs.instance_lines, instance_id, self.hub)
        body = views.instance(record, view, events, history_rows=HISTORY_ROWS, log=log)
        running = not OrchestrationStatus(record.status).is_terminal
        return _html(request, self.hub, f"Instance {instance_id}", body, live=running)

    @dashboard.get("/entities")
    async def entities(self, request: Request, name: str = "", offset: int = 0) -> HTMLResponse:
        """Stored entities, a page at a time."""
        if offset < 0:
            raise HttpApiError(400, "offset must be 0 or more")
        page, more = await self._run(self.client.get_entities, name or None, PAGE_SIZE, offset)
        ov = await self._run(self.client.overview_async, 60.0, False)  # the names only
        rows = [
            (m.entity_id.name, m.entity_id.key, m.last_modified_time.timestamp())
            for m in page
            if m.exists
        ]
        names = sorted(ov.entities_by_name)
        body = views.entities(rows, name, names, more or 0, more is not None)
        return _html(request, self.hub, "Entities", body)

    @dashboard.get("/entities/view")
    async def entity(self, request: Request, name: str, key: str) -> HTMLResponse:
        """One entity's page."""
        eid = EntityId(name, key)
        row = await self._run(self.client.entity_row_async, eid)
        if row is None:
            page = views.not_found(self.hub, f"No entity {eid}.")
            return HTMLResponse(page, status_code=404)
        state, exists, locked_by = row
        body = views.entity(name, key, state_view(state) if exists else None, exists, locked_by)
        return _html(request, self.hub, f"Entity {eid}", body)

    @dashboard.get("/static/{asset}")
    async def asset(self, asset: str) -> Response:
        """The stylesheet and the script, from the package."""
        if asset not in ASSETS:
            raise HttpApiError(404, f"no asset {asset!r}")
        data = resources.files(__package__).joinpath("static").joinpath(asset).read_bytes()
        return Response(data, media_type=ASSETS[asset])

    # -- actions ----------------------------------------------------------------------------

    @dashboard.post("/api/instances/{action}")
    async def act(self, request: Request, action: str, id: str) -> JSONResponse:
        """Suspend, resume, terminate, restart, purge or raise an event, as the API does."""
        body = await _json_body(request)
        reason = str(body.get("reason") or "from the dashboard")
        if action == "raiseEvent":
            event = body.get("event")
            if not isinstance(event, str) or not event:
                raise HttpApiError(400, "raiseEvent needs an event name")

            async def data() -> Any:
                return body.get("data")

            await instance_action(self.client, id, action, event=(event, data))
            return JSONResponse({"id": id})
        if action not in {op for op, _, _ in views.ACTIONS}:
            raise HttpApiError(404, f"no action {action!r} on instances")
        result = await instance_action(self.client, id, action, reason=reason)
        if action == "restart":
            return JSONResponse({"id": result})
        if action == "purge":
            return JSONResponse({"id": id, "instancesDeleted": result})
        return JSONResponse({"id": id})

    @dashboard.post("/api/entities/signal")
    async def signal(self, request: Request, name: str, key: str) -> JSONResponse:
        """Signal an entity operation, as the API's ``POST entities/{name}/{key}``."""
        body = await _json_body(request)
        operation = body.get("operation")
        if not isinstance(operation, str) or not operation:
            raise HttpApiError(400, "a signal needs an operation name")
        eid = EntityId(name, key)
        await self._run(self.client.signal_entity, eid, operation, body.get("input"))
        return JSONResponse({"entity": str(eid), "operation": operation})


def deploy(hub: str, token_sha256: str | None, max_body_bytes: int) -> None:
    """Run the dashboard's Serve application (Serve must be started)."""
    serve.run(
        cast(Any, DurableDashboard).bind(hub, token_sha256, max_body_bytes),
        name=DASHBOARD_APP,
        route_prefix=ROOT,
    )
