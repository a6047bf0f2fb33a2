"""One way to open the project's SQLite files (sensor state, the embedding cache, image analyses)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path


def open_sqlite(path: str | Path, schema: Iterable[str]) -> sqlite3.Connection:
    """A connection to the file at `path` (its folder made), in WAL mode so readers do not
    block the writer, waiting up to 60 s for a lock, with `schema`'s statements applied."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), timeout=60)
    conn.execute("PRAGMA journal_mode=WAL")
    with conn:
        for statement in schema:
            conn.execute(statement)
    return conn
