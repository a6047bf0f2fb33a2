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
    Plan,
    PurgeTarget,
    Request,
    Target,
    Wanted,
    guard_purges,
    guard_releases,
    indexed_by_key,
    ingest_batches,
    partitions_by_key,
    partitions_in_ranges,
    pipeline_of,
    plan_documents,
    run_key,
    wanted_documents,
)
from rag_assets.partitions import ROOT_REGISTRY, documents_partitions, known_roots, unregistered_roots
from rag_assets.resources.config import RagConfig, SyncConfig
from rag_assets.resources.embedders import Embedder
from rag_assets.resources.event_queue import EventQueue
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


def candidate_ids(root: str, keys: Iterable[str], by_key: Mapping[str, list[str]], tenant_rule: str) -> list[str]:
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


# --- the deletion guard -------------------------------------------------------------------------


def guard_memory(instance: dg.DagsterInstance, state: SourceState, root: str) -> tuple[dict[str, float], set[str]]:
    """The deletions the guard holds under `root` (key -> since when), and those of them a
    person has confirmed (held when the newest confirmation for `root` started)."""
    held = state.held()
    cutoff = confirmed_at(instance, root) if held else None
    return held, {k for k, at in held.items() if cutoff is not None and at <= cutoff}


def guard_plan(
    context: dg.SensorEvaluationContext,
    plan: Plan,
    *,
    root: str,
    scope: str,
    wanted: Mapping[str, Wanted],
    indexed: Mapping,
    by_key: Mapping[str, list[str]],
    examined: AbstractSet[str] | None,
    list_index: Callable[[], Mapping] | None,
    held_before: Mapping[str, float],
    confirmed: AbstractSet[str],
    purging: AbstractSet[str],
    state: SourceState,
    tick: int,
    now: float,
    sync_config: SyncConfig,
) -> tuple[list[PurgeTarget], str | None, list]:
    """A plan's purge through the deletion guard (lib.reconcile.guard_purges), counting what
    the index holds under the source (`indexed`, complete unless `list_index` lists it all);
    the holds and releases noted in `state` under `tick`. Returns what to purge, what the
    guard holds in words (a log line; the tick's skip reason if it requests no run), and the
    asset events to report: the deletion_guard check failed and an observation on
    vector_index when it holds more, passed when it held and holds nothing any more.
    `examined`: the held keys the plan looked at (None: all under the scope)."""
    guard = sync_config.purge_guard
    deletions = {t.key for t in plan.purge if t.if_gone}
    if not deletions and not held_before:
        return plan.purge, None, []

    def under(keys: Iterable[str]) -> set[str]:
        return {k for k in keys if k.startswith(scope)}

    recent = state.purged_since(now - guard.window_seconds) - set(wanted)
    looked = under(held_before) if examined is None else set(held_before) & set(examined)
    still = set(held_before) - (looked - deletions - set(purging))  # held, and not seen back or gone from the index
    holds = under(set(by_key) | set(indexed_by_key(indexed, root)))
    gone = (deletions | still | recent) - confirmed
    if list_index is not None and guard.may_trip(len(gone), len((holds | recent) - confirmed)):
        holds |= under(indexed_by_key(list_index(), root))  # a mass delete is possible: count all the index holds
    decision = guard_purges(plan.purge, indexed=holds, guard=guard, held=still, recent=recent, confirmed=confirmed)
    release = guard_releases(held_before, looked, decision, purging)
    hold = {t.key for t in decision.held}
    purged = [t.key for t in decision.purge if t.if_gone and t.key not in confirmed]
    state.guard(tick, hold, release, purged, now)
    after = (set(held_before) | hold) - release
    where = f"{root}/{scope}" if scope else root
    if decision.confirmed:
        context.log.info(f"deletion guard: {len(decision.confirmed)} confirmed deletion(s) under {root} to purge")
    if not after:
        if not held_before:
            return decision.purge, None, []
        context.log.info(f"deletion guard: holds nothing under {where} any more (came back, or confirmed and purged)")
        meta = guard_metadata(root, (), let_go=len(held_before))
        return decision.purge, None, guard_events(False, "deletion guard: cleared", meta, f"nothing held under {where}")
    targets = {t.key: t for t in decision.held}
    tenants = Counter()
    for key in after:  # whose documents they are: their partitions' tenants, else their rows'
        names = {split_partition_key(p).tenant for p in by_key.get(key, [])}
        if not names and key in targets:
            names = {document_tenant(d, targets[key].uri) for d in targets[key].document_ids}
        tenants.update(names or {"?"})
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
    context.log.warning(message)
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


def plan_and_result(
    context: dg.SensorEvaluationContext,
    *,
    sensor: str,
    root: str,
    wanted: Mapping[str, Wanted],
    gone: Iterable[str] = (),
    complete: bool = False,
    scope: str = "",
    indexed: Mapping,
    known: Sequence[str],
    in_flight: tuple[set[str], set[str]],
    state: SourceState,
    tick: int,
    cursor: str,
    sync_config: SyncConfig,
    rag_config: RagConfig,
    identity: str,
    held: tuple[Mapping[str, float], AbstractSet[str]] = ({}, frozenset()),
    examined: AbstractSet[str] | None = None,
    list_index: Callable[[], Mapping] | None = None,
) -> dg.SensorResult:
    """Plan the documents under `root` against the index and the runs in flight (`work_in_flight`),
    pass the purge through the deletion guard (`held`: `guard_memory`; `examined`, `list_index`:
    `guard_plan`), note the requests and the guard's holds in `state` (pending under `tick`),
    and make the sensor's result: new partitions, one ranged run per batch, one purge run,
    and the guard's asset events."""
    in_flight, purging = in_flight
    now = time.time()
    by_key = partitions_by_key(known, root)
    requests = state.requests(by_key[k][0] for k in wanted if k in by_key)

    def plan_with(unreadable: Mapping[str, str]) -> Plan:
        return plan_documents(
            root=root,
            wanted=wanted,
            gone=gone,
            complete=complete,
            scope=scope,
            indexed=indexed,
            partitions=known,
            tenant_rule=sync_config.tenant_rule,
            pipeline=rag_config.pipeline_for,
            in_flight=in_flight,
            purging=purging,
            unreadable=unreadable,
            requests=requests,
            backoff=sync_config.backoff,
            now=now,
        )

    # Which documents were found unreadable is looked up for the few that would be asked for.
    plan = plan_with({})
    if suspects := [t.partition for t in plan.ingest if t.reason != "new"]:
        plan = plan_with(unreadable_documents(context.instance, suspects, rag_config.pipeline_for))
    state.record({t.partition: Request(t.version, t.attempt, now) for t in plan.ingest}, plan.current, tick)
    plan.purge, held_message, asset_events = guard_plan(
        context,
        plan,
        root=root,
        scope=scope,
        wanted=wanted,
        indexed=indexed,
        by_key=by_key,
        examined=examined,
        list_index=list_index,
        held_before=held[0],
        confirmed=held[1],
        purging=purging,
        state=state,
        tick=tick,
        now=now,
        sync_config=sync_config,
    )
    ordered = [*known, *plan.add]
    targets = {t.partition: t for t in plan.ingest}
    run_requests = [
        dg.RunRequest(
            job_name=ingest_documents_job.name,
            run_key=batch.run_key,
            tags={
                **range_tags(batch.first, batch.last),
                LAUNCHED_BY_TAG: sensor,
                **reason_tags(targets[m] for m in batch.members),
            },
        )
        for batch in ingest_batches(plan.ingest, ordered, sync_config.batch_size, identity)
    ]
    if plan.purge:
        confirmed = sum(1 for t in plan.purge if t.if_gone and t.key in held[1])
        run_requests.append(
            dg.RunRequest(
                job_name=purge_documents_job.name,
                run_key=run_key("purge", identity, [f"{sensor}:{tick}", *(t.uri for t in plan.purge)]),
                run_config=purge_run_config(plan.purge),
                tags={
                    LAUNCHED_BY_TAG: sensor,
                    PURGED_TAG: str(len(plan.purge)),
                    **({CONFIRMED_TAG: str(confirmed)} if confirmed else {}),
                },
            )
        )
    for key, reason in plan.skipped:
        context.log.warning(f"skipped {key}: {reason}")
    if plan.ingest or plan.purge:
        reasons = {r: sum(1 for t in plan.ingest if t.reason == r) for r in sorted({t.reason for t in plan.ingest})}
        retries = sum(1 for t in plan.ingest if t.retry)
        context.log.info(
            f"{len(plan.ingest)} document(s) to ingest ({', '.join(f'{n} {r}' for r, n in reasons.items()) or 'none'}"
            f"{f'; {retries} again after a failed or lost attempt' if retries else ''}) in "
            f"{len(run_requests) - bool(plan.purge)} run(s); {len(plan.purge)} to purge; {len(plan.current)} current; "
            f"{len(plan.waiting)} waiting on runs in flight or backing off; {len(plan.unreadable)} unreadable"
        )
    adds = []
    if plan.add:
        registry = unregistered_roots([root], known_roots(context.instance))
        if registry:
            adds.append(dg.AddDynamicPartitionsRequest(ROOT_REGISTRY, registry))
        adds.append(dg.AddDynamicPartitionsRequest(documents_partitions.name, plan.add))
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
        # Messages received by a tick are deleted only once a later tick's cursor names it:
        # the cursor is stored with the tick's runs and partitions, so a crash loses nothing.
        # Those of a tick whose result was lost come back at once, not after the timeout.
        recorded = json.loads(context.cursor)["tick"] if context.cursor else 0
        tick = recorded + 1
        acks = PendingAcks(state_file(sync_config, "acks", str(event_queue.queue_url)))
        try:
            done, lost = acks.take(recorded)
            event_queue.delete(done)
            if lost:
                context.log.info(
                    f"{event_queue.release(lost)} message(s) of a tick whose result was lost are visible again"
                )
            messages = event_queue.receive(sync_config.max_messages_per_tick, sync_config.receive_budget_seconds)
            acks.put(tick, [m.receipt_handle for m in messages])
        finally:
            acks.close()
        events = []
        for message in messages:
            try:
                events.extend(parse_message(message.body))
            except BadEvent as e:
                context.log.warning(f"skipped message {message.message_id}: {e}")
        bucket, prefix = split_s3_uri(sync_config.source_uri)
        root = f"s3://{bucket}"
        sequencers = {}
        for (b, key), event in latest_per_key(events).items():
            if b != bucket or not key.startswith(prefix):
                context.log.warning(f"skipped s3://{b}/{key}: outside {sync_config.source_uri}")
            elif not is_thumbnail(key):  # the image family's own writes
                sequencers[key] = event.sequencer if event.kind == CREATED else ""
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
            known = context.instance.get_dynamic_partitions(documents_partitions.name)
            work = work_in_flight(context.instance, known, root)
            # Deletions the guard holds wait for their objects' create events, or for a person:
            # confirmed ones are planned as gone (the purge checks each is still gone).
            holding = guard_memory(context.instance, state, root)
            confirmed = sorted(holding[1] - work[1])
            # Documents requested before, with no run on them now, are looked at again (and,
            # if still out of date, asked for again, backing off): a failed run, a lost write.
            due = state.due(time.time(), sync_config.backoff, sync_config.max_messages_per_tick, skip=work[0])
            again = [p.key for p in map(split_partition_key, due) if p.alias == root_alias(root)]
            touched = sorted({*sequencers, *again})
            documents = [k for k in touched if not is_sidecar(k)]
            # Events can be duplicated and reordered (a delete before a late create): act on
            # the objects as they are now, not on the events' order. One HEAD per document.
            now = head_all(object_store, root, documents)
            by_key = partitions_by_key(known, root)
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
            gone = [k for k, obj in now.items() if obj is None] + [k for k in confirmed if k not in now]
            if messages:
                context.log.info(f"{len(messages)} message(s), {len(events)} event(s), {len(sequencers)} object(s)")
            result = plan_and_result(
                context,
                sensor="s3_event_sensor",
                root=root,
                wanted=wanted,
                gone=gone,
                scope=prefix,
                indexed=indexed,
                known=known,
                in_flight=work,
                state=state,
                tick=tick,
                cursor=json.dumps({"tick": tick}),
                sync_config=sync_config,
                rag_config=rag_config,
                identity=identity,
                held=holding,
                examined={*documents, *sidecar_docs, *confirmed},
                list_index=lambda: vector_store.list_documents(embedder.model_id, embedder.dimension),
            )
        finally:
            state.close()
        return result

    return s3_event_sensor


# --- the listing sensor -------------------------------------------------------------------------


def settled(keys: Iterable[str], last_listed: str) -> list[str]:
    """Documents whose every possible sidecar sorts at or before `last_listed` (S3 lists in
    key order): what the listing so far says of them is all it will say this pass."""
    return [k for k in keys if not is_sidecar(k) and max(sidecar_keys(k)) <= last_listed]


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
        defaults = {"tick": 0, "pass": 1, "token": None, "identity": identity, "started": None, "ended": 0.0}
        cursor = {**defaults, **(json.loads(context.cursor) if context.cursor else {})}
        root, listing = source_root(sync_config.source_uri)
        if not listing.startswith("s3://") and not Path(listing).is_dir():
            return dg.SkipReason(f"{listing} does not exist (yet)")
        if cursor["identity"] != identity:  # another store, model or pipeline: a new pass, at once
            cursor.update(identity=identity, token=None, started=None, ended=0.0, **{"pass": cursor["pass"] + 1})
        tick = cursor["tick"] + 1
        state = SourceState(state_file(sync_config, "source", root, identity), "listing_sensor")
        try:
            # The cursor names the last tick Dagster recorded: its writes become the state;
            # those of a tick whose result was lost are dropped and made again.
            state.commit(cursor["tick"])
            interval = sync_config.reconcile_interval_seconds
            if cursor["started"] is None and interval and time.time() < cursor["ended"] + interval:
                return dg.SkipReason(f"next reconciliation pass in {cursor['ended'] + interval - time.time():.0f} s")
            known = context.instance.get_dynamic_partitions(documents_partitions.name)
            deadline = time.monotonic() + sync_config.list_budget_seconds
            token, finished, listed = cursor["token"], False, []
            # Page on until the listing ends, the time budget is spent, or enough was listed;
            # the next tick goes on from the continuation token.
            while True:
                page, token = object_store.list_page(listing, token)
                state.observe([(o.key, o.etag, o.version) for o in page], cursor["pass"], tick)
                listed.extend(o.key for o in page)
                if token is None:
                    finished = True
                    break
                if time.monotonic() > deadline or len(listed) >= sync_config.max_objects_per_tick:
                    break
            seen = {k: StoredObject(k, e, 0, 0.0, v) for k, (e, v) in state.seen(cursor["pass"], tick).items()}
            everything = wanted_documents(seen)
            if finished:  # the pass is complete: every document, and whatever else the index holds under the root
                wanted = everything
                indexed = vector_store.list_documents(embedder.model_id, embedder.dimension)
            else:
                wanted = {k: everything[k] for k in settled(listed, max(listed, default="")) if k in everything}
                by_key = partitions_by_key(known, root)
                ids = candidate_ids(root, wanted, by_key, sync_config.tenant_rule)
                indexed = vector_store.list_documents(embedder.model_id, embedder.dimension, document_ids=ids)
            started = cursor["started"] or time.time()
            next_cursor = {
                "tick": tick,
                "pass": cursor["pass"] + 1 if finished else cursor["pass"],
                "token": token,
                "identity": identity,
                "started": None if finished else started,
                "ended": time.time() if finished else cursor["ended"],
            }
            result = plan_and_result(
                context,
                sensor="listing_sensor",
                root=root,
                wanted=wanted,
                complete=finished,
                scope=split_s3_uri(listing)[1] if listing.startswith("s3://") else "",
                indexed=indexed,
                known=known,
                in_flight=work_in_flight(context.instance, known, root),
                state=state,
                tick=tick,
                cursor=json.dumps(next_cursor),
                sync_config=sync_config,
                rag_config=rag_config,
                identity=identity,
                # A complete pass judges every held deletion under the scope; a page, the documents it found.
                held=guard_memory(context.instance, state, root),
                examined=None if finished else set(wanted),
            )
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

