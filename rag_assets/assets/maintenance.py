"""Keeping the index true to the source: purging deleted documents, daily reconciliation."""

from collections.abc import Sequence
from datetime import UTC, datetime

import dagster as dg

from rag_assets.lib.keys import DocRef, decode_partition_key, encode_partition_key, is_sidecar, tenant_from_key
from rag_assets.lib.sync import document_for_sidecar, documents_under
from rag_assets.partitions import daily_partitions, documents_partitions
from rag_assets.resources.config import SyncConfig
from rag_assets.resources.embedders import Embedder
from rag_assets.resources.object_store import ObjectStore, source_root
from rag_assets.resources.vector_stores import VectorStore

INDEX_KEY = dg.AssetKey("vector_index")


def purge_partitions(
    partitions: Sequence[str],
    *,
    object_store: ObjectStore,
    vector_store: VectorStore,
    embedder: Embedder,
    context: dg.OpExecutionContext,
) -> dict:
    """Delete the vectors, then the partitions, of documents whose objects are gone. An object
    that exists again (a late create after a delete) is left alone: its create ingests it."""
    instance = context.instance
    refs = {p: decode_partition_key(p) for p in partitions}
    back = [p for p, ref in refs.items() if object_store.head(ref.uri) is not None]
    doomed = [p for p in partitions if p not in back]
    for p in back:
        context.log.info(f"{refs[p].uri} exists again: not purged")
    ids = [refs[p].document_id for p in doomed]
    states = vector_store.document_states(embedder.model_id, embedder.dimension, ids)
    deleted = vector_store.delete_documents(embedder.model_id, embedder.dimension, ids)
    left = vector_store.document_states(embedder.model_id, embedder.dimension, ids)
    if left:
        raise dg.Failure(f"rows remain after the purge for {sorted(left)[:5]}")
    known = set(instance.get_dynamic_partitions(documents_partitions.name))
    for p in doomed:
        context.log_event(
            dg.AssetObservation(
                asset_key=INDEX_KEY,
                partition=p if p in known else None,
                metadata={
                    "status": "purged",
                    "document_key": refs[p].key,
                    "rows_deleted": states[refs[p].document_id].rows if refs[p].document_id in states else 0,
                },
            )
        )
        if p in known:
            instance.delete_dynamic_partition(documents_partitions.name, p)
    context.log.info(f"purged {len(doomed)} document(s), {deleted} row(s); {len(back)} came back")
    return {"purged": [refs[p].key for p in doomed], "rows_deleted": deleted, "came_back": [refs[p].key for p in back]}


class PurgeConfig(dg.Config):
    partitions: list[str]


@dg.op
def purge_deleted_documents(
    context: dg.OpExecutionContext, config: PurgeConfig, object_store: ObjectStore, vector_store: VectorStore, embedder: Embedder
) -> None:
    """Remove documents deleted from the source: their vectors, then their partitions."""
    purge_partitions(config.partitions, object_store=object_store, vector_store=vector_store, embedder=embedder, context=context)


@dg.job(name="purge_documents", description="Purge the vectors and partitions of documents deleted from the source.")
def purge_documents_job():
    purge_deleted_documents()


def latest_index_etags(instance: dg.DagsterInstance, partitions: Sequence[str]) -> dict[str, str]:
    """The source ETag each partition's latest vector_index materialization was made from."""
    out: dict[str, str] = {}
    for start in range(0, len(partitions), 500):
        part = list(partitions[start : start + 500])
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=INDEX_KEY, asset_partitions=part), limit=len(part) * 20
        ).records
        for record in records:  # newest first
            mat = record.asset_materialization
            if mat.partition not in out and "source_etag" in mat.metadata:
                out[mat.partition] = mat.metadata["source_etag"].value
    return out


@dg.asset(partitions_def=daily_partitions, group_name="maintenance", kinds={"s3"})
def index_reconciliation(
    context: dg.AssetExecutionContext,
    object_store: ObjectStore,
    vector_store: VectorStore,
    embedder: Embedder,
    sync_config: SyncConfig,
) -> dg.MaterializeResult:
    """For one day: the objects the source holds against what the index holds, repaired.

    Objects modified that day that the index lacks or holds from other bytes are re-ingested;
    documents whose objects are gone are purged. The safety net for lost events.
    """
    from rag_assets.definitions import build_definitions  # built now, from this run's environment
    from rag_assets.ingest import materialize_documents

    window = context.partition_time_window
    start, end = window.start.timestamp(), window.end.timestamp()
    root, listing = source_root(sync_config.source_uri)
    objects = {o.key: o for o in object_store.list(listing)}
    documents = {k: o for k, o in objects.items() if not is_sidecar(k)}
    modified = {k for k, o in objects.items() if start <= o.last_modified < end}
    new_sidecar = {doc for k in modified if is_sidecar(k) and (doc := document_for_sidecar(k, set(documents)))}
    touched = {k for k in modified if not is_sidecar(k)} | new_sidecar
    partitions: dict[str, str] = {}
    for key in sorted(touched):
        try:
            partitions[key] = encode_partition_key(DocRef(tenant_from_key(key, sync_config.tenant_rule), root, key))
        except ValueError as e:
            context.log.warning(str(e))
    etags = latest_index_etags(context.instance, list(partitions.values()))
    ids = {p: decode_partition_key(p).document_id for p in partitions.values()}
    indexed = vector_store.document_states(embedder.model_id, embedder.dimension, list(ids.values()))
    stale = [
        p
        for key, p in partitions.items()
        if key in new_sidecar or etags.get(p) != documents[key].etag or ids[p] not in indexed
    ]
    known = context.instance.get_dynamic_partitions(documents_partitions.name)
    ghosts = [p for key, p in documents_under(known, root).items() if key not in documents]
    purged = {"purged": [], "rows_deleted": 0}
    if ghosts:
        purged = purge_partitions(
            ghosts, object_store=object_store, vector_store=vector_store, embedder=embedder, context=context
        )
    done, failed, runs = materialize_documents(
        stale,
        defs=build_definitions(),
        instance=context.instance,
        batch_size=sync_config.batch_size,
        run_config={},
        launched_by="reconciliation",
    )
    failures = [{"key": decode_partition_key(f["partition"]).key, "reason": f["reason"]} for f in failed]
    for f in failures:
        context.log.error(f"{f['key']}: {f['reason']}")
    day = datetime.fromtimestamp(start, UTC).date().isoformat()
    context.log.info(f"{day}: {len(touched)} object(s) modified, {len(stale)} re-ingested, {len(purged['purged'])} purged")
    return dg.MaterializeResult(
        metadata={
            "objects_listed": len(objects),
            "modified_that_day": len(touched),
            "reingested": len(done),
            "reingest_failed": dg.MetadataValue.json(failures),
            "purged": dg.MetadataValue.json(purged["purged"]),
            "rows_purged": purged["rows_deleted"],
            "runs": dg.MetadataValue.json(runs),
        }
    )


reconcile_job = dg.define_asset_job("reconcile_index", selection=[index_reconciliation], partitions_def=daily_partitions)
reconcile_schedule = dg.build_schedule_from_partitioned_job(
    reconcile_job, hour_of_day=2, minute_of_hour=0, default_status=dg.DefaultScheduleStatus.RUNNING
)
