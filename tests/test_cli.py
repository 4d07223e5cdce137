"""The ``durable`` CLI against a real hub: a few true console-script runs, the rest in-process."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import types
import uuid
from importlib.metadata import entry_points

import entity_defs
import hub_defs
import pytest
import ray
import workflows
from helpers import durable_exe, one_line_error, start_ray, wait_until

from runtime import DurableClient, OrchestratorNotFoundError, Runtime
from runtime.actors.routing import NAMESPACE
from runtime.actors.supervisor import supervisor_name
from runtime.config import HubConfig
from runtime.driver import cluster
from runtime.driver.cli import _hub_address, main, progress_bar

SETTINGS = {"placement": "pooled", "pool_size": 1, "warm_hosts": 0}


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """A running hub in this process; the CLI reaches it through the session's Ray."""
    start_ray()
    path = tmp_path_factory.mktemp("cli") / "hub.db"
    rt = Runtime.start(
        f"cli-{uuid.uuid4().hex[:8]}",
        store=f"sqlite:///{path}",
        register=[*workflows.ALL, hub_defs.blue_flow, hub_defs.stamp, entity_defs.Counter],
        **SETTINGS,
    )
    yield rt
    rt.shutdown()


def cli(hub, *args: str) -> list[str]:
    return ["--hub", hub.config.hub, *args]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def durable(tmp_path, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """The installed console script, as a user runs it, connected to this session's Ray."""
    exe = durable_exe()
    address = ray.get_runtime_context().gcs_address
    return subprocess.run(
        [exe, "--address", address, *argv],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# -- the console script --------------------------------------------------------------------


def test_console_script_is_declared():
    (script,) = entry_points(group="console_scripts", name="durable")
    assert script.value == "runtime.driver.cli:main"


def test_console_script_starts_and_reports_with_json(hub, tmp_path):
    started = durable(tmp_path, *cli(hub, "--json", "start", "chain", "--input", "5"))
    assert started.returncode == 0, started.stderr
    iid = json.loads(started.stdout)["instanceId"]
    assert hub.client.wait_for_completion(iid, timeout=60).output == 12

    status = durable(tmp_path, *cli(hub, "status", iid, "--json", "--history"))
    assert status.returncode == 0, status.stderr
    data = json.loads(status.stdout)
    assert (data["instanceId"], data["name"], data["runtimeStatus"]) == (iid, "chain", "Completed")
    assert (data["input"], data["output"]) == (5, 12)
    kinds = [e["EventType"] for e in data["historyEvents"]]
    assert kinds.count("TaskScheduled") == 2 and kinds.count("TaskCompleted") == 2


def test_console_script_errors_are_one_line(hub, tmp_path):
    unknown_hub = durable(tmp_path, "--hub", "no-such-hub", "status", "x")
    assert unknown_hub.returncode == 1
    one_line_error(unknown_hub.stderr, "no running task hub named 'no-such-hub'")

    unknown_id = durable(tmp_path, *cli(hub, "status", "no-such-instance"))
    assert unknown_id.returncode == 1
    one_line_error(unknown_id.stderr, "no orchestration instance with id 'no-such-instance'")

    bad_json = durable(tmp_path, *cli(hub, "start", "chain", "--input", "{five"))
    assert bad_json.returncode == 1
    one_line_error(bad_json.stderr, "--input is not valid JSON")

    usage = durable(tmp_path, "status")
    assert usage.returncode == 2
    one_line_error(usage.stderr, "the following arguments are required: ID")


def test_console_script_watch_draws_progress_until_done(hub, tmp_path):
    log = tmp_path / "steps.log"
    iid = hub.client.start_new(workflows.slow_chain, input=(str(log), 4, 0.5))
    watched = durable(tmp_path, *cli(hub, "watch", iid, "--interval", "0.2"))
    assert watched.returncode == 0, watched.stderr
    lines = watched.stdout.strip().splitlines()
    assert lines[-2] == f"{progress_bar(4, 4)} 4/4 activities  Completed"
    assert lines[-1] == "output: [0, 1, 2, 3]"


# -- every command, in-process ---------------------------------------------------------------


def test_start_status_and_list(hub, capsys):
    prefix = f"l{uuid.uuid4().hex[:6]}-"
    for i in range(3):
        code, out, _ = run(
            capsys, *cli(hub, "start", "chain", "--input", str(i), "--id", f"{prefix}{i}")
        )
        assert (code, out.strip()) == (0, f"{prefix}{i}")
    for i in range(3):
        hub.client.wait_for_completion(f"{prefix}{i}", timeout=60)

    code, out, _ = run(capsys, *cli(hub, "status", f"{prefix}1", "--history"))
    assert code == 0
    assert "status:        Completed" in out and "output:        4" in out
    assert "TaskScheduled" in out and "ExecutionStarted" in out

    code, out, _ = run(capsys, *cli(hub, "--json", "list", "--prefix", prefix, "--top", "2"))
    listed = json.loads(out)
    assert [s["instanceId"] for s in listed] == [f"{prefix}0", f"{prefix}1"]
    code, out, _ = run(capsys, *cli(hub, "list", "--prefix", prefix, "--status", "completed"))
    assert out.splitlines()[0].split() == [
        "INSTANCE",
        "ID",
        "NAME",
        "STATUS",
        "CREATED",
        "LAST",
        "UPDATED",
    ]
    assert len(out.splitlines()) == 4 and all("Completed" in line for line in out.splitlines()[1:])
    code, out, _ = run(
        capsys, *cli(hub, "list", "--prefix", prefix, "--status", "Running", "Failed")
    )
    assert (code, out.strip()) == (0, "no instances")

    waiting = hub.client.start_new("flow", input="w", instance_id=f"{prefix}waiting")
    code, _, err = run(capsys, *cli(hub, "start", "flow", "--id", waiting))
    assert code == 1
    # Pending or Running, depending on whether its host has activated it yet.
    one_line_error(err, f"instance id '{waiting}' already exists and is ")
    hub.client.terminate(waiting)
    code, _, err = run(capsys, *cli(hub, "start", "no_such_orchestrator"))
    assert code == 1
    one_line_error(err, "no orchestrator named 'no_such_orchestrator'")


def test_raise_suspend_resume_terminate(hub, capsys):
    a, b = (f"ev-{uuid.uuid4().hex[:6]}" for _ in range(2))
    hub.client.start_new("flow", input="a", instance_id=a)
    hub.client.start_new("flow", input="b", instance_id=b)

    code, out, _ = run(capsys, *cli(hub, "suspend", a, "--reason", "hold"))
    assert (code, out.strip()) == (0, f"suspended {a}")
    assert str(hub.client.get_status(a).runtime_status) == "Suspended"
    code, out, _ = run(capsys, *cli(hub, "--json", "raise", a, "Go", "--data", '{"n": 1}'))
    assert json.loads(out) == {"instanceId": a, "event": "Go", "raised": True}
    code, out, _ = run(capsys, *cli(hub, "resume", a))
    assert code == 0
    assert hub.client.wait_for_completion(a, timeout=60).output == "blue:a:{'n': 1}"

    code, out, _ = run(capsys, *cli(hub, "terminate", b, "--reason", "cancelled", "--json"))
    assert json.loads(out) == {"instanceId": b, "result": "terminated"}
    assert str(hub.client.wait_for_completion(b, timeout=60).runtime_status) == "Terminated"

    code, _, err = run(capsys, *cli(hub, "raise", b, "Go"))
    assert code == 1
    one_line_error(err, "it takes no more messages")
    code, _, err = run(capsys, *cli(hub, "resume", "no-such-id"))
    assert code == 1
    one_line_error(err, "no orchestration instance with id 'no-such-id'")


def test_purge_by_id_and_by_filters(hub, capsys):
    prefix = f"p{uuid.uuid4().hex[:6]}-"
    for i in range(3):
        hub.client.start_new("chain", input=i, instance_id=f"{prefix}{i}")
    for i in range(3):
        hub.client.wait_for_completion(f"{prefix}{i}", timeout=60)
    running = f"{prefix}running"
    hub.client.start_new("flow", input="r", instance_id=running)

    code, out, _ = run(capsys, *cli(hub, "purge", f"{prefix}0"))
    assert (code, out.strip()) == (0, "purged 1 instance")
    code, _, err = run(capsys, *cli(hub, "purge", running))
    assert code == 1
    one_line_error(err, "only completed, failed or terminated instances can be purged")
    code, _, err = run(capsys, *cli(hub, "purge"))
    assert code == 1
    one_line_error(err, "give an instance id, or at least one filter")
    code, _, err = run(capsys, *cli(hub, "purge", running, "--status", "Completed"))
    assert code == 1
    code, _, err = run(capsys, *cli(hub, "purge", "--status", "Done"))
    assert code == 1
    one_line_error(err, "--status: unknown status 'Done'")
    code, _, err = run(capsys, *cli(hub, "purge", "--from", "yesterday"))
    assert code == 1
    one_line_error(err, "--from: expected an ISO 8601 time")

    code, out, _ = run(
        capsys, *cli(hub, "--json", "purge", "--status", "Completed", "--from", "2000-01-01")
    )
    assert code == 0 and json.loads(out)["purged"] >= 2
    assert hub.client.get_status(f"{prefix}1") is None
    assert str(hub.client.get_status(running).runtime_status) == "Running"
    hub.client.terminate(running, "test over")


def test_signal_and_read_entities(hub, capsys):
    key = f"Counter@{uuid.uuid4().hex[:6]}"
    code, out, _ = run(capsys, *cli(hub, "signal", key, "add", "--input", "5"))
    assert (code, out.strip()) == (0, f"signalled 'add' to {key}")
    run(capsys, *cli(hub, "signal", key, "add", "--input", "2"))
    code, out, _ = run(capsys, *cli(hub, "--json", "entity", key))
    assert json.loads(out) == {"entityId": key, "exists": True, "state": {"value": 7}}
    code, out, _ = run(capsys, *cli(hub, "entity", key))
    assert json.loads(out) == {"value": 7}
    code, out, _ = run(capsys, *cli(hub, "entity", "Counter@never"))
    assert (code, out.strip()) == (0, "entity Counter@never has no state")

    code, _, err = run(capsys, *cli(hub, "signal", "no-key", "add"))
    assert code == 1
    one_line_error(err, "invalid entity id 'no-key'")
    code, _, err = run(capsys, *cli(hub, "signal", key, "nope"))
    assert code == 1
    one_line_error(err, "has no operation 'nope'")
    code, _, err = run(capsys, *cli(hub, "signal", key, "add", "--input", "five"))
    assert code == 1
    one_line_error(err, "--input is not valid JSON")


def test_watch_json_and_failed_instance(hub, capsys):
    iid = hub.client.start_new("fan_out_fan_in", input=3)
    hub.client.wait_for_completion(iid, timeout=60)
    code, out, _ = run(capsys, *cli(hub, "--json", "watch", iid))
    assert code == 0
    last = json.loads(out.strip().splitlines()[-1])
    assert last == {
        "instanceId": iid,
        "runtimeStatus": "Completed",
        "scheduled": 3,
        "completed": 3,
        "failed": 0,
    }
    failing = hub.client.start_new("unhandled", input="boom")
    hub.client.wait_for_completion(failing, timeout=60)
    code, out, _ = run(capsys, *cli(hub, "watch", failing))
    assert code == 1
    assert "1/1 activities, 1 failed  Failed" in out and "failure: " in out and "boom" in out
    waiting = hub.client.start_new("flow", input="w")
    code, _, err = run(capsys, *cli(hub, "watch", waiting, "--timeout", "0.3"))
    assert code == 1
    one_line_error(err, "is still Running after 0.3 s")
    hub.client.terminate(waiting)


def test_list_watch_prints_the_table_again_at_each_change(hub, capsys):
    prefix = f"watch-{uuid.uuid4().hex[:6]}-"
    waiting = hub.client.start_new("flow", input="w", instance_id=prefix + "a")
    wait_until(lambda: str(hub.client.get_status(waiting).runtime_status) == "Running")
    stopper = threading.Timer(1.5, lambda: hub.client.terminate(waiting, "seen"))
    stopper.start()
    try:
        argv = ["list", "--watch", "--prefix", prefix, "--interval", "0.2", "--timeout", "6"]
        code, out, _ = run(capsys, *cli(hub, *argv))
    finally:
        stopper.cancel()
    assert code == 0
    # a pipe gets one table per change, each under a time stamp
    tables = [t for t in out.split("-- ")[1:] if t.strip()]
    assert len(tables) == 2, out
    assert "Running" in tables[0] and "Terminated" in tables[1]
    assert all(waiting in t and "INSTANCE ID" in t for t in tables)


def test_config_file_and_options_after_the_command(hub, capsys, tmp_path):
    config = tmp_path / "durable.yaml"
    config.write_text(f"hub: {hub.config.hub}\nhttp: {{port: 9100}}\n")
    iid = hub.client.start_new("chain", input=1)
    hub.client.wait_for_completion(iid, timeout=60)
    code, out, _ = run(capsys, "--config", str(config), "status", iid, "--json")
    assert code == 0 and json.loads(out)["output"] == 4
    code, out, _ = run(capsys, "config", "--config", str(config), "--json")
    assert json.loads(out)["http"]["port"] == 9100
    code, out, _ = run(capsys, "--config", str(config), "config")
    assert f"hub: {hub.config.hub}" in out and "port: 9100" in out

    config.write_text("http: {port: x}\n")
    code, _, err = run(capsys, "--config", str(config), "status", iid)
    assert code == 1
    one_line_error(err, "http.port: expected an integer, got 'x'")
    code, _, err = run(capsys, "--config", str(tmp_path / "missing.yaml"), "list")
    assert code == 1
    one_line_error(err, "not found")


# -- serve -----------------------------------------------------------------------------------


def test_serve_registers_the_app_and_starts_the_http_api(capsys, monkeypatch, tmp_path):
    hub_name = f"serve-{uuid.uuid4().hex[:6]}"
    config = tmp_path / "durable.yaml"
    config.write_text(
        f"hub: {hub_name}\nstore: sqlite:///{tmp_path}/serve.db\nplacement: pooled\n"
        "pool_size: 1\nwarm_hosts: 0\nhttp: {token_env: DURABLE_TEST_TOKEN}\n"
    )
    calls = []

    def serve_http(hub, **options):
        client = DurableClient.connect(hub=hub)
        iid = client.start_new("cli_app_flow", input="hi")
        calls.append((hub, options, client.wait_for_completion(iid, timeout=60).output))
        client.signal_entity("Tally@t", "add", 2)
        raise KeyboardInterrupt  # what Ctrl-C does while the server blocks

    stopped = []
    fake = types.ModuleType("runtime.driver.http_api")
    fake.serve_http = serve_http
    fake.stop_http = lambda: stopped.append(True)
    monkeypatch.setitem(sys.modules, "runtime.driver.http_api", fake)
    monkeypatch.chdir(os.path.dirname(workflows.__file__))
    code, out, err = run(
        capsys, "--config", str(config), "serve", "--app", "cli_app", "--port", "9123"
    )
    assert code == 0, err
    assert calls == [
        (
            hub_name,
            {
                "host": "127.0.0.1",
                "port": 9123,
                "token_env": "DURABLE_TEST_TOKEN",
                "max_body_bytes": 1_048_576,
                "dashboard": True,
            },
            "HI!",
        )
    ]
    assert stopped == [True]  # interrupted while serving: the API is taken down too
    assert "registered activity shout, orchestrator cli_app_flow, entity Tally" in out
    assert f"Ray cluster at {ray.get_runtime_context().gcs_address}; hub logs in " in out
    assert "HTTP API on" not in out  # announced only once serve_http returned: it never did
    assert f"stopped hub '{hub_name}'" in out
    with pytest.raises(ValueError):  # Ctrl-C stopped the hub; the store keeps its instances
        ray.get_actor(supervisor_name(hub_name), namespace=NAMESPACE)


def test_serve_fails_clearly(capsys, monkeypatch, tmp_path):
    hub_name = f"serve-{uuid.uuid4().hex[:6]}"
    monkeypatch.setitem(sys.modules, "runtime.driver.http_api", None)  # import fails as if missing
    code, _, err = run(capsys, "--hub", hub_name, "serve")
    assert code == 1
    one_line_error(err, "the HTTP API (runtime.driver.http_api) is not available")

    monkeypatch.setitem(
        sys.modules, "runtime.driver.http_api", types.ModuleType("runtime.driver.http_api")
    )
    sys.modules["runtime.driver.http_api"].serve_http = lambda *a, **k: None
    sys.modules["runtime.driver.http_api"].stop_http = lambda: None
    code, _, err = run(capsys, "--hub", hub_name, "serve", "--app", "no_such_module_xyz")
    assert code == 1
    one_line_error(err, "cannot import app module 'no_such_module_xyz'")
    with pytest.raises(ValueError):  # nothing was started
        ray.get_actor(supervisor_name(hub_name), namespace=NAMESPACE)


# -- which cluster, and what a newcomer trips on ---------------------------------------------


def test_an_unknown_version_is_named(hub, capsys):
    with pytest.raises(OrchestratorNotFoundError) as caught:
        hub.client.start_new("chain", version="99")
    assert caught.value.version == "99"
    assert str(caught.value).startswith("no version '99' of orchestrator 'chain' is registered")
    code, _, err = run(capsys, *cli(hub, "start", "chain", "--version", "99"))
    assert code == 1
    one_line_error(err, "no version '99' of orchestrator 'chain' is registered")
    code, _, err = run(capsys, *cli(hub, "start", "nowhere", "--version", "2"))
    assert code == 1
    one_line_error(err, "no orchestrator named 'nowhere' with version '2' is registered")


def test_console_script_exits_quietly_when_its_reader_goes_away(tmp_path):
    proc = subprocess.Popen(
        [shutil.which("durable"), "config"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # gone before the first line is written: `durable config | head -0`
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 0, err
    assert err == ""


def test_a_cluster_that_is_not_running_is_named_at_once(tmp_path):
    # A leftover `ray start` record: Ray looks for it under RAY_TMPDIR, so no real one moves.
    leftover = tmp_path / "ray" / "ray_current_cluster"
    leftover.parent.mkdir()
    leftover.write_text("127.0.0.1:1")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["RAY_TMPDIR"] = str(tmp_path)
    began = time.monotonic()

    def durable_here(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [shutil.which("durable"), *argv],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    given = durable_here("--address", "127.0.0.1:2", "list")
    assert given.returncode == 1
    one_line_error(given.stderr, "no Ray cluster is running at 127.0.0.1:2: ")
    recorded = durable_here("--hub", "shop", "list")
    assert recorded.returncode == 1
    one_line_error(
        recorded.stderr,
        f"no Ray cluster is running at 127.0.0.1:1 (recorded in {leftover} by an earlier "
        "'ray start'): ",
    )
    assert "delete that file" in recorded.stderr

    script = (
        "import sys\n"
        "from runtime import ClusterNotFoundError, DurableError, Runtime\n"
        "for address in (None, '127.0.0.1:2'):\n"
        "    try:\n"
        "        Runtime.start(hub='shop', store=sys.argv[1], address=address)\n"
        "    except ClusterNotFoundError as exc:\n"
        "        assert isinstance(exc, DurableError) and isinstance(exc, ConnectionError)\n"
        "        print(exc.address, '|', exc)\n"
    )
    store = f"sqlite:///{tmp_path}/hub.db"
    python = subprocess.run(
        [sys.executable, "-c", script, store],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert python.returncode == 0, python.stderr
    first, second = python.stdout.splitlines()
    assert first.startswith(
        f"127.0.0.1:1 | no Ray cluster is running at 127.0.0.1:1 (recorded in {leftover}"
    )
    assert second.startswith("127.0.0.1:2 | no Ray cluster is running at 127.0.0.1:2: ")
    assert not (tmp_path / "hub.db").exists()  # refused before anything started
    assert time.monotonic() - began < 45  # ray.init alone retries a dead address for minutes


def test_the_cli_finds_the_cluster_recorded_by_serve(tmp_path, capsys):
    store = f"sqlite:///{tmp_path}/hub.db"
    config = HubConfig(hub="shop", store=store)
    path = cluster.record_path(store, "shop")
    assert path == str(tmp_path / ".hub.db.shop.serve.json")
    assert _hub_address(config) == "auto"  # nothing recorded: Ray's own choice
    here = ray.get_runtime_context().gcs_address

    record = cluster.write_record("shop", store, http_url="http://x/")
    assert record is not None and (record.pid, record.ray_address) == (os.getpid(), here)
    assert cluster.read_record(store, "shop") == record
    assert _hub_address(config) == here
    given = dataclasses.replace(config, ray={"address": "10.0.0.9:6379"})
    assert _hub_address(given) == "10.0.0.9:6379"  # an address given always wins
    assert capsys.readouterr().err == ""

    def rewrite(**fields) -> None:
        with open(path, "w") as f:
            json.dump({**dataclasses.asdict(record), **fields}, f)

    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], **TEXT)
    rewrite(pid=int(ended.stdout))
    assert _hub_address(config) == "auto"
    err = capsys.readouterr().err
    assert err.startswith(f"durable: note: ignoring {path}: its 'durable serve' (pid "), err
    assert "is no longer running" in err
    rewrite(ray_address="127.0.0.1:1")
    assert _hub_address(config) == "auto"
    err = capsys.readouterr().err
    assert "its Ray cluster at 127.0.0.1:1 does not answer" in err, err

    rewrite(pid=1)  # another server replaced the record: not ours to remove
    cluster.remove_record(record)
    assert os.path.exists(path)
    rewrite()
    cluster.remove_record(record)
    assert not os.path.exists(path)


TEXT = {"capture_output": True, "text": True, "timeout": 60}
