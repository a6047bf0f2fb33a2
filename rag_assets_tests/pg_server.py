"""A throwaway PostgreSQL 15 server with pgvector, for tests.

Install the server and extension first with ``scripts/install-postgres.sh``.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Self

PG_BIN = Path("/usr/lib/postgresql/15/bin")
OS_USER = "postgres"
DB_SUPERUSER = "postgres"
_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
}


def _free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class TemporaryPostgres:
    """A PG15 cluster in a temp dir on a free 127.0.0.1 port, trust auth.

    ``start()`` (or ``with``) runs initdb, starts the server, creates
    ``dbname`` and the ``vector`` extension; ``stop()`` shuts it down and
    removes the directory. Postgres refuses to run as root, so a root caller
    runs the server as the ``postgres`` system user (created if missing).
    """

    def __init__(self, dbname: str = "rag_test", bin_dir: Path = PG_BIN) -> None:
        self.dbname = dbname
        self.bin_dir = bin_dir
        self.port = 0
        self.tmpdir: Path | None = None
        self._as_root = os.geteuid() == 0

    @property
    def dsn(self) -> str:
        """psycopg-ready URL of the test database (no password needed)."""
        if not self.port:
            raise RuntimeError("TemporaryPostgres is not started")
        return f"postgresql://{DB_SUPERUSER}@127.0.0.1:{self.port}/{self.dbname}"

    @property
    def datadir(self) -> Path:
        """The cluster's data directory."""
        assert self.tmpdir is not None, "not started"
        return self.tmpdir / "data"

    def start(self) -> TemporaryPostgres:
        """Create and start the cluster, database and extension; return self."""
        missing = [b for b in ("initdb", "pg_ctl", "psql") if not (self.bin_dir / b).is_file()]
        if missing:
            raise RuntimeError(
                f"PostgreSQL 15 binaries {missing} not found in {self.bin_dir}: "
                "run scripts/install-postgres.sh (as root) first"
            )
        self.tmpdir = Path(tempfile.mkdtemp(prefix="rag-pg-"))
        try:
            self._init_and_start()
            self._psql("postgres", f'CREATE DATABASE "{self.dbname}"')
            self._psql(self.dbname, "CREATE EXTENSION IF NOT EXISTS vector")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Fast-shutdown the server (if running) and delete the temp dir."""
        if self.tmpdir is None:
            return
        if (self.datadir / "postmaster.pid").exists():
            self._run_server_cmd(
                [str(self.bin_dir / "pg_ctl"), "-D", str(self.datadir), "-m", "fast", "-w", "stop"],
                check=False,
            )
        shutil.rmtree(self.tmpdir, ignore_errors=True)
        self.tmpdir = None
        self.port = 0

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _init_and_start(self) -> None:
        assert self.tmpdir is not None
        if self._as_root:
            _ensure_os_user(OS_USER)
            user = pwd.getpwnam(OS_USER)
            os.chown(self.tmpdir, user.pw_uid, user.pw_gid)
        self._run_server_cmd([
            str(self.bin_dir / "initdb"), "-D", str(self.datadir), "-U", DB_SUPERUSER,
            "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync",
        ])
        self.port = _free_port()
        settings = {
            **_SETTINGS,
            "port": str(self.port),
            "unix_socket_directories": f"'{self.tmpdir}'",
        }
        with open(self.datadir / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
        log = self.tmpdir / "server.log"
        result = self._run_server_cmd(
            [str(self.bin_dir / "pg_ctl"), "-D", str(self.datadir), "-l", str(log), "-w", "-t", "60", "start"],
            check=False,
        )
        if result.returncode != 0:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"postgres failed to start:\n{result.stdout}\n{tail}")

    def _run_server_cmd(self, cmd: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a server-side command, as the postgres user when we are root."""
        if self._as_root:
            cmd = ["runuser", "-u", OS_USER, "--", *cmd]
        result = subprocess.run(
            cmd, cwd=self.tmpdir, check=False, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{result.stdout}")
        return result

    def _psql(self, dbname: str, sql: str) -> None:
        """Run one SQL statement over TCP as the superuser."""
        cmd = [
            str(self.bin_dir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1",
            "-h", "127.0.0.1", "-p", str(self.port), "-U", DB_SUPERUSER, "-d", dbname, "-c", sql,
        ]
        result = subprocess.run(cmd, check=False, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"psql failed ({sql!r}):\n{result.stdout}")


def _ensure_os_user(name: str) -> None:
    """Create a system user ``name`` if it does not exist (root only)."""
    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--user-group", "--no-create-home",
             "--shell", "/usr/sbin/nologin", name],
            check=True,
        )
