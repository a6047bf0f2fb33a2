"""What to do about a set of observed objects: the pure core shared by every sensor."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from rag_assets.lib.batching import plan_batches
from rag_assets.lib.keys import DocRef, decode_partition_key, encode_partition_key, is_sidecar, tenant_from_key


@dataclass(frozen=True)
class Batch:
    first: str
    last: str
    members: tuple[str, ...]
    run_key: str


@dataclass
class SyncPlan:
    add: list[str] = field(default_factory=list)  # new partitions, in the order to add them
    batches: list[Batch] = field(default_factory=list)  # ranged ingest runs
    purge: list[str] = field(default_factory=list)  # partitions whose objects are gone
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (key, reason)


def run_key(prefix: str, versions: Sequence[str]) -> str:
    """A run key from the members' `partition@etag` versions: the same objects in the same
    state make the same key, so Dagster skips a duplicate request."""
    digest = hashlib.sha256("\n".join(sorted(versions)).encode("utf-8")).hexdigest()[:24]
    return f"{prefix}:{digest}"


def document_for_sidecar(sidecar_key: str, existing: set[str]) -> str | None:
    """The document a `.meta.json` sidecar belongs to, among existing keys."""
    base = sidecar_key.removesuffix(".meta.json")
    if base in existing:
        return base
    matches = sorted(k for k in existing if k.rpartition(".")[0] == base and not is_sidecar(k))
    return matches[0] if matches else None


def plan_sync(
    *,
    root: str,
    present: Mapping[str, str],
    gone: Sequence[str],
    known_partitions: Sequence[str],
    tenant_rule: str,
    batch_size: int,
    prefix: str = "ingest",
) -> SyncPlan:
    """Plan partitions and runs for objects seen `present` (key -> version, e.g. ETag) and
    `gone` under `root`. Sidecar keys stand for their documents (`present` must then hold
    the document too, or the sidecar is skipped until the document arrives)."""
    plan = SyncPlan()
    known = list(known_partitions)
    known_set = set(known)
    wanted: dict[str, str] = {}
    for key, version in sorted(present.items()):
        if is_sidecar(key):
            continue
        try:
            ref = DocRef(tenant_from_key(key, tenant_rule), root, key)
        except ValueError as e:
            plan.skipped.append((key, str(e)))
            continue
        wanted[encode_partition_key(ref)] = f"{key}@{version}"
    for key in sorted(gone):
        if is_sidecar(key):
            continue
        try:
            partition = encode_partition_key(DocRef(tenant_from_key(key, tenant_rule), root, key))
        except ValueError:
            continue  # never a document of ours
        if partition in known_set:
            plan.purge.append(partition)
    plan.add = [p for p in wanted if p not in known_set]
    ordered = known + plan.add
    position = {p: i for i, p in enumerate(ordered)}
    for first, last in plan_batches(ordered, set(wanted), batch_size):
        members = tuple(ordered[position[first] : position[last] + 1])
        plan.batches.append(Batch(first, last, members, run_key(prefix, [wanted[m] for m in members])))
    return plan


def documents_under(partitions: Sequence[str], root: str) -> dict[str, str]:
    """Object key -> partition key for the known partitions of one root."""
    out = {}
    for partition in partitions:
        try:
            ref = decode_partition_key(partition)
        except ValueError:
            continue
        if ref.root == root:
            out[ref.key] = partition
    return out
