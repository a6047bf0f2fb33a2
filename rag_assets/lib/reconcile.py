"""The source against the index: what to ingest, what to purge, what to leave alone.

The pure core of every sensor and of the daily record (docs/architecture.md, The index is
the truth). The source says what should be indexed (`Wanted`), the store says what is
(`IndexedDocument`), Dagster says what is being done (runs in flight, documents found
unreadable); `plan_documents` turns the three into partitions to add, documents to ingest
and documents to purge, `guard_purges` holds a purge too large to take on trust (the
deletion guard), and `ingest_batches` turns the ingests into ranged runs with run keys.
"""

from __future__ import annotations

import hashlib
import threading
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from itertools import islice, takewhile
from typing import Protocol
from urllib.parse import unquote

from rag_assets.lib.batching import plan_batch_members
from rag_assets.lib.identity import source_etag
from rag_assets.lib.images import is_thumbnail
from rag_assets.lib.keys import (
    DocRef,
    encode_partition_key,
    encoded_alias,
    in_span,
    is_root_alias,
    is_sidecar,
    root_alias,
    sidecar_keys,
    split_partition_key,
    tenant_from_key,
)


class SourceObject(Protocol):  # what the planner reads of resources.object_store.StoredObject
    etag: str
    version: str


@dataclass(frozen=True)
class Wanted:
    """A document the source holds: its etag and version include its sidecar's."""

    key: str
    etag: str  # what the index must hold (IndexedDocument.source_etag)
    version: str  # changes with every write: a new version is a new request


def wanted_documents(objects: Mapping[str, SourceObject]) -> dict[str, Wanted]:
    """The documents among listed objects (key -> object), each with the sidecar it reads
    (the first of `sidecar_keys` that exists, as raw_documents reads it). Sidecars and the
    thumbnails the image family writes are not documents."""
    out = {}
    for key, obj in objects.items():
        if is_sidecar(key) or is_thumbnail(key):
            continue
        side = next((objects[s] for s in sidecar_keys(key) if s in objects), None)
        out[key] = Wanted(
            key,
            source_etag(obj.etag, side.etag if side else None),
            source_etag(obj.version, side.version if side else None),
        )
    return out


def pipeline_of(pipeline: str | Callable[[str], str], key: str) -> str:
    """The pipeline a planner expects of the document at `key`: one for all, or one per key
    (resources.config.RagConfig.pipeline_for: images carry their analyzer's)."""
    return pipeline(key) if callable(pipeline) else pipeline


def is_current(held: object | None, etag: str, pipeline: str) -> bool:
    """The index holds the document (an `IndexedDocument`, or None) at this source version
    (`Wanted.etag`), cut by this pipeline: nothing to do for it."""
    return held is not None and held.source_etag == etag and held.pipeline == pipeline


@dataclass(frozen=True)
class Request:
    """A sensor's last request for a document: which version, which attempt, when, and
    whether the document was seen current since (then a later lack is the index's loss)."""

    version: str
    attempt: int
    at: float
    done: bool = False


@dataclass(frozen=True)
class Backoff:
    """When a document that is out of date is requested again. A new version at once, and
    the same version if the index held it since (a store that lost rows); the same version
    still outstanding (a run that failed, or is slow to start) after base * 2**n seconds, at
    most cap, n counting the requests so far. Attempts only ever grow, and each is part
    of the run key: no request reuses the key of an earlier one, even when a document comes
    back to an earlier version (a revert, a sidecar removed)."""

    base: float = 30.0
    cap: float = 3600.0

    def delay(self, attempt: int) -> float:
        return min(self.cap, self.base * 2 ** min(attempt, 30))

    def attempt_due(self, previous: Request | None, version: str, now: float) -> int | None:
        """The attempt to request now (0 when there was none before), or None to wait."""
        if previous is None:
            return 0
        if previous.version != version or previous.done or now >= previous.at + self.delay(previous.attempt):
            return previous.attempt + 1
        return None


@dataclass(frozen=True)
class Target:
    """A document to ingest: why, and with which version and attempt (the run key's part)."""

    partition: str
    key: str
    version: str
    # "new" (a new partition), "missing" (the index lacks it), "changed" (the index holds
    # another source version), "pipeline" (made with other chunking)
    reason: str
    attempt: int = 0
    retry: bool = False  # the same version was asked for before (its run failed, or its rows were lost)
    unwritten: bool = False  # ...and its run never wrote it (failed, or never ran): see batch_size_for


@dataclass(frozen=True)
class PurgeTarget:
    """Rows to delete (by the document ids the index holds, whatever tenant rule made them)
    and partitions to delete, of one object: all of them once the object is gone
    (`if_gone`: the purge checks it is still gone), or copies under another tenant than the
    document's own partition (always)."""

    key: str
    uri: str
    document_ids: tuple[str, ...]
    partitions: tuple[str, ...]
    if_gone: bool = True


@dataclass
class Plan:
    add: list[str] = field(default_factory=list)  # new document partitions, in order
    ingest: list[Target] = field(default_factory=list)
    purge: list[PurgeTarget] = field(default_factory=list)
    current: list[str] = field(default_factory=list)  # partitions the index holds as the source has them
    waiting: list[str] = field(default_factory=list)  # out of date, with a run in flight or backing off
    unreadable: list[str] = field(default_factory=list)  # out of date, and unreadable at this version
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (key, reason): no tenant in the key


@dataclass(frozen=True)
class KeySpan:
    """The object keys `start` <= key < `stop` (`stop` None: no end) one tick of a listing pass
    answers for: what the source holds there is all it holds there."""

    start: str = ""
    stop: str | None = None

    def __contains__(self, key: str) -> bool:
        return in_span(key, self.start, self.stop)


ALL_KEYS = KeySpan()


def listing_span(start: str, documents: Iterable[str], last_listed: str | None, finished: bool) -> KeySpan:
    """The keys a listing tick can judge, from where its pass stands (`start`): to the end once
    the listing ended; else up to the last key listed or the first document of `documents`
    whose sidecar may still be listed (sidecar keys sort after their document's), whichever
    comes first. A listing returns keys in order, so the span's documents are all listed and
    whatever the index holds there that is not listed is gone (docs/scale.md)."""
    if finished:
        return KeySpan(start)
    if last_listed is None:
        return KeySpan(start, start)
    stop = min((k for k in documents if k >= start and max(sidecar_keys(k)) > last_listed), default=last_listed)
    return KeySpan(start, max(start, min(stop, last_listed)))


class ObjectKeyOf:
    """The object key a partition names under `root`, or None (another root's, not a document
    partition). A million partitions are read at every tick, so the common cases skip the
    full parse (`split_partition_key`): a key of the current form ending with this root's
    alias, and one ending with another root's alias. Only keys of the old form are taken
    apart whole (docs/decisions.md D38)."""

    def __init__(self, root: str):
        self.alias, self.ours = root_alias(root), "|" + encoded_alias(root)
        self._elsewhere: dict[str, bool] = {}  # a key's last part -> whether it names another root

    def __call__(self, partition: str) -> str | None:
        if partition.endswith(self.ours) and partition.count("|") == 2:  # TENANT|KEY|OUR-ALIAS
            return unquote(partition[partition.index("|") + 1 : -len(self.ours)])
        last = partition[partition.rfind("|") + 1 :]
        if last not in self._elsewhere:
            self._elsewhere[last] = unquote(last) != self.alias and is_root_alias(unquote(last))
        if self._elsewhere[last]:  # another root's (or not a document key)
            return None
        try:
            parts = split_partition_key(partition)
        except ValueError:
            return None
        return parts.key if parts.alias == self.alias else None


class KeyPartitions(Mapping[str, list[str]]):
    """Object key -> the partitions (of any tenant, of either key form) naming it under a
    root, in Dagster's order (the first is the one first ingested). Held as the positions of
    those partitions in Dagster's keys, sorted by the object key each names: 4 bytes a
    partition, where a dict of lists held ~300 bytes (docs/decisions.md D41). A lookup
    takes ~20 keys apart (~20 us; a tick's keys at once, `with_keys`, less), and `in_span`
    walks only the span's keys. Never changed once made: `extended` makes another."""

    def __init__(
        self, known: Sequence[str], order: array, key_of: ObjectKeyOf, looked_up: Mapping[str, list[str]] | None = None
    ):
        self.known, self._order, self._key_of = known, order, key_of  # `known`: read, never changed
        self._key_at = lambda i: key_of(known[i])
        self._looked_up = looked_up or {}  # keys asked for at once (`with_keys`): their partitions, or []

    def with_keys(self, keys: Iterable[str], walk: int = 20) -> KeyPartitions:
        """This map with `keys` looked up at once: by one walk from the first of them to the
        last when that stretch holds at most `walk` partitions a key (a listing tick's keys are
        a span: ~10 ms for 10,000 where bisecting each takes ~0.2 s), else by bisecting each."""
        keys = sorted(set(keys))
        if not keys:
            return self
        looked_up: dict[str, list[str]] = {key: [] for key in keys}
        lo = bisect_left(self._order, keys[0], key=self._key_at)
        hi = bisect_right(self._order, keys[-1], lo=lo, key=self._key_at)
        if hi - lo <= walk * len(keys):
            for key, i in islice(self._from(lo), hi - lo):
                if key in looked_up:
                    looked_up[key].append(self.known[i])
        else:
            for key in keys:
                looked_up[key] = self.get(key, [])
        return KeyPartitions(self.known, self._order, self._key_of, looked_up)

    def extended(self, known: Sequence[str]) -> KeyPartitions:
        """This map with the keys `known` holds after this one's (`known` starts with them):
        each added partition goes in after those naming the same key, so the first stays the
        first ingested."""
        added = sorted(
            (key, i) for i in range(len(self.known), len(known)) if (key := self._key_of(known[i])) is not None
        )
        order, done = array("i"), 0
        for key, i in added:
            at = bisect_right(self._order, key, lo=done, key=self._key_at)
            order.extend(self._order[done:at])
            order.append(i)
            done = at
        order.extend(self._order[done:])
        return KeyPartitions(known, order, self._key_of)  # what `with_keys` looked up is not carried over

    def _from(self, at: int) -> Iterator[tuple[str, int]]:
        for position in range(at, len(self._order)):
            i = self._order[position]
            yield self._key_at(i), i

    def __getitem__(self, key: str) -> list[str]:
        if key in self._looked_up:
            out = list(self._looked_up[key])
        else:
            at = bisect_left(self._order, key, key=self._key_at)
            out = [self.known[i] for _, i in takewhile(lambda named: named[0] == key, self._from(at))]
        if not out:
            raise KeyError(key)
        return out

    def in_span(self, start: str, stop: str | None) -> Iterator[str]:
        """The object keys start <= key < stop (stop None: no end), each once, in order."""
        last = None
        for key, _ in self._from(bisect_left(self._order, start, key=self._key_at)):
            if stop is not None and key >= stop:
                return
            if key != last:
                yield key
                last = key

    def __iter__(self) -> Iterator[str]:
        return self.in_span("", None)

    def __len__(self) -> int:  # takes every key apart: for tests, not for ticks
        return sum(1 for _ in self)


def partitions_by_key(partitions: Sequence[str], root: str) -> KeyPartitions:
    """Object key -> the partitions (of any tenant, of either key form) naming it under `root`;
    `partitions` is Dagster's keys in its order, read by the map for its life."""
    key_of = ObjectKeyOf(root)
    keys = [key_of(p) for p in partitions]
    named = sorted((i for i, key in enumerate(keys) if key is not None), key=keys.__getitem__)  # stable: ties in order
    return KeyPartitions(partitions, array("i", named), key_of)


class PartitionsByKeyMemo:
    """`partitions_by_key` of the keys a process saw last, per root, extended by the keys
    appended since: a sensor's known keys at a tick are the last tick's and a few more (the
    instance answers them in storage order, docs/decisions.md D39), and taking a million
    apart costs ~0.5 s a call. Keys that are not the last ones plus more (a delete) are taken
    apart whole again. A map given out is never changed."""

    def __init__(self) -> None:
        self._last: dict[str, KeyPartitions] = {}
        self._lock = threading.Lock()

    def __call__(self, known: Sequence[str], root: str) -> KeyPartitions:
        with self._lock:
            seen = self._last.get(root)
            if seen is not None and known == seen.known:
                return seen  # nothing added: the same map, compared in place (a slice copied 1M keys: 18 ms)
            if seen is not None and len(known) > len(seen.known) and known[: len(seen.known)] == seen.known:
                by_key = seen.extended(list(known))  # the map reads it for its life: a copy no caller can change
            else:
                by_key = partitions_by_key(list(known), root)
            self._last[root] = by_key
            return by_key


def indexed_by_key(indexed: Mapping[str, object], root: str) -> dict[str, list[object]]:
    """Object key -> the IndexedDocuments (of any tenant) of objects under `root`."""
    prefix = root.rstrip("/") + "/"
    out: dict[str, list] = {}
    for doc in indexed.values():
        if doc.uri.startswith(prefix):
            out.setdefault(doc.uri[len(prefix) :], []).append(doc)
    return out


def plan_documents(
    *,
    root: str,
    wanted: Mapping[str, Wanted],
    indexed: Mapping[str, object],
    by_key: KeyPartitions,
    tenant_rule: str,
    pipeline: str | Callable[[str], str],
    gone: Iterable[str] = (),
    complete: bool = False,
    scope: str = "",
    span: KeySpan = ALL_KEYS,
    in_flight: AbstractSet[str] = frozenset(),
    purging: AbstractSet[str] = frozenset(),
    unreadable: Mapping[str, str] | None = None,
    requests: Mapping[str, Request] | None = None,
    backoff: Backoff = Backoff(),
    now: float = 0.0,
) -> Plan:
    """What to do about the documents under `root` that the source holds (`wanted`) and the
    keys it no longer holds (`gone`; with `complete`, every key under the root that starts
    with `scope`, the prefix the listing covered, lies in `span` and is not wanted). `indexed`
    is the index's listing, at least of those documents; `by_key` the known document
    partitions naming each object key under the root (`partitions_by_key`); `in_flight` the
    partitions (and, for purges, the object keys) some run is working on; `unreadable`
    partition -> the source etag at which its document could not be read; `requests` this
    sensor's last request per partition."""
    unreadable, requests = unreadable or {}, requests or {}
    plan = Plan()
    in_index = indexed_by_key(indexed, root)
    gone = set(gone)
    if complete:
        keys = (*by_key.in_span(span.start, span.stop), *(k for k in in_index if k in span))
        gone |= {k for k in keys if k.startswith(scope)} - set(wanted)
    gone -= set(wanted)
    added: set[str] = set()
    for key, want in sorted(wanted.items()):
        existing = by_key.get(key, [])
        if existing:
            partition = existing[0]  # the tenant it was first ingested under stays its tenant
        else:
            try:
                partition = encode_partition_key(DocRef(tenant_from_key(key, tenant_rule), root, key))
            except ValueError as e:
                plan.skipped.append((key, str(e)))
                continue
            plan.add.append(partition)
            added.add(partition)
        ref = DocRef(split_partition_key(partition).tenant, root, key)
        docs = in_index.get(key, [])
        held = next((d for d in docs if d.document_id == ref.document_id), None)
        copies = tuple(sorted(d.document_id for d in docs if d.document_id != ref.document_id))
        if (copies or len(existing) > 1) and key not in purging:  # the same object under another tenant
            plan.purge.append(PurgeTarget(key, ref.uri, copies, tuple(existing[1:]), if_gone=False))
        if is_current(held, want.etag, pipeline_of(pipeline, key)):
            plan.current.append(partition)
            continue
        if partition in in_flight:
            plan.waiting.append(key)
            continue
        if unreadable.get(partition) == want.etag:
            plan.unreadable.append(key)
            continue
        previous = requests.get(partition)
        attempt = backoff.attempt_due(previous, want.version, now)
        if attempt is None:
            plan.waiting.append(key)
            continue
        if held is None:
            reason = "new" if partition in added else "missing"
        else:
            reason = "changed" if held.source_etag != want.etag else "pipeline"
        retry = previous is not None and previous.version == want.version
        plan.ingest.append(Target(partition, key, want.version, reason, attempt, retry, retry and not previous.done))
    for key in sorted(gone - set(purging)):
        ids = tuple(sorted(d.document_id for d in in_index.get(key, [])))
        names = tuple(by_key.get(key, []))
        if ids or names:
            plan.purge.append(PurgeTarget(key, f"{root.rstrip('/')}/{key}", ids, names))
    return plan


@dataclass(frozen=True)
class PurgeGuard:
    """When deletions are too many to take on trust: more than `fraction` of the documents the
    index holds under a source gone at once (in one listing pass, or within `window_seconds`
    of delete events and passes), once it holds `min_documents` or more. An unmounted share,
    a wrong prefix or a credential that lists nothing looks like that; so does a real mass
    delete, which a person confirms. A fraction of 1 or more turns the guard off."""

    fraction: float = 0.5
    min_documents: int = 10
    window_seconds: float = 3600.0

    @property
    def off(self) -> bool:
        return self.fraction >= 1.0

    def trips(self, gone: int, of: int) -> bool:
        """`gone` of the `of` documents under a source are too many to purge unconfirmed."""
        return not self.off and of >= self.min_documents and gone > self.fraction * of

    def may_trip(self, gone: int, of_at_least: int) -> bool:
        """Whether `gone` could trip the guard over an index that holds at least `of_at_least`
        documents (when not, there is no need to count them all)."""
        return not self.off and gone > self.fraction * max(of_at_least, self.min_documents)


@dataclass(frozen=True)
class GuardDecision:
    """What of a plan's purge may go, and what the deletion guard holds."""

    purge: list[PurgeTarget]  # copies, ordinary deletions and confirmed ones: to purge now
    held: list[PurgeTarget]  # deletions held: nothing of them is purged
    confirmed: list[PurgeTarget]  # held deletions a person confirmed (part of `purge`)
    gone: int  # documents counted gone: the plan's deletions, those held before, those purged in the window
    of: int  # of the documents the index holds under the source (and those purged in the window)

    @property
    def holding(self) -> bool:
        return bool(self.held)


def guard_purges(
    purge: Sequence[PurgeTarget],
    *,
    indexed: AbstractSet[str],
    guard: PurgeGuard,
    held: AbstractSet[str] = frozenset(),
    recent: AbstractSet[str] = frozenset(),
    confirmed: AbstractSet[str] = frozenset(),
) -> GuardDecision:
    """Hold a plan's deletions (`PurgeTarget.if_gone`) when, with the deletions held before
    (`held`, still gone) and those purged unconfirmed within the guard's window (`recent`),
    they are more than the guard's fraction of what the index holds under the source
    (`indexed`: the object keys it holds rows or partitions of, with `recent`). All or none:
    a held plan purges none of its deletions.

    Copies under another tenant (`if_gone=False`) are not deletions (the object is there, and
    indexed under its own tenant): never counted, never held. Deletions a person confirmed
    (`confirmed`, keys held at the time of a confirmation) go, and are left out of both
    counts: what is gone besides them is judged on its own."""
    confirmed = set(confirmed)
    copies = [t for t in purge if not t.if_gone]
    yes = [t for t in purge if t.if_gone and t.key in confirmed]
    rest = [t for t in purge if t.if_gone and t.key not in confirmed]
    of = (set(indexed) | set(recent)) - confirmed
    gone = ({t.key for t in rest} | set(held) | set(recent)) & of
    if rest and guard.trips(len(gone), len(of)):
        return GuardDecision([*copies, *yes], rest, yes, len(gone), len(of))
    return GuardDecision(list(purge), [], yes, len(gone), len(of))


def guard_releases(
    before: AbstractSet[str],
    examined: AbstractSet[str] | None,
    decision: GuardDecision,
    purging: AbstractSet[str] = frozenset(),
) -> set[str]:
    """The held keys the guard lets go of: those a plan looked at (`examined`; None: every
    one, a complete listing pass) and found no longer to hold (the object is back, or its rows
    and partitions are gone), or purged unconfirmed now that the guard no longer trips. Held
    keys a purge run is working on, and confirmed ones being purged, stay held until done: a
    purge that fails is tried again under the same confirmation."""
    keep = {t.key for t in decision.held} | {t.key for t in decision.confirmed} | set(purging)
    looked = set(before) if examined is None else set(before) & set(examined)
    return looked - keep


def run_key(kind: str, identity: str, parts: Iterable[str]) -> str:
    """A run key from what a request is about: the same request (a replayed tick, a
    duplicated event) makes the same key, and Dagster launches it once."""
    digest = hashlib.sha256("\n".join([identity, *sorted(parts)]).encode("utf-8")).hexdigest()[:24]
    return f"{kind}:{digest}"


@dataclass(frozen=True)
class Batch:
    first: str
    last: str
    members: tuple[str, ...]
    run_key: str


def batch_size_for(target: Target, batch_size: int) -> int:
    """How many documents may share a run with this one: all of `batch_size`, unless its
    version was asked for before and its run never wrote it: then batch_size / 2**attempt, at
    least 1, so a batch that keeps failing for one document's sake is split until the others
    are written and the culprit fails alone. (Rows lost after a write are not a failed run.)"""
    return max(1, batch_size >> min(target.attempt, 30)) if target.unwritten else batch_size


def ingest_batches(targets: Sequence[Target], ordered: Sequence[str], batch_size: int, identity: str) -> list[Batch]:
    """Ranged runs over `ordered` partitions (existing and to-be-added) covering exactly the
    targets, at most `batch_size` each (smaller for documents asked for again:
    `batch_size_for`); a run key per batch from each member's partition, version and attempt,
    under the index identity."""
    by_partition = {t.partition: t for t in targets}
    by_size: dict[int, set[str]] = {}
    for t in targets:
        by_size.setdefault(batch_size_for(t, batch_size), set()).add(t.partition)
    batches = []
    for size, partitions in sorted(by_size.items(), reverse=True):
        for members in plan_batch_members(ordered, partitions, size):
            parts = [f"{m}@{by_partition[m].version}#{by_partition[m].attempt}" for m in members]
            batches.append(Batch(members[0], members[-1], tuple(members), run_key("ingest", identity, parts)))
    return batches


def partitions_in_ranges(ordered: Sequence[str], ranges: Iterable[tuple[str, str]]) -> set[str]:
    """The partitions covered by (first, last) ranges over `ordered` (a run's range tags)."""
    ranges = list(ranges)
    ends = {key for pair in ranges for key in pair}
    position = {p: i for i, p in enumerate(ordered) if p in ends}  # of a million keys, the ends alone
    out: set[str] = set()
    for first, last in ranges:
        if first in position and last in position:
            out.update(ordered[position[first] : position[last] + 1])
    return out
