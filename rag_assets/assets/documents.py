"""The document family: objects in S3 or a folder, one dynamic partition each."""

import json
from collections.abc import Callable

import dagster as dg

from rag_assets.assets.images import image_reader
from rag_assets.assets.pipeline import Family, SourceDocument, build_index_pipeline
from rag_assets.lib.hashing import content_hash
from rag_assets.lib.identity import source_etag
from rag_assets.lib.images import is_image
from rag_assets.lib.keys import DocRef, decode_partition_key, sidecar_keys
from rag_assets.lib.parsing import READERS, BadDocument, ParsedDocument, parse_document
from rag_assets.parse_sandbox import ParseSandbox
from rag_assets.partitions import documents_partitions, known_roots
from rag_assets.resources.config import RagConfig
from rag_assets.resources.image_analysis import AnalysisStore, ImageAnalyzer
from rag_assets.resources.object_store import ObjectStore
from rag_assets.resources.vector_stores import store_kind
from rag_assets.settings import Settings

FAILED_PARTITIONS = "failed_partitions"
RAW_DOCUMENTS = dg.AssetKey("raw_documents")
# The document family's assets whose values the IO manager keeps per partition (a purge deletes them).
INTERMEDIATE_ASSETS = [RAW_DOCUMENTS, dg.AssetKey("chunks"), dg.AssetKey("embeddings")]

ingest_documents_job = dg.define_asset_job(
    "ingest_documents",
    selection=dg.AssetSelection.assets("raw_documents", "chunks", "embeddings", "vector_index"),
    partitions_def=documents_partitions,
    description="Read, chunk, embed and index a batch of documents (one contiguous range of partitions).",
)


def find_sidecar(store: ObjectStore, ref: DocRef) -> tuple[str, bytes, str] | None:
    """Key, bytes and etag of the document's `.meta.json` sidecar, if it has one."""
    for key in sidecar_keys(ref.key):
        found = store.read_optional(DocRef(ref.tenant, ref.root, key).uri)
        if found is not None:
            return key, found[0], found[1].etag
    return None


def sidecar_fields(key: str, data: bytes) -> dict:
    try:
        fields = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BadDocument(key, f"sidecar is not valid JSON ({e})") from None
    if not isinstance(fields, dict):
        raise BadDocument(key, "sidecar must hold a JSON object")
    return fields


def load_document(
    store: ObjectStore,
    ref: DocRef,
    csv_text_column: str,
    read_image: Callable[[bytes], ParsedDocument] | None = None,
    sandbox: ParseSandbox | None = None,
    **limits: int,
) -> SourceDocument | None:
    """The document, read and parsed: an image by `read_image` (assets.images.image_reader:
    its limits are its pixels), anything else within the sandbox's time and memory limits;
    None when its object is gone (deleted since it was asked for: the purge removes it).
    Raises BadDocument, with the source etag it was read at."""
    try:
        data, obj = store.read(ref.uri)
    except FileNotFoundError:
        return None
    sidecar = find_sidecar(store, ref)
    etag = source_etag(obj.etag, sidecar[2] if sidecar else None)
    try:
        if read_image is None and sandbox is not None:
            parsed = sandbox.parse(ref.key, data, csv_text_column=csv_text_column, **limits)
        else:
            parsed = parse_document(ref.key, data, csv_text_column=csv_text_column, read_image=read_image, **limits)
        fields = sidecar_fields(*sidecar[:2]) if sidecar else {}
    except BadDocument as e:
        e.etag = etag
        raise
    return SourceDocument(
        ref, content_hash(ref.tenant, data, sidecar[1] if sidecar else None), etag, obj.version, len(data), parsed, fields
    )


def unreadable_observation(partition: str, reason: str, etag: str | None, pipeline: str) -> dg.AssetObservation:
    """What raw_documents records of a document it cannot read: the planners do not ask for it
    again until its source version, the pipeline or the file types read change
    (sensors.s3.unreadable_documents)."""
    return dg.AssetObservation(
        asset_key=RAW_DOCUMENTS,
        partition=partition,
        metadata={"status": "unreadable", "reason": reason, "source_etag": etag or "", "pipeline": pipeline, "readers": READERS},
    )


def build_raw_documents(backfill_policy: dg.BackfillPolicy) -> dg.AssetsDefinition:
    @dg.asset(
        name=RAW_DOCUMENTS.path[-1],
        partitions_def=documents_partitions,
        backfill_policy=backfill_policy,
        group_name="documents",
        io_manager_key="work_io_manager",
        kinds={"s3", "pdf", "image"},
    )
    def raw_documents(
        context: dg.AssetExecutionContext,
        object_store: ObjectStore,
        rag_config: RagConfig,
        image_analyzer: ImageAnalyzer,
        analysis_store: AnalysisStore,
    ) -> dg.MaterializeResult:
        """Each document's bytes, hashed (sha256 over tenant + bytes) and parsed into pages or
        rows; an image analyzed into text, its thumbnail written beside it.

        A document that cannot be read fails the run with its name and reason, and is recorded
        as unreadable at its version (unless the failure was the analyzer's: then a later run
        tries again); the rest of the batch is run again without it. A partition whose object
        is gone by now holds no document (nothing failed).
        """
        out, failed = {}, []
        keys = context.partition_keys
        roots = known_roots(context.instance)
        # Everything but images is read in a worker process, within time and memory limits.
        with ParseSandbox(rag_config.max_seconds_per_document, rag_config.max_memory_mb) as sandbox:
            for n, key in enumerate(keys, start=1):
                ref = decode_partition_key(key, roots)
                reader = None
                if is_image(ref.key):
                    reader = image_reader(
                        ref, object_store=object_store, analyzer=image_analyzer, analyses=analysis_store, max_pixels=rag_config.max_image_pixels
                    )
                try:
                    doc = load_document(object_store, ref, rag_config.csv_text_column, reader, sandbox, **rag_config.parse_limits)
                except BadDocument as e:
                    context.log.error(f"{ref.uri}: {e.reason}")
                    if not e.transient:
                        context.log_event(unreadable_observation(key, e.reason, e.etag, rag_config.pipeline_for(ref.key)))
                    failed.append({"partition": key, "key": ref.key, "reason": e.reason})
                    continue
                out[key] = [doc] if doc is not None else []
                if doc is None:
                    context.log.info(f"{ref.uri}: deleted since it was asked for; the purge removes it")
                elif doc.parsed.warnings:
                    context.log.info(f"{ref.key}: pypdf reported {doc.parsed.warnings} decoding warning(s)")
                if n % 25 == 0:
                    context.log.info(f"read {n}/{len(keys)} documents")
        if failed:
            listed = "\n".join(f"  {f['key']}: {f['reason']}" for f in failed)
            raise dg.Failure(
                description=f"{len(failed)} of {len(keys)} document(s) could not be read:\n{listed}",
                metadata={FAILED_PARTITIONS: dg.MetadataValue.json(failed)},
                allow_retries=False,
            )
        # Per-document figures go on vector_index's materialization: the lineage record (see
        # docs/decisions.md D7 for why not on every asset).
        read = [d for docs in out.values() for d in docs]
        return dg.MaterializeResult(
            value=out,
            metadata={
                "batch_documents": len(read),
                "batch_gone": len(out) - len(read),
                "batch_bytes": sum(d.size for d in read),
                "batch_pages": sum(d.parsed.pages or 0 for d in read),
                "batch_pdf_warnings": sum(d.parsed.warnings for d in read),
                "batch_images": sum(d.parsed.kind == "image" for d in read),
            },
        )

    return raw_documents


def document_definitions(settings: Settings) -> dg.Definitions:
    """The document family's assets and job. A backfill of many documents from the UI runs as
    ranged runs of RAG_BATCH_SIZE documents each (the model loads once per run)."""
    policy = dg.BackfillPolicy.multi_run(max_partitions_per_run=settings.batch_size)
    raw = build_raw_documents(policy)
    family = Family(partitions_def=documents_partitions, backfill_policy=policy, store_kind=store_kind(settings.index_uri))
    pipeline = build_index_pipeline(source=raw, family=family)
    return dg.Definitions(assets=[raw, *pipeline], jobs=[ingest_documents_job])
