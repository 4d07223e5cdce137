"""Structured logs: one JSON object per line, carrying hub, instance and execution ids.

Hosts and the supervisor write every line to ``<Ray session logs>/ray-durable/<pid>.log``
(as Ray Serve keeps its own log files), where a log pipeline indexes them by ``hub``,
``instance_id`` and ``execution_id`` without parsing prose. Only warnings and errors also
go to stderr, which Ray forwards to the driver's console: a busy hub would drown it.
"""

from __future__ import annotations

import glob
import json
import logging
import os
from typing import Any

#: Fields a record may carry, in the order they are written.
FIELDS = ("hub", "instance_id", "execution_id", "name", "status", "host", "entity")

_configured = False


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line: time, level, logger, message and its fields."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as JSON."""
        line: dict[str, Any] = {
            "ts": round(record.created, 6),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "durable", None) or {}
        for key in FIELDS:
            if fields.get(key) is not None:
                line[key] = fields[key]
        for key, value in fields.items():
            if key not in line:
                line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure(level: str | None = None) -> None:
    """Send ``ray_durable.*`` logs to stderr as JSON lines (once per process)."""
    global _configured
    if _configured:
        return
    _configured = True
    root = logging.getLogger("ray_durable")
    console = logging.StreamHandler()
    console.setLevel(logging.WARNING)
    handlers: list[logging.Handler] = [console]
    path = log_file()
    if path is not None:
        handlers.append(logging.FileHandler(path))
    for handler in handlers:
        handler.setFormatter(JsonFormatter())
        root.addHandler(handler)
    root.setLevel(level or os.environ.get("RAY_DURABLE_LOG_LEVEL", "INFO"))
    root.propagate = False  # Ray's own handler would print each line a second time


def log_dir() -> str | None:
    """Where this Ray session's ray-durable log files are (None outside Ray)."""
    try:
        from ray._private import worker  # Ray has no public API for the session's log dir

        node: Any = worker._global_node
        base = node.get_logs_dir_path()
    except Exception:
        return None
    return os.path.join(base, "ray-durable")


def log_file() -> str | None:
    """This process's log file, created on first use."""
    directory = log_dir()
    if directory is None:
        return None
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError:
        return None
    return os.path.join(directory, f"{os.getpid()}.log")


def event(
    logger: logging.Logger, level: int, message: str, exc_info: bool = False, **fields: Any
) -> None:
    """Log ``message`` with structured fields (hub, instance_id, execution_id, ...)."""
    logger.log(level, message, exc_info=exc_info, extra={"durable": fields})


def instance_lines(
    instance_id: str, hub: str | None = None, limit: int = 200, budget: int = 8 * 2**20
) -> tuple[str | None, list[dict[str, Any]]]:
    """(this node's log folder, the last ``limit`` lines about one instance of ``hub`` in
    it, oldest first). Reads at most ``budget`` bytes, from the end of each file."""
    directory = log_dir()
    if directory is None:
        return None, []
    needle = f'"instance_id": {json.dumps(instance_id)}'.encode()
    files = sorted(glob.glob(os.path.join(directory, "*.log")))
    share = budget // max(len(files), 1)
    found: list[dict[str, Any]] = []
    for path in files:
        try:
            with open(path, "rb") as handle:
                size = handle.seek(0, os.SEEK_END)
                handle.seek(max(0, size - share))
                data = handle.read(share)
        except OSError:
            continue  # a process's file may go while we look
        for raw in data.splitlines():
            if needle in raw:
                try:
                    line = json.loads(raw)
                except ValueError:
                    continue  # the first line of a tail read may be cut
                if not isinstance(line, dict) or line.get("instance_id") != instance_id:
                    continue
                if hub is None or line.get("hub") in (None, hub):
                    found.append(line)
    found.sort(key=lambda line: line.get("ts", 0))
    return directory, found[-limit:]
