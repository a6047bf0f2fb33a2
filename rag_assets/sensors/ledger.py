"""What the listing sensor has seen: object key -> version, per listing pass (SQLite).

A tick's observations are written as *pending* under the tick's number and applied only by
a later tick whose cursor names that number, i.e. once Dagster has recorded the tick that
made them (its runs, partitions and cursor). A tick whose result was lost (a timeout, a
daemon restart) leaves pending rows that are discarded, and its changes are found again.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path


class ListingLedger:
    """Mark-and-sweep over listing passes: `observe` returns what is new or changed, `sweep`
    what a finished pass did not see (deleted objects); `commit` applies a recorded tick."""

    def __init__(self, path: str | Path):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(path), timeout=60)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA case_sensitive_like=ON")  # S3 keys are case-sensitive
        with self._conn:
            self._conn.execute("CREATE TABLE IF NOT EXISTS objects (key TEXT PRIMARY KEY, version TEXT, pass INTEGER)")
            # version NULL: the object is gone.
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS pending (tick INTEGER, key TEXT, version TEXT, pass INTEGER, PRIMARY KEY (tick, key))"
            )

    def close(self) -> None:
        self._conn.close()

    def commit(self, tick: int) -> None:
        """Apply the observations of `tick` (recorded by Dagster); drop every other pending row."""
        with self._conn:
            self._conn.execute(
                "INSERT INTO objects SELECT key, version, pass FROM pending WHERE tick = ? AND version IS NOT NULL "
                "ON CONFLICT(key) DO UPDATE SET version = excluded.version, pass = excluded.pass",
                (tick,),
            )
            self._conn.execute(
                "DELETE FROM objects WHERE key IN (SELECT key FROM pending WHERE tick = ? AND version IS NULL)", (tick,)
            )
            self._conn.execute("DELETE FROM pending")

    def observe(self, objects: Iterable[tuple[str, str]], pass_id: int, tick: int) -> dict[str, str]:
        """Note (key, version) pairs as seen by `tick` in `pass_id`; return those new or changed."""
        objects = list(objects)
        known: dict[str, str] = {}
        for start in range(0, len(objects), 500):
            part = [k for k, _ in objects[start : start + 500]]
            rows = self._conn.execute(f"SELECT key, version FROM objects WHERE key IN ({','.join('?' * len(part))})", part)
            known.update(rows)
        with self._conn:
            self._conn.executemany(
                "INSERT OR REPLACE INTO pending VALUES (?, ?, ?, ?)", [(tick, k, v, pass_id) for k, v in objects]
            )
        return {k: v for k, v in objects if known.get(k) != v}

    def sweep(self, pass_id: int, tick: int) -> list[str]:
        """The keys a complete pass `pass_id` did not see, noted as gone by `tick`."""
        gone = [
            k
            for (k,) in self._conn.execute(
                "SELECT key FROM objects WHERE pass < ? AND key NOT IN (SELECT key FROM pending WHERE tick = ?)",
                (pass_id, tick),
            )
        ]
        with self._conn:
            self._conn.executemany("INSERT OR REPLACE INTO pending VALUES (?, ?, NULL, ?)", [(tick, k, pass_id) for k in gone])
        return sorted(gone)

    def with_prefix(self, prefix: str) -> dict[str, str]:
        """Known keys starting with `prefix`, and their versions."""
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        rows = self._conn.execute("SELECT key, version FROM objects WHERE key LIKE ? ESCAPE '\\'", (escaped + "%",))
        return dict(rows)


class PendingAcks:
    """SQS receipt handles of each event-sensor tick, kept until a later tick's cursor shows
    that Dagster recorded that tick (SQLite; the cursor holds only the tick number)."""

    def __init__(self, path: str | Path):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(path), timeout=60)
        self._conn.execute("PRAGMA journal_mode=WAL")
        with self._conn:
            self._conn.execute("CREATE TABLE IF NOT EXISTS acks (tick INTEGER, handle TEXT)")

    def close(self) -> None:
        self._conn.close()

    def take(self, tick: int) -> list[str]:
        """The handles of recorded `tick`; every other tick's are dropped (their messages come
        back after the visibility timeout, and their runs' keys absorb the duplicates)."""
        handles = [h for (h,) in self._conn.execute("SELECT handle FROM acks WHERE tick = ?", (tick,))]
        with self._conn:
            self._conn.execute("DELETE FROM acks")
        return handles

    def put(self, tick: int, handles: Iterable[str]) -> None:
        with self._conn:
            self._conn.executemany("INSERT INTO acks VALUES (?, ?)", [(tick, h) for h in handles])
