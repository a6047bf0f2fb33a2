"""The document family: objects in S3 or a folder, one dynamic partition each."""


import json

import dagster as dg

from rag_assets.assets.pipeline import SINGLE_RUN, TRANSIENT_RETRIES, SourceDocument, build_index_pipeline
from rag_assets.lib.hashing import content_hash
from rag_assets.lib.keys import DocRef, decode_partition_key, sidecar_keys
from rag_assets.lib.parsing import BadDocument, parse_document
from rag_assets.partitions import documents_partitions
from rag_assets.resources.config import RagConfig
from rag_assets.resources.object_store import ObjectStore

FAILED_PARTITIONS = "failed_partitions"


def read_sidecar(store: ObjectStore, ref: DocRef) -> tuple[dict, bytes | None]:
    """Fields and bytes of the document's `.meta.json` sidecar (seed 004), if it has one."""
    for key in sidecar_keys(ref.key):
        data = store.read_optional(DocRef(ref.tenant, ref.root, key).uri)
        if data is None:
            continue
        try:
            fields = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise BadDocument(key, f"sidecar is not valid JSON ({e})") from None
        if not isinstance(fields, dict):
            raise BadDocument(key, "sidecar must hold a JSON object")
        return fields, data
    return {}, None


def load_document(store: ObjectStore, ref: DocRef, csv_text_column: str) -> SourceDocument:
    try:
        data, etag = store.read(ref.uri)
    except FileNotFoundError:
        raise BadDocument(ref.key, "the object no longer exists in the source") from None
    parsed = parse_document(ref.key, data, csv_text_column=csv_text_column)
    fields, sidecar = read_sidecar(store, ref)
    return SourceDocument(ref, content_hash(ref.tenant, data, sidecar), etag, len(data), parsed, fields)


@dg.asset(
    partitions_def=documents_partitions,
    backfill_policy=SINGLE_RUN,
    group_name="documents",
    io_manager_key="work_io_manager",
    kinds={"s3", "pdf"},
    retry_policy=TRANSIENT_RETRIES,
)
def raw_documents(context: dg.AssetExecutionContext, object_store: ObjectStore, rag_config: RagConfig) -> dg.MaterializeResult:
    """Each document's bytes, hashed (sha256 over tenant + bytes) and parsed into pages or rows.

    A document that cannot be read fails the run with its name and reason; `rag-assets ingest`
    and the sensors then re-run the rest of the batch without it.
    """
    out, failed = {}, []
    keys = context.partition_keys
    for n, key in enumerate(keys, start=1):
        ref = decode_partition_key(key)
        try:
            doc = load_document(object_store, ref, rag_config.csv_text_column)
        except BadDocument as e:
            context.log.error(f"{ref.uri}: {e.reason}")
            failed.append({"partition": key, "key": ref.key, "reason": e.reason})
            continue
        out[key] = doc
        if doc.parsed.warnings:
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
    return dg.MaterializeResult(
        value=out,
        metadata={
            "batch_documents": len(out),
            "batch_bytes": sum(d.size for d in out.values()),
            "batch_pages": sum(d.parsed.pages or 0 for d in out.values()),
            "batch_pdf_warnings": sum(d.parsed.warnings for d in out.values()),
        },
    )


document_assets = [raw_documents, *build_index_pipeline(source=raw_documents, partitions_def=documents_partitions)]

ingest_documents_job = dg.define_asset_job(
    "ingest_documents",
    selection=dg.AssetSelection.assets(*document_assets),
    partitions_def=documents_partitions,
    description="Read, chunk, embed and index a batch of documents (one contiguous range of partitions).",
)
