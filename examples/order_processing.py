"""Order processing with compensation: database, archive, notification.

Each order is written to a SQLite table, archived as a JSON file and announced in a
notifications log. If a step fails, the orchestrator catches ``TaskFailedError``, marks
the order as failed in the database (the compensation) and reports why.
Run from the repository root: ``python examples/order_processing.py``; the files land in
``.durable/`` (``orders.db``, ``archive/``, ``notifications.log``).
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Generator
from contextlib import closing
from typing import Any

from runtime import (
    OrchestrationContext,
    Runtime,
    Task,
    TaskFailedError,
    activity,
    orchestrator,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS orders (
    order_id   TEXT PRIMARY KEY,
    customer   TEXT NOT NULL,
    amount     REAL NOT NULL,
    status     TEXT NOT NULL,
    error      TEXT,
    updated_at REAL NOT NULL
)
"""


def _connect(data_dir: str) -> sqlite3.Connection:
    """A connection to ``orders.db`` in ``data_dir``, with the table created."""
    conn = sqlite3.connect(os.path.join(data_dir, "orders.db"), timeout=30)
    conn.execute(SCHEMA)
    return conn


@activity(name="WriteToDatabase")
def write_to_database(job: dict[str, Any]) -> str:
    """Store the order as accepted; refuse amounts that are not positive."""
    order = job["order"]
    if order["amount"] <= 0:
        raise ValueError(f"order {order['id']}: amount must be positive, got {order['amount']}")
    with closing(_connect(job["data_dir"])) as conn, conn:
        # An upsert, because activities run at least once: a retry must not fail on the key.
        conn.execute(
            "INSERT INTO orders VALUES (?, ?, ?, 'accepted', NULL, ?) "
            "ON CONFLICT(order_id) DO UPDATE SET customer = excluded.customer, "
            "amount = excluded.amount, status = 'accepted', error = NULL, "
            "updated_at = excluded.updated_at",
            (order["id"], order["customer"], order["amount"], time.time()),
        )
    return "accepted"


@activity(name="WriteToArchive")
def write_to_archive(job: dict[str, Any]) -> str:
    """Write the order to ``archive/<order id>.json``; returns the file's path."""
    order = job["order"]
    archive = os.path.join(job["data_dir"], "archive")
    os.makedirs(archive, exist_ok=True)
    path = os.path.join(archive, f"{order['id']}.json")
    # Write then rename, so a reader never sees half an archive file.
    with open(path + ".tmp", "w") as f:
        json.dump(order, f, indent=2)
    os.replace(path + ".tmp", path)
    return path


@activity(name="SendNotification")
def send_notification(job: dict[str, Any]) -> str:
    """Append a notification line to ``notifications.log`` (standing in for an email)."""
    order = job["order"]
    line = f"to {order['customer']}: order {order['id']} of {order['amount']:.2f} is confirmed"
    with open(os.path.join(job["data_dir"], "notifications.log"), "a") as f:
        f.write(line + "\n")
    print(line, flush=True)
    return line


@activity(name="MarkOrderFailed")
def mark_order_failed(job: dict[str, Any]) -> str:
    """Compensation: record the order as failed, whether or not it was stored before."""
    order = job["order"]
    with closing(_connect(job["data_dir"])) as conn, conn:
        conn.execute(
            "INSERT INTO orders VALUES (?, ?, ?, 'failed', ?, ?) "
            "ON CONFLICT(order_id) DO UPDATE SET status = 'failed', error = excluded.error, "
            "updated_at = excluded.updated_at",
            (order["id"], order["customer"], order["amount"], job["error"], time.time()),
        )
    return "failed"


@orchestrator
def process_order(
    ctx: OrchestrationContext, job: dict[str, Any]
) -> Generator[Task, Any, dict[str, Any]]:
    """Database, archive, notification; on any failure, compensate and report."""
    order_id = job["order"]["id"]
    try:
        ctx.set_custom_status({"stage": "WriteToDatabase"})
        db_status = yield ctx.call_activity(write_to_database, job)
        ctx.set_custom_status({"stage": "WriteToArchive"})
        archive = yield ctx.call_activity(write_to_archive, job)
        ctx.set_custom_status({"stage": "SendNotification"})
        notice = yield ctx.call_activity(send_notification, job)
    except TaskFailedError as err:
        error = f"{err.details.error_type}: {err.details.message}"
        yield ctx.call_activity(mark_order_failed, {**job, "error": error})
        ctx.set_custom_status({"stage": "compensated", "error": err.details.error_type})
        return {"order_id": order_id, "ok": False, "db_status": "failed", "error": error}
    ctx.set_custom_status({"stage": "done"})
    return {
        "order_id": order_id,
        "ok": True,
        "db_status": db_status,
        "archive": archive,
        "notification": notice,
    }


def main() -> None:
    """Start the hub, process a good and a bad order, print both outcomes and the files."""
    rt = Runtime.start(hub="example-order-processing")
    try:
        # Next to the hub's store, so all of this example's files sit in one folder.
        data_dir = os.path.dirname(rt.config.store.removeprefix("sqlite:///"))
        orders = [
            {"id": "order-1001", "customer": "alice@example.com", "amount": 42.50},
            {"id": "order-1002", "customer": "bob@example.com", "amount": -5.00},
        ]
        # Paths are absolute because activities run in Ray workers, not in this process.
        ids = [
            rt.client.start_new(process_order, input={"order": o, "data_dir": data_dir})
            for o in orders
        ]
        for order, iid in zip(orders, ids):
            state = rt.client.wait_for_completion(iid, timeout=120)
            print(f"\n{order['id']} (amount {order['amount']:.2f}), instance {iid}")
            print(f"  status:        {state.runtime_status}")
            print(f"  custom status: {state.custom_status}")
            print(f"  output:        {state.output}")

        print(f"\ntable orders in {os.path.join(data_dir, 'orders.db')}:")
        with closing(sqlite3.connect(os.path.join(data_dir, "orders.db"))) as conn:
            rows = conn.execute(
                "SELECT order_id, amount, status, error FROM orders WHERE order_id IN (?, ?)",
                [o["id"] for o in orders],
            )
            for row in rows:
                print(f"  {row}")
        archive = os.path.join(data_dir, "archive")
        print(f"archive: {sorted(os.listdir(archive)) if os.path.isdir(archive) else []}")
    finally:
        rt.shutdown()


if __name__ == "__main__":
    main()
