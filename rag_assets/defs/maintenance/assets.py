"""Keeping the index true to the source: purging deleted documents, confirming a mass delete
the deletion guard holds, and the daily record of what the sensors did to keep it so
(docs/architecture.md, The index is the truth)."""

import shlex
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path

import dagster as dg

from rag_assets.components.index_pipeline import INDEX_WRITERS
from rag_assets.dagster_compat import partition_storage_ids
from rag_assets.defs.documents.assets import INTERMEDIATE_ASSETS, ingest_documents_job
from rag_assets.defs.documents.images import forget_images
from rag_assets.lib.errors import describe_error
from rag_assets.lib.keys import document_tenant
from rag_assets.lib.reconcile import PurgeTarget
from rag_assets.partitions import daily_partitions, documents_partitions
from rag_assets.resources.config import RagConfig, SyncConfig
from rag_assets.resources.embedders import Embedder
from rag_assets.resources.image_analysis import AnalysisStore
from rag_assets.resources.io_manager import PartitionedPickleIOManager
from rag_assets.resources.object_store import ObjectStore, source_root
from rag_assets.resources.state import SourceState, identity_of, state_file
from rag_assets.resources.vector_stores import VectorStore

INDEX_KEY = dg.AssetKey("vector_index")
# Tags a planner puts on the runs it requests: how many documents, for which reason
# (lib.reconcile.Target.reason; "retry": asked for again after a failed or lost attempt).
REASONS = ("new", "changed", "missing", "pipeline", "retry")
PURGED_TAG = "rag/purged"


class PurgeTargetConfig(dg.Config):
    key: str
    uri: str
    document_ids: list[str]
    partitions: list[str]
    if_gone: bool = True


class PurgeConfig(dg.Config):
    targets: list[PurgeTargetConfig]


def purge_run_config(targets: Sequence[PurgeTarget]) -> dict:
    config = [{**asdict(t), "document_ids": list(t.document_ids), "partitions": list(t.partitions)} for t in targets]
    return {"ops": {"purge_deleted_documents": {"config": {"targets": config}}}}


@dg.op(pool=INDEX_WRITERS)
def purge_deleted_documents(
    context: dg.OpExecutionContext,
    config: PurgeConfig,
    object_store: ObjectStore,
    vector_store: VectorStore,
    embedder: Embedder,
    analysis_store: AnalysisStore,
    work_io_manager: dg.ResourceParam[PartitionedPickleIOManager],
) -> None:
    """Delete the rows (by the document ids the index holds them under), the partitions and
    the intermediate values of documents deleted from the source, and an image's thumbnail
    and analyses. An object that exists again (a late create after a delete) is left alone:
    its create ingests it."""
    back = [t for t in config.targets if t.if_gone and object_store.head(t.uri) is not None]
    doomed = [t for t in config.targets if t not in back]
    for t in back:
        context.log.info(f"{t.uri} exists again: not purged")
    model, dimension = embedder.model_id, embedder.dimension
    ids = sorted({d for t in doomed for d in t.document_ids})
    before = vector_store.list_documents(model, dimension, document_ids=ids)
    deleted = vector_store.delete_documents(model, dimension, ids)
    left = vector_store.list_documents(model, dimension, document_ids=ids)
    if left:
        raise dg.Failure(f"rows remain after the purge for {sorted(left)[:5]}")
    # which of their partitions the instance holds, asked of these keys alone (docs/scale.md)
    asked = [p for t in doomed for p in t.partitions]
    known = set(partition_storage_ids(context.instance, documents_partitions.name, asked))
    for t in doomed:
        rows = sum(before[d].rows for d in t.document_ids if d in before)
        for partition in t.partitions or [None]:
            context.log_event(
                dg.AssetObservation(
                    asset_key=INDEX_KEY,
                    partition=partition if partition in known else None,
                    metadata={
                        "status": "purged" if t.if_gone else "purged: a copy under another tenant",
                        "document_key": t.key,
                        "document_ids": dg.MetadataValue.json(list(t.document_ids)),
                        # whose document it was (a document id is `tenant:uri`): the notifications' addressees
                        "tenants": dg.MetadataValue.json(sorted({document_tenant(d, t.uri) for d in t.document_ids})),
                        "rows_deleted": rows,
                    },
                )
            )
        forget_images(object_store, analysis_store, t.uri, t.key, t.document_ids)
        for partition in t.partitions:
            work_io_manager.delete_partition(INTERMEDIATE_ASSETS, partition)
            if partition in known:
                context.instance.delete_dynamic_partition(documents_partitions.name, partition)
    context.log.info(f"purged {len(doomed)} document(s), {deleted} row(s); {len(back)} came back")


@dg.job(
    name="purge_documents",
    description="Purge the rows, partitions and intermediate values of documents deleted from the source.",
)
def purge_documents_job():
    purge_deleted_documents()


# --- the deletion guard: what it holds, and a person's confirmation ------------------------------

CONFIRM_JOB, CONFIRM_OP = "confirm_deletions", "confirm_held_deletions"
GUARD_CHECK = "deletion_guard"  # a check of index_reconciliation: failed while deletions are held


def guard_root(root: str) -> str:
    """A root as the sensors name it (`s3://BUCKET`, a folder's absolute path) from it, from
    the source URI (`s3://BUCKET/prefix/`), or from a relative folder path."""
    return source_root(root.strip())[0]


def confirm_command(root: str) -> str:
    return f"rag-assets purge --confirm {shlex.quote(root)}"


def held_deletions(
    sync_config: SyncConfig, embedder: Embedder, rag_config: RagConfig, root: str, pending: bool = True
) -> dict[str, float]:
    """The deletions the guard holds under `root` for this index identity: key -> since when
    (with `pending`, also those of ticks Dagster has not recorded yet)."""
    path = state_file(sync_config, "source", root, identity_of(sync_config, embedder, rag_config))
    if not path.exists():
        return {}
    with SourceState(path, CONFIRM_JOB) as state:
        return state.held(pending=pending)


def confirmed_at(instance: dg.DagsterInstance, root: str) -> float | None:
    """When a person last confirmed the deletions held under `root` (the start of the newest
    successful confirm_deletions run for it): deletions held since then need another."""
    confirmations = dg.RunsFilter(job_name=CONFIRM_JOB, statuses=[dg.DagsterRunStatus.SUCCESS])
    for record in instance.get_run_records(confirmations, limit=100):  # newest first
        config = record.dagster_run.run_config.get("ops", {}).get(CONFIRM_OP, {}).get("config", {})
        try:
            if guard_root(str(config.get("root", ""))) == root:
                return record.start_time or record.create_timestamp.timestamp()
        except ValueError:
            continue
    return None


def guard_metadata(root: str, held: Iterable[str], tenants: Mapping[str, int] | None = None, **counts) -> dict:
    """What the check, the observations and the log say of what the guard holds under `root`."""
    held = sorted(held)
    return {
        "root": root,
        "held": len(held),
        **counts,
        **({"tenants": dg.MetadataValue.json(dict(sorted(tenants.items())))} if tenants else {}),
        "keys": dg.MetadataValue.json(held[:20]),
        **({"confirm": confirm_command(root)} if held else {}),
    }


class ConfirmConfig(dg.Config):
    root: str  # as the sensors name it: s3://BUCKET or the folder's absolute path (the source URI will do)


def confirm_run_config(root: str) -> dict:
    return {"ops": {CONFIRM_OP: {"config": {"root": root}}}}


@dg.op(name=CONFIRM_OP)
def confirm_held_deletions(
    context: dg.OpExecutionContext,
    config: ConfirmConfig,
    object_store: ObjectStore,
    sync_config: SyncConfig,
    embedder: Embedder,
    rag_config: RagConfig,
) -> None:
    """A person's word that the deletions the guard holds under a root are real: its success
    lets the sensors purge them (those held when this run started, no later ones). Purges
    nothing itself, and confirms nothing while the source cannot be listed."""
    root = guard_root(config.root)
    source, listing = source_root(sync_config.source_uri)
    where = listing if source == root else root
    if not where.startswith("s3://") and not Path(where).is_dir():
        raise dg.Failure(f"{where} does not exist (is it mounted?): nothing is confirmed while it cannot be listed")
    try:
        object_store.list_page(where)
    except Exception as e:  # an expired credential, a bucket gone: nothing to confirm against
        raise dg.Failure(f"{where} cannot be listed ({describe_error(e)}): nothing confirmed") from e
    record = context.instance.get_run_record_by_id(context.run_id)
    cutoff = (record.start_time if record else None) or time.time()
    held = {k: at for k, at in held_deletions(sync_config, embedder, rag_config, root).items() if at <= cutoff}
    if not held:
        raise dg.Failure(f"the deletion guard holds nothing under {root}: nothing to confirm")
    context.log.info(
        f"confirmed {len(held)} held deletion(s) under {root} (e.g. {', '.join(sorted(held)[:5])}): "
        "the sensors purge them on their next tick"
    )
    metadata = {"status": "deletion guard: confirmed", **guard_metadata(root, held)}
    context.log_event(dg.AssetObservation(asset_key=INDEX_KEY, metadata=metadata))


@dg.job(
    name=CONFIRM_JOB,
    description=(
        "Confirm a mass delete the deletion guard holds under a root (config: root, as the sensors' message names it); "
        "the sensors then purge what was held. Same as `rag-assets purge --confirm ROOT`."
    ),
)
def confirm_deletions_job():
    confirm_held_deletions()


def day_record(ingest_runs: Sequence[dg.DagsterRun], purge_runs: Sequence[dg.DagsterRun]) -> dict:
    """What the planners asked for in one day's runs (from their tags), and how the runs ended."""
    documents, runs = Counter(), Counter()
    for run in ingest_runs:
        launcher = run.tags.get("rag/launched_by", "ui or other")
        runs[f"ingest {run.status.value.lower()}"] += 1
        for reason in REASONS:
            documents[f"{launcher}: {reason}"] += int(run.tags.get(f"rag/{reason}", 0))
    purged = sum(int(run.tags.get(PURGED_TAG, 0)) for run in purge_runs if run.status == dg.DagsterRunStatus.SUCCESS)
    runs.update(f"purge {run.status.value.lower()}" for run in purge_runs)
    return {
        "documents_requested": dict(sorted(documents.items())),
        "runs": dict(sorted(runs.items())),
        "purged": purged,
    }


@dg.asset(partitions_def=daily_partitions, group_name="maintenance", kinds={"dagster"})
def index_reconciliation(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    """For one day, the record of what the sensors did to keep the index equal to the source:
    documents asked for because they were new, changed, missing from the index (repairs) or
    made by another pipeline, and again after a failed or lost attempt (repairs); documents
    purged; how the runs ended. Read from Dagster's run records, so it can be backfilled over any day they cover."""
    window = context.partition_time_window
    between = {"created_after": window.start, "created_before": window.end}
    ingest = [
        r.dagster_run
        for r in context.instance.get_run_records(dg.RunsFilter(job_name=ingest_documents_job.name, **between))
    ]
    purge = [
        r.dagster_run
        for r in context.instance.get_run_records(dg.RunsFilter(job_name=purge_documents_job.name, **between))
    ]
    record = day_record(ingest, purge)
    requested = {k: n for k, n in record["documents_requested"].items() if n}
    repairs = sum(n for k, n in requested.items() if k.endswith((": missing", ": retry")))
    context.log.info(
        f"{window.start.date()}: {sum(requested.values())} document request(s), {repairs} repair(s), "
        f"{record['purged']} purged"
    )
    return dg.MaterializeResult(
        metadata={
            "documents_requested": sum(requested.values()),
            "repairs": repairs,
            "purged": record["purged"],
            "by_launcher_and_reason": dg.MetadataValue.json(requested),
            "runs": dg.MetadataValue.json(record["runs"]),
        }
    )


@dg.asset_check(
    asset=index_reconciliation,
    name=GUARD_CHECK,
    description=(
        "Fails while the deletion guard holds a mass delete (more than RAG_PURGE_GUARD_FRACTION of the documents under "
        "the source gone at once): nothing of it is purged until the objects come back or a person confirms it "
        "(`rag-assets purge --confirm ROOT`, or the confirm_deletions job). The sensors report it; executing it reads "
        "what is held now."
    ),
)
def deletion_guard(sync_config: SyncConfig, embedder: Embedder, rag_config: RagConfig) -> dg.AssetCheckResult:
    root = guard_root(sync_config.source_uri)
    held = held_deletions(sync_config, embedder, rag_config, root)  # with the last ticks' holds
    return dg.AssetCheckResult(passed=not held, metadata=guard_metadata(root, held))


# The daily record is a record: the guard's check is the sensors' (and the UI's) to evaluate.
record_job = dg.define_asset_job(
    "record_reconciliation",
    selection=dg.AssetSelection.assets(index_reconciliation).without_checks(),
    partitions_def=daily_partitions,
)


@dg.schedule(
    name="daily_reconciliation_record",
    job=record_job,
    cron_schedule="15 0 * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
def record_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    """Each night, the record of the day before (today's is there to backfill any time)."""
    day = (context.scheduled_execution_time - timedelta(days=1)).date().isoformat()
    return dg.RunRequest(run_key=day, partition_key=day)


@dg.definitions
def defs() -> dg.Definitions:
    """The reconciliation record, the deletion guard, and the purge and confirmation jobs."""
    return dg.Definitions(
        assets=[index_reconciliation],
        asset_checks=[deletion_guard],
        jobs=[purge_documents_job, confirm_deletions_job, record_job],
        schedules=[record_schedule],
    )

