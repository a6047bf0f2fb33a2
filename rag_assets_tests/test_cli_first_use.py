"""The first use of a DAGSTER_HOME by several `rag-assets` processes at once (cli.open_instance):
Dagster creates the instance's SQLite storage when it is first opened, and two processes
doing it together left runs.db with two alembic heads (every later command failed) or
crashed one of them ("table job_ticks already exists")."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from rag_assets.frontends.cli import INSTANCE_READY

CLI = [sys.executable, "-m", "rag_assets.frontends.cli"]
PROCESSES = 6


def cli_env(tmp_path: Path, home: Path) -> dict[str, str]:
    (tmp_path / "catchup.yaml").write_text("sources: {}\n")
    return {
        **os.environ,
        "DAGSTER_HOME": str(home),  # not there yet: the commands create it
        "RAG_WORK_DIR": str(tmp_path / "rag"),
        "RAG_INDEX_URI": str(tmp_path / "rag" / "index"),
        "RAG_CATCHUP_CONFIG": str(tmp_path / "catchup.yaml"),
    }


def alembic_heads(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        return [row[0] for row in conn.execute("SELECT version_num FROM alembic_version")]


def test_commands_started_together_on_a_new_instance_all_succeed(tmp_path):
    home, empty = tmp_path / "dagster_home", tmp_path / "empty"
    empty.mkdir()
    env = cli_env(tmp_path, home)
    # `ingest` of an empty folder opens the instance and reads it, and loads no model: the
    # cheapest command that walks into the first use.
    procs = [
        subprocess.Popen(
            [*CLI, "ingest", str(empty)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(PROCESSES)
    ]
    results = [(proc.wait(timeout=300), *proc.communicate()) for proc in procs]
    assert [code for code, _, _ in results] == [0] * PROCESSES, [err[-2000:] for code, _, err in results if code]
    assert all(out.startswith("0 ingested, 0 unchanged, 0 failed") for _, out, _ in results)

    for db in (
        home / "history" / "runs.db",
        home / "history" / "runs" / "index.db",
        home / "schedules" / "schedules.db",
    ):
        assert len(alembic_heads(db)) == 1, db
    assert (home / INSTANCE_READY).read_text().startswith("dagster ")

    # The instance is usable: a later command records a run in it (the document is unreadable,
    # so no model is loaded).
    (tmp_path / "inbox" / "acme").mkdir(parents=True)
    (tmp_path / "inbox" / "acme" / "deck.key").write_bytes(b"PK\x03\x04")
    later = subprocess.run(
        [*CLI, "ingest", str(tmp_path / "inbox")], env=env, check=False, capture_output=True, text=True, timeout=300
    )
    assert later.returncode == 1, later.stderr  # the document failed, the command did not
    assert "FAILED acme/deck.key: unsupported file type '.key'" in later.stdout
    assert "(1 run(s))" in later.stdout
