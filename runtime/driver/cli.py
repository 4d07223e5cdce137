"""The ``durable`` command line: serve a task hub, then start, query and steer its instances.

Every command but ``serve`` and ``config`` connects to a running Ray cluster
(``--address``, or ``ray.address`` of the config file, or the cluster on which ``durable
serve`` serves the hub, as it recorded beside the hub's store, or the local cluster) and to
a running hub (``--hub``, or ``hub`` of the config file, or ``default``). Output is for
people unless ``--json`` is given. A user error (unknown instance, bad JSON, unknown hub)
prints one line on stderr and exits 1; a usage error exits 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import logging
import math
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any

import ray

from .. import logs
from ..config import DEFAULT_CONFIG_FILE, HubConfig
from ..entity_id import EntityId
from ..errors import ClusterNotFoundError, DurableError
from ..orchestration import history as h
from ..orchestration.status import OrchestrationStatus
from . import cluster
from .client import DurableClient, OrchestrationState
from .http_json import (
    activity_progress,
    entity_state_payload,
    json_view,
    quarantined_payload,
    state_payload,
)

PROG = "durable"
KINDS = ("orchestrator", "activity", "entity")
STATUSES = tuple(str(s) for s in OrchestrationStatus)


class CliError(Exception):
    """A user error: printed as one line, exit status 1."""


class _UsageError(Exception):
    """Bad command-line arguments: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:
        # argparse would print the whole usage and exit; one line is easier to read.
        raise _UsageError(f"{message} (see '{self.prog} --help')")


# -- entry point --------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``durable`` command line; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except _UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help and --version exit through argparse
        return exc.code if isinstance(exc.code, int) else 0
    try:
        return args.run(args) or 0
    except BrokenPipeError:
        # The reader went away (`durable list | head -3`): it has all it wanted. Point
        # stdout at /dev/null so the interpreter's last flush does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 0
    except (CliError, DurableError, ValueError, TimeoutError, OSError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command."""
    parser = _Parser(prog=PROG, description="Run and manage a ray-durable task hub.")
    _global_options(parser, suppress=False)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    commands.required = True
    common = _Parser(add_help=False)
    _global_options(common, suppress=True)

    def command(name: str, run: Callable[[argparse.Namespace], int | None], help: str) -> Any:
        sub = commands.add_parser(name, parents=[common], help=help, description=help)
        sub.set_defaults(run=run)
        return sub

    _hub_commands(command)
    _instance_commands(command)
    return parser


def _hub_commands(command: Callable[..., Any]) -> None:
    sub = command("serve", _serve, "start the hub and its HTTP API; block until Ctrl-C")
    sub.add_argument(
        "--app",
        action="append",
        default=[],
        metavar="MODULE",
        help="module whose orchestrators, activities and entities to register "
        "(importable from the current directory; repeatable)",
    )
    sub.add_argument("--host", help="HTTP host (overrides http.host)")
    sub.add_argument("--port", type=int, help="HTTP port (overrides http.port)")

    command("config", _show_config, "print the effective configuration")

    sub = command("start", _start, "start an orchestration; prints its instance id")
    sub.add_argument("name", help="registered orchestrator name")
    sub.add_argument("--input", metavar="JSON", help="the orchestration's input, as JSON")
    sub.add_argument("--id", dest="instance_id", help="instance id (default: a new UUID)")
    sub.add_argument("--version", help="orchestrator version (default: the latest)")

    sub = command("status", _status, "show an instance's status")
    sub.add_argument("instance_id", metavar="ID")
    sub.add_argument("--history", action="store_true", help="include the history events")

    sub = command("list", _list, "list instances, oldest first")
    _filters(sub)
    sub.add_argument("--prefix", help="only instance ids starting with this")
    sub.add_argument("--top", type=int, metavar="N", help="at most N instances")
    sub.add_argument(
        "--watch", action="store_true", help="a live table, redrawn until Ctrl-C (or --timeout)"
    )
    sub.add_argument(
        "--interval", type=_seconds(0.0, False), default=2.0, help="seconds between redraws"
    )
    sub.add_argument("--timeout", type=_seconds(0.0, True), help="with --watch: stop after this")


def _instance_commands(command: Callable[..., Any]) -> None:
    sub = command("raise", _raise, "send an external event to an instance")
    sub.add_argument("instance_id", metavar="ID")
    sub.add_argument("event", metavar="EVENT", help="event name")
    sub.add_argument("--data", metavar="JSON", help="the event's data, as JSON")

    for name, run, what in (
        ("terminate", _terminate, "stop a running instance (it ends Terminated)"),
        ("suspend", _suspend, "pause an instance until it is resumed"),
        ("resume", _resume, "let a suspended instance go on"),
    ):
        sub = command(name, run, what)
        sub.add_argument("instance_id", metavar="ID")
        sub.add_argument("--reason", default="", help="recorded in the history")

    sub = command("purge", _purge, "delete finished instances: one by id, or by filters")
    sub.add_argument("instance_id", metavar="ID", nargs="?")
    _filters(sub)

    sub = command("signal", _signal, "send a one-way operation to an entity")
    sub.add_argument("entity", metavar="NAME@KEY")
    sub.add_argument("operation", metavar="OP")
    sub.add_argument("--input", metavar="JSON", help="the operation's input, as JSON")

    sub = command("entity", _entity, "show an entity's state")
    sub.add_argument("entity", metavar="NAME@KEY")

    sub = command(
        "quarantine", _quarantine, "list work set aside as poison; retry or discard it by id"
    )
    sub.add_argument("action", choices=("list", "retry", "discard"), nargs="?", default="list")
    sub.add_argument("item_id", metavar="ID", nargs="?", help="an id that 'list' shows")

    sub = command("watch", _watch, "show a running instance's progress until it ends")
    sub.add_argument("instance_id", metavar="ID")
    sub.add_argument(
        "--interval", type=_seconds(0.0, False), default=0.5, help="seconds between redraws"
    )
    sub.add_argument("--timeout", type=_seconds(0.0, True), help="give up after this many seconds")


def _seconds(low: float, inclusive: bool) -> Callable[[str], float]:
    """An argparse type: a number of seconds above ``low`` (or equal to it if ``inclusive``)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected a number of seconds, got {text!r}"
            ) from None
        if not math.isfinite(value) or not (value >= low if inclusive else value > low):
            bound = f">= {low:g}" if inclusive else f"> {low:g}"
            raise argparse.ArgumentTypeError(f"expected a number of seconds {bound}, got {text!r}")
        return value

    return parse


def _global_options(parser: argparse.ArgumentParser, suppress: bool) -> None:
    # Accepted before and after the command; after it, an option absent must not reset
    # the value given before it, hence SUPPRESS in the sub-commands' copy.
    def default(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    parser.add_argument("--address", default=default(None), help="Ray cluster address")
    parser.add_argument("--hub", default=default(None), help="task hub name")
    parser.add_argument(
        "--config",
        default=default(None),
        help=f"YAML configuration file (default: ./{DEFAULT_CONFIG_FILE} if present)",
    )
    parser.add_argument(
        "--json", action="store_true", default=default(False), help="machine-readable output"
    )


def _filters(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--status", nargs="+", metavar="STATUS", help=", ".join(STATUSES))
    sub.add_argument(
        "--from",
        dest="created_from",
        metavar="TIME",
        help="created at or after (ISO 8601; UTC if no zone)",
    )
    sub.add_argument(
        "--to",
        dest="created_to",
        metavar="TIME",
        help="created at or before (ISO 8601; UTC if no zone)",
    )


# -- configuration and connection ---------------------------------------------------------


def _config(args: argparse.Namespace) -> HubConfig:
    path = args.config
    if path is None and os.path.exists(DEFAULT_CONFIG_FILE):
        path = DEFAULT_CONFIG_FILE
    overrides: dict[str, Any] = {}
    if args.hub is not None:
        overrides["hub"] = args.hub
    config = HubConfig.load(path, **overrides)
    if args.address is not None:
        config = dataclasses.replace(
            config, ray=dataclasses.replace(config.ray, address=args.address)
        )
    return config


def _init_ray(address: str | None, namespace: str | None) -> None:
    if ray.is_initialized():
        return
    try:
        cluster.init_ray(
            address,
            namespace=namespace,
            logging_level=logging.ERROR,
            log_to_driver=False,
        )
    except ClusterNotFoundError:
        raise  # names the address and where it came from
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"at {address!r}" if address not in (None, "auto") else "on this machine"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CliError(
            f"cannot connect to a Ray cluster {where} ({first}); start one with "
            "'ray start --head' or 'durable serve', or pass --address"
        ) from None


def _note(text: str) -> None:
    print(f"{PROG}: note: {text}", file=sys.stderr, flush=True)


def _hub_address(config: HubConfig) -> str:
    """The cluster to join: the one given, else where ``durable serve`` serves the hub."""
    if config.ray.address is not None:
        return config.ray.address
    store = config.store
    assert store is not None  # HubConfig always fills in the store URL
    record = cluster.read_record(store, config.hub)
    if record is None:
        return "auto"
    path = cluster.record_path(store, config.hub)
    stale = record.stale_reason()
    if stale is None:
        try:
            cluster.check_running(cluster.Target(record.ray_address, ""))
        except ClusterNotFoundError as exc:
            stale = f"its Ray cluster at {record.ray_address} does not answer ({exc.reason})"
    if stale is not None:
        _note(f"ignoring {path}: {stale}; looking for the hub on the local Ray cluster")
        return "auto"
    return record.ray_address


def _connect(args: argparse.Namespace) -> DurableClient:
    config = _config(args)
    _init_ray(_hub_address(config), config.ray.namespace)
    try:
        return DurableClient.connect(hub=config.hub)
    except DurableError:
        raise CliError(
            f"no running task hub named {config.hub!r} on the Ray cluster at "
            f"{cluster.current_address()}; start it with 'durable serve --hub {config.hub}', "
            "or pass --address of the cluster that serves it"
        ) from None


# -- input and output ----------------------------------------------------------------------


def _json_arg(option: str, text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(
            f"{option} is not valid JSON ({exc.msg}, column {exc.colno}): {text!r}; "
            f"quote strings, e.g. {option} '\"text\"'"
        ) from None


def _time_arg(option: str, text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise CliError(
            f"{option}: expected an ISO 8601 time such as 2026-01-31T12:00:00Z, got {text!r}"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _statuses(values: list[str] | None) -> list[str] | None:
    if values is None:
        return None
    by_lower = {s.lower(): s for s in STATUSES}
    chosen = []
    for value in (v for text in values for v in text.split(",") if v):
        if value.lower() not in by_lower:
            raise CliError(f"--status: unknown status {value!r}; one of {', '.join(STATUSES)}")
        chosen.append(by_lower[value.lower()])
    return chosen


def _emit(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data) if args.json else text, flush=True)


def _short(value: Any, width: int = 100) -> str:
    text = json.dumps(json_view(value))
    return text if len(text) <= width else text[: width - 3] + "..."


def _when(value: datetime) -> str:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _require_state(client: DurableClient, instance_id: str, history: bool) -> OrchestrationState:
    state = client.get_status(instance_id, show_history=history)
    if state is None:
        raise CliError(f"no orchestration instance with id {instance_id!r} in hub {client.hub!r}")
    return state


# -- commands -----------------------------------------------------------------------------


def _show_config(args: argparse.Namespace) -> int:
    import yaml

    values = _config(args).to_dict()
    _emit(args, values, yaml.safe_dump(values, sort_keys=False).rstrip())
    return 0


def _start(args: argparse.Namespace) -> int:
    value = _json_arg("--input", args.input)
    client = _connect(args)
    iid = client.start_new(
        args.name, input=value, instance_id=args.instance_id, version=args.version
    )
    _emit(args, {"instanceId": iid, "name": args.name}, iid)
    return 0


def _status(args: argparse.Namespace) -> int:
    state = _require_state(_connect(args), args.instance_id, args.history)
    if args.json:
        _emit(args, state_payload(state), "")
        return 0
    rows = [
        ("instance", state.instance_id),
        ("name", state.name + (f" (version {state.version})" if state.version else "")),
        ("status", str(state.runtime_status)),
        ("created", _when(state.created_time)),
        ("last updated", _when(state.last_updated_time)),
        ("input", _short(state.input)),
        ("output", _short(state.output)),
        ("custom status", _short(state.custom_status)),
    ]
    if state.failure_details is not None:
        rows.append(("failure", str(state.failure_details)))
    lines = [f"{k + ':':<15}{v}" for k, v in rows]
    if state.history is not None:
        lines.append(f"history ({len(state.history)} events):")
        for i, event in enumerate(state.history):
            fields = ", ".join(f"{k}={_short(v, 60)}" for k, v in json_view(event).items())
            lines.append(f"  {i:>4}  {type(event).__name__}  {fields}")
    print("\n".join(lines), flush=True)
    return 0


def _list(args: argparse.Namespace) -> int:
    statuses = _statuses(args.status)
    created_from = _time_arg("--from", args.created_from)
    created_to = _time_arg("--to", args.created_to)
    if args.top is not None and args.top < 1:
        raise CliError(f"--top: expected a positive number, got {args.top}")
    client = _connect(args)

    def listed() -> list[str]:
        states = client.get_status_by(
            runtime_status=statuses,
            created_time_from=created_from,
            created_time_to=created_to,
            instance_id_prefix=args.prefix,
            top=args.top,
        )
        if args.json:
            return [json.dumps([state_payload(s) for s in states], default=str)]
        return _table(states)

    if not args.watch:
        lines = listed()
        if args.json:
            _emit(args, json.loads(lines[0]), "")
        else:
            print("\n".join(lines), flush=True)
        return 0
    # A terminal redraws the table in place; a pipe or a file gets the table at each change.
    tty = sys.stdout.isatty() and not args.json
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    last = None
    try:
        while deadline is None or time.monotonic() < deadline:
            lines = listed()
            if lines != last:
                stamp = time.strftime("%H:%M:%S")
                if tty:
                    print("\033[H\033[J" + f"{stamp}  (Ctrl-C to stop)", flush=True)
                elif not args.json:
                    print(f"-- {stamp}", flush=True)
                print("\n".join(lines), flush=True)
                last = lines
            time.sleep(args.interval)
    except KeyboardInterrupt:
        pass
    return 0


def _table(states: list[Any]) -> list[str]:
    """The lines of ``durable list``'s table."""
    if not states:
        return ["no instances"]
    table = [("INSTANCE ID", "NAME", "STATUS", "CREATED", "LAST UPDATED")]
    table += [
        (
            s.instance_id,
            s.name,
            str(s.runtime_status),
            _when(s.created_time),
            _when(s.last_updated_time),
        )
        for s in states
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in table]


def _raise(args: argparse.Namespace) -> int:
    data = _json_arg("--data", args.data)
    _connect(args).raise_event(args.instance_id, args.event, data)
    _emit(
        args,
        {"instanceId": args.instance_id, "event": args.event, "raised": True},
        f"raised {args.event!r} on {args.instance_id}",
    )
    return 0


def _control(verb: str, method: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        getattr(_connect(args), method)(args.instance_id, args.reason)
        _emit(args, {"instanceId": args.instance_id, "result": verb}, f"{verb} {args.instance_id}")
        return 0

    return run


_terminate = _control("terminated", "terminate")
_suspend = _control("suspended", "suspend")
_resume = _control("resumed", "resume")


def _purge(args: argparse.Namespace) -> int:
    filters = (args.status, args.created_from, args.created_to)
    if args.instance_id is not None and any(f is not None for f in filters):
        raise CliError("give either an instance id or filters (--status, --from, --to), not both")
    if args.instance_id is None and all(f is None for f in filters):
        raise CliError(
            "give an instance id, or at least one filter: e.g. --status Completed Failed "
            "Terminated (purges every finished instance)"
        )
    if args.instance_id is not None:
        count = _connect(args).purge_instance_history(args.instance_id)
    else:
        statuses = _statuses(args.status)
        created_from = _time_arg("--from", args.created_from)
        created_to = _time_arg("--to", args.created_to)
        count = _connect(args).purge_instance_history_by(
            created_time_from=created_from, created_time_to=created_to, runtime_status=statuses
        )
    _emit(args, {"purged": count}, f"purged {count} instance{'s' if count != 1 else ''}")
    return 0


def _entity_id(text: str) -> EntityId:
    return EntityId.parse(text)  # InvalidEntityIdError is a DurableError: one clear line


def _signal(args: argparse.Namespace) -> int:
    eid = _entity_id(args.entity)
    value = _json_arg("--input", args.input)
    _connect(args).signal_entity(eid, args.operation, value)
    _emit(
        args,
        {"entityId": str(eid), "operation": args.operation, "signalled": True},
        f"signalled {args.operation!r} to {eid}",
    )
    return 0


def _entity(args: argparse.Namespace) -> int:
    eid = _entity_id(args.entity)
    response = _connect(args).read_entity_state(eid)
    payload = entity_state_payload(str(eid), response.entity_exists, response.entity_state)
    shown = json.dumps(payload["state"], indent=2)
    _emit(args, payload, shown if response.entity_exists else f"entity {eid} has no state")
    return 0


def _quarantine(args: argparse.Namespace) -> int:
    client = _connect(args)
    if args.action == "list":
        items = [quarantined_payload(item) for item in client.list_quarantined()]
        lines = [
            f"{i['id']}  {i['crashes']} crashes  {i['detail']}  since {i['quarantinedAt']}"
            for i in items
        ]
        _emit(args, items, "\n".join(lines) or "nothing is quarantined")
        return 0
    if args.item_id is None:
        raise CliError(f"'quarantine {args.action}' needs an ID; 'durable quarantine list'")
    if args.action == "retry":
        item = client.retry_quarantined(args.item_id)
    else:
        item = client.discard_quarantined(args.item_id)
    done = "retried" if args.action == "retry" else "discarded"
    _emit(args, {**quarantined_payload(item), done: True}, f"{done} {item.id}")
    return 0


def progress(history: list[h.HistoryEvent]) -> tuple[int, int, int]:
    """(scheduled, completed, failed) activities of a history."""
    return activity_progress(type(e).__name__ for e in history)


def progress_bar(done: int, total: int, width: int = 30) -> str:
    """``[#####.....]`` for ``done`` of ``total``."""
    filled = width if total == 0 and done == 0 else (width * done) // max(total, 1)
    return "[" + "#" * filled + "." * (width - filled) + "]"


def _watch(args: argparse.Namespace) -> int:
    client = _connect(args)
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    tty = sys.stdout.isatty() and not args.json
    last = None
    while True:
        state = _require_state(client, args.instance_id, history=True)
        scheduled, completed, failed = progress(state.history or [])
        done = completed + failed
        status = str(state.runtime_status)
        if args.json:
            line = json.dumps(
                {
                    "instanceId": state.instance_id,
                    "runtimeStatus": status,
                    "scheduled": scheduled,
                    "completed": completed,
                    "failed": failed,
                }
            )
        else:
            extra = f", {failed} failed" if failed else ""
            line = f"{progress_bar(done, scheduled)} {done}/{scheduled} activities{extra}  {status}"
        if line != last:
            # A terminal redraws in place; a pipe or a file gets one line per change.
            print(f"\r{line}\033[K" if tty else line, end="" if tty else "\n", flush=True)
            last = line
        if state.is_terminal:
            break
        if deadline is not None and time.monotonic() >= deadline:
            if tty:
                print()
            raise CliError(
                f"instance {args.instance_id!r} is still {status} after {args.timeout:g} s"
            )
        time.sleep(max(0.05, args.interval))
    if tty:
        print()
    if not args.json:
        if state.runtime_status == OrchestrationStatus.COMPLETED:
            print(f"output: {_short(state.output, 400)}", flush=True)
        elif state.failure_details is not None:
            print(f"failure: {state.failure_details}", flush=True)
    return 0 if state.runtime_status == OrchestrationStatus.COMPLETED else 1


# -- serve --------------------------------------------------------------------------------


def app_objects(module: Any) -> list[Any]:
    """The orchestrators, activities and entities defined or imported in ``module``."""
    found: dict[int, Any] = {}
    for value in vars(module).values():
        # Instances only: the Orchestrator/Activity/Entity classes carry ``kind`` too.
        if getattr(value, "kind", None) in KINDS and not isinstance(value, type):
            found.setdefault(id(value), value)
    return list(found.values())


def _import_app(name: str) -> Any:
    # The console script's sys.path starts at its bin/ folder, not where the user is.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(name)
    except Exception as exc:  # the module's own code may raise anything while importing
        raise CliError(f"cannot import app module {name!r}: {type(exc).__name__}: {exc}") from None


def _serve(args: argparse.Namespace) -> int:
    try:
        from runtime.driver.http_api import serve_http, stop_http
    except ImportError as exc:
        raise CliError(
            f"the HTTP API (runtime.driver.http_api) is not available in this installation: {exc}"
        ) from None
    from .hub import Runtime

    config = _config(args)
    http = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    if http:
        config = HubConfig.load(config, http=http)
    modules = [_import_app(name) for name in args.app]
    objects = [obj for module in modules for obj in app_objects(module)]
    if config.ray.address is not None:
        _init_ray(config.ray.address, config.ray.namespace)
    runtime = Runtime.start(config=config)
    previous = _on_sigterm_interrupt()
    serving = False
    record = None
    try:
        runtime.register(*objects)
        names = ", ".join(f"{o.kind} {o.name}" for o in objects) or "nothing"
        print(f"hub {config.hub!r} on {config.store}; registered {names}", flush=True)
        log_dir = logs.log_dir()
        print(
            f"Ray cluster at {cluster.current_address()}; hub logs in {log_dir or '(unknown)'}",
            flush=True,
        )
        serving = True  # from here on, even a start cut short leaves a Serve app to delete
        url = serve_http(
            config.hub,
            host=config.http.host,
            port=config.http.port,
            token_env=config.http.token_env,
            max_body_bytes=config.http.max_body_bytes,
            dashboard=config.http.dashboard,
        )
        # Only now is the hub served: the CLI's default cluster, and the API answers.
        record = cluster.write_record(
            config.hub, runtime.config.store or "", http_url=str(url), log_dir=log_dir
        )
        _say_served(url)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        cluster.remove_record(record)
        if serving:
            try:
                stop_http()
            except Exception as exc:  # the hub must still stop
                print(f"durable: could not stop the HTTP API: {exc}", file=sys.stderr)
        runtime.shutdown()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        print(f"stopped hub {config.hub!r}; its instances resume at the next start", flush=True)
    return 0


def _say_served(url: Any) -> None:
    print(f"HTTP API on {url} (Ctrl-C to stop)", flush=True)
    if getattr(url, "dashboard", None):
        print(f"dashboard on {url.dashboard}", flush=True)


def _on_sigterm_interrupt() -> Any:
    """Stop on SIGTERM as on Ctrl-C (process managers send SIGTERM); returns the old handler."""

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        return signal.signal(signal.SIGTERM, interrupt)
    except ValueError:
        return None  # not the main thread (an embedding program): keep its handlers


if __name__ == "__main__":
    sys.exit(main())
