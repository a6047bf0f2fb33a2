"""Sensors that make the index follow the source with nobody pressing a button.

- `s3_event_sensor`: S3 event notifications from SQS (RAG_SQS_QUEUE_URL): the fast path.
- `listing_sensor`: lists the source and compares it with what the index holds: pass after
  pass without a queue; with one, a full pass every RAG_RECONCILE_SECONDS as the safety net.

Sensors only decide (lib.reconcile plans, from the source, the index and the runs in
flight); runs do the work (ingest_documents, purge_documents). See docs/architecture.md.
"""

import hashlib
import json
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dagster as dg
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from rag_assets.assets.documents import RAW_DOCUMENTS, ingest_documents_job
from rag_assets.assets.maintenance import PURGED_TAG, purge_documents_job, purge_run_config
from rag_assets.ingest import LAUNCHED_BY_TAG
from rag_assets.lib.events import CREATED, BadEvent, latest_per_key, parse_message
from rag_assets.lib.identity import index_identity, source_etag, split_source_etag
from rag_assets.lib.images import is_thumbnail
from rag_assets.lib.keys import DocRef, is_sidecar, root_alias, sidecar_keys, split_partition_key, tenant_from_key
from rag_assets.lib.parsing import READERS
from rag_assets.lib.reconcile import (
    Plan,
    Request,
    Target,
    Wanted,
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
from rag_assets.resources.vector_stores import VectorStore
from rag_assets.sensors.state import PendingAcks, SourceState

# Runs some run is still working on: their documents are not asked for again meanwhile.
IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


def range_tags(first: str, last: str) -> dict[str, str]:
    return {ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last}


def identity_of(sync_config: SyncConfig, embedder: Embedder, rag_config: RagConfig) -> str:
    return index_identity(sync_config.index_uri, embedder.model_id, f"{rag_config.pipeline} {rag_config.image_pipeline}")


def state_file(sync_config: SyncConfig, kind: str, *names: str) -> Path:
    """A sensor state file, one per source and index identity (or per queue)."""
    return Path(sync_config.state_dir, f"{kind}-{hashlib.sha256(chr(0).join(names).encode()).hexdigest()[:12]}.sqlite")


# --- what Dagster knows -------------------------------------------------------------------


def work_in_flight(instance: dg.DagsterInstance, ordered: Sequence[str], root: str) -> tuple[set[str], set[str]]:
    """(partitions an ingest run is working on, object keys under `root` a purge run is)."""
    ranges = []
    for record in instance.get_run_records(dg.RunsFilter(job_name=ingest_documents_job.name, statuses=IN_FLIGHT)):
        tags = record.dagster_run.tags
        if ASSET_PARTITION_RANGE_START_TAG in tags:
            ranges.append((tags[ASSET_PARTITION_RANGE_START_TAG], tags[ASSET_PARTITION_RANGE_END_TAG]))
        elif "dagster/partition" in tags:
            ranges.append((tags["dagster/partition"], tags["dagster/partition"]))
    prefix = root.rstrip("/") + "/"
    purging = set()
    for record in instance.get_run_records(dg.RunsFilter(job_name=purge_documents_job.name, statuses=IN_FLIGHT)):
        config = record.dagster_run.run_config.get("ops", {}).get("purge_deleted_documents", {}).get("config", {})
        purging.update(t["uri"][len(prefix) :] for t in config.get("targets", []) if t["uri"].startswith(prefix))
    return partitions_in_ranges(ordered, ranges), purging


def unreadable_documents(instance: dg.DagsterInstance, partitions: Sequence[str], pipeline: str | Callable[[str], str]) -> dict[str, str]:
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
) -> dg.SensorResult:
    """Plan the documents under `root` against the index and the runs in flight (`work_in_flight`),
    note the requests in `state` (pending under `tick`), and make the sensor's result: new
    partitions, one ranged run per batch, one purge run."""
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
    ordered = [*known, *plan.add]
    targets = {t.partition: t for t in plan.ingest}
    run_requests = [
        dg.RunRequest(
            job_name=ingest_documents_job.name,
            run_key=batch.run_key,
            tags={**range_tags(batch.first, batch.last), LAUNCHED_BY_TAG: sensor, **reason_tags(targets[m] for m in batch.members)},
        )
        for batch in ingest_batches(plan.ingest, ordered, sync_config.batch_size, identity)
    ]
    if plan.purge:
        run_requests.append(
            dg.RunRequest(
                job_name=purge_documents_job.name,
                run_key=run_key("purge", identity, [f"{sensor}:{tick}", *(t.uri for t in plan.purge)]),
                run_config=purge_run_config(plan.purge),
                tags={LAUNCHED_BY_TAG: sensor, PURGED_TAG: str(len(plan.purge))},
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
    return dg.SensorResult(run_requests=run_requests, dynamic_partitions_requests=adds, cursor=cursor)


# --- the event sensor ---------------------------------------------------------------------------


def head_all(object_store: ObjectStore, root: str, keys: Sequence[str], threads: int = 16) -> dict[str, StoredObject | None]:
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
        minimum_interval_seconds=5,
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
                context.log.info(f"{event_queue.release(lost)} message(s) of a tick whose result was lost are visible again")
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
            known = context.instance.get_dynamic_partitions(documents_partitions.name)
            work = work_in_flight(context.instance, known, root)
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
            keys = sorted({*documents, *sidecar_docs})
            indexed = vector_store.list_documents(
                embedder.model_id, embedder.dimension, document_ids=candidate_ids(root, keys, by_key, sync_config.tenant_rule)
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
            gone = [k for k, obj in now.items() if obj is None]
            if messages:
                context.log.info(f"{len(messages)} message(s), {len(events)} event(s), {len(sequencers)} object(s)")
            result = plan_and_result(
                context,
                sensor="s3_event_sensor",
                root=root,
                wanted=wanted,
                gone=gone,
                indexed=indexed,
                known=known,
                in_flight=work,
                state=state,
                tick=tick,
                cursor=json.dumps({"tick": tick}),
                sync_config=sync_config,
                rag_config=rag_config,
                identity=identity,
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
        minimum_interval_seconds=10,
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
            )
        finally:
            state.close()
        return result

    return listing_sensor


def sensor_definitions(event_mode: bool) -> dg.Definitions:
    """The event sensor runs when a queue is configured; the listing sensor always (pass after
    pass without a queue, a reconciliation pass every RAG_RECONCILE_SECONDS with one)."""
    running, stopped = dg.DefaultSensorStatus.RUNNING, dg.DefaultSensorStatus.STOPPED
    return dg.Definitions(
        sensors=[build_s3_event_sensor(running if event_mode else stopped), build_listing_sensor(running)]
    )

