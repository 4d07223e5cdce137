"""The web dashboard in a real browser: Debian's chromium driven by Playwright (no browser
is downloaded), against a real ``serve_http`` on 127.0.0.1, real Ray and real SQLite.

One hub and one server for the module, behind a bearer token; the browser signs in once
through the login form. Each test writes a screenshot of the pages it sees under its
temporary directory and checks that it is neither blank nor an error page.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import time
import uuid
import zlib
from pathlib import Path

import dashboard_defs
import pytest
from helpers import http_request, start_ray, wait_until

from runtime import Runtime
from runtime.driver.http_api import serve_http, stop_http

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
REQUIRED = os.environ.get("DURABLE_TEST_BROWSER") == "required"
TOKEN_ENV = "RAY_DURABLE_TEST_DASHBOARD_TOKEN"
TOKEN = "dashboard-" + uuid.uuid4().hex
HOSTILE = '<script>window.pwned=1</script><img src=x onerror="window.pwned=2">'

if CHROMIUM is None and not REQUIRED:
    pytest.skip("no chromium here (.ci/run installs Debian's)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def rt(tmp_path_factory):
    start_ray()
    store = tmp_path_factory.mktemp("dashboard") / "hub.db"
    runtime = Runtime.start(
        hub=f"dash-{uuid.uuid4().hex[:8]}",
        store=f"sqlite:///{store}",
        placement="pooled",
        pool_size=2,
        register=dashboard_defs.ALL,
    )
    yield runtime
    runtime.shutdown()


@pytest.fixture(scope="module")
def url(rt):
    os.environ[TOKEN_ENV] = TOKEN
    api = serve_http(rt.client, port=0, token_env=TOKEN_ENV)
    assert api.dashboard is not None
    yield api.dashboard
    stop_http()
    os.environ.pop(TOKEN_ENV, None)


@pytest.fixture(scope="module")
def browser(url):
    assert CHROMIUM is not None, "DURABLE_TEST_BROWSER=required but no chromium"
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        context = chromium.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.goto(url)
        # The login form: the only thing served without the token.
        assert page.locator("form input[name=token]").count() == 1
        page.fill("input[name=token]", TOKEN)
        page.click("button[type=submit]")
        page.wait_for_selector("section.cards")
        yield context
        context.close()
        chromium.close()


@pytest.fixture
def page(browser):
    page = browser.new_page()
    dialogs: list[str] = []

    def accept(dialog) -> None:
        dialogs.append(dialog.message)
        dialog.accept()

    page.on("dialog", accept)
    page.dialogs = dialogs
    yield page
    page.close()


def shot(page, tmp_path: Path, name: str) -> Path:
    """A screenshot of the page, checked to be neither blank nor an error page."""
    heading = page.locator("main h1").inner_text()
    assert heading and heading != "Not found"
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert distinct_pixels(path.read_bytes()) > 8, f"{path} looks blank"
    return path


def distinct_pixels(png: bytes) -> int:
    """How many distinct pixel values the PNG's first 400 rows hold (1: a blank page)."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, channels = 8, b"", 0, 4
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        kind, data = png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width = struct.unpack(">I", data[:4])[0]
            channels = {2: 3, 6: 4}[data[9]]
        elif kind == b"IDAT":
            idat += data
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride, rows, previous = width * channels, [], bytearray(width * channels)
    for y in range(min(400, len(raw) // (stride + 1))):
        kind = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):  # undo the PNG filters (None, Sub, Up, Average, Paeth)
            a = line[i - channels] if i >= channels else 0
            b, c = previous[i], previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + a) & 255
            elif kind == 2:
                line[i] = (line[i] + b) & 255
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        previous = line
    return len({row[i : i + channels] for row in rows for i in range(0, stride, channels * 7)})


def done(rt, iid: str, timeout: float = 120.0):
    state = rt.client.wait_for_completion(iid, timeout=timeout)
    assert state is not None, f"{iid} did not finish"
    return state


# -- without the token ----------------------------------------------------------------------


def test_without_the_token_every_route_is_401_and_shows_nothing_of_the_hub(rt, url):
    secret = f"secret-{uuid.uuid4()}"
    iid = rt.client.start_new(dashboard_defs.waiter, secret, instance_id=f"x-{uuid.uuid4()}")
    wait_until(lambda: rt.client.get_status(iid).custom_status == secret)
    for path in ["", "instances", f"instances/{iid}", "entities", "static/dashboard.css"]:
        status, _, body = http_request("GET", url + path)
        assert status == 401, path
        # the login form names at most the page asked for, nothing the hub holds
        assert secret.encode() not in body and b"waiter" not in body
        assert path.startswith("instances/") or iid.encode() not in body
    status, _, body = http_request("GET", url + f"instances/{iid}")
    assert b'name="token"' in body  # the login form, and only it
    status, _, _ = http_request("POST", url + f"api/instances/terminate?id={iid}", {})
    assert status == 401
    wrong = {"Authorization": "Bearer wrong"}
    assert http_request("GET", url + "instances", headers=wrong)[0] == 401
    cookie = {"Cookie": "durable_dashboard=" + "0" * 64}
    assert http_request("GET", url + "instances", headers=cookie)[0] == 401
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    status, headers, body = http_request("GET", url + "instances", headers=bearer)
    assert status == 200 and iid.encode() in body
    assert "script-src 'self'" in headers["content-security-policy"]
    # A post needs the action header too: a page of another site cannot send it.
    post = http_request("POST", url + f"api/instances/terminate?id={iid}", {}, headers=bearer)
    assert post[0] == 403
    assert str(rt.client.get_status(iid).runtime_status) == "Running"
    rt.client.terminate(iid, "done")
    done(rt, iid)


# -- in the browser -------------------------------------------------------------------------


def test_the_list_shows_new_instances_filters_them_and_opens_one(rt, url, page, tmp_path):
    tag = uuid.uuid4().hex[:8]
    ok = [
        rt.client.start_new(dashboard_defs.chain, 2, instance_id=f"{tag}-ok-{i}") for i in range(3)
    ]
    bad = rt.client.start_new(dashboard_defs.fails, "out of stock", instance_id=f"{tag}-bad")
    for iid in [*ok, bad]:
        done(rt, iid)
    page.goto(url + "instances")
    for iid in [*ok, bad]:
        assert page.locator("table.list a", has_text=iid).count() == 1
    shot(page, tmp_path, "instances")
    page.select_option("select[name=status]", "Failed")
    page.fill("input[name=prefix]", tag)
    page.click("form.filters button")
    page.wait_for_url("**status=Failed**")
    links = page.locator("table.list tbody a")
    assert links.all_inner_texts() == [bad]
    page.fill("input[name=prefix]", tag)
    page.select_option("select[name=status]", "")
    page.fill("input[name=name]", "chain")
    page.click("form.filters button")
    page.wait_for_url("**name=chain**")
    assert sorted(page.locator("table.list tbody a").all_inner_texts()) == sorted(ok)
    page.goto(url + "instances?" + f"prefix={tag}-bad")
    page.click(f"table.list a:text-is('{bad}')")
    page.wait_for_selector("pre.stack")
    assert "out of stock" in page.locator("p.error").inner_text()
    assert "Failed" in page.locator("table.facts").inner_text()
    shot(page, tmp_path, "failed-instance")


def test_a_fan_out_of_100_draws_100_bars(rt, url, page, tmp_path):
    iid = rt.client.start_new(dashboard_defs.fan_out, 100)
    assert done(rt, iid).output == sum(i * i for i in range(100))
    page.goto(url + f"instances/{iid}")
    assert page.locator("svg.timeline rect.bar").count() == 100
    assert page.locator("svg.timeline rect.bar.completed").count() == 100
    assert "100 of 100 answered" in page.locator("p.progress-text").inner_text()
    shot(page, tmp_path, "fan-out")


def test_terminate_from_the_page_terminates_and_the_page_follows_by_itself(rt, url, page, tmp_path):
    iid = rt.client.start_new(dashboard_defs.waiter, "waiting for Go")
    wait_until(lambda: str(rt.client.get_status(iid).runtime_status) == "Running")
    page.goto(url + f"instances/{iid}")
    page.evaluate("window.stayed = 'same page'")  # gone if the page reloaded whole
    page.click("button.action[data-action=terminate]")
    assert page.dialogs and "terminate" in page.dialogs[0]
    state = done(rt, iid, timeout=60)
    assert str(state.runtime_status) == "Terminated"
    page.wait_for_selector("table.facts .status.terminated", timeout=30_000)
    assert page.evaluate("window.stayed") == "same page"
    shot(page, tmp_path, "terminated")


def test_a_raised_event_from_the_page_completes_the_instance(rt, url, page):
    iid = rt.client.start_new(dashboard_defs.waiter, None)
    wait_until(lambda: str(rt.client.get_status(iid).runtime_status) == "Running")
    page.goto(url + f"instances/{iid}")
    page.fill("form.raise-event input[name=event]", "Go")
    page.fill("form.raise-event input[name=data]", '{"approved": true}')
    page.click("form.raise-event button")
    assert done(rt, iid, timeout=60).output == {"approved": True}
    page.wait_for_selector("table.facts .status.completed", timeout=30_000)


def test_hostile_ids_inputs_and_failures_are_shown_as_text_and_never_run(rt, url, page, tmp_path):
    iid = rt.client.start_new(dashboard_defs.fails, HOSTILE, instance_id=f"x{HOSTILE}")
    done(rt, iid)
    page.goto(url + f"instances?prefix=x{HOSTILE[:20]}")
    assert page.locator("table.list tbody a").all_inner_texts() == [iid]
    page.click("table.list tbody a")
    page.wait_for_selector("pre.stack")
    assert HOSTILE in page.locator("main h1").inner_text()
    assert HOSTILE in page.locator("p.error").inner_text()
    assert page.locator("pre.value.input").inner_text() == json.dumps(HOSTILE)
    assert page.evaluate("window.pwned") is None
    assert page.dialogs == []
    shot(page, tmp_path, "hostile")


def test_an_unknown_instance_is_a_404_page_with_a_way_back(url, page):
    response = page.goto(url + "instances/no-such-instance")
    assert response is not None and response.status == 404
    page.click("main a:text('Back to the instances')")
    page.wait_for_url("**/dashboard/instances")


def test_entities_list_show_state_and_take_a_signal(rt, url, page, tmp_path):
    key = uuid.uuid4().hex[:8]
    rt.client.signal_entity(f"Counter@{key}", "add", 5)
    wait_until(lambda: rt.client.read_entity_state(f"Counter@{key}").entity_state == 5)
    page.goto(url + "entities?name=Counter")
    page.click(f"table.list a:text('{key}')")
    page.wait_for_selector("pre.value.state")
    assert page.locator("pre.value.state").inner_text().strip() == "5"
    assert "not locked" in page.locator("main").inner_text()
    shot(page, tmp_path, "entity")
    page.fill("form.signal input[name=operation]", "add")
    page.fill("form.signal input[name=input]", "7")
    page.click("form.signal button")
    page.wait_for_selector("p.result:text('signalled add')")
    wait_until(lambda: rt.client.read_entity_state(f"Counter@{key}").entity_state == 12)


def test_the_overview_counts_what_the_hub_holds(rt, url, page, tmp_path):
    iid = rt.client.start_new(dashboard_defs.chain, 1)
    done(rt, iid)
    page.goto(url)
    completed = page.locator("a.card", has_text="Completed").locator(".count").inner_text()
    assert int(completed) >= 1
    assert page.locator("svg.rates rect.rate.started").count() == 60
    assert "Counter" in page.locator("main").inner_text()
    assert "pid" in page.locator("main").inner_text()  # who holds the hub's lease
    shot(page, tmp_path, "overview")


def test_the_overview_counts_the_activities_in_flight(rt, url, page, tmp_path):
    marker = tmp_path / "release"
    iid = rt.client.start_new(dashboard_defs.held, (3, str(marker)))

    def shown() -> str:
        page.goto(url)
        return page.locator("p.in-flight").inner_text()

    try:
        wait_until(lambda: shown().startswith("3 activities in flight"), timeout=60, every=0.3)
    finally:
        marker.touch()
    assert done(rt, iid).output is True
    wait_until(lambda: shown().startswith("0 activities in flight"), timeout=60, every=0.3)


def test_without_a_token_configured_the_dashboard_needs_none(rt, url):
    port = int(url.split(":")[2].split("/")[0])
    plain = serve_http(rt.client, port=port)
    try:
        deadline = time.monotonic() + 60
        while http_request("GET", plain.dashboard + "instances")[0] != 200:
            assert time.monotonic() < deadline, "the dashboard still asks for a token"
            time.sleep(0.2)
    finally:
        os.environ[TOKEN_ENV] = TOKEN
        serve_http(rt.client, port=port, token_env=TOKEN_ENV)
