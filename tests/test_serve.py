"""``durable serve`` as a real subprocess, driven by the real ``durable`` CLI and over HTTP.

One server for the module (starting a hub and Ray Serve costs seconds), one test per
scenario: the CLI's human and ``--json`` output, bad input over both (the right exit code or
HTTP status, a clear message, nothing stored), the CLI finding the served hub's cluster by
itself while another Ray cluster runs, then SIGTERM stops the server and the store keeps the
instances.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import ray
from helpers import NO_BODY, durable_exe, free_port, http_request, start_ray
from helpers import one_line_error as cli_error

from runtime import logs
from runtime.actors.routing import NAMESPACE
from runtime.actors.supervisor import supervisor_name

TESTS = Path(__file__).resolve().parent
TOKEN_ENV = "RAY_DURABLE_SERVE_TEST_TOKEN"
MAX_BODY = 4096  # small, so an oversize body is cheap to send
READY_SECONDS = 90.0


def call(
    method: str,
    url: str,
    body: Any = NO_BODY,
    *,
    data: bytes | None = None,
    token: str | None = None,
    content_type: str = "application/json",
) -> tuple[int, dict[str, str], Any]:
    """(status, lower-cased headers, body) of one request: JSON, else text, else None."""
    sent = data is not None or body is not NO_BODY
    headers = {"Content-Type": content_type} if sent else {}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    status, found, raw = http_request(method, url, body, data=data, headers=headers, timeout=30)
    try:
        value = json.loads(raw) if raw else None
    except ValueError:  # e.g. Serve's own plain-text 404 before the app is routed
        value = raw.decode(errors="replace")
    return status, found, value


def one_line_error(result: subprocess.CompletedProcess, text: str) -> None:
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    cli_error(result.stderr, text)


class Served:
    """A ``durable serve`` subprocess and the way to talk to it."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.hub = f"serve-{uuid.uuid4().hex[:8]}"
        self.db = tmp_path / "serve.db"
        self.record = tmp_path / f".serve.db.{self.hub}.serve.json"  # where serve runs the hub
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}/runtime/webhooks/durabletask/"
        self.token = uuid.uuid4().hex
        self.address = ray.get_runtime_context().gcs_address
        self.exe = durable_exe()
        self.config = tmp_path / "durable.yaml"
        self.config.write_text(
            f"hub: {self.hub}\n"
            f"store: sqlite:///{self.db}\n"
            "placement: pooled\npool_size: 1\nwarm_hosts: 0\n"
            f"http: {{host: 127.0.0.1, port: {self.port}, token_env: {TOKEN_ENV}, "
            f"max_body_bytes: {MAX_BODY}}}\n"
        )
        # The app module lives in tests/: on PYTHONPATH (conftest) for the server, its
        # Ray workers (started by this session's raylet) and the CLI alike.
        self.env = {**os.environ, TOKEN_ENV: self.token}
        self.log = tmp_path / "serve.log"
        self.proc: subprocess.Popen | None = None
        self.stopped = False  # True once SIGTERM stopped it cleanly

    # -- the server ---------------------------------------------------------------------

    def start(self) -> None:
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [self.exe, "--address", self.address, "serve", "--config", str(self.config)]
                + ["--app", "serve_app"],
                cwd=self.tmp_path,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: signals spare this session
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self) -> None:
        """Wait until the server says the API is up; from then on it must answer at once."""
        deadline = time.monotonic() + READY_SECONDS
        while "HTTP API on " not in self.output():
            assert self.proc is not None
            code = self.proc.poll()
            assert code is None, f"durable serve exited with {code}:\n{self.output()}"
            assert time.monotonic() < deadline, f"no HTTP API after {READY_SECONDS:g} s:\n" + (
                self.output()
            )
            time.sleep(0.1)
        try:
            status, _, body = call("GET", self.base + "instances?top=1", token=self.token)
        except (urllib.error.URLError, OSError) as exc:
            raise AssertionError(f"announced, but the API does not answer: {exc}") from None
        assert status == 200, (status, body, self.output())

    def stop(self, timeout: float) -> int:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGTERM)
        code = self.proc.wait(timeout=timeout)
        self.stopped = code == 0
        return code

    def cleanup(self) -> None:
        """After a failure: kill the server and whatever it left on this session's Ray."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=30)
        try:
            supervisor = ray.get_actor(supervisor_name(self.hub), namespace=NAMESPACE)
        except ValueError:
            supervisor = None
        if supervisor is not None:
            try:
                ray.get(supervisor.shutdown.remote(), timeout=30)
            finally:
                ray.kill(supervisor, no_restart=True)
        if self.stopped:
            return  # the server stopped its HTTP API itself
        try:
            from runtime.driver.http_api import stop_http

            stop_http()
        except Exception:
            pass  # best effort: Serve was never started, or is gone already

    # -- the CLI ------------------------------------------------------------------------

    def argv(self, *args: str) -> list[str]:
        return [self.exe, "--address", self.address, "--config", str(self.config), *args]

    def durable(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            self.argv(*args),
            cwd=self.tmp_path,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def durable_found(self, *args: str) -> subprocess.CompletedProcess:
        """A CLI run given no address, where the machine's `ray start` record names another
        cluster (``ray_current_cluster`` under RAY_TMPDIR, written by the test)."""
        env = {k: v for k, v in self.env.items() if k != "RAY_ADDRESS"}
        env["RAY_TMPDIR"] = str(self.tmp_path / "rt")
        return subprocess.run(
            [self.exe, "--config", str(self.config), *args],
            cwd=self.tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def durable_all(self, *commands: tuple[str, ...]) -> list[subprocess.CompletedProcess]:
        """Several CLI runs at once (each one is a short-lived Ray driver)."""
        procs = [
            subprocess.Popen(
                self.argv(*args),
                cwd=self.tmp_path,
                env=self.env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for args in commands
        ]
        results = []
        for args, proc in zip(commands, procs):
            out, err = proc.communicate(timeout=60)
            results.append(subprocess.CompletedProcess(args, proc.returncode, out, err))
        return results

    def ok(self, result: subprocess.CompletedProcess) -> str:
        assert result.returncode == 0, (result.args, result.stdout, result.stderr)
        assert result.stderr.strip() == "", result.stderr
        return result.stdout

    # -- HTTP ---------------------------------------------------------------------------

    def http(self, method: str, path: str, body: Any = NO_BODY, **options: Any) -> tuple:
        options.setdefault("token", self.token)
        return call(method, self.base + path, body, **options)

    def http_gone(self, timeout: float) -> bool:
        """True once nothing listens on the API's port any more."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.http("GET", "instances")
            except (urllib.error.URLError, OSError):
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.3)

    def wait_status(self, iid: str, done: Callable[[dict], bool], timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            status, _, body = self.http("GET", f"instances/{iid}")
            assert status in (200, 202), (status, body)
            if done(body):
                return body
            assert time.monotonic() < deadline, f"{iid} still {body['runtimeStatus']}"
            time.sleep(0.2)


OTHER_CLUSTER = """
import sys, ray
ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)
print(ray.get_runtime_context().gcs_address, flush=True)
sys.stdin.read()  # until the test closes this pipe
ray.shutdown()
"""


class OtherCluster:
    """A second Ray cluster on this machine, as a notebook's ``ray.init()`` starts one."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", OTHER_CLUSTER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            start_new_session=True,  # its Ray processes go with it on a kill of the group
        )
        self._address: str | None = None

    @property
    def address(self) -> str:
        """Its GCS address (waits until it has started)."""
        if self._address is None:
            assert self.proc.stdout is not None
            self._address = self.proc.stdout.readline().strip()
            assert self._address, "the second Ray cluster did not start"
        return self._address

    def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def other_cluster():
    cluster = OtherCluster()  # starts while the server does
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def served(other_cluster, tmp_path_factory):
    """One ``durable serve`` for the whole module, ready to answer."""
    start_ray()
    server = Served(tmp_path_factory.mktemp("serve"))
    server.start()
    try:
        server.wait_ready()
        yield server
    finally:
        server.cleanup()


@dataclass(frozen=True)
class Started:
    """What the CLI started on the server at first: the runs and the instance ids."""

    uid: str
    hello_id: str
    wait_id: str
    runs: tuple[subprocess.CompletedProcess, ...]

    @property
    def http_id(self) -> str:
        return f"http-{self.uid}"


@pytest.fixture(scope="module")
def started(served) -> Started:
    """Start, human and --json, and signal an entity, all at once over the CLI."""
    uid = uuid.uuid4().hex[:6]
    wait_id = f"wait-{uid}"
    runs = served.durable_all(
        ("start", "serve_hello", "--input", '["Tokyo", "Lima"]'),
        ("--json", "start", "serve_wait", "--input", '{"order": 7}', "--id", wait_id),
        ("signal", "ServeTally@cart", "add", "--input", "5"),
    )
    return Started(uid, runs[0].stdout.strip(), wait_id, tuple(runs))


# The tests below share one server and run in this order, each on what the ones before it
# left (the instances started above, approved, then steered over HTTP, and last SIGTERM):
# a failed assertion fails its own scenario, and no longer hides the ones after it.


def test_serve_announces_its_hub_cluster_and_api(served):
    s = served
    assert (
        f"hub '{s.hub}' on sqlite:///{s.db}; registered activity serve_greet, "
        "orchestrator serve_hello, orchestrator serve_wait, entity ServeTally" in s.output()
    )
    assert f"\nRay cluster at {s.address}; hub logs in {logs.log_dir()}\n" in s.output()
    assert f"\nHTTP API on {s.base} (Ctrl-C to stop)\n" in s.output()
    record = json.loads(s.record.read_text())
    assert (record["hub"], record["store"], record["ray_address"]) == (
        s.hub,
        f"sqlite:///{s.db}",
        s.address,
    )
    assert (record["pid"], record["http_url"]) == (s.proc.pid, s.base)


def test_cli_starts_human_and_json_and_signals_an_entity(served, started):
    s, wait_id = served, started.wait_id
    started_run, started_json, signalled = started.runs
    hello_id = s.ok(started_run).strip()
    assert len(hello_id) == 32 and "\n" not in hello_id, started_run.stdout  # a uuid4 hex
    assert json.loads(s.ok(started_json)) == {"instanceId": wait_id, "name": "serve_wait"}
    assert s.ok(signalled).strip() == "signalled 'add' to ServeTally@cart"
    done = s.wait_status(hello_id, lambda b: b["runtimeStatus"] == "Completed")
    assert done["output"] == ["Hello Tokyo!", "Hello Lima!"]


def test_cli_given_no_address_finds_the_cluster_that_serves_the_hub(served, started, other_cluster):
    s, hello_id = served, started.hello_id
    s.wait_status(hello_id, lambda b: b["runtimeStatus"] == "Completed")
    # Another cluster runs, and the machine's `ray start` record names it: Ray's own choice.
    leftover = s.tmp_path / "rt" / "ray" / "ray_current_cluster"
    leftover.parent.mkdir(parents=True)
    leftover.write_text(other_cluster.address)
    found = s.durable_found("--json", "status", hello_id)
    assert json.loads(s.ok(found))["runtimeStatus"] == "Completed"
    elsewhere = s.durable_found("--hub", f"{s.hub}-x", "list")  # a hub nobody serves
    one_line_error(
        elsewhere,
        f"no running task hub named '{s.hub}-x' on the Ray cluster at {other_cluster.address}",
    )


def test_cli_status_entity_raise_and_list(served, started):
    s, hello_id, wait_id = served, started.hello_id, started.wait_id
    s.wait_status(hello_id, lambda b: b["runtimeStatus"] == "Completed")
    status, status_json, entity_json, raised, listed = s.durable_all(
        ("status", hello_id),
        ("status", hello_id, "--json"),
        ("entity", "ServeTally@cart", "--json"),
        ("raise", wait_id, "Approve", "--data", '{"by": "ana"}'),
        ("list", "--json"),
    )
    text = s.ok(status)
    assert f"instance:      {hello_id}\n" in text
    assert "name:          serve_hello\n" in text and "status:        Completed\n" in text
    assert 'input:         ["Tokyo", "Lima"]\n' in text
    assert 'output:        ["Hello Tokyo!", "Hello Lima!"]\n' in text
    data = json.loads(s.ok(status_json))
    assert (data["instanceId"], data["name"], data["runtimeStatus"]) == (
        hello_id,
        "serve_hello",
        "Completed",
    )
    assert (data["input"], data["output"]) == (["Tokyo", "Lima"], ["Hello Tokyo!", "Hello Lima!"])
    assert data["failureDetails"] is None
    assert json.loads(s.ok(entity_json)) == {
        "entityId": "ServeTally@cart",
        "exists": True,
        "state": {"total": 5},
    }
    assert s.ok(raised).strip() == f"raised 'Approve' on {wait_id}"
    before = {d["instanceId"]: d["name"] for d in json.loads(s.ok(listed))}
    assert before == {hello_id: "serve_hello", wait_id: "serve_wait"}
    done = s.wait_status(wait_id, lambda b: b["runtimeStatus"] == "Completed")
    assert done["output"] == {"request": {"order": 7}, "approval": {"by": "ana"}}
    assert s.http("GET", "entities/ServeTally/cart")[::2] == (200, {"total": 5})


def test_cli_errors_exit_1_with_one_line_and_store_nothing(served, started):
    s, uid = served, started.uid
    bad_json, unknown_orch, unknown_id = s.durable_all(
        ("start", "serve_hello", "--input", "[Tokyo", "--id", f"badjson-{uid}"),
        ("start", "no_such_orchestrator", "--input", "1", "--id", f"noorch-{uid}"),
        ("status", f"nobody-{uid}"),
    )
    one_line_error(bad_json, "--input is not valid JSON")
    one_line_error(unknown_orch, "no orchestrator named 'no_such_orchestrator'")
    one_line_error(unknown_id, f"no orchestration instance with id 'nobody-{uid}'")


def test_http_errors_give_a_status_and_a_json_message_and_store_nothing(served, started):
    s, uid = served, started.uid
    # what the CLI listed (test_cli_status_entity_raise_and_list): nothing refused joins it
    before = {started.hello_id: "serve_hello", started.wait_id: "serve_wait"}
    status, headers, body = s.http("GET", "instances", token=None)
    assert status == 401 and headers.get("www-authenticate") == "Bearer", (status, body)
    assert "bearer token" in body["Message"]
    status, _, body = s.http("POST", f"orchestrators/serve_hello/nontoken-{uid}", [], token=None)
    assert status == 401, body
    status, _, body = s.http("GET", "instances", token="not-the-token")
    assert status == 401 and "bearer token" in body["Message"], body
    status, _, body = s.http("POST", f"orchestrators/serve_hello/badtoken-{uid}", [], token="x")
    assert status == 401, body

    status, _, body = s.http("POST", f"orchestrators/serve_hello/badjson-{uid}", data=b"[Tokyo")
    assert status == 400, body
    assert body["ExceptionType"] == "JsonReaderException"
    assert body["Message"].startswith("Invalid JSON content")
    status, _, body = s.http("POST", f"orchestrators/no_such_orchestrator/noorch-{uid}", 1)
    assert status == 400 and "no_such_orchestrator" in body["Message"], body
    big = ["x" * 100] * (MAX_BODY // 100)  # a valid JSON body just over the limit
    status, _, body = s.http("POST", f"orchestrators/serve_hello/big-{uid}", big)
    assert status == 413 and f"limit of {MAX_BODY} bytes" in body["Message"], body
    status, _, body = s.http("GET", f"instances/nobody-{uid}")
    assert status == 404 and f"nobody-{uid}" in body["Message"], body
    status, _, body = s.http("POST", f"instances/nobody-{uid}/terminate")
    assert status == 404, body
    status, _, body = s.http("GET", "entities/ServeTally/nobody")
    assert status == 404, body
    for refused in ("badjson", "noorch", "nontoken", "badtoken", "big"):
        assert s.http("GET", f"instances/{refused}-{uid}")[0] == 404, refused
    status, _, body = s.http("GET", "instances")
    assert status == 200
    assert {d["instanceId"]: d["name"] for d in body} == before


def test_an_instance_started_over_http_is_seen_and_steered_by_the_cli(served, started):
    s, hello_id, wait_id, http_id = served, started.hello_id, started.wait_id, started.http_id
    status, headers, body = s.http("POST", f"orchestrators/serve_wait/{http_id}", {"via": "http"})
    assert status == 202 and body["id"] == http_id, body
    assert headers["location"] == body["statusQueryGetUri"]
    s.wait_status(http_id, lambda b: b["runtimeStatus"] == "Running")
    status_json, listed = s.durable_all(("status", http_id, "--json"), ("--json", "list"))
    data = json.loads(s.ok(status_json))
    assert (data["name"], data["runtimeStatus"], data["input"]) == (
        "serve_wait",
        "Running",
        {"via": "http"},
    )
    after = {d["instanceId"]: d["runtimeStatus"] for d in json.loads(s.ok(listed))}
    assert after == {hello_id: "Completed", wait_id: "Completed", http_id: "Running"}

    terminated, purged = s.durable_all(
        ("terminate", http_id, "--reason", "done over the CLI"), ("purge", hello_id)
    )
    assert s.ok(terminated).strip() == f"terminated {http_id}"
    assert s.ok(purged).strip() == "purged 1 instance"
    s.wait_status(http_id, lambda b: b["runtimeStatus"] == "Terminated")
    assert s.http("GET", f"instances/{hello_id}")[0] == 404


def test_sigterm_stops_cleanly_and_the_store_keeps_the_instances(served, started):
    s, wait_id, http_id = served, started.wait_id, started.http_id
    code = s.stop(timeout=60)
    assert code == 0, s.output()
    assert f"stopped hub '{s.hub}'" in s.output()
    assert "Traceback" not in s.output(), s.output()
    # Serve's own shutdown warned on every stop. (On a loaded machine a proxy's long poll can
    # still report the controller's end, "listen_for_change ... killed by ray.kill": Ray's
    # retry notice for a poll in flight, which says nothing about our shutdown.)
    assert "graceful_shutdown" not in s.output(), s.output()
    assert not s.record.exists(), "the stopped server left its record behind"
    with pytest.raises(ValueError):  # the hub's supervisor is gone
        ray.get_actor(supervisor_name(s.hub), namespace=NAMESPACE)
    assert s.http_gone(timeout=15), "the HTTP API still answers after the server stopped"
    with sqlite3.connect(s.db) as db:
        rows = db.execute(
            "SELECT instance_id, name, status FROM instances WHERE hub = ?", (s.hub,)
        ).fetchall()
        entities = db.execute(
            "SELECT name, key, exists_ FROM entities WHERE hub = ?", (s.hub,)
        ).fetchall()
    assert sorted(rows) == sorted(
        [(wait_id, "serve_wait", "Completed"), (http_id, "serve_wait", "Terminated")]
    )
    assert entities == [("ServeTally", "cart", 1)]
