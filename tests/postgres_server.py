"""A throw-away PostgreSQL server for the tests: Debian's binaries, a temp dir, 127.0.0.1.

``.ci/run`` installs Debian's ``postgresql`` package when ``initdb`` is missing and sets
DURABLE_TEST_POSTGRES=required, so that there a missing server fails the PostgreSQL tests
instead of skipping them; a developer without PostgreSQL runs the SQLite half.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

from helpers import free_port

REQUIRED = os.environ.get("DURABLE_TEST_POSTGRES") == "required"


def _bindir() -> str | None:
    found = shutil.which("initdb")
    if found:
        return os.path.dirname(os.path.realpath(found))
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return os.path.dirname(versions[-1]) if versions else None


class PostgresServer:
    """One server in a temp dir; ``database()`` makes a fresh database and returns its URL."""

    def __init__(self, fsync: bool = False) -> None:
        # Tests run without fsync (fast; the server never loses power here); benchmarks ask
        # for it, as a deployment runs, to compare with SQLite's fsync'd commits fairly.
        self.fsync = fsync
        bindir = _bindir()
        if bindir is None:
            raise RuntimeError(
                "PostgreSQL is not installed (no initdb): apt-get install postgresql"
            )
        self.bindir = bindir
        self.dir = Path(tempfile.mkdtemp(prefix="durable-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        # initdb refuses to run as root: the server runs as the postgres user then.
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self._as:
            shutil.chown(self.dir, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "durable", "-A", "trust", "-N")
        self.start()
        self.url = f"postgresql://durable@127.0.0.1:{self.port}/postgres"

    def _run(self, program: str, *args: str) -> None:
        command = [*self._as, os.path.join(self.bindir, program), *args]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{program} failed: {done.stderr.strip() or done.stdout.strip()}")

    def start(self) -> None:
        """Start (or start again) the server on its port."""
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1"
        options += f" -c fsync={'on' if self.fsync else 'off'}"
        log = str(self.dir / "server.log")
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", log, "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``immediate``: as if it crashed)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def database(self) -> str:
        """A new, empty database; its URL."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url, autocommit=True) as db:
            db.execute(f"CREATE DATABASE {name}")
        return f"postgresql://durable@127.0.0.1:{self.port}/{name}"

    def password_role(self, role: str, password: str) -> str:
        """A role that must give ``password`` (scram-sha-256 over TCP), with a database of its
        own; the URL of that database, without the password."""
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as db:
            db.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
            db.execute(f"CREATE DATABASE {role} OWNER {role}")
        hba = self.data / "pg_hba.conf"
        # The first matching line wins: this role, and only it, is asked for its password.
        hba.write_text(f"host all {role} 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
        self._run("pg_ctl", "-D", str(self.data), "reload")
        return f"postgresql://{role}@127.0.0.1:{self.port}/{role}"

    def close(self) -> None:
        """Stop the server and remove its files."""
        try:
            self.stop("immediate")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
