"""Sensors that make the index follow the source with nobody pressing a button.

- `s3_event_sensor`: S3 event notifications from SQS (RAG_SQS_QUEUE_URL).
- `listing_sensor`: lists the source (buckets without notifications, local folders).
- `ingest_retry_sensor`: re-runs what failed: a batch without its unreadable documents at
  once, a batch that failed for another reason with backoff, up to a limit.

Sensors only decide; runs do the work (ingest_documents, purge_documents).
"""

import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dagster as dg
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from rag_assets.assets.documents import ingest_documents_job
from rag_assets.assets.maintenance import purge_documents_job
from rag_assets.ingest import LAUNCHED_BY_TAG, failed_documents
from rag_assets.lib.batching import plan_batches
from rag_assets.lib.events import CREATED, BadEvent, latest_per_key, parse_message
from rag_assets.lib.keys import DocRef, is_sidecar
from rag_assets.lib.sync import document_for_sidecar, plan_sync, run_key
from rag_assets.partitions import documents_partitions
from rag_assets.resources.config import SyncConfig
from rag_assets.resources.event_queue import EventQueue
from rag_assets.resources.object_store import ObjectStore, source_root, split_s3_uri
from rag_assets.sensors.ledger import ListingLedger, PendingAcks

ATTEMPT_TAG = "rag/attempt"
# Launchers that re-plan their own failed batches (rag_assets.ingest.materialize_documents).
SELF_SPLITTING = {"cli", "reconciliation"}


def range_tags(first: str, last: str) -> dict[str, str]:
    return {ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last}


def sync_result(
    context: dg.SensorEvaluationContext,
    sync_config: SyncConfig,
    *,
    root: str,
    present: Mapping[str, str],
    gone: Sequence[str],
    cursor: str,
    source: str,
) -> dg.SensorResult:
    """The sensor result for objects seen present and gone: new partitions, one ranged run
    per batch, one purge run."""
    plan = plan_sync(
        root=root,
        present=present,
        gone=gone,
        known_partitions=context.instance.get_dynamic_partitions(documents_partitions.name),
        tenant_rule=sync_config.tenant_rule,
        batch_size=sync_config.batch_size,
    )
    requests = [
        dg.RunRequest(
            job_name=ingest_documents_job.name,
            run_key=batch.run_key,
            tags={**range_tags(batch.first, batch.last), LAUNCHED_BY_TAG: source, ATTEMPT_TAG: "1"},
        )
        for batch in plan.batches
    ]
    if plan.purge:
        requests.append(
            dg.RunRequest(
                job_name=purge_documents_job.name,
                run_key=run_key("purge", plan.purge + [cursor or ""]),
                run_config={"ops": {"purge_deleted_documents": {"config": {"partitions": plan.purge}}}},
                tags={LAUNCHED_BY_TAG: source},
            )
        )
    for key, reason in plan.skipped:
        context.log.warning(f"skipped {key}: {reason}")
    if plan.batches or plan.purge:
        context.log.info(
            f"{sum(len(b.members) for b in plan.batches)} document(s) to ingest in {len(plan.batches)} run(s), "
            f"{len(plan.add)} new; {len(plan.purge)} to purge"
        )
    adds = [dg.AddDynamicPartitionsRequest(documents_partitions.name, plan.add)] if plan.add else []
    return dg.SensorResult(run_requests=requests, dynamic_partitions_requests=adds, cursor=cursor)


def resolve_sidecars(
    present: Mapping[str, str], find_document, removed: Sequence[str] = (), stamp: str = ""
) -> dict[str, str]:
    """Documents to ingest from observed objects (key -> version). A sidecar, present or
    `removed`, stands for its document, found by `find_document(sidecar_key) -> (key,
    version) | None` (None: the document has not arrived; its own event will read the
    sidecar). The document's version then includes the sidecar's (or `removed@stamp`), so
    that each sidecar change makes a new run key."""
    documents = {k: v for k, v in present.items() if not is_sidecar(k)}
    sidecars = [(k, v) for k, v in present.items() if is_sidecar(k)] + [(k, f"removed@{stamp}") for k in removed]
    for key, version in sidecars:
        if (found := find_document(key)) is not None:
            doc, doc_version = found
            documents[doc] = f"{documents.get(doc, doc_version)}+meta:{version}"
    return documents


def sidecar_finder(candidates_for):
    """`find_document` over `candidates_for(base) -> {key: version}`: the objects whose keys
    start with the sidecar's base name."""

    def find(sidecar_key: str):
        candidates = {k: v for k, v in candidates_for(sidecar_key.removesuffix(".meta.json")).items() if not is_sidecar(k)}
        doc = document_for_sidecar(sidecar_key, set(candidates))
        return (doc, candidates[doc]) if doc else None

    return find


def head_all(object_store: ObjectStore, root: str, keys: Sequence[str], threads: int = 16) -> dict[str, str | None]:
    """Each object's current ETag (None when gone), many at a time."""
    # Thread-safe: the store makes its boto3 client from a session of its own.
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return dict(zip(keys, pool.map(lambda k: object_store.head(f"{root}/{k}"), keys), strict=True))


def build_s3_event_sensor(default_status: dg.DefaultSensorStatus) -> dg.SensorDefinition:
    @dg.sensor(
        name="s3_event_sensor",
        jobs=[ingest_documents_job, purge_documents_job],
        minimum_interval_seconds=5,
        default_status=default_status,
        description="Follows S3 event notifications from SQS: uploads are ingested, deletes purged.",
    )
    def s3_event_sensor(
        context: dg.SensorEvaluationContext, event_queue: EventQueue, object_store: ObjectStore, sync_config: SyncConfig
    ) -> dg.SensorResult:
        # Messages received by a tick are deleted only once a later tick's cursor names it:
        # the cursor is stored with the tick's runs and partitions, so a crash loses nothing.
        recorded = json.loads(context.cursor)["tick"] if context.cursor else 0
        acks = PendingAcks(state_path(sync_config, "acks", str(event_queue.queue_url)))
        try:
            event_queue.delete(acks.take(recorded))
            messages = event_queue.receive(sync_config.max_messages_per_tick, sync_config.receive_budget_seconds)
            acks.put(recorded + 1, [m.receipt_handle for m in messages])
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
        keys = []
        for b, key in latest_per_key(events):
            if b != bucket or not key.startswith(prefix):
                context.log.warning(f"skipped s3://{b}/{key}: outside {sync_config.source_uri}")
            else:
                keys.append(key)
        # Events can be duplicated and reordered (a delete before a late create): act on the
        # objects' state now, not on the events' order. One HEAD per object touched.
        state = head_all(object_store, root, keys)
        find = sidecar_finder(lambda base: {o.key: o.etag for o in object_store.list(f"{root}/{base}")})
        gone = [k for k, v in state.items() if v is None]
        stamp = hashlib.sha256("".join(m.message_id for m in messages).encode()).hexdigest()[:12]
        present = resolve_sidecars(
            {k: v for k, v in state.items() if v is not None}, find, [k for k in gone if is_sidecar(k)], stamp
        )
        if messages:
            context.log.info(f"{len(messages)} message(s), {len(events)} event(s), {len(keys)} object(s)")
        cursor = json.dumps({"tick": recorded + 1})
        return sync_result(
            context, sync_config, root=root, present=present, gone=gone, cursor=cursor, source="s3_event_sensor"
        )

    return s3_event_sensor


def state_path(sync_config: SyncConfig, kind: str, name: str) -> Path:
    """A sensor's state file, one per source or queue."""
    return Path(sync_config.state_dir, f"{kind}-{hashlib.sha256(name.encode()).hexdigest()[:12]}.sqlite")


def build_listing_sensor(default_status: dg.DefaultSensorStatus) -> dg.SensorDefinition:
    @dg.sensor(
        name="listing_sensor",
        jobs=[ingest_documents_job, purge_documents_job],
        minimum_interval_seconds=10,
        default_status=default_status,
        description="Lists the source (RAG_SOURCE_URI) and ingests new or changed objects, purges deleted ones.",
    )
    def listing_sensor(
        context: dg.SensorEvaluationContext, object_store: ObjectStore, sync_config: SyncConfig
    ) -> dg.SensorResult:
        cursor = {"pass": 1, "token": None, "tick": 0, **(json.loads(context.cursor) if context.cursor else {})}
        root, listing = source_root(sync_config.source_uri)
        if not listing.startswith("s3://") and not Path(listing).is_dir():
            return dg.SkipReason(f"{listing} does not exist (yet)")
        ledger = ListingLedger(state_path(sync_config, "listing", root))
        tick = cursor["tick"] + 1
        try:
            # The cursor names the last tick Dagster recorded: its observations become the
            # ledger; those of a tick whose result was lost are dropped and found again.
            ledger.commit(cursor["tick"])
            changed: dict[str, str] = {}
            deadline = time.monotonic() + sync_config.list_budget_seconds
            token, finished = cursor["token"], False
            # Page on until the listing ends, the time budget is spent, or enough has changed;
            # the next tick goes on from the continuation token.
            while True:
                page, token = object_store.list_page(listing, token)
                changed.update(ledger.observe([(o.key, o.etag) for o in page], cursor["pass"], tick))
                if token is None:
                    finished = True
                    break
                if time.monotonic() > deadline or len(changed) >= sync_config.max_changes_per_tick:
                    break
            gone = ledger.sweep(cursor["pass"], tick) if finished else []
            removed_sidecars = [k for k in gone if is_sidecar(k)]
            present = resolve_sidecars(changed, sidecar_finder(ledger.with_prefix), removed_sidecars, str(cursor["pass"]))
        finally:
            ledger.close()
        next_cursor = {"pass": cursor["pass"] + 1 if finished else cursor["pass"], "token": token, "tick": tick}
        return sync_result(
            context, sync_config, root=root, present=present, gone=gone, cursor=json.dumps(next_cursor), source="listing_sensor"
        )

    return listing_sensor


def retry_requests(
    run: dg.DagsterRun,
    ended: float,
    failed_partitions: list[str] | None,
    ordered: Sequence[str],
    sync_config: SyncConfig,
    now: float,
) -> list[dg.RunRequest]:
    """What to launch for one failed ingest run: its batch without its unreadable documents
    (at once), or the whole batch again after a backoff while attempts remain."""
    first, last = run.tags.get(ASSET_PARTITION_RANGE_START_TAG), run.tags.get(ASSET_PARTITION_RANGE_END_TAG)
    if first is None or first not in ordered or last not in ordered:
        return []
    position = {k: i for i, k in enumerate(ordered)}
    members = ordered[position[first] : position[last] + 1]
    attempt = int(run.tags.get(ATTEMPT_TAG, "1"))
    tags = {LAUNCHED_BY_TAG: "ingest_retry_sensor"}
    if failed_partitions is not None:
        rest = [m for m in members if m not in set(failed_partitions)]
        return [
            dg.RunRequest(
                job_name=ingest_documents_job.name,
                run_key=f"split:{run.run_id}:{a}",
                tags={**range_tags(a, b), **tags, ATTEMPT_TAG: str(attempt)},
            )
            for a, b in plan_batches(ordered, rest, sync_config.batch_size)
        ]
    if attempt >= sync_config.max_attempts:
        return []
    delay = sync_config.retry_base_seconds * 2 ** (attempt - 1)
    if now < ended + delay:
        return []
    return [
        dg.RunRequest(
            job_name=ingest_documents_job.name,
            run_key=f"retry:{run.run_id}",
            tags={**range_tags(first, last), **tags, ATTEMPT_TAG: str(attempt + 1)},
        )
    ]


@dg.sensor(
    jobs=[ingest_documents_job],
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Re-runs failed ingest batches: without their unreadable documents at once, or whole with backoff.",
)
def ingest_retry_sensor(context: dg.SensorEvaluationContext, sync_config: SyncConfig) -> dg.SensorResult:
    # Run keys make this stateless: a request already launched is skipped by Dagster.
    records = context.instance.get_run_records(
        filters=dg.RunsFilter(job_name=ingest_documents_job.name, statuses=[dg.DagsterRunStatus.FAILURE]),
        limit=200,
    )
    ordered = context.instance.get_dynamic_partitions(documents_partitions.name)
    now = time.time()
    requests = []
    for record in records:
        run, ended = record.dagster_run, record.end_time or record.update_timestamp.timestamp()
        if run.tags.get(LAUNCHED_BY_TAG) in SELF_SPLITTING or now - ended > 86400:
            continue  # those re-plan their own batches; failures older than a day stay for people
        failed = failed_documents(context.instance, run.run_id)
        partitions = None if failed is None else [f["partition"] for f in failed]
        requests.extend(retry_requests(run, ended, partitions, ordered, sync_config, now))
    return dg.SensorResult(run_requests=requests)
