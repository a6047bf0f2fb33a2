"""What the sensors keep between ticks (SQLite files under RAG_WORK_DIR/state), and the
golden-set check between its evaluations (`GoldenState`).

Every file is a cache, never a claim about the index: a source's file is per index
identity (store, model, pipeline) and holds what the current listing pass has seen, the
last request per document, and the deletion guard's memory (deletions held, deletions
purged lately); the truth is the store's listing, read again by each plan. Lose a file and
the next pass rebuilds it (a lost hold is found again by the next pass that sees the same
objects gone).

A tick's writes are *pending* under the tick's number and applied only by a later tick whose
cursor names that number, i.e. once Dagster has recorded the tick that made them (its runs,
partitions and cursor). A tick whose result was lost (a timeout, a daemon restart) leaves
pending rows that are dropped, and its work is found again.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from pathlib import Path

from rag_assets.lib.identity import index_identity
from rag_assets.lib.reconcile import Backoff, Request
from rag_assets.lib.sqlite import open_sqlite
from rag_assets.resources.config import RagConfig, SyncConfig
from rag_assets.resources.embedders import Embedder


def identity_of(sync_config: SyncConfig, embedder: Embedder, rag_config: RagConfig) -> str:
    pipelines = f"{rag_config.pipeline} {rag_config.image_pipeline}"
    return index_identity(sync_config.index_uri, embedder.model_id, pipelines)


def state_file(sync_config: SyncConfig, kind: str, *names: str) -> Path:
    """A sensor state file, one per source and index identity (or per queue)."""
    return Path(sync_config.state_dir, f"{kind}-{hashlib.sha256(chr(0).join(names).encode()).hexdigest()[:12]}.sqlite")


class _SQLite:
    def __init__(self, path: str | Path, schema: Iterable[str]):
        self._conn = open_sqlite(path, schema)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class SourceState(_SQLite):
    """What the sensors of one source know for one index identity, each sensor's writes
    pending under its own ticks: the objects the current listing pass has seen (key ->
    etag, version, pass), the last request per document (partition -> version, attempt,
    time, and whether a planner has since seen the document current), and for the deletion
    guard the deletions it holds (key -> since when) and those purged unconfirmed (key ->
    when: the guard's window)."""

    def __init__(self, path: str | Path, sensor: str):
        super().__init__(
            path,
            [
                "CREATE TABLE IF NOT EXISTS seen (key TEXT PRIMARY KEY, etag TEXT, version TEXT, pass INTEGER)",
                (
                    "CREATE TABLE IF NOT EXISTS pending_seen (sensor TEXT, tick INTEGER, key TEXT, etag TEXT, version "
                    "TEXT, "
                    "pass INTEGER, PRIMARY KEY (sensor, tick, key))"
                ),
                (
                    "CREATE TABLE IF NOT EXISTS requests (partition TEXT PRIMARY KEY, version TEXT, attempt INTEGER, "
                    "at REAL, "
                    "done INTEGER DEFAULT 0)"
                ),
                # version NULL: the request is done (the document was seen current).
                (
                    "CREATE TABLE IF NOT EXISTS pending_requests (sensor TEXT, tick INTEGER, partition TEXT, version "
                    "TEXT, "
                    "attempt INTEGER, at REAL, PRIMARY KEY (sensor, tick, partition))"
                ),
                # Keys a listing pass found gone (with the document ids the index held of them):
                # purged, through the deletion guard, when the pass ends.
                "CREATE TABLE IF NOT EXISTS gone (key TEXT PRIMARY KEY, ids TEXT, pass INTEGER)",
                (
                    "CREATE TABLE IF NOT EXISTS pending_gone (sensor TEXT, tick INTEGER, key TEXT, ids TEXT, "
                    "pass INTEGER, PRIMARY KEY (sensor, tick, key))"
                ),
                "CREATE TABLE IF NOT EXISTS held (key TEXT PRIMARY KEY, at REAL)",
                "CREATE TABLE IF NOT EXISTS purged (key TEXT PRIMARY KEY, at REAL)",
                # what: 'hold' (since at), 'release', or 'purged' (at).
                (
                    "CREATE TABLE IF NOT EXISTS pending_guard (sensor TEXT, tick INTEGER, key TEXT, what TEXT, at "
                    "REAL, "
                    "PRIMARY KEY (sensor, tick, key, what))"
                ),
            ],
        )
        self.sensor = sensor

    def commit(self, tick: int) -> None:
        """Apply what this sensor's `tick` (recorded by Dagster) wrote; drop its other pending
        rows, and objects not seen in the last two passes (gone long ago)."""
        args = (self.sensor, tick)
        with self._conn:
            self._conn.execute(
                (
                    "INSERT OR REPLACE INTO seen SELECT key, etag, version, pass FROM pending_seen WHERE sensor = ? "
                    "AND "
                    "tick = ?"
                ),
                args,
            )
            self._conn.execute(
                "INSERT OR REPLACE INTO requests SELECT partition, version, attempt, at, 0 FROM pending_requests "
                "WHERE sensor = ? AND tick = ? AND version IS NOT NULL",
                args,
            )
            self._conn.execute(
                "UPDATE requests SET done = 1 WHERE partition IN "
                "(SELECT partition FROM pending_requests WHERE sensor = ? AND tick = ? AND version IS NULL)",
                args,
            )
            # A key held again keeps the time it was first held (a confirmation covers it).
            mine = "FROM pending_guard WHERE sensor = ? AND tick = ? AND what = "
            self._conn.execute(f"INSERT OR IGNORE INTO held SELECT key, at {mine} 'hold'", args)
            self._conn.execute(f"DELETE FROM held WHERE key IN (SELECT key {mine} 'release')", args)
            self._conn.execute(f"INSERT OR REPLACE INTO purged SELECT key, at {mine} 'purged'", args)
            self._conn.execute("DELETE FROM pending_seen WHERE sensor = ?", (self.sensor,))
            self._conn.execute("DELETE FROM pending_requests WHERE sensor = ?", (self.sensor,))
            self._conn.execute("DELETE FROM pending_guard WHERE sensor = ?", (self.sensor,))
            self._conn.execute(
                "INSERT OR REPLACE INTO gone SELECT key, ids, pass FROM pending_gone WHERE sensor = ? AND tick = ?",
                args,
            )
            self._conn.execute("DELETE FROM pending_gone WHERE sensor = ?", (self.sensor,))
            self._conn.execute("DELETE FROM gone WHERE pass < (SELECT max(pass) FROM gone)")
            self._conn.execute("DELETE FROM seen WHERE pass < (SELECT max(pass) FROM seen) - 1")

    def observe(self, objects: Iterable[tuple[str, str, str]], pass_id: int, tick: int) -> None:
        """Note (key, etag, version) as seen by `tick` in pass `pass_id`."""
        with self._conn:
            self._conn.executemany(
                "INSERT OR REPLACE INTO pending_seen VALUES (?, ?, ?, ?, ?, ?)",
                [(self.sensor, tick, k, e, v, pass_id) for k, e, v in objects],
            )

    def seen(self, pass_id: int, tick: int, start: str = "", upto: str | None = None) -> dict[str, tuple[str, str]]:
        """key -> (etag, version) of every object from key `start` on (to `upto`, when given)
        seen in pass `pass_id`, by earlier ticks and by `tick`."""
        span, args = "key >= ?", [start]
        if upto is not None:
            span, args = "key >= ? AND key <= ?", [start, upto]
        rows = self._conn.execute(
            f"SELECT key, etag, version FROM seen WHERE pass = ? AND {span} "
            "AND key NOT IN (SELECT key FROM pending_seen WHERE sensor = ? AND tick = ?) "
            f"UNION ALL SELECT key, etag, version FROM pending_seen WHERE sensor = ? AND tick = ? AND {span}",
            (pass_id, *args, self.sensor, tick, self.sensor, tick, *args),
        )
        return {k: (e, v) for k, e, v in rows}

    def note_gone(self, gone: Mapping[str, Iterable[str]], pass_id: int, tick: int) -> None:
        """Note keys `tick` found gone in pass `pass_id` (key -> the document ids the index holds of it)."""
        rows = [(self.sensor, tick, k, json.dumps(sorted(ids)), pass_id) for k, ids in gone.items()]
        with self._conn:
            self._conn.executemany("INSERT OR REPLACE INTO pending_gone VALUES (?, ?, ?, ?, ?)", rows)

    def gone(self, pass_id: int) -> dict[str, list[str]]:
        """The keys earlier ticks of pass `pass_id` found gone -> the document ids the index held of them."""
        rows = self._conn.execute("SELECT key, ids FROM gone WHERE pass = ?", (pass_id,))
        return {k: json.loads(ids) for k, ids in rows}

    def requests(self, partitions: Iterable[str]) -> dict[str, Request]:
        """The last request of each of these partitions that has one (done or not: an index
        that loses a document it once held is asked again with the next attempt's run key)."""
        partitions = list(partitions)
        found: dict[str, Request] = {}
        for start in range(0, len(partitions), 500):
            part = partitions[start : start + 500]
            rows = self._conn.execute(
                (
                    "SELECT partition, version, attempt, at, done FROM requests WHERE partition IN "
                    f"({','.join('?' * len(part))})"
                ),
                part,
            )
            found.update((p, Request(v, a, t, bool(d))) for p, v, a, t, d in rows)
        return found

    def due(self, now: float, backoff: Backoff, limit: int, skip: AbstractSet[str] = frozenset()) -> list[str]:
        """Up to `limit` partitions requested long enough ago, not seen current since and not
        in `skip` (a run is on them), oldest first: due to be looked at again."""
        rows = self._conn.execute("SELECT partition, attempt, at FROM requests WHERE done = 0 ORDER BY at")
        return [p for p, attempt, at in rows if p not in skip and now >= at + backoff.delay(attempt)][:limit]

    def record(self, requested: Mapping[str, Request], current: Iterable[str], tick: int) -> None:
        """Note the requests of `tick`, and which outstanding ones it saw done (current)."""
        rows = [(self.sensor, tick, p, r.version, r.attempt, r.at) for p, r in requested.items()]
        current = [p for p in current if p not in requested]
        for start in range(0, len(current), 500):
            part = current[start : start + 500]
            outstanding = self._conn.execute(
                f"SELECT partition FROM requests WHERE done = 0 AND partition IN ({','.join('?' * len(part))})", part
            )
            rows += [(self.sensor, tick, p, None, None, None) for (p,) in outstanding]
        with self._conn:
            self._conn.executemany("INSERT OR REPLACE INTO pending_requests VALUES (?, ?, ?, ?, ?, ?)", rows)

    def held(self, pending: bool = False) -> dict[str, float]:
        """The deletions the guard holds: key -> since when. With `pending`, also those that
        ticks not yet recorded hold (what a person is shown), less those they release."""
        held = dict(self._conn.execute("SELECT key, at FROM held"))
        if pending:
            for key, what, at in self._conn.execute("SELECT key, what, at FROM pending_guard ORDER BY tick"):
                if what == "hold":
                    held.setdefault(key, at)
                elif what == "release":
                    held.pop(key, None)
        return held

    def purged_since(self, since: float) -> set[str]:
        """Keys purged without a confirmation at `since` or later (the guard's window)."""
        with self._conn:
            self._conn.execute("DELETE FROM purged WHERE at < ?", (since,))  # out of every window from now on
        return {k for (k,) in self._conn.execute("SELECT key FROM purged")}

    def guard(self, tick: int, hold: Iterable[str], release: Iterable[str], purged: Iterable[str], at: float) -> None:
        """Note what `tick` held (since `at`, unless held before), let go of, and purged unconfirmed."""
        kinds = (("hold", hold), ("release", release), ("purged", purged))
        rows = [(self.sensor, tick, k, what, at) for what, keys in kinds for k in keys]
        with self._conn:
            self._conn.executemany("INSERT OR REPLACE INTO pending_guard VALUES (?, ?, ?, ?, ?)", rows)


class PendingAcks(_SQLite):
    """SQS receipt handles of each event-sensor tick, kept until a later tick's cursor shows
    that Dagster recorded that tick (the cursor holds only the tick number)."""

    def __init__(self, path: str | Path):
        super().__init__(path, ["CREATE TABLE IF NOT EXISTS acks (tick INTEGER, handle TEXT)"])

    def take(self, tick: int) -> tuple[list[str], list[str]]:
        """(the handles of recorded `tick`: to delete, those of any other tick: lost, to make
        visible again; their runs' keys absorb what is done twice). None are kept."""
        rows = self._conn.execute("SELECT tick, handle FROM acks").fetchall()
        with self._conn:
            self._conn.execute("DELETE FROM acks")
        return [h for t, h in rows if t == tick], [h for t, h in rows if t != tick]

    def put(self, tick: int, handles: Iterable[str]) -> None:
        with self._conn:
            self._conn.executemany("INSERT INTO acks VALUES (?, ?)", [(tick, h) for h in handles])


class GoldenState(_SQLite):
    """The golden-set check's last evaluation of each tenant (per check: a family's index),
    what the next one is compared with. The baseline of a golden set holds for that set's
    content and search mode: a changed file or mode starts again. Lose the file and the next
    evaluation has nothing to compare with (the floors still hold)."""

    def __init__(self, path: str | Path):
        super().__init__(
            path,
            [
                (
                    "CREATE TABLE IF NOT EXISTS evaluations (check_key TEXT, tenant TEXT, mode TEXT, digest TEXT, "
                    "metrics TEXT, run_id TEXT, at REAL, PRIMARY KEY (check_key, tenant))"
                ),
            ],
        )

    def previous(self, check_key: str, tenant: str, mode: str, digest: str) -> dict[str, float] | None:
        row = self._conn.execute(
            "SELECT metrics FROM evaluations WHERE check_key = ? AND tenant = ? AND mode = ? AND digest = ?",
            (check_key, tenant, mode, digest),
        ).fetchone()
        return json.loads(row[0]) if row else None

    def record(
        self, check_key: str, tenant: str, mode: str, digest: str, metrics: Mapping[str, float], run_id: str
    ) -> None:
        with self._conn:
            self._conn.execute(
                "INSERT OR REPLACE INTO evaluations VALUES (?, ?, ?, ?, ?, ?, ?)",
                (check_key, tenant, mode, digest, json.dumps(dict(metrics)), run_id, time.time()),
            )
