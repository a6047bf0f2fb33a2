"""The index pipeline shared by every source family: chunks -> embeddings -> vector_index.

`build_index_pipeline` is the one factory: a family brings its own first asset (documents
from S3, rows from Metabase, images...) whose value per partition is a `SourceDocument`.
"""


import warnings
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import dagster as dg
import numpy as np

from rag_assets.lib.chunking import Chunk, chunk_units
from rag_assets.lib.keys import DocRef
from rag_assets.lib.parsing import ParsedDocument
from rag_assets.resources.config import RagConfig
from rag_assets.resources.embedders import Embedder, EmbeddingCache, embed_with_cache
from rag_assets.resources.object_store import ObjectStore
from rag_assets.resources.vector_stores import MIXED, IndexedDocument, VectorRow, VectorStore, chunk_digest

# Ranged runs are how a batch of documents becomes one run (docs/architecture.md, Batching);
# Dagster marks the parameter beta, which we accept knowingly.
warnings.filterwarnings("ignore", message="Parameter `backfill_policy`", category=dg.BetaWarning)

# Every step that writes or deletes index rows takes a slot of this pool; dagster.yaml gives
# it one slot, so an ingest's write and a purge of the same document never interleave.
INDEX_WRITERS = "rag_index_writers"


@dataclass(frozen=True)
class SourceDocument:
    """A fetched, parsed document: what a family's first asset yields per partition."""

    ref: DocRef
    content_hash: str
    etag: str  # the source etag the index records (lib.identity.source_etag: with the sidecar's)
    version: str  # the object's version when it was read: checked again before the write
    size: int
    parsed: ParsedDocument
    metadata: dict = field(default_factory=dict)  # sidecar fields


@dataclass(frozen=True)
class DocumentEmbeddings:
    model_id: str
    dimension: int
    vectors: np.ndarray  # one row per chunk, in chunk order
    embedded: int  # texts sent to the model for this document
    cache_hits: int
    calls: int  # embedding calls that carried some of this document's text


def document_rows(doc: SourceDocument, chunks: list[Chunk], emb: DocumentEmbeddings, pipeline: str) -> list[VectorRow]:
    return [
        VectorRow(
            chunk_id=c.chunk_id,
            tenant=doc.ref.tenant,
            document_id=doc.ref.document_id,
            document_key=doc.ref.key,
            ordinal=c.ordinal,
            text=c.text,
            content_hash=doc.content_hash,
            model=emb.model_id,
            vector=v,
            page=c.page,
            row=c.row,
            metadata={**c.metadata, **doc.metadata, "char_start": c.char_start, "char_end": c.char_end},
            source_etag=doc.etag,
            pipeline=pipeline,
        )
        for c, v in zip(chunks, emb.vectors, strict=True)
    ]


def holds(entry: IndexedDocument | None, doc: SourceDocument, chunks: list[Chunk], pipeline: str) -> bool:
    """Whether the index holds exactly these chunks of this document, as this source version."""
    return (
        entry is not None
        and entry.content_hash not in (MIXED, "")
        and (entry.content_hash, entry.source_etag, entry.pipeline, entry.rows, entry.chunk_digest)
        == (doc.content_hash, doc.etag, pipeline, len(chunks), chunk_digest(c.chunk_id for c in chunks))
    )


def superseded(object_store: ObjectStore, documents: Mapping[str, SourceDocument]) -> dict[str, str]:
    """Documents whose object is no longer the version that was read (partition -> what it
    is now: "deleted" or "changed"), one HEAD each, many at a time. Their rows are not
    written: the purge or the newer version's run does what is right."""

    def now(doc: SourceDocument) -> str | None:
        found = object_store.head(doc.ref.uri)
        return "deleted" if found is None else None if found.version == doc.version else "changed"

    keys = list(documents)
    with ThreadPoolExecutor(max_workers=16) as pool:
        return {k: s for k, s in zip(keys, pool.map(now, (documents[k] for k in keys)), strict=True) if s}


def split_by_document(counts: dict[str, int], batches: list[list[int]]) -> dict[str, int]:
    """How many embedding calls carried text of each document, given the texts' order."""
    owner: list[str] = [key for key, n in counts.items() for _ in range(n)]
    calls = dict.fromkeys(counts, 0)
    for batch in batches:
        for key in {owner[i] for i in batch}:
            calls[key] += 1
    return calls


def build_index_pipeline(
    *,
    source: dg.AssetsDefinition,
    partitions_def: dg.PartitionsDefinition,
    backfill_policy: dg.BackfillPolicy,
    store_kind: str,
    prefix: str = "",
    group_name: str = "documents",
) -> list[dg.AssetsDefinition]:
    """chunks, embeddings and vector_index assets downstream of `source` (names get `prefix`)."""
    common = dict(partitions_def=partitions_def, backfill_policy=backfill_policy, group_name=group_name)
    chunks_name, embeddings_name, index_name = f"{prefix}chunks", f"{prefix}embeddings", f"{prefix}vector_index"

    @dg.asset(
        name=chunks_name,
        ins={"documents": dg.AssetIn(source.key)},
        io_manager_key="work_io_manager",
        kinds={"python"},
        **common,
    )
    def chunks(context: dg.AssetExecutionContext, documents: dict, rag_config: RagConfig) -> dg.MaterializeResult:
        """Token-aware, overlapping chunks of each document, with stable ids, pages and positions."""
        out = {}
        for key, doc in documents.items():
            units = doc.parsed.units if doc is not None else []  # None: the object was gone when read
            out[key] = chunk_units(
                doc.ref.document_id if doc else "", units, max_tokens=rag_config.chunk_tokens, overlap=rag_config.chunk_overlap
            )
        total = sum(len(c) for c in out.values())
        context.log.info(f"{total} chunks from {len(out)} document(s)")
        return dg.MaterializeResult(
            value=out,
            metadata={
                "batch_documents": len(out),
                "batch_chunks": total,
                "batch_tokens": sum(c.tokens for cs in out.values() for c in cs),
            },
        )

    @dg.asset(
        name=embeddings_name,
        ins={"chunks": dg.AssetIn(chunks_name)},
        io_manager_key="work_io_manager",
        kinds={"python"},
        **common,
    )
    def embeddings(
        context: dg.AssetExecutionContext, chunks: dict, embedder: Embedder, embedding_cache: EmbeddingCache
    ) -> dg.MaterializeResult:
        """One vector per chunk, from the cache when the text was embedded before under this model."""
        texts = [c.text for cs in chunks.values() for c in cs]
        vectors, stats, fresh = embed_with_cache(embedder, embedding_cache, texts)
        calls = split_by_document({key: len(cs) for key, cs in chunks.items()}, stats.batches)
        out, start = {}, 0
        for key, cs in chunks.items():
            part = slice(start, start + len(cs))
            start += len(cs)
            embedded = int(fresh[part].sum())
            out[key] = DocumentEmbeddings(
                embedder.model_id, embedder.dimension, vectors[part], embedded, len(cs) - embedded, calls[key]
            )
        hits = int((~fresh).sum())
        context.log.info(
            f"{len(texts)} vectors: {len(texts) - hits} embedded in {stats.calls} call(s), {hits} from the cache"
            + (f", {stats.retries} retried call(s)" if stats.retries else "")
        )
        return dg.MaterializeResult(
            value=out,
            metadata={
                "model": embedder.model_id,
                "dimension": embedder.dimension,
                "batch_embedding_calls": stats.calls,
                "batch_retries": stats.retries,
                "batch_api_tokens": stats.tokens,
                "batch_cache_hits": hits,
                "batch_seconds_waited": round(stats.seconds_waited, 3),
            },
        )

    @dg.asset(
        name=index_name,
        ins={"documents": dg.AssetIn(source.key), "chunks": dg.AssetIn(chunks_name), "embeddings": dg.AssetIn(embeddings_name)},
        check_specs=[
            dg.AssetCheckSpec(
                "rows_match_chunks",
                asset=index_name,
                description=(
                    "The index holds exactly each written or unchanged document's chunks, of this content, source "
                    "version and pipeline."
                ),
            )
        ],
        kinds={store_kind},
        pool=INDEX_WRITERS,
        **common,
    )
    def vector_index(
        context: dg.AssetExecutionContext,
        documents: dict,
        chunks: dict,
        embeddings: dict,
        vector_store: VectorStore,
        object_store: ObjectStore,
        rag_config: RagConfig,
    ) -> dg.MaterializeResult:
        """Each document's chunks and vectors in the vector store, replaced in one write per batch."""
        first = next(iter(embeddings.values()))
        model_id, dimension, pipeline = first.model_id, first.dimension, rag_config.pipeline
        present = {key: doc for key, doc in documents.items() if doc is not None}
        ids = {key: doc.ref.document_id for key, doc in present.items()}
        before = vector_store.list_documents(model_id, dimension, document_ids=list(ids.values()))
        changed = {key for key, doc in present.items() if not holds(before.get(ids[key]), doc, chunks[key], pipeline)}
        # Under the pool's slot, nothing else writes these documents: what the source holds now
        # is what a purge or a later run would act on. Rows of a version that is gone are not written.
        moved = {key: "deleted" for key in documents.keys() - present.keys()}
        moved.update(superseded(object_store, {k: documents[k] for k in changed}))
        for key, what in sorted(moved.items()):
            if key in present:
                context.log.warning(f"{present[key].ref.uri}: {what} since it was read; not written (a newer run or the purge has it)")
        write = sorted(changed - set(moved))
        written = vector_store.replace_documents(
            model_id, dimension, {ids[k]: document_rows(documents[k], chunks[k], embeddings[k], pipeline) for k in write}
        )
        after = vector_store.list_documents(model_id, dimension, document_ids=list(ids.values()))
        mismatched = []
        for key in documents.keys() - present.keys():
            context.add_asset_metadata({"status": "superseded: deleted"}, partition_key=key)
        for key, doc in present.items():
            if key not in moved and not holds(after.get(ids[key]), doc, chunks[key], pipeline):
                mismatched.append({"key": doc.ref.key, "expected_rows": len(chunks[key]), "found": repr(after.get(ids[key]))})
            status = f"superseded: {moved[key]}" if key in moved else "ingested" if key in changed else "unchanged"
            context.add_asset_metadata(
                {
                    "status": status,
                    "tenant": doc.ref.tenant,
                    "document_key": doc.ref.key,
                    "content_hash": doc.content_hash,
                    "source_etag": doc.etag,
                    "source_version": doc.version,
                    "size_bytes": doc.size,
                    "kind": doc.parsed.kind,
                    "pages": doc.parsed.pages,
                    "chunks": len(chunks[key]),
                    "tokens": sum(c.tokens for c in chunks[key]),
                    "embedding_calls": embeddings[key].calls,
                    "embedded": embeddings[key].embedded,
                    "cache_hits": embeddings[key].cache_hits,
                    "model": model_id,
                    "pipeline": pipeline,
                    "vectors_written": len(chunks[key]) if key in write else 0,
                    **({"sidecar_fields": sorted(doc.metadata)} if doc.metadata else {}),
                },
                partition_key=key,
            )
        context.log.info(
            f"{written} vectors written for {len(write)} document(s); {len(present) - len(changed)} unchanged"
            + (f", {len(moved)} superseded" if moved else "")
        )
        # Batch-wide figures are named batch_*: each partition's own metadata is merged over
        # them and would shadow a shared name.
        return dg.MaterializeResult(
            metadata={
                "batch_documents": len(documents),
                "batch_documents_written": len(write),
                "batch_documents_superseded": len(moved),
                "batch_vectors_written": written,
            },
            check_results=[
                dg.AssetCheckResult(
                    check_name="rows_match_chunks",
                    passed=not mismatched,
                    metadata={"documents_checked": len(documents) - len(moved), "mismatched": dg.MetadataValue.json(mismatched)},
                )
            ],
        )

    return [chunks, embeddings, vector_index]
