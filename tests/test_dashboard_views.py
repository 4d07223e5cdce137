"""The dashboard's pages and timeline as pure functions: no Ray, no server, no browser.

The histories are real events passed through the JSON view the API and the dashboard
share (``http_json.event_view``), so what is drawn here is what the page draws.
"""

from __future__ import annotations

import base64
import re
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser

from runtime.driver.dashboard import timeline, views
from runtime.driver.http_json import event_view, page_token, parse_page_token
from runtime.errors import FailureDetails
from runtime.orchestration.history import (
    EventRaised,
    ExecutionCompleted,
    ExecutionStarted,
    OrchestratorStarted,
    SubOrchestrationCreated,
    TaskCompleted,
    TaskFailed,
    TaskScheduled,
    TimerCreated,
)
from runtime.store import InstanceRecord

PURE = True
T0 = datetime(2026, 12, 1, 12, 0, 0, tzinfo=timezone.utc)
HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def at(seconds: float) -> OrchestratorStarted:
    return OrchestratorStarted(T0 + timedelta(seconds=seconds))


def views_of(*events) -> list[dict]:
    return [event_view(e) for e in events]


def fan_out(width: int, answered: int) -> list[dict]:
    events = [at(0), ExecutionStarted("fan")]
    events += [TaskScheduled(i, "work", i) for i in range(width)]
    events.append(at(1.5))
    events += [TaskCompleted(i, i) for i in range(answered)]
    return views_of(*events)


def bars(svg: str) -> list[str]:
    return re.findall(r'<rect class="bar ([a-z ]+)"', svg)


def test_a_fan_out_draws_one_bar_per_activity_and_counts_its_progress():
    line = timeline.build(fan_out(100, 60), T0.timestamp(), T0.timestamp() + 9)
    assert line.progress == (60, 100)
    drawn = bars(timeline.svg(line))
    assert len(drawn) == 100
    assert drawn.count("activity completed") == 60 and drawn.count("activity running") == 40
    # answered work spans its two episodes; unanswered work runs on to now
    done = [s for s in line.spans if s.state == "completed"]
    assert {(s.start, s.end) for s in done} == {(T0.timestamp(), T0.timestamp() + 1.5)}
    assert line.end == T0.timestamp() + 9


def test_ten_thousand_activities_are_thin_unlabelled_rows_each_with_a_tooltip():
    svg = timeline.svg(timeline.build(fan_out(10_000, 10_000), T0.timestamp(), 0.0))
    assert len(bars(svg)) == 10_000
    assert svg.count("<title>") >= 10_000
    assert '<text class="label"' not in svg


def test_timers_children_events_failures_and_the_end_are_drawn():
    child = "child/1 <b>"
    events = views_of(
        at(0),
        ExecutionStarted("flow"),
        TimerCreated(0, T0 + timedelta(seconds=30)),
        SubOrchestrationCreated(1, "sub", child),
        TaskScheduled(2, "charge"),
        at(2),
        TaskFailed(2, FailureDetails("ValueError", "no", "")),
        EventRaised("approval", True),
        at(4),
        ExecutionCompleted("Completed", 1),
    )
    viewed = T0.timestamp() + 7 * 86400  # a week later
    line = timeline.build(events, T0.timestamp() - 50, viewed)
    # what was open when the execution ended was cancelled with it, there and then
    kinds = {(s.kind, s.state) for s in line.spans}
    assert kinds == {
        ("timer", "cancelled"),
        ("suborchestration", "cancelled"),
        ("activity", "failed"),
    }
    assert {s.end for s in line.spans if s.state == "cancelled"} == {T0.timestamp() + 4}
    assert [p.kind for p in line.points] == ["event", "end"]
    # from the execution's first episode (not the instance's creation) to the timer's due time
    assert (line.start, line.end) == (T0.timestamp(), T0.timestamp() + 30)
    svg = timeline.svg(line)
    assert 'class="due"' in svg  # the timer's due time is marked
    assert 'href="/dashboard/instances/child%2F1%20%3Cb%3E"' in svg  # quoted, not markup
    assert "<b>" not in svg


def test_running_work_is_drawn_to_now_not_to_a_far_timer():
    events = views_of(
        at(0),
        ExecutionStarted("flow"),
        TimerCreated(0, T0 + timedelta(days=30)),
        TaskScheduled(1, "slow"),
    )
    line = timeline.build(events, T0.timestamp(), T0.timestamp() + 5)
    svg = timeline.svg(line)
    assert "activity slow (#1): running, 5000 ms" in svg and ">30.0 d</text>" in svg
    assert line.end == (T0 + timedelta(days=30)).timestamp()


def test_page_tokens_round_trip_and_anything_else_is_not_a_token():
    for iid in ["a/é", "é" * 3000, "a" * 20_000]:
        rec = InstanceRecord(iid, "flow", "", "Running", "x", 1234.5678901234, 1.0)
        assert parse_page_token(page_token(rec)) == (1234.5678901234, iid)
    crafted = [b"[" + b"9" * 400 + b', "a"]', b"[" * 5000, b'{"a": 1, "b": 2}', b'"ab"']
    bad = ["", "12", "k.", "k.!!!", "k.bnVsbA", "k." + "A" * 70_000, "x.abc"]
    bad += ["k." + base64.urlsafe_b64encode(c).decode() for c in crafted]
    for token in bad:
        assert parse_page_token(token) is None


class _Scripts(HTMLParser):
    """Counts what would run or load: script tags, event handler attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[dict] = []
        self.handlers: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "script":
            self.scripts.append(dict(attrs))
        self.handlers += [name for name, _ in attrs if name.startswith("on")]


def parsed(html: str) -> _Scripts:
    parser = _Scripts()
    parser.feed(html)
    return parser


def test_an_instance_page_escapes_every_value_it_shows():
    failure = FailureDetails("ValueError", HOSTILE, f"Traceback\n{HOSTILE}")
    rec = InstanceRecord(HOSTILE, HOSTILE, HOSTILE, "Failed", "x", T0.timestamp(), 1.0)
    view = {
        "input": HOSTILE,
        "output": {HOSTILE: HOSTILE},
        "customStatus": [HOSTILE],
        "failureDetails": {
            "errorType": failure.error_type,
            "errorMessage": failure.message,
            "stackTrace": failure.stack_trace,
        },
    }
    events = views_of(at(0), ExecutionStarted(HOSTILE, HOSTILE), TaskScheduled(0, HOSTILE))
    html = views.page("hub", f"Instance {HOSTILE}", views.instance(rec, view, events))
    found = parsed(html)
    # the one script is the dashboard's own file; no value became a tag or a handler
    assert found.scripts == [{"src": "/dashboard/static/dashboard.js", "defer": None}]
    assert found.handlers == []
    assert "&lt;script&gt;" in html


def test_the_instance_list_escapes_ids_and_keeps_filters_in_the_next_link():
    records = [
        InstanceRecord(f"{HOSTILE}{i}", HOSTILE, "", "Running", "x", 100.0 - i, 1.0)
        for i in range(3)
    ]
    filters = views.Filters(status="Running", name=HOSTILE, prefix="<")
    html = views.page("hub", "Instances", views.instances(records, filters, True, 2))
    found = parsed(html)
    assert len(found.scripts) == 1 and found.handlers == []
    link = re.search(r'<a rel="next" href="([^"]+)"', html)
    assert link is not None
    target = link.group(1).replace("&amp;", "&")
    assert "status=Running" in target and "prefix=%3C" in target
    token = re.search(r"after=([^&]+)", target).group(1)
    assert parse_page_token(token) == (99.0, f"{HOSTILE}1")


def test_an_entity_whose_state_json_cannot_show_says_so():
    marker = {"$type": "shop.Cart", "$repr": HOSTILE}
    html = views.entity("Cart", HOSTILE, {"items": [marker]}, True, HOSTILE)
    assert "not JSON-viewable" in html
    assert parsed(html).scripts == [] and parsed(html).handlers == []
    plain = views.entity("Counter", "a", {"value": 3}, True, None)
    assert "not JSON-viewable" not in plain and "not locked" in plain
    assert "has no state" in views.entity("Counter", "gone", None, False, None)


def test_the_login_form_keeps_only_local_next_urls_escaped():
    html = views.login(failed=True, next_url='/dashboard/x"><script>')
    assert parsed(html).scripts == [] and "not the one configured" in html


def test_an_instances_log_lines_are_read_from_the_node_log_files(tmp_path, monkeypatch):
    from runtime import logs

    monkeypatch.setattr(logs, "log_dir", lambda: str(tmp_path))
    ours, other = "order-1", "order-10"
    lines = [
        '{"ts": 3.0, "level": "INFO", "msg": "instance finished", "instance_id": "order-1"}',
        '{"ts": 1.0, "level": "INFO", "msg": "instance started", "instance_id": "order-1"}',
        '{"ts": 2.0, "level": "INFO", "msg": "not ours", "instance_id": "order-10"}',
        '{"ts": 2.5, "msg": "another hub", "instance_id": "order-1", "hub": "other"}',
        'cut line "instance_id": "order-1"',  # a tail read may start mid-line
    ]
    (tmp_path / "1.log").write_text("\n".join(lines[:2]) + "\n")
    (tmp_path / "2.log").write_text("\n".join(lines[2:]) + "\n")
    (tmp_path / "notes.txt").write_text(lines[0])
    where, found = logs.instance_lines(ours, "shop")
    assert where == str(tmp_path)
    assert [line["msg"] for line in found] == ["instance started", "instance finished"]
    assert [line["msg"] for line in logs.instance_lines(ours, "shop", limit=1)[1]] == [
        "instance finished"
    ]
    assert len(logs.instance_lines(ours)[1]) == 3  # any hub
    assert [line["msg"] for line in logs.instance_lines(other)[1]] == ["not ours"]
    html = views._log(where, found)
    assert "instance started" in html and str(tmp_path) in html
    monkeypatch.setattr(logs, "log_dir", lambda: None)
    assert logs.instance_lines(ours) == (None, [])


def test_a_session_cookie_holds_only_for_its_key_and_its_time():
    from runtime.driver.dashboard.app import SESSION_SECONDS, session_valid, session_value

    key, other = b"k" * 32, b"o" * 32
    cookie = session_value(key, 1_000)
    assert session_valid(key, cookie, 1_000 + 60)
    assert not session_valid(other, cookie, 1_060)  # another deployment's key
    assert not session_valid(key, cookie, 1_000 + SESSION_SECONDS + 1)  # expired
    assert not session_valid(key, cookie, 900)  # issued in the future
    forged = "2000." + cookie.split(".")[1]  # a later time under the old MAC
    for bad in [forged, "", ".", "abc", cookie + "0", "1000.é" + cookie[6:], "9" * 500]:
        assert not session_valid(key, bad, 1_060)


def test_a_continued_execution_says_which_generation_it_is():
    events = views_of(at(0), ExecutionStarted("eternal", 7, generation=3), TaskScheduled(0, "tick"))
    line = timeline.build(events, T0.timestamp() - 600, T0.timestamp() + 1)
    assert [(p.kind, p.name) for p in line.points] == [
        ("continued", "generation 3: continued as new")
    ]
    assert "generation 3: continued as new" in timeline.svg(line)
    first = views_of(at(0), ExecutionStarted("eternal", 7), TaskScheduled(0, "tick"))
    assert timeline.build(first, T0.timestamp(), T0.timestamp() + 1).points == []


def test_the_overview_counts_activities_in_flight_and_hosts_that_did_not_answer():
    from runtime.store import HubHealth, HubOverview

    ov = HubOverview(
        {"Running": 2},
        {},
        {},
        {},
        {"hub/host-a": 1, "hub/host-b": 1},
        0,
        None,
        HubHealth(0, 0, None),
        None,
        {"hub/host-a": 40, "hub/host-b": None},
    )
    html = views.overview("hub", ov, T0.timestamp())
    assert "40 activities in flight (1 host(s) did not answer)" in html
    assert "<td>hub/host-a</td><td>1</td><td>40</td>" in html
    assert "<td>hub/host-b</td><td>1</td><td>no answer</td>" in html
