"""The dashboard's pages as HTML: pure functions of the hub's records, no Ray, no web framework.

Everything shown is escaped here, once, by ``_e``: ids, names, custom status, states and
error messages are the user's and may hold markup. The pages carry no inline script or
style (the app's Content-Security-Policy forbids both), so even a value that slipped
through could not run.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from html import escape
from typing import Any
from urllib.parse import quote, urlencode

from ...orchestration.status import OrchestrationStatus
from ...store import HubOverview, InstanceRecord
from ..http_json import REPR_KEY, TYPE_KEY, UNREADABLE_KEY, page_token, timestamp
from . import timeline

#: Where the dashboard is served (a Serve application of its own).
ROOT = "/dashboard"
STATUSES = [s.value for s in OrchestrationStatus]
#: Instance page buttons: the action, its label, and whether it needs a running instance.
ACTIONS = (
    ("suspend", "Suspend", True),
    ("resume", "Resume", True),
    ("terminate", "Terminate", True),
    ("restart", "Restart", False),
    ("purge", "Purge", False),
)


def _e(value: Any) -> str:
    return escape(str(value), quote=True)


def _json(value: Any) -> str:
    return _e(json.dumps(value, indent=2, ensure_ascii=False, default=str))


def _when(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    text = datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    return f'<time datetime="{_e(timestamp(seconds))}">{text}</time>'


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def instance_url(instance_id: str) -> str:
    """The instance's page."""
    return f"{ROOT}/instances/{quote(instance_id, safe='')}"


def entity_url(name: str, key: str) -> str:
    """The entity's page."""
    return f"{ROOT}/entities/view?{urlencode({'name': name, 'key': key})}"


def _badge(status: str) -> str:
    return f'<span class="status {_e(status.lower())}">{_e(status)}</span>'


def page(hub: str, title: str, body: str, live: bool = False) -> str:
    """A whole page: the navigation, then ``body`` in the (live-refreshed) main element."""
    links = (("/", "Overview"), ("/instances", "Instances"), ("/entities", "Entities"))
    nav = "".join(f'<a href="{ROOT}{path}">{label}</a>' for path, label in links)
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(title)} - ray-durable</title>"
        f'<link rel="stylesheet" href="{ROOT}/static/dashboard.css">'
        f'<script src="{ROOT}/static/dashboard.js" defer></script></head><body>'
        f'<header><span class="brand">ray-durable</span> <span class="hub">hub {_e(hub)}</span>'
        f"<nav>{nav}</nav></header>{main(title, body, live)}</body></html>"
    )


def main(title: str, body: str, live: bool = False) -> str:
    """The part of a page a live refresh replaces."""
    return f'<main id="content" data-live="{int(live)}"><h1>{_e(title)}</h1>{body}</main>'


def login(failed: bool = False, next_url: str = ROOT + "/") -> str:
    """The token form: the one page served without the token."""
    note = '<p class="error">That token is not the one configured.</p>' if failed else ""
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        "<title>Sign in - ray-durable</title></head><body><main><h1>ray-durable dashboard</h1>"
        f"{note}<p>This hub's API needs its bearer token.</p>"
        f'<form method="post" action="{ROOT}/login">'
        f'<input type="hidden" name="next" value="{_e(next_url)}">'
        '<label>Token <input type="password" name="token" autocomplete="current-password" '
        'autofocus></label> <button type="submit">Sign in</button></form></main></body></html>'
    )


def not_found(hub: str, what: str) -> str:
    """The 404 page, with a way back."""
    body = f'<p>{_e(what)}</p><p><a href="{ROOT}/instances">Back to the instances</a></p>'
    return page(hub, "Not found", body)


# -- overview -------------------------------------------------------------------------------


def overview(hub: str, ov: HubOverview, now: float) -> str:
    """The hub at a glance: statuses, rates, timers, entities, hosts, what needs a person."""
    cards = "".join(
        f'<a class="card" href="{ROOT}/instances?status={status}">{_badge(status)}'
        f'<span class="count">{ov.by_status.get(status, 0)}</span></a>'
        for status in STATUSES
    )
    minute = int(now // 60) * 60
    minutes = [minute - 60 * i for i in range(59, -1, -1)]
    chart = _rate_chart(
        minutes,
        [ov.started_per_minute.get(m, 0) for m in minutes],
        [ov.finished_per_minute.get(m, 0) for m in minutes],
    )
    attention = []
    health = ov.health
    if health.quarantined:
        attention.append(f"{health.quarantined} quarantined item(s) (durable quarantine list)")
    if health.oldest_pending is not None:
        attention.append(f"oldest Pending instance waits for {_age(now - health.oldest_pending)}")
    if health.outbox_depth:
        attention.append(f"{health.outbox_depth} outbox message(s) not delivered yet")
    needs = "".join(f"<li>{_e(a)}</li>" for a in attention) or "<li>nothing</li>"
    lease = ov.lease
    holder = (
        "no supervisor has held this hub"
        if lease is None
        else f"{lease.holder.host} pid {lease.holder.pid} (epoch {lease.epoch}, "
        f"lease {'valid' if lease.expires_at > now else 'expired'})"
    )
    timers = f"{ov.pending_timers} pending"
    if ov.next_timer is not None:
        timers += f", next due {_when(ov.next_timer)}"
    entities = _rows(
        ("entity", "stored"),
        [
            (f'<a href="{ROOT}/entities?{urlencode({"name": n})}">{_e(n)}</a>', str(c))
            for n, c in sorted(ov.entities_by_name.items())
        ],
    )
    in_flight, hosts = _hosts(ov)
    body = (
        f'<section class="cards">{cards}</section>'
        f"<h2>Started and finished per minute, last hour</h2>{chart}"
        f'<h2>Needs a person</h2><ul class="attention">{needs}</ul>'
        f"<h2>Supervisor</h2><p>{_e(holder)}</p>"
        f"<h2>Durable timers</h2><p>{timers}</p>"
        f'<h2>Activities</h2><p class="in-flight">{_e(in_flight)}</p>'
        f"<h2>Entities by name</h2>{entities}<h2>Hosts</h2>{hosts}"
    )
    return body


def _hosts(ov: HubOverview) -> tuple[str, str]:
    """The activities in flight (a sentence) and the table of hosts."""
    flying = ov.in_flight_by_host
    known = [c for c in flying.values() if c is not None]
    in_flight = f"{sum(known)} activities in flight"
    if len(known) < len(flying):
        in_flight += f" ({len(flying) - len(known)} host(s) did not answer)"
    rows = [
        (_e(h or "(not placed yet)"), str(c), _count(flying[h]) if h in flying else "-")
        for h, c in sorted(ov.live_by_host.items())
    ]
    return in_flight, _rows(("host", "unfinished instances on it", "activities in flight"), rows)


def _count(value: int | None) -> str:
    return "no answer" if value is None else str(value)


def _rate_chart(minutes: list[int], started: list[int], finished: list[int]) -> str:
    width, height, pad = 960, 120, 20
    peak = max([1, *started, *finished])
    step = (width - 2 * pad) / len(minutes)
    bars = []
    for i, (s, f) in enumerate(zip(started, finished)):
        x = pad + i * step
        for offset, value, cls in ((0.0, s, "started"), (step / 2, f, "finished")):
            h = (height - 2 * pad) * value / peak
            label = f"{cls} {value} at {datetime.fromtimestamp(minutes[i], tz=timezone.utc):%H:%M}"
            bars.append(
                f'<rect class="rate {cls}" x="{x + offset:.1f}" y="{height - pad - h:.1f}" '
                f'width="{max(step / 2 - 1, 1):.1f}" height="{h:.1f}"><title>{label}</title></rect>'
            )
    return (
        f'<svg class="rates" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}">{"".join(bars)}'
        f'<text x="{pad}" y="{height - 4}">-60 min</text>'
        f'<text x="{width - pad}" y="{height - 4}" text-anchor="end">now (peak {peak})</text>'
        '</svg><p class="legend"><span class="started">started</span> '
        '<span class="finished">finished</span></p>'
    )


def _rows(header: tuple[str, ...], rows: Sequence[tuple[str, ...]], cls: str = "") -> str:
    """A table; the cells are HTML already escaped by the caller."""
    if not rows:
        return '<p class="empty">none</p>'
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


# -- instances ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Filters:
    """The instance list's filters, as the form sends them."""

    status: str = ""
    name: str = ""
    created_from: str = ""
    created_to: str = ""
    prefix: str = ""

    def query(self) -> dict[str, str]:
        """The filters as URL parameters (the empty ones left out)."""
        pairs = {
            "status": self.status,
            "name": self.name,
            "from": self.created_from,
            "to": self.created_to,
            "prefix": self.prefix,
        }
        return {k: v for k, v in pairs.items() if v}


def instances(records: list[InstanceRecord], filters: Filters, more: bool, size: int) -> str:
    """The filter form, a page of instances (newest first) and the link to the next page."""
    form = (
        f'<form class="filters" method="get" action="{ROOT}/instances">'
        f"<label>Status {_select('status', STATUSES, filters.status)}</label>"
        f'<label>Name <input name="name" value="{_e(filters.name)}"></label>'
        f'<label>Created from <input type="datetime-local" step="1" name="from" '
        f'value="{_e(filters.created_from)}"></label>'
        f'<label>to <input type="datetime-local" step="1" name="to" '
        f'value="{_e(filters.created_to)}"></label>'
        f'<label>Id prefix <input name="prefix" value="{_e(filters.prefix)}"></label>'
        '<button type="submit">Filter</button></form>'
    )
    rows = [
        (
            f'<a href="{_e(instance_url(r.instance_id))}">{_e(r.instance_id)}</a>',
            _e(r.name),
            _badge(r.status),
            _when(r.created_time),
            _when(r.last_updated_time),
        )
        for r in records[:size]
    ]
    table = _rows(("instance", "name", "status", "created (UTC)", "updated (UTC)"), rows, "list")
    pager = ""
    if more:
        after = {**filters.query(), "after": page_token(records[size - 1])}
        pager = _next(f"{ROOT}/instances?{urlencode(after)}")
    return form + table + pager


def _select(name: str, values: list[str], chosen: str) -> str:
    """A drop-down of ``values`` with "(any)" first, ``chosen`` selected."""
    options = "".join(
        f'<option value="{_e(v)}"{" selected" if v == chosen else ""}>{_e(v) or "(any)"}</option>'
        for v in ["", *values]
    )
    return f'<select name="{_e(name)}">{options}</select>'


def _next(url: str) -> str:
    return f'<p class="pager"><a rel="next" href="{_e(url)}">Next page</a></p>'


def instance(
    record: InstanceRecord,
    view: dict[str, Any],
    events: list[dict[str, Any]],
    now: float | None = None,
    history_rows: int = 1000,
    log: tuple[str | None, list[dict[str, Any]]] = (None, []),
) -> str:
    """One instance: its values, failure, progress, timeline, history and actions."""
    now = time.time() if now is None else now
    line = timeline.build(events, record.created_time, now)
    shown = (("input", "Input"), ("output", "Output"), ("customStatus", "Custom status"))
    values = "".join(
        f'<h2>{label}</h2><pre class="value {key}">{_json(view.get(key))}</pre>'
        for key, label in shown
    )
    failure = ""
    details = view.get("failureDetails")
    if details:
        failure = (
            f'<h2>Failure</h2><p class="error">{_e(details.get("errorType"))}: '
            f"{_e(details.get('errorMessage'))}</p>"
            f'<pre class="stack">{_e(details.get("stackTrace") or "")}</pre>'
        )
    rows = _history_rows(events, record.created_time)
    hidden = ""
    if len(rows) > history_rows:
        hidden = f'<p class="note">The first {history_rows} of {len(rows)} events.</p>'
    history = hidden + _rows(("#", "event", "at (UTC)", "details"), rows[:history_rows], "history")
    return (
        f"{_actions(record)}{_facts(record)}{failure}{_progress(*line.progress)}"
        f"<h2>Timeline</h2>{timeline.svg(line)}{values}<h2>History</h2>{history}"
        f"<h2>Log</h2>{_log(*log)}"
    )


def _facts(record: InstanceRecord) -> str:
    parent = record.parent_instance_id
    return _rows(
        ("", ""),
        [
            ("instance", _e(record.instance_id)),
            ("name", _e(record.name)),
            ("version", _e(record.version or "-")),
            ("status", _badge(record.status)),
            ("created", _when(record.created_time)),
            ("last updated", _when(record.last_updated_time)),
            ("host", _e(record.host or "-")),
            (
                "parent",
                f'<a href="{_e(instance_url(parent))}">{_e(parent)}</a>' if parent else "-",
            ),
        ],
        "facts",
    )


def _progress(done: int, scheduled: int) -> str:
    if not scheduled:
        return ""
    return (
        f'<h2>Activities</h2><p class="progress-text">{done} of {scheduled} answered</p>'
        '<svg class="progress" xmlns="http://www.w3.org/2000/svg" width="400" height="14">'
        '<rect class="track" x="0" y="0" width="400" height="14"/>'
        f'<rect class="done" x="0" y="0" width="{400 * done / scheduled:.1f}" height="14"/></svg>'
    )


def _actions(record: InstanceRecord) -> str:
    """The buttons (those of a running instance only while it runs) and the event form."""
    running = not OrchestrationStatus(record.status).is_terminal
    iid = _e(record.instance_id)
    buttons = "".join(
        f'<button class="action" data-action="{op}" data-instance="{iid}"'
        f"{'' if (running or not needs_running) else ' disabled'}>{label}</button>"
        for op, label, needs_running in ACTIONS
        if not (op == "purge" and running)
    )
    raise_form = ""
    if running:
        raise_form = (
            f'<form class="raise-event" data-instance="{iid}">'
            '<label>Event <input name="event" required></label>'
            '<label>Data (JSON) <input name="data" value="null"></label>'
            '<button type="submit">Raise event</button></form>'
        )
    return (
        f'<section class="actions">{buttons}{raise_form}'
        '<p class="result" role="status"></p></section>'
    )


def _log(directory: str | None, lines: list[dict[str, Any]]) -> str:
    """The runtime's log lines about the instance, and where the rest are."""
    where = (
        "No log folder is known to the dashboard's process."
        if directory is None
        else f"Lines from the log files in {directory} on the dashboard's node; on a cluster "
        "each node keeps its own there (hosts on other nodes log on their node)."
    )
    rows = [
        (
            _when(line.get("ts")) if isinstance(line.get("ts"), (int, float)) else "-",
            _e(line.get("level", "")),
            _e(line.get("logger", "")),
            _e(line.get("msg", "")) + (f"<pre>{_e(line['exc'])}</pre>" if line.get("exc") else ""),
        )
        for line in lines
    ]
    return f'<p class="note">{_e(where)}</p>' + _rows(
        ("at (UTC)", "level", "logger", "message"), rows, "log"
    )


def _history_rows(events: list[dict[str, Any]], started: float) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    clock = started
    for i, event in enumerate(events):
        kind = str(event.get("EventType"))
        if kind == "OrchestratorStarted":
            clock = timeline._moment(event.get("Timestamp")) or clock
        rest = {k: v for k, v in event.items() if k != "EventType"}
        detail = _e(json.dumps(rest, ensure_ascii=False, default=str)) if rest else ""
        rows.append((str(i), _e(kind), _when(clock), f"<code>{detail}</code>"))
    return rows


# -- entities -------------------------------------------------------------------------------


def entities(
    rows: list[tuple[str, str, float]], name: str, names: list[str], offset: int, more: bool
) -> str:
    """Stored entities (of one name, if chosen), a page at a time."""
    form = (
        f'<form class="filters" method="get" action="{ROOT}/entities">'
        f"<label>Name {_select('name', names, name)}</label>"
        '<button type="submit">Show</button></form>'
    )
    table = _rows(
        ("entity", "last operation (UTC)"),
        [(f'<a href="{_e(entity_url(n, k))}">{_e(n)}@{_e(k)}</a>', _when(t)) for n, k, t in rows],
        "list",
    )
    pager = ""
    if more:
        query = urlencode({**({"name": name} if name else {}), "offset": offset})
        pager = _next(f"{ROOT}/entities?{query}")
    return form + table + pager


def entity(name: str, key: str, state: Any, exists: bool, locked_by: str | None) -> str:
    """One entity: its state as JSON (or why not), its lock owner, a form to signal it."""
    if not exists:
        shown = '<p class="empty">This entity has no state (deleted, or never written).</p>'
    elif _viewable(state):
        shown = f'<pre class="value state">{_json(state)}</pre>'
    else:
        shown = (
            '<p class="note">The state is not JSON-viewable (a Python object this view cannot '
            "show as JSON); what can be shown:</p>"
            f'<pre class="value state">{_json(state)}</pre>'
        )
    lock = (
        f'locked by <a href="{_e(instance_url(locked_by))}">{_e(locked_by)}</a>'
        if locked_by
        else "not locked"
    )
    form = (
        f'<form class="signal" data-name="{_e(name)}" data-key="{_e(key)}">'
        '<label>Operation <input name="operation" required></label>'
        '<label>Input (JSON) <input name="input" value="null"></label>'
        '<button type="submit">Signal</button></form><p class="result" role="status"></p>'
    )
    return f"<p>{lock}</p><h2>State</h2>{shown}<h2>Signal</h2>{form}"


def _viewable(value: Any) -> bool:
    """False if the JSON view holds a marker of a value it could not show."""
    if isinstance(value, dict):
        if TYPE_KEY in value and REPR_KEY in value or UNREADABLE_KEY in value:
            return False
        return all(_viewable(v) for v in value.values())
    if isinstance(value, list):
        return all(_viewable(v) for v in value)
    return True
