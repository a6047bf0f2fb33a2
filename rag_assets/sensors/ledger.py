"""What the listing sensor has seen: object key -> version, per listing pass (SQLite)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path


class ListingLedger:
    """Mark-and-sweep over listing passes: `observe` returns what is new or changed, `sweep`
    what a finished pass did not see (deleted objects)."""

    def __init__(self, path: str | Path):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(path), timeout=60)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA case_sensitive_like=ON")  # S3 keys are case-sensitive
        self._conn.execute("CREATE TABLE IF NOT EXISTS objects (key TEXT PRIMARY KEY, version TEXT, pass INTEGER)")

    def close(self) -> None:
        self._conn.close()

    def observe(self, objects: Iterable[tuple[str, str]], pass_id: int) -> dict[str, str]:
        """Record (key, version) pairs as seen in `pass_id`; return those new or changed."""
        objects = list(objects)
        known: dict[str, str] = {}
        for start in range(0, len(objects), 500):
            part = [k for k, _ in objects[start : start + 500]]
            rows = self._conn.execute(f"SELECT key, version FROM objects WHERE key IN ({','.join('?' * len(part))})", part)
            known.update(rows)
        with self._conn:
            self._conn.executemany(
                "INSERT INTO objects VALUES (?, ?, ?) ON CONFLICT(key) DO UPDATE SET version = excluded.version, pass = excluded.pass",
                [(k, v, pass_id) for k, v in objects],
            )
        return {k: v for k, v in objects if known.get(k) != v}

    def sweep(self, pass_id: int) -> list[str]:
        """Forget and return the keys a complete pass `pass_id` did not see."""
        with self._conn:
            gone = [k for (k,) in self._conn.execute("SELECT key FROM objects WHERE pass < ?", (pass_id,))]
            self._conn.execute("DELETE FROM objects WHERE pass < ?", (pass_id,))
        return sorted(gone)

    def version(self, key: str) -> str | None:
        row = self._conn.execute("SELECT version FROM objects WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def with_prefix(self, prefix: str) -> dict[str, str]:
        """Keys starting with `prefix`, and their versions."""
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        rows = self._conn.execute("SELECT key, version FROM objects WHERE key LIKE ? ESCAPE '\\'", (escaped + "%",))
        return dict(rows)
