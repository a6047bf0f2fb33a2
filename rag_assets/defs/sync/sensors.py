"""Sensors that make the index follow the source with nobody pressing a button.

- `s3_event_sensor`: S3 event notifications from SQS (RAG_SQS_QUEUE_URL): the fast path.
- `listing_sensor`: lists the source and compares it with what the index holds: pass after
  pass without a queue; with one, a full pass every RAG_RECONCILE_SECONDS as the safety net.

Sensors only decide (lib.reconcile plans, from the source, the index and the runs in
flight); runs do the work (ingest_documents, purge_documents). Both sensors pass their
purges through the deletion guard (lib.reconcile.guard_purges): a mass delete is held
until the objects come back or a person confirms it (confirm_deletions). See
docs/architecture.md.
"""

import json
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import dagster as dg

from rag_assets.dagster_compat import PARTITION_RANGE_END_TAG, PARTITION_RANGE_START_TAG, PARTITION_TAG
from rag_assets.defs.documents.assets import RAW_DOCUMENTS, ingest_documents_job
from rag_assets.defs.maintenance.assets import (
    GUARD_CHECK,
    INDEX_KEY,
    PURGED_TAG,
    confirm_command,
    confirmed_at,
    guard_metadata,
    index_reconciliation,
    purge_documents_job,
    purge_run_config,
)
from rag_assets.ingest import LAUNCHED_BY_TAG
from rag_assets.lib.events import CREATED, BadEvent, latest_per_key, parse_message
from rag_assets.lib.identity import source_etag, split_source_etag
from rag_assets.lib.images import is_thumbnail
from rag_assets.lib.keys import (
    DocRef,
    document_tenant,
    is_sidecar,
    root_alias,
    sidecar_keys,
    split_partition_key,
    tenant_from_key,
)
from rag_assets.lib.parsing import READERS
from rag_assets.lib.reconcile import (
    ALL_KEYS,
    KeyPartitions,
    KeySpan,
    PartitionsByKeyMemo,
    Plan,
    PurgeTarget,
    Request,
    Target,
    Wanted,
    guard_purges,
    guard_releases,
    indexed_by_key,
    ingest_batches,
    listing_span,
    partitions_in_ranges,
    pipeline_of,
    plan_documents,
    run_key,
    wanted_documents,
)
from rag_assets.partitions import ROOT_REGISTRY, documents_partitions, known_roots, unregistered_roots
from rag_assets.resources.config import RagConfig, SyncConfig
from rag_assets.resources.embedders import Embedder
from rag_assets.resources.event_queue import EventQueue, Message
from rag_assets.resources.object_store import ObjectStore, StoredObject, source_root, split_s3_uri
from rag_assets.resources.state import PendingAcks, SourceState, identity_of, state_file
from rag_assets.resources.vector_stores import VectorStore
from rag_assets.settings import loading_settings

# Runs some run is still working on: their documents are not asked for again meanwhile.
IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]
CONFIRMED_TAG = "rag/confirmed"  # how many of a purge run's deletions a person confirmed (the deletion guard)
# Object key -> its document partitions, kept from tick to tick in this process (docs/decisions.md D39).
known_by_key = PartitionsByKeyMemo()


def range_tags(first: str, last: str) -> dict[str, str]:
    return {PARTITION_RANGE_START_TAG: first, PARTITION_RANGE_END_TAG: last}


# --- what Dagster knows -------------------------------------------------------------------


def work_in_flight(instance: dg.DagsterInstance, ordered: Sequence[str], root: str) -> tuple[set[str], set[str]]:
    """(partitions an ingest run is working on, object keys under `root` a purge run is)."""
    ranges = []
    for record in instance.get_run_records(dg.RunsFilter(job_name=ingest_documents_job.name, statuses=IN_FLIGHT)):
        tags = record.dagster_run.tags
        if PARTITION_RANGE_START_TAG in tags:
            ranges.append((tags[PARTITION_RANGE_START_TAG], tags[PARTITION_RANGE_END_TAG]))
        elif PARTITION_TAG in tags:
            ranges.append((tags[PARTITION_TAG], tags[PARTITION_TAG]))
    prefix = root.rstrip("/") + "/"
    purging = set()
    for record in instance.get_run_records(dg.RunsFilter(job_name=purge_documents_job.name, statuses=IN_FLIGHT)):
        config = record.dagster_run.run_config.get("ops", {}).get("purge_deleted_documents", {}).get("config", {})
        purging.update(t["uri"][len(prefix) :] for t in config.get("targets", []) if t["uri"].startswith(prefix))
    return partitions_in_ranges(ordered, ranges), purging


def unreadable_documents(
    instance: dg.DagsterInstance, partitions: Sequence[str], pipeline: str | Callable[[str], str]
) -> dict[str, str]:
    """partition -> the source etag at which raw_documents last found it unreadable (under
    this pipeline and parser): the planner does not ask for it again until the object changes."""
    out: dict[str, str] = {}
    for start in range(0, len(partitions), 500):
        part = list(partitions[start : start + 500])
        records = instance.fetch_observations(
            dg.AssetRecordsFilter(asset_key=RAW_DOCUMENTS, asset_partitions=part), limit=len(part) * 5
        ).records
        latest: dict[str, dict] = {}
        for record in records:  # newest first
            obs = record.event_log_entry.asset_observation
            if obs.partition not in latest:
                latest[obs.partition] = {k: v.value for k, v in obs.metadata.items()}
        out.update(
            (p, m.get("source_etag", ""))
            for p, m in latest.items()
            if m.get("status") == "unreadable"
            and m.get("pipeline") == pipeline_of(pipeline, split_partition_key(p).key)
            and m.get("readers") == READERS
        )
    return out


def candidate_ids(root: str, keys: Iterable[str], by_key: KeyPartitions, tenant_rule: str) -> list[str]:
    """Document ids these object keys may be indexed under: their partitions' tenants, and
    the tenant today's rule reads from the key."""
    ids = set()
    for key in keys:
        tenants = {split_partition_key(p).tenant for p in by_key.get(key, [])}
        try:
            tenants.add(tenant_from_key(key, tenant_rule))
        except ValueError:
            pass
        ids.update(DocRef(t, root, key).document_id for t in tenants)
    return sorted(ids)


# --- what a tick knows --------------------------------------------------------------------------


@dataclass(frozen=True)
class Tick:
    """A sensor's tick: which sensor, the source root it follows, its number, the identity
    (store, model, pipeline) its runs are keyed by, its state and its configuration."""

    context: dg.SensorEvaluationContext
    sensor: str
    root: str
    number: int
    identity: str
    state: SourceState
    sync_config: SyncConfig
    rag_config: RagConfig


@dataclass(frozen=True)
class InstanceView:
    """What Dagster knows for a tick: the document partitions, the work in flight
    (`work_in_flight`), and the deletions the guard holds (`guard_memory`)."""

    known: Sequence[str]  # the document partitions
    in_flight: set[str]  # partitions an ingest run is working on
    purging: set[str]  # object keys under the root a purge run is working on
    held: Mapping[str, float]  # deletions the guard holds: key -> since when
    confirmed: AbstractSet[str]  # of those, the ones a person has confirmed


def instance_view(instance: dg.DagsterInstance, state: SourceState, root: str, known: Sequence[str]) -> InstanceView:
    """What Dagster knows now of the work under `root`, given the document partitions."""
    in_flight, purging = work_in_flight(instance, known, root)
    held, confirmed = guard_memory(instance, state, root)
    return InstanceView(known, in_flight, purging, held, confirmed)


@dataclass(frozen=True)
class Findings:
    """What a tick found of the documents under its root: those the source holds (`wanted`),
    those gone, and what the index holds of them."""

    wanted: Mapping[str, Wanted]
    indexed: Mapping
    gone: Iterable[str] = ()
    complete: bool = False  # `wanted` is every document under the scope within `span` (a listing pass)
    scope: str = ""  # the key prefix the source is under
    span: KeySpan = ALL_KEYS  # the keys a complete finding answers for
    # A listing pass's tick before its last: what it finds gone is noted for this pass's end.
    gone_at_end_of: int | None = None
    examined: AbstractSet[str] | None = None  # the held keys the tick looked at (None: all under the scope)
    list_index: Callable[[], Mapping] | None = None  # all the index holds, when `indexed` is not all of it


# --- the deletion guard -------------------------------------------------------------------------


def guard_memory(instance: dg.DagsterInstance, state: SourceState, root: str) -> tuple[dict[str, float], set[str]]:
    """The deletions the guard holds under `root` (key -> since when), and those of them a
    person has confirmed (held when the newest confirmation for `root` started)."""
    held = state.held()
    cutoff = confirmed_at(instance, root) if held else None
    return held, {k for k, at in held.items() if cutoff is not None and at <= cutoff}


def held_tenants(keys: Iterable[str], by_key: KeyPartitions, targets: Mapping[str, PurgeTarget]) -> Counter:
    """Whose documents these held keys are: their partitions' tenants, else their rows' ("?": neither)."""
    tenants = Counter()
    for key in keys:
        names = {split_partition_key(p).tenant for p in by_key.get(key, [])}
        if not names and key in targets:
            names = {document_tenant(d, targets[key].uri) for d in targets[key].document_ids}
        tenants.update(names or {"?"})
    return tenants


def guard_plan(
    tick: Tick, view: InstanceView, found: Findings, plan: Plan, by_key: KeyPartitions, now: float
) -> tuple[list[PurgeTarget], str | None, list]:
    """A plan's purge through the deletion guard (lib.reconcile.guard_purges), counting what
    the index holds under the source (`found.indexed`, complete unless `found.list_index` lists
    it all); the holds and releases noted in the tick's state. Returns what to purge, what the
    guard holds in words (a log line; the tick's skip reason if it requests no run), and the
    asset events to report: the deletion_guard check failed and an observation on
    vector_index when it holds more, passed when it held and holds nothing any more."""
    guard, root, scope = tick.sync_config.purge_guard, tick.root, found.scope
    held_before, confirmed, purging = view.held, view.confirmed, view.purging
    deletions = {t.key for t in plan.purge if t.if_gone}
    if not deletions and not held_before:
        return plan.purge, None, []

    def under(keys: Iterable[str]) -> set[str]:
        return {k for k in keys if k.startswith(scope)}

    recent = tick.state.purged_since(now - guard.window_seconds) - set(found.wanted)
    looked = under(held_before) if found.examined is None else set(held_before) & set(found.examined)
    still = set(held_before) - (looked - deletions - set(purging))  # held, and not seen back or gone from the index
    holds = under(set(by_key) | set(indexed_by_key(found.indexed, root)))
    gone = (deletions | still | recent) - confirmed
    if found.list_index is not None and guard.may_trip(len(gone), len((holds | recent) - confirmed)):
        holds |= under(indexed_by_key(found.list_index(), root))  # a mass delete is possible: count all the index holds
    decision = guard_purges(plan.purge, indexed=holds, guard=guard, held=still, recent=recent, confirmed=confirmed)
    release = guard_releases(held_before, looked, decision, purging)
    hold = {t.key for t in decision.held}
    purged = [t.key for t in decision.purge if t.if_gone and t.key not in confirmed]
    tick.state.guard(tick.number, hold, release, purged, now)
    after = (set(held_before) | hold) - release
    where = f"{root}/{scope}" if scope else root
    log = tick.context.log
    if decision.confirmed:
        log.info(f"deletion guard: {len(decision.confirmed)} confirmed deletion(s) under {root} to purge")
    if not after:
        if not held_before:
            return decision.purge, None, []
        log.info(f"deletion guard: holds nothing under {where} any more (came back, or confirmed and purged)")
        meta = guard_metadata(root, (), let_go=len(held_before))
        return decision.purge, None, guard_events(False, "deletion guard: cleared", meta, f"nothing held under {where}")
    tenants = held_tenants(after, by_key, {t.key: t for t in decision.held})
    by_tenant = ", ".join(f"{t} {n}" for t, n in sorted(tenants.items()))
    confirm = f"{confirm_command(root)} (or launch the confirm_deletions job with root {root})"
    if decision.holding:
        counted = " (with those purged within the guard's window)" if recent - confirmed else ""
        message = (
            f"deletion guard: holding {len(after)} deletion(s) under {where} ({by_tenant}), none purged: "
            f"{decision.gone} of the {decision.of} document(s) the index holds there are gone{counted}, "
            f"more than {guard.fraction:.0%}. "
            f"If they were deleted on purpose: {confirm}; if not, bring them back and the guard lets go."
        )
    else:
        message = f"deletion guard: still holding {len(after)} deletion(s) under {where} ({by_tenant}); {confirm}"
    log.warning(message)
    if not hold - set(held_before):
        return decision.purge, message, []
    meta = guard_metadata(root, after, tenants, gone=decision.gone, of=decision.of, fraction=guard.fraction)
    return decision.purge, message, guard_events(True, "deletion guard: held", meta, message)


def guard_events(holding: bool, status: str, metadata: dict, description: str) -> list:
    """The deletion_guard check's evaluation (failed while holding) and an observation on vector_index."""
    return [
        dg.AssetCheckEvaluation(
            asset_key=index_reconciliation.key,
            check_name=GUARD_CHECK,
            passed=not holding,
            metadata=metadata,
            description=description,
        ),
        dg.AssetObservation(asset_key=INDEX_KEY, metadata={"status": status, **metadata}),
    ]


# --- from a plan to a sensor result ----------------------------------------------------------


def reason_tags(targets: Iterable[Target]) -> dict[str, str]:
    """How many of a run's documents were asked for for each reason (the daily record reads them)."""
    counts = Counter("retry" if t.retry else t.reason for t in targets)
    return {f"rag/{reason}": str(n) for reason, n in counts.items()}


def plan_tick(tick: Tick, view: InstanceView, found: Findings, by_key: KeyPartitions, now: float) -> Plan:
    """Plan the documents found under the tick's root against the index and the runs in
    flight, and note its requests in the tick's state (pending under its number)."""
    requests = tick.state.requests(named[0] for k in found.wanted if (named := by_key.get(k)))

    def plan_with(unreadable: Mapping[str, str]) -> Plan:
        return plan_documents(
            root=tick.root,
            wanted=found.wanted,
            gone=found.gone,
            complete=found.complete,
            scope=found.scope,
            span=found.span,
            indexed=found.indexed,
            by_key=by_key,
            tenant_rule=tick.sync_config.tenant_rule,
            pipeline=tick.rag_config.pipeline_for,
            in_flight=view.in_flight,
            purging=view.purging,
            unreadable=unreadable,
            requests=requests,
            backoff=tick.sync_config.backoff,
            now=now,
        )

    # Which documents were found unreadable is looked up for the few that would be asked for.
    plan = plan_with({})
    if suspects := [t.partition for t in plan.ingest if t.reason != "new"]:
        plan = plan_with(unreadable_documents(tick.context.instance, suspects, tick.rag_config.pipeline_for))
    tick.state.record({t.partition: Request(t.version, t.attempt, now) for t in plan.ingest}, plan.current, tick.number)
    return plan


def plan_run_requests(tick: Tick, view: InstanceView, plan: Plan) -> list[dg.RunRequest]:
    """One ranged ingest run per batch of the plan's documents, and one purge run."""
    ordered = [*view.known, *plan.add]
    targets = {t.partition: t for t in plan.ingest}
    run_requests = [
        dg.RunRequest(
            job_name=ingest_documents_job.name,
            run_key=batch.run_key,
            tags={
                **range_tags(batch.first, batch.last),
                LAUNCHED_BY_TAG: tick.sensor,
                **reason_tags(targets[m] for m in batch.members),
            },
        )
        for batch in ingest_batches(plan.ingest, ordered, tick.sync_config.batch_size, tick.identity)
    ]
    if plan.purge:
        confirmed = sum(1 for t in plan.purge if t.if_gone and t.key in view.confirmed)
        run_requests.append(
            dg.RunRequest(
                job_name=purge_documents_job.name,
                run_key=run_key("purge", tick.identity, [f"{tick.sensor}:{tick.number}", *(t.uri for t in plan.purge)]),
                run_config=purge_run_config(plan.purge),
                tags={
                    LAUNCHED_BY_TAG: tick.sensor,
                    PURGED_TAG: str(len(plan.purge)),
                    **({CONFIRMED_TAG: str(confirmed)} if confirmed else {}),
                },
            )
        )
    return run_requests


def log_plan(log: dg.DagsterLogManager, plan: Plan, runs: int) -> None:
    """The plan's skipped documents, and what it asks for, in the tick's log."""
    for key, reason in plan.skipped:
        log.warning(f"skipped {key}: {reason}")
    if plan.ingest or plan.purge:
        reasons = {r: sum(1 for t in plan.ingest if t.reason == r) for r in sorted({t.reason for t in plan.ingest})}
        retries = sum(1 for t in plan.ingest if t.retry)
        log.info(
            f"{len(plan.ingest)} document(s) to ingest ({', '.join(f'{n} {r}' for r, n in reasons.items()) or 'none'}"
            f"{f'; {retries} again after a failed or lost attempt' if retries else ''}) in "
            f"{runs - bool(plan.purge)} run(s); {len(plan.purge)} to purge; {len(plan.current)} current; "
            f"{len(plan.waiting)} waiting on runs in flight or backing off; {len(plan.unreadable)} unreadable"
        )


def partition_requests(instance: dg.DagsterInstance, root: str, plan: Plan) -> list[dg.AddDynamicPartitionsRequest]:
    """The plan's new document partitions, and its root in the registry when it is new there."""
    adds = []
    if plan.add:
        registry = unregistered_roots([root], known_roots(instance))
        if registry:
            adds.append(dg.AddDynamicPartitionsRequest(ROOT_REGISTRY, registry))
        adds.append(dg.AddDynamicPartitionsRequest(documents_partitions.name, plan.add))
    return adds


def plan_and_result(tick: Tick, view: InstanceView, found: Findings, cursor: str) -> dg.SensorResult:
    """Plan what the tick found against the index and the runs in flight (`plan_tick`), pass
    the purge through the deletion guard (`guard_plan`), and make the sensor's result: new
    partitions, one ranged run per batch, one purge run, and the guard's asset events."""
    now = time.time()
    by_key = known_by_key(view.known, tick.root).with_keys(found.wanted)
    plan = plan_tick(tick, view, found, by_key, now)
    if found.gone_at_end_of is not None:  # the guard judges a listing pass's deletions all at once, at its end
        gone = {t.key: t.document_ids for t in plan.purge if t.if_gone}
        tick.state.note_gone(gone, found.gone_at_end_of, tick.number)
        plan.purge = [t for t in plan.purge if not t.if_gone]
    plan.purge, held_message, asset_events = guard_plan(tick, view, found, plan, by_key, now)
    run_requests = plan_run_requests(tick, view, plan)
    log_plan(tick.context.log, plan, len(run_requests))
    adds = partition_requests(tick.context.instance, tick.root, plan)
    # A tick that holds deletions and asks for no run says why in its result (Dagster takes a
    # skip reason or run requests, not both: otherwise the log line says it).
    skip = held_message if held_message and not run_requests else None
    return dg.SensorResult(
        run_requests=run_requests,
        dynamic_partitions_requests=adds,
        cursor=cursor,
        asset_events=asset_events,
        skip_reason=skip,
    )


# --- the event sensor ---------------------------------------------------------------------------


def head_all(
    object_store: ObjectStore, root: str, keys: Sequence[str], threads: int = 16
) -> dict[str, StoredObject | None]:
    """Each object as it is now (None when gone), many at a time."""
    # Thread-safe: the store makes its boto3 client from a session of its own.
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return dict(zip(keys, pool.map(lambda k: object_store.head(f"{root}/{k}"), keys), strict=True))


def listing_prefix(key: str) -> str:
    """A prefix under which a key's document and every sidecar either could read are listed:
    `a/report.` for `a/report.pdf`, `a/report.meta.json` and `a/report.pdf.meta.json`."""
    folder, slash, name = key.rpartition("/")
    return folder + slash + name.partition(".")[0] + ("." if "." in name else "")


def sidecar_neighbourhood(object_store: ObjectStore, root: str, sidecars: Iterable[str]) -> dict[str, Wanted]:
    """The documents that read one of these (created, changed or removed) sidecars, with
    their etags and versions as they are now (one listing per sidecar name)."""
    sidecars = set(sidecars)
    out = {}
    for prefix in sorted({listing_prefix(k) for k in sidecars}):
        objects = {o.key: o for o in object_store.list(f"{root}/{prefix}")}
        for key, want in wanted_documents(objects).items():
            if sidecars.intersection(sidecar_keys(key)):
                out[key] = want
    return out


def take_messages(
    log: dg.DagsterLogManager, event_queue: EventQueue, sync_config: SyncConfig, recorded: int, tick: int
) -> list[Message]:
    """This tick's messages, noted as pending under `tick`; those of the ticks Dagster recorded
    (up to `recorded`) are deleted first, and those of a tick whose result was lost made visible again."""
    # Messages received by a tick are deleted only once a later tick's cursor names it:
    # the cursor is stored with the tick's runs and partitions, so a crash loses nothing.
    # Those of a tick whose result was lost come back at once, not after the timeout.
    acks = PendingAcks(state_file(sync_config, "acks", str(event_queue.queue_url)))
    try:
        done, lost = acks.take(recorded)
        event_queue.delete(done)
        if lost:
            log.info(f"{event_queue.release(lost)} message(s) of a tick whose result was lost are visible again")
        messages = event_queue.receive(sync_config.max_messages_per_tick, sync_config.receive_budget_seconds)
        acks.put(tick, [m.receipt_handle for m in messages])
    finally:
        acks.close()
    return messages


def touched_objects(
    log: dg.DagsterLogManager, messages: Sequence[Message], bucket: str, prefix: str, source_uri: str
) -> tuple[list, dict[str, str]]:
    """The events in these messages, and the objects they touch under the source: key -> the
    sequencer of its latest event if that created it ("" if it removed it)."""
    events = []
    for message in messages:
        try:
            events.extend(parse_message(message.body))
        except BadEvent as e:
            log.warning(f"skipped message {message.message_id}: {e}")
    sequencers = {}
    for (b, key), event in latest_per_key(events).items():
        if b != bucket or not key.startswith(prefix):
            log.warning(f"skipped s3://{b}/{key}: outside {source_uri}")
        elif not is_thumbnail(key):  # the image family's own writes
            sequencers[key] = event.sequencer if event.kind == CREATED else ""
    return events, sequencers


def event_findings(
    tick: Tick,
    view: InstanceView,
    sequencers: Mapping[str, str],
    scope: str,
    object_store: ObjectStore,
    vector_store: VectorStore,
    embedder: Embedder,
) -> Findings:
    """The documents the events touched, those due to be looked at again, and the deletions a
    person confirmed, as the source and the index hold them now."""
    root, sync_config = tick.root, tick.sync_config
    # Deletions the guard holds wait for their objects' create events, or for a person:
    # confirmed ones are planned as gone (the purge checks each is still gone).
    confirmed = sorted(view.confirmed - view.purging)
    # Documents requested before, with no run on them now, are looked at again (and,
    # if still out of date, asked for again, backing off): a failed run, a lost write.
    due = tick.state.due(time.time(), sync_config.backoff, sync_config.max_messages_per_tick, skip=view.in_flight)
    again = [p.key for p in map(split_partition_key, due) if p.alias == root_alias(root)]
    touched = sorted({*sequencers, *again})
    documents = [k for k in touched if not is_sidecar(k)]
    # Events can be duplicated and reordered (a delete before a late create): act on
    # the objects as they are now, not on the events' order. One HEAD per document.
    now = head_all(object_store, root, documents)
    by_key = known_by_key(view.known, root)
    sidecar_docs = sidecar_neighbourhood(object_store, root, [k for k in touched if is_sidecar(k)])
    keys = sorted({*documents, *sidecar_docs, *confirmed})
    indexed = vector_store.list_documents(
        embedder.model_id,
        embedder.dimension,
        document_ids=candidate_ids(root, keys, by_key, sync_config.tenant_rule),
    )
    held = {d.uri[len(root) + 1 :]: d.source_etag for d in indexed.values()}
    wanted = dict(sidecar_docs)
    for key, obj in now.items():
        if obj is None or key in wanted:
            continue
        # A document's own event says nothing of its sidecar: it is taken to be as the
        # index has it (a sidecar's change comes with an event of its own).
        side = split_source_etag(held[key])[1] if key in held else None
        version = obj.version + (f"#{sequencers[key]}" if sequencers.get(key) else "")
        wanted[key] = Wanted(key, source_etag(obj.etag, side), version)
    return Findings(
        wanted=wanted,
        indexed=indexed,
        gone=[k for k, obj in now.items() if obj is None] + [k for k in confirmed if k not in now],
        scope=scope,
        examined={*documents, *sidecar_docs, *confirmed},
        list_index=lambda: vector_store.list_documents(embedder.model_id, embedder.dimension),
    )


def build_s3_event_sensor(default_status: dg.DefaultSensorStatus) -> dg.SensorDefinition:
    @dg.sensor(
        name="s3_event_sensor",
        jobs=[ingest_documents_job, purge_documents_job],
        # Evaluated at each round of the daemon's sensor loop (every 5 s): an idle tick is one
        # SQS receive and a read of the sensor's state (docs/decisions.md D33).
        minimum_interval_seconds=1,
        default_status=default_status,
        description="Follows S3 event notifications from SQS: uploads are ingested, deletes purged.",
    )
    def s3_event_sensor(
        context: dg.SensorEvaluationContext,
        event_queue: EventQueue,
        object_store: ObjectStore,
        vector_store: VectorStore,
        embedder: Embedder,
        rag_config: RagConfig,
        sync_config: SyncConfig,
    ) -> dg.SensorResult:
        recorded = json.loads(context.cursor)["tick"] if context.cursor else 0
        tick = recorded + 1
        messages = take_messages(context.log, event_queue, sync_config, recorded, tick)
        bucket, prefix = split_s3_uri(sync_config.source_uri)
        events, sequencers = touched_objects(context.log, messages, bucket, prefix, sync_config.source_uri)
        root = f"s3://{bucket}"
        identity = identity_of(sync_config, embedder, rag_config)
        state = SourceState(state_file(sync_config, "source", root, identity), "s3_event_sensor")
        try:
            state.commit(recorded)
            # An idle tick (no message, no document due to be looked at again, no deletion held)
            # ends here: it reads no partition keys, runs or index (docs/decisions.md D33).
            if not messages and not state.held() and not state.due(time.time(), sync_config.backoff, 1):
                return dg.SensorResult(
                    cursor=json.dumps({"tick": tick}), skip_reason="no S3 event, nothing to look at again"
                )
            this_tick = Tick(context, "s3_event_sensor", root, tick, identity, state, sync_config, rag_config)
            known = context.instance.get_dynamic_partitions(documents_partitions.name)
            view = instance_view(context.instance, state, root, known)
            found = event_findings(this_tick, view, sequencers, prefix, object_store, vector_store, embedder)
            if messages:
                context.log.info(f"{len(messages)} message(s), {len(events)} event(s), {len(sequencers)} object(s)")
            result = plan_and_result(this_tick, view, found, cursor=json.dumps({"tick": tick}))
        finally:
            state.close()
        return result

    return s3_event_sensor


# --- the listing sensor -------------------------------------------------------------------------


def listing_cursor(cursor: str | None, identity: str) -> dict:
    """The listing sensor's cursor (its tick, pass, continuation token, the first key the pass
    has not judged yet, identity, when the pass started and the last one ended); another store,
    model or pipeline starts a new pass at once."""
    defaults = {"tick": 0, "pass": 1, "token": None, "start": "", "identity": identity, "started": None, "ended": 0.0}
    out = {**defaults, **(json.loads(cursor) if cursor else {})}
    if out["identity"] != identity:
        out.update(identity=identity, token=None, start="", started=None, ended=0.0, **{"pass": out["pass"] + 1})
    return out


def next_listing_cursor(cursor: dict, tick: int, token: str | None, span: KeySpan) -> dict:
    """The cursor after this tick: the next pass once this one judged every key (the listing
    ended), else where the listing and the judging go on."""
    finished = span.stop is None
    return {
        "tick": tick,
        "pass": cursor["pass"] + 1 if finished else cursor["pass"],
        "token": token,
        "start": "" if finished else span.stop,
        "identity": cursor["identity"],
        "started": None if finished else cursor["started"] or time.time(),
        "ended": time.time() if finished else cursor["ended"],
    }


def list_some(
    object_store: ObjectStore, listing: str, cursor: dict, state: SourceState, tick: int, sync_config: SyncConfig
) -> tuple[str | None, bool, list[str]]:
    """Page through the listing from the cursor's continuation token, noting each object in the
    state, until it ends, the time budget is spent, or enough was listed. Returns the token to
    go on from, whether the listing ended, and the keys listed."""
    deadline = time.monotonic() + sync_config.list_budget_seconds
    token, listed = cursor["token"], []
    while True:
        page, token = object_store.list_page(listing, token)
        state.observe([(o.key, o.etag, o.version) for o in page], cursor["pass"], tick)
        listed.extend(o.key for o in page)
        if token is None:
            return token, True, listed
        if time.monotonic() > deadline or len(listed) >= sync_config.max_objects_per_tick:
            return token, False, listed


def listing_findings(
    tick: Tick, cursor: dict, listed: list[str], finished: bool, listing: str, store: VectorStore, embedder: Embedder
) -> Findings:
    """What a listing tick can judge (`listing_span`): the documents of its span of keys and
    what the index holds there, so a pass walks the source and the index side by side in key
    order, a span a tick (docs/scale.md). What the index holds there that the source does not
    is gone, purged when the pass ends: its last tick adds the keys earlier ones found gone."""
    pass_id, model, dimension = cursor["pass"], embedder.model_id, embedder.dimension
    last = max(listed, default=None)  # nothing past it was listed yet this pass
    seen = tick.state.seen(pass_id, tick.number, start=cursor["start"], upto=last)
    documents = wanted_documents({k: StoredObject(k, e, 0, 0.0, v) for k, (e, v) in seen.items()})
    span = listing_span(cursor["start"], documents, last, finished)
    scope = split_s3_uri(listing)[1] if listing.startswith("s3://") else ""
    indexed = store.list_key_span(model, dimension, scope, span.start, span.stop)
    gone = tick.state.gone(pass_id) if finished else {}
    if ids := sorted({d for ds in gone.values() for d in ds}):
        indexed |= store.list_documents(model, dimension, document_ids=ids)
    wanted = {k: w for k, w in documents.items() if k in span}
    return Findings(
        wanted=wanted,
        indexed=indexed,
        gone=list(gone),
        complete=True,
        scope=scope,
        span=span,
        gone_at_end_of=None if finished else pass_id,
        # The last tick judges every held deletion under the scope; an earlier one, what it found.
        examined=None if finished else set(wanted),
        list_index=partial(store.list_documents, model, dimension, key_prefix=scope) if finished else None,
    )


def build_listing_sensor(default_status: dg.DefaultSensorStatus) -> dg.SensorDefinition:
    @dg.sensor(
        name="listing_sensor",
        jobs=[ingest_documents_job, purge_documents_job],
        # Evaluated at each round of the daemon's sensor loop (every 5 s; a tick still running
        # is not started again): a pass over a small source costs milliseconds (docs/decisions.md D33).
        minimum_interval_seconds=1,
        default_status=default_status,
        description=(
            "Lists the source (RAG_SOURCE_URI) and compares it with what the index holds: ingests what is missing or "
            "out of date, purges what is gone. Without an event queue pass after pass; with one, every "
            "RAG_RECONCILE_SECONDS."
        ),
    )
    def listing_sensor(
        context: dg.SensorEvaluationContext,
        object_store: ObjectStore,
        vector_store: VectorStore,
        embedder: Embedder,
        rag_config: RagConfig,
        sync_config: SyncConfig,
    ) -> dg.SensorResult:
        identity = identity_of(sync_config, embedder, rag_config)
        cursor = listing_cursor(context.cursor, identity)
        root, listing = source_root(sync_config.source_uri)
        if not listing.startswith("s3://") and not Path(listing).is_dir():
            return dg.SkipReason(f"{listing} does not exist (yet)")
        tick = cursor["tick"] + 1
        state = SourceState(state_file(sync_config, "source", root, identity), "listing_sensor")
        try:
            # The cursor names the last tick Dagster recorded: its writes become the state;
            # those of a tick whose result was lost are dropped and made again.
            state.commit(cursor["tick"])
            interval = sync_config.reconcile_interval_seconds
            if cursor["started"] is None and interval and time.time() < cursor["ended"] + interval:
                return dg.SkipReason(f"next reconciliation pass in {cursor['ended'] + interval - time.time():.0f} s")
            this_tick = Tick(context, "listing_sensor", root, tick, identity, state, sync_config, rag_config)
            known = context.instance.get_dynamic_partitions(documents_partitions.name)
            # The next tick goes on from the continuation token.
            token, finished, listed = list_some(object_store, listing, cursor, state, tick, sync_config)
            found = listing_findings(this_tick, cursor, listed, finished, listing, vector_store, embedder)
            next_cursor = json.dumps(next_listing_cursor(cursor, tick, token, found.span))
            result = plan_and_result(this_tick, instance_view(context.instance, state, root, known), found, next_cursor)
        finally:
            state.close()
        return result

    return listing_sensor


@dg.definitions
def defs() -> dg.Definitions:
    """The event sensor runs when a queue is configured; the listing sensor always (pass after
    pass without a queue, a reconciliation pass every RAG_RECONCILE_SECONDS with one)."""
    event_mode = bool(loading_settings().sqs_queue_url)
    running, stopped = dg.DefaultSensorStatus.RUNNING, dg.DefaultSensorStatus.STOPPED
    return dg.Definitions(
        sensors=[build_s3_event_sensor(running if event_mode else stopped), build_listing_sensor(running)]
    )
