"""The document family: objects in S3 or a folder, one dynamic partition each."""

import errno
import functools
import json
from collections.abc import Callable

import dagster as dg

from rag_assets.components.index_pipeline import Family, Unread, build_index_pipeline
from rag_assets.defs.documents.images import read_image_document
from rag_assets.lib import folders
from rag_assets.lib.display import printable
from rag_assets.lib.errors import describe_error
from rag_assets.lib.hashing import content_hash
from rag_assets.lib.identity import source_etag
from rag_assets.lib.images import is_image
from rag_assets.lib.keys import DocRef, check_tenant, decode_partition_key, sidecar_keys
from rag_assets.lib.parsing import READERS, BadDocument, ParsedDocument, SourceDocument, user_fields
from rag_assets.parse_sandbox import ParseSandbox
from rag_assets.partitions import documents_partitions, known_roots
from rag_assets.resources.config import RagConfig
from rag_assets.resources.image_analysis import AnalysisStore, ImageAnalyzer
from rag_assets.resources.object_store import ObjectStore
from rag_assets.resources.vector_stores import store_kind
from rag_assets.settings import loading_settings

RAW_DOCUMENTS = dg.AssetKey("raw_documents")
# The document family's assets whose values the IO manager keeps per partition (a purge deletes them).
INTERMEDIATE_ASSETS = [RAW_DOCUMENTS, dg.AssetKey("chunks"), dg.AssetKey("embeddings")]

ingest_documents_job = dg.define_asset_job(
    "ingest_documents",
    selection=dg.AssetSelection.assets("raw_documents", "chunks", "embeddings", "vector_index"),
    partitions_def=documents_partitions,
    description="Read, chunk, embed and index a batch of documents (one contiguous range of partitions).",
)


SIDECAR_MAX_BYTES = 1 << 20  # a sidecar is a few fields; more is refused


def find_sidecar(store: ObjectStore, ref: DocRef) -> tuple[str, bytes, str] | None:
    """Key, bytes and etag of the document's `.meta.json` sidecar, if it has one."""
    for key in sidecar_keys(ref.key):
        try:
            found = store.read_optional(DocRef(ref.tenant, ref.root, key).uri, SIDECAR_MAX_BYTES)
        except folders.TooLarge as e:
            raise BadDocument(ref.key, f"its sidecar {key} is larger than {e.limit:,} bytes") from None
        except folders.NotFollowed as e:
            raise BadDocument(ref.key, f"its sidecar {key}: {e.reason}") from None
        if found is not None:
            return key, found[0], found[1].etag
    return None


def sidecar_fields(key: str, data: bytes) -> tuple[dict, list[str]]:
    """The fields a sidecar adds to every row, and the names it may not set (the project's own:
    lib.parsing.SYSTEM_FIELDS). Raises BadDocument naming the sidecar."""
    try:
        fields = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BadDocument(key, f"its sidecar {key} is not valid JSON ({e})") from None
    except RecursionError:
        raise BadDocument(key, f"its sidecar {key} is nested too deeply to read") from None
    if not isinstance(fields, dict):
        raise BadDocument(key, f"its sidecar {key} must hold a JSON object")
    return user_fields(fields)


def _read_error(ref: DocRef, error: Exception) -> BadDocument:
    """A failure to read a document's bytes, as its BadDocument: what is wrong with the object
    at this version (a link, a name too long, too large) stays wrong until it changes; anything
    else (a network error, permissions, a throttled S3) is tried again later."""
    if isinstance(error, folders.NotFollowed):
        return BadDocument(ref.key, error.reason)
    if isinstance(error, folders.TooLarge):
        return BadDocument(
            ref.key, f"{error.size:,} bytes, more than the limit of {error.limit >> 20:,} MiB (RAG_MAX_DOCUMENT_MB)"
        )
    if getattr(error, "errno", None) in (errno.ENAMETOOLONG, errno.EINVAL, errno.EISDIR):
        return BadDocument(ref.key, f"cannot be read ({describe_error(error)})")
    return BadDocument(
        ref.key, f"could not be fetched ({describe_error(error)}); a later run tries again", transient=True
    )


def load_document(
    store: ObjectStore,
    ref: DocRef,
    csv_text_column: str,
    sandbox: ParseSandbox,
    read_image: Callable[[DocRef, bytes], ParsedDocument] | None = None,
    max_bytes: int | None = None,
    **limits: int,
) -> SourceDocument | None:
    """The document, read and parsed within the sandbox's time and memory limits (an image by
    `read_image`: defs.documents.images.read_image_document, in the same sandbox); None when its
    object is gone (deleted since it was asked for: the purge removes it). Raises BadDocument,
    with the source etag it was read at, for anything that goes wrong with this document: one
    bad document never fails another."""
    etag = None
    try:
        try:
            data, obj = store.read(ref.uri, max_bytes)
        except FileNotFoundError:
            return None
        # any error of the store is this document's failure; _read_error says if a later run tries again
        except Exception as e:  # noqa: BLE001 - the reason above
            raise _read_error(ref, e) from None
        etag = obj.etag
        sidecar = find_sidecar(store, ref)
        etag = source_etag(obj.etag, sidecar[2] if sidecar else None)
        fields, refused = sidecar_fields(*sidecar[:2]) if sidecar else ({}, [])
        if is_image(ref.key):
            if read_image is None:
                raise BadDocument(ref.key, "an image, and no image analyzer was given to read it")
            parsed = read_image(ref, data)
        else:
            parsed = sandbox.parse(ref.key, data, csv_text_column=csv_text_column, **limits)
    except BadDocument as e:
        e.etag = etag
        raise
    except Exception as e:  # noqa: BLE001 - the analysis store, the analyzer's client...: not the document's fault
        error = BadDocument(
            ref.key, f"could not be read ({describe_error(e)}); a later run tries again", transient=True
        )
        error.etag = etag
        raise error from None
    return SourceDocument(
        ref,
        content_hash(ref.tenant, data, sidecar[1] if sidecar else None),
        etag,
        obj.version,
        len(data),
        parsed,
        fields,
        refused_fields=tuple(refused),
    )


def unreadable_observation(partition: str, reason: str, etag: str | None, pipeline: str) -> dg.AssetObservation:
    """What raw_documents records of a document it cannot read: the planners do not ask for it
    again until its source version, the pipeline or the file types read change
    (defs.sync.sensors.unreadable_documents)."""
    return dg.AssetObservation(
        asset_key=RAW_DOCUMENTS,
        partition=partition,
        metadata={
            "status": "unreadable",
            "reason": reason,
            "source_etag": etag or "",
            "pipeline": pipeline,
            "readers": READERS,
        },
    )


def read_partition(
    context: dg.AssetExecutionContext,
    key: str,
    roots: dict[str, str],
    object_store: ObjectStore,
    rag_config: RagConfig,
    sandbox: ParseSandbox,
    read_image: Callable[[DocRef, bytes], ParsedDocument],
) -> list:
    """One document partition's value: [its document], [] when its object is gone, or Unread."""
    try:
        ref = decode_partition_key(key, roots)
        check_tenant(ref.tenant)
    except ValueError as e:
        context.log.error(f"{printable(key)}: not a document partition key this instance can read ({printable(e)})")
        return Unread(key, f"not a readable partition key ({e})")
    try:
        doc = load_document(
            object_store,
            ref,
            rag_config.csv_text_column,
            sandbox,
            read_image,
            max_bytes=rag_config.max_document_mb << 20 if rag_config.max_document_mb else None,
            **rag_config.parse_limits,
        )
    except BadDocument as e:
        context.log.error(f"{printable(ref.uri)}: {printable(e.reason)}")
        if not e.transient:
            context.log_event(unreadable_observation(key, e.reason, e.etag, rag_config.pipeline_for(ref.key)))
        return Unread(ref.key, e.reason, e.transient)
    if doc is None:
        context.log.info(f"{printable(ref.uri)}: deleted since it was asked for; the purge removes it")
        return []
    if doc.refused_fields:
        refused = ", ".join(map(printable, doc.refused_fields))
        context.log.warning(f"{printable(ref.key)}: its sidecar may not set {refused} (the project's own fields)")
    if doc.parsed.warnings:
        context.log.info(f"{printable(ref.key)}: pypdf reported {doc.parsed.warnings} decoding warning(s)")
    return [doc]


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
        rows; an image analyzed into text, its thumbnail written under the project's prefix.

        A document that cannot be read, for whatever reason, holds no document here (`Unread`,
        with the reason) and is recorded as unreadable at its version (unless the failure may
        pass: a fetch or an analyzer that failed; then the planners ask again); the batch's
        other documents go on, and vector_index fails the run naming it once they are written.
        A partition whose object is gone by now holds no document (nothing failed).
        """
        out: dict[str, list] = {}
        keys = context.partition_keys
        roots = known_roots(context.instance)
        # Every document is read in a worker process, within time and memory limits.
        with ParseSandbox(rag_config.max_seconds_per_document, rag_config.max_memory_mb) as sandbox:
            read_image = functools.partial(
                read_image_document,
                sandbox=sandbox,
                object_store=object_store,
                analyzer=image_analyzer,
                analyses=analysis_store,
                max_pixels=rag_config.max_image_pixels,
            )
            for n, key in enumerate(keys, start=1):
                out[key] = read_partition(context, key, roots, object_store, rag_config, sandbox, read_image)
                if n % 25 == 0:
                    context.log.info(f"read {n}/{len(keys)} documents")
        failed = [v for v in out.values() if isinstance(v, Unread)]
        if failed:
            context.log.error(
                f"{len(failed)} of {len(keys)} document(s) could not be read; the others go on:\n"
                + "\n".join(f"  {printable(f.key)}: {printable(f.reason)}" for f in failed)
            )
        # Per-document figures go on vector_index's materialization: the lineage record (see
        # docs/decisions.md D7 for why not on every asset).
        read = [d for docs in out.values() for d in docs]
        return dg.MaterializeResult(
            value=out,
            metadata={
                "batch_documents": len(read),
                "batch_unread": len(failed),
                "batch_gone": len(out) - len(read) - len(failed),
                "batch_bytes": sum(d.size for d in read),
                "batch_pages": sum(d.parsed.pages or 0 for d in read),
                "batch_pdf_warnings": sum(d.parsed.warnings for d in read),
                "batch_images": sum(d.parsed.kind == "image" for d in read),
            },
        )

    return raw_documents


@dg.definitions
def defs() -> dg.Definitions:
    """The document family's assets and job. A backfill of many documents from the UI runs as
    ranged runs of RAG_BATCH_SIZE documents each (the model loads once per run)."""
    settings = loading_settings()
    policy = dg.BackfillPolicy.multi_run(max_partitions_per_run=settings.batch_size)
    raw = build_raw_documents(policy)
    family = Family(
        partitions_def=documents_partitions,
        backfill_policy=policy,
        store_kind=store_kind(settings.index_uri),
        golden_sets=bool(settings.golden_sets),
    )
    pipeline = build_index_pipeline(source=raw, family=family)
    return dg.Definitions(assets=[raw, *pipeline], jobs=[ingest_documents_job])
