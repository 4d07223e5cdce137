"""HTTP async response: start an orchestration over HTTP, then poll until it is done.

The Durable Functions "async HTTP API" pattern against a Ray hub: a client POSTs to
``orchestrators/{name}``, gets ``202 Accepted`` with a ``Location`` header (the
``statusQueryGetUri``), and polls it: ``202`` while the work runs, ``200`` with the output
once it is finished. Only the standard library speaks HTTP here (urllib).
Run from the repository root: ``python examples/http_async.py`` (needs the ``http``
extra: ``pip install -e ".[http]"``).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Generator
from email.message import Message
from typing import Any

from runtime import OrchestrationContext, Runtime, Task, activity, orchestrator
from runtime.driver.http_api import serve_http, stop_http


@activity
def render_thumbnail(page: int) -> str:
    """Pretend to render one page of a report."""
    time.sleep(0.2)
    return f"page-{page}.png"


@activity
def publish(thumbnails: list[str]) -> dict[str, Any]:
    """Pretend to publish the rendered pages."""
    return {"published": len(thumbnails), "files": thumbnails}


@orchestrator
def build_report(ctx: OrchestrationContext, pages: int) -> Generator[Task, Any, dict[str, Any]]:
    """Render every page in parallel, then publish them: long enough to be polled."""
    ctx.set_custom_status("rendering")
    thumbnails = yield ctx.task_all([ctx.call_activity(render_thumbnail, p) for p in range(pages)])
    ctx.set_custom_status("publishing")
    return (yield ctx.call_activity(publish, thumbnails))


def request(method: str, url: str, body: Any = None) -> tuple[int, Message, Any]:
    """One JSON request: (status, headers, decoded body); 4xx/5xx are returned, not raised."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            status, headers, raw = response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        status, headers, raw = error.code, error.headers, error.read()
    return status, headers, json.loads(raw) if raw else None


def poll(status_url: str, timeout: float) -> dict[str, Any]:
    """GET the status URL until it answers 200 (done); print each answer."""
    deadline = time.monotonic() + timeout
    while True:
        status, headers, body = request("GET", status_url)
        print(f"GET status -> {status} {body['runtimeStatus']} ({body['customStatus']})")
        if status != 202:
            return body
        if time.monotonic() > deadline:
            raise TimeoutError(f"{status_url} still running after {timeout} s")
        # Honour Retry-After, but a demo need not wait the full 5 seconds it asks for.
        time.sleep(min(float(headers.get("Retry-After", 1)), 0.5))


def main(
    hub: str = "example-http-async", store: str | None = None, pages: int = 6, timeout: float = 120
) -> dict[str, Any]:
    """Start the hub and its HTTP API, run one report over HTTP and return its status."""
    rt = Runtime.start(hub=hub, store=store, register=[render_thumbnail, publish, build_report])
    try:
        base = serve_http(rt.client, port=0)  # port 0: any free port
        print(f"HTTP API at {base}")
        status, headers, payload = request("POST", base + "orchestrators/build_report", pages)
        print(f"POST orchestrators/build_report -> {status}, Location: {headers['Location']}")
        final = poll(payload["statusQueryGetUri"], timeout)
        print(f"output: {final['output']}")
        return final
    finally:
        stop_http()
        rt.shutdown()


if __name__ == "__main__":
    main()
