"""Ingestion as people run it: find documents, add their partitions, materialize them in
batched ranged runs through Dagster, and summarize what happened (`rag-assets ingest`)."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import asdict, dataclass, field
from pathlib import Path

import dagster as dg

from rag_assets.dagster_compat import (
    IN_CHUNKS,
    PARTITION_RANGE_END_TAG,
    PARTITION_RANGE_START_TAG,
    free_concurrency_slots_for_run,
    partition_keys_between,
    partition_keys_of_the_run,
    partition_storage_ids,
)
from rag_assets.lib.batching import in_storage_order, plan_batch_members
from rag_assets.lib.errors import FAILED_PARTITIONS, error_chain, error_summary
from rag_assets.lib.folders import NOT_FOLLOWED
from rag_assets.lib.keys import DocRef, encode_partition_key, sidecar_keys, tenant_from_key
from rag_assets.lib.reconcile import is_current, pipeline_of, wanted_documents
from rag_assets.partitions import documents_partitions, register_roots
from rag_assets.resources.object_store import ObjectStore, split_s3_uri
from rag_assets.resources.vector_stores import IndexedDocument

log = logging.getLogger(__name__)
QUIET_RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
LAUNCHED_BY_TAG = "rag/launched_by"  # who launched a run: cli or a sensor
PROCESS_TAG = "rag/process"  # host:pid of the command line process that runs a run in itself


@dataclass
class IngestReport:
    """The `--json` shape of `rag-assets ingest` (docs/commands.md, ingest), plus the runs it made."""

    ingested: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failed: list[dict] = field(default_factory=list)
    chunks: int = 0
    vectors: int = 0
    embedding_calls: int = 0
    runs: list[str] = field(default_factory=list)

    def as_json(self) -> dict:
        out = asdict(self)
        out.pop("runs")
        return out


def discover(
    sources: Sequence[str], store: ObjectStore, tenant: str | None, rule: str
) -> tuple[dict[DocRef, str], list[dict]]:
    """Documents named by `sources` (files, folders, s3:// prefixes), each with its source
    version (`Wanted.etag`: the object's and its sidecar's). Keys are relative to the source:
    the path below a folder, the S3 key in a bucket."""
    refs, failed = {}, []
    for source in sources:
        if source.startswith("s3://"):
            bucket, _ = split_s3_uri(source)
            root, objects = f"s3://{bucket}", {o.key: o for o in store.list(source)}
        else:
            given = Path(source)
            if given.is_symlink():  # the operator's folder or file itself: named, never followed
                failed.append({"key": source, "reason": f"{NOT_FOLLOWED} (give the path it points to)"})
                continue
            # Its folders resolved, the name itself not (a link there was refused above).
            path = given.resolve() if given.name in ("", ".", "..") else given.parent.resolve() / given.name
            if path.is_file():  # the file and whichever of its sidecars exist
                root = str(path.parent)
                heads = {key: store.head(str(path.parent / key)) for key in [path.name, *sidecar_keys(path.name)]}
                objects = {key: o for key, o in heads.items() if o is not None}
            elif path.is_dir():
                root, objects = str(path), {o.key: o for o in store.list(str(path))}
            else:
                failed.append({"key": source, "reason": "no such file or folder"})
                continue
        for key, want in wanted_documents(objects).items():
            try:
                refs[DocRef(tenant or tenant_from_key(key, rule), root, key)] = want.etag
            except ValueError as e:
                failed.append({"key": key, "reason": str(e).removeprefix(f"{key}: ")})
    return dict(sorted(refs.items())), failed


def current_documents(
    refs: Mapping[DocRef, str],
    indexed: Mapping[str, IndexedDocument],
    pipeline: str | Callable[[str], str],
    materialized: Callable[[list[str]], AbstractSet[str]],
) -> dict[str, IndexedDocument]:
    """Partition key -> what the index holds, for the documents with nothing to do: the index
    holds their source version cut by this pipeline, and this instance has their lineage
    (`materialized` says which of the partitions it is asked about were materialized)."""
    held_current = {}
    for ref, etag in refs.items():
        held = indexed.get(ref.document_id)
        if etag and is_current(held, etag, pipeline_of(pipeline, ref.key)):
            held_current[encode_partition_key(ref)] = held
    lineage = materialized(list(held_current)) if held_current else set()
    return {key: held for key, held in held_current.items() if key in lineage}


def materialized_among(instance: dg.DagsterInstance, asset_key: dg.AssetKey, partitions: Sequence[str]) -> set[str]:
    """Those of `partitions` of `asset_key` that have been materialized, asked about in pages
    of IN_CHUNKS (500): the asset's other partitions (a million) are not read (docs/decisions.md D38)."""
    found: set[str] = set()
    for start in range(0, len(partitions), IN_CHUNKS):
        part = partitions[start : start + IN_CHUNKS]
        records_filter = dg.AssetRecordsFilter(asset_key=asset_key, asset_partitions=part)
        cursor, missing = None, set(part)
        while missing:
            page = instance.fetch_materializations(records_filter, limit=len(part), cursor=cursor)
            found.update(r.partition_key for r in page.records if r.partition_key in missing)
            missing -= found
            if not page.has_more:
                break
            cursor = page.cursor
    return found


def failed_documents(instance: dg.DagsterInstance, run_id: str) -> list[dict] | None:
    """The unreadable documents a failed ingest run named ({partition, key, reason}), or None
    if it failed for another reason."""
    for record in instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_FAILURE).records:
        data = record.event_log_entry.dagster_event.step_failure_data
        if data.user_failure_data and FAILED_PARTITIONS in data.user_failure_data.metadata:
            return list(data.user_failure_data.metadata[FAILED_PARTITIONS].value)
    return None


def _run_error(result: dg.ExecuteInProcessResult) -> str:
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data.error:
            return error_summary(error_chain(event.step_failure_data.error)) or f"run {result.run_id} failed"
    return f"run {result.run_id} failed"


def this_process() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def alive(process: str) -> bool:
    """Whether a `host:pid` of this host is a running process (another host's: assumed so)."""
    host, _, pid = process.rpartition(":")
    if host != socket.gethostname():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError):
        return True
    return True


def fail_orphaned_runs(instance: dg.DagsterInstance) -> list[str]:
    """Runs a command line process ran in itself and that process is gone (killed): marked
    failed, and their concurrency slots freed, else the index writers' pool stays taken
    (a daemon-launched run is the run monitoring's; see docs/architecture.md)."""
    orphans = []
    for record in instance.get_run_records(
        dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED])
    ):
        run = record.dagster_run
        if PROCESS_TAG in run.tags and not alive(run.tags[PROCESS_TAG]):
            instance.report_run_failed(run, f"the rag-assets process that ran it ({run.tags[PROCESS_TAG]}) is gone")
            free_concurrency_slots_for_run(instance, run.run_id)
            orphans.append(run.run_id)
    return orphans


# Dagster's opt-in (dagster-io/dagster#29288): a ranged run plans each asset in one event that
# names its partitions, instead of one event per partition and asset.
PLANNED_SUBSET_ENV = "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS"


@contextlib.contextmanager
def planned_once_per_asset() -> Iterator[None]:
    """While this process creates a ranged run: one ASSET_MATERIALIZATION_PLANNED event per
    asset, not one per document and asset (4 of the ~10 events a document cost in the SQLite
    event log, docs/decisions.md D33). Dagster reads the variable when it creates a run. What
    it costs: the UI does not mark the partitions of a command line run in progress while it
    runs, nor failed if it fails (the command names each failure itself). Runs the daemon or
    the UI launch keep Dagster's default: there the UI's marks are what a person watches."""
    before = os.environ.get(PLANNED_SUBSET_ENV)
    os.environ[PLANNED_SUBSET_ENV] = "true"
    try:
        yield
    finally:
        if before is None:
            del os.environ[PLANNED_SUBSET_ENV]
        else:
            os.environ[PLANNED_SUBSET_ENV] = before


def materialize_documents(
    keys: Iterable[str],
    *,
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    batch_size: int,
    on_progress: Callable[[int], None] = lambda n: None,
) -> tuple[dict[str, dict], list[dict], list[str]]:
    """Materialize document partitions in ranged runs of at most `batch_size`.

    A run writes every document of its batch it can read and then fails naming the others
    (unreadable, each with its reason). A run that fails otherwise (a store or model error)
    fails its whole batch with the run's error. Returns the index metadata of each
    materialized partition, the failures, and the run ids.
    """
    job = defs.resolve_job_def("ingest_documents")
    fail_orphaned_runs(instance)
    keys = list(dict.fromkeys(keys))
    name = documents_partitions.name
    for start in range(0, len(keys), 10_000):  # Dagster adds those it does not hold yet, a statement a piece
        instance.add_dynamic_partitions(name, keys[start : start + 10_000])
    # The keys in Dagster's order, and where others lie between them, without loading every
    # key of the definition (docs/decisions.md D38).
    ids = partition_storage_ids(instance, name, keys)
    ordered = in_storage_order(ids, lambda low, high: bool(partition_keys_between(instance, name, low, high, limit=1)))
    done, failed, runs = {}, [], []
    for batch in plan_batch_members(ordered, set(keys), batch_size):
        first, last = batch[0], batch[-1]
        with partition_keys_of_the_run(instance, name, first, last), planned_once_per_asset():
            result = job.execute_in_process(
                instance=instance,
                run_config=QUIET_RUN_CONFIG,
                tags={
                    PARTITION_RANGE_START_TAG: first,
                    PARTITION_RANGE_END_TAG: last,
                    LAUNCHED_BY_TAG: "cli",
                    PROCESS_TAG: this_process(),
                },
                raise_on_error=False,
            )
        runs.append(result.run_id)
        unread = failed_documents(instance, result.run_id) or []
        if not result.success and not unread:  # not the documents' fault (a store or model error): the batch failed
            reason = _run_error(result)
            failed.extend({"partition": k, "reason": reason} for k in batch)
            on_progress(len(batch))
            continue
        failed.extend(unread)
        for event in result.get_asset_materialization_events():
            mat = event.materialization
            if mat.asset_key.path[-1] == "vector_index" and mat.partition:
                done[mat.partition] = {k: v.value for k, v in mat.metadata.items()}
        on_progress(len(batch))
    return done, failed, runs


def ingest(
    refs: Mapping[DocRef, str],
    *,
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    batch_size: int = 50,
    on_progress: Callable[[int], None] = lambda n: None,
) -> IngestReport:
    """Ingest the documents `discover` found (ref -> source version). Those the index already
    holds at that version, cut by this pipeline, launch no run: one listing of the store
    decides (docs/architecture.md, The index is the truth)."""
    keys = {encode_partition_key(ref): ref for ref in refs}
    register_roots(instance, {ref.root for ref in refs})
    store, embedder, pipeline = (
        defs.resources["vector_store"],
        defs.resources["embedder"],
        defs.resources["rag_config"].pipeline_for,
    )
    try:
        indexed = (
            store.list_documents(embedder.model_id, embedder.dimension, document_ids=[r.document_id for r in refs])
            if refs
            else {}
        )
    # a shortcut only: the runs check the index themselves, and report what fails
    except Exception as exc:  # noqa: BLE001 - the reason above
        log.warning("could not list the index (%s): every document runs", exc)
        indexed = {}
    current = current_documents(
        refs, indexed, pipeline, lambda keys: materialized_among(instance, dg.AssetKey("vector_index"), keys)
    )
    on_progress(len(current))
    done, failed, runs = materialize_documents(
        [k for k in keys if k not in current],
        defs=defs,
        instance=instance,
        batch_size=batch_size,
        on_progress=on_progress,
    )
    report = IngestReport(runs=runs)
    report.failed = [{"key": keys[f["partition"]].key, "reason": f["reason"]} for f in failed]
    for key, ref in keys.items():
        if key in current:
            report.unchanged.append(ref.key)
            report.chunks += current[key].rows
            continue
        meta = done.get(key)
        if meta is None or meta["status"] in ("unreadable", "failed"):  # in report.failed, with its reason
            continue
        if meta["status"].startswith("superseded"):
            what = meta["status"].partition(": ")[2]
            report.failed.append(
                {"key": ref.key, "reason": f"{what} while it was being ingested; not indexed (run again)"}
            )
            continue
        (report.ingested if meta["status"] == "ingested" else report.unchanged).append(ref.key)
        report.chunks += meta["chunks"]
        report.vectors += meta["vectors_written"]
    report.embedding_calls = _embedding_calls(instance, runs)
    return report


def _embedding_calls(instance: dg.DagsterInstance, run_ids: Sequence[str]) -> int:
    """Calls made by the embeddings steps of these runs (a call can carry several documents)."""
    total = 0
    for run_id in run_ids:
        for record in instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records:
            mat = record.event_log_entry.asset_materialization
            if mat and mat.asset_key.path[-1] == "embeddings" and "batch_embedding_calls" in mat.metadata:
                total += mat.metadata["batch_embedding_calls"].value
                break  # the batch-wide count is repeated on each partition's event
    return total
