"""The index pipeline shared by every source family: chunks -> embeddings -> vector_index.

`build_index_pipeline` is the one factory: a family brings its own first asset (documents
from S3, rows from Metabase, images...) whose value per partition is a `SourceDocument`.
"""


import warnings
from dataclasses import dataclass, field

import dagster as dg
import numpy as np

from rag_assets.lib.chunking import Chunk, chunk_units
from rag_assets.lib.keys import DocRef
from rag_assets.lib.parsing import ParsedDocument
from rag_assets.resources.config import RagConfig
from rag_assets.resources.embedders import Embedder, EmbeddingCache, embed_with_cache
from rag_assets.resources.vector_stores import VectorRow, VectorStore, store_kind
from rag_assets.settings import Settings

# Ranged runs are how a batch of documents becomes one run (DESIGN decision 4); Dagster marks
# the parameter beta, which we accept knowingly.
warnings.filterwarnings("ignore", message="Parameter `backfill_policy`", category=dg.BetaWarning)
SINGLE_RUN = dg.BackfillPolicy.single_run()
# Transient faults (S3 throttling, a store that blinks, a model server's 5xx after the
# embedder's own retries) get three more tries with backoff. Unreadable documents raise
# dg.Failure(allow_retries=False): retrying cannot help them.
TRANSIENT_RETRIES = dg.RetryPolicy(max_retries=3, delay=2, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)


@dataclass(frozen=True)
class SourceDocument:
    """A fetched, parsed document: what a family's first asset yields per partition."""

    ref: DocRef
    content_hash: str
    etag: str
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


def document_rows(doc: SourceDocument, chunks: list[Chunk], emb: DocumentEmbeddings) -> list[VectorRow]:
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
        )
        for c, v in zip(chunks, emb.vectors, strict=True)
    ]


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
    prefix: str = "",
    group_name: str = "documents",
) -> list[dg.AssetsDefinition]:
    """chunks, embeddings and vector_index assets downstream of `source` (names get `prefix`)."""
    common = dict(
        partitions_def=partitions_def, backfill_policy=SINGLE_RUN, group_name=group_name, retry_policy=TRANSIENT_RETRIES
    )
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
            out[key] = chunk_units(
                doc.ref.document_id, doc.parsed.units, max_tokens=rag_config.chunk_tokens, overlap=rag_config.chunk_overlap
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
                description="The index holds exactly each document's chunks, of this content, at the model's dimension.",
            )
        ],
        kinds={store_kind(Settings.from_env().index_uri)},
        **common,
    )
    def vector_index(
        context: dg.AssetExecutionContext, documents: dict, chunks: dict, embeddings: dict, vector_store: VectorStore
    ) -> dg.MaterializeResult:
        """Each document's chunks and vectors in the vector store, replaced in one write per batch."""
        first = next(iter(embeddings.values()))
        model_id, dimension = first.model_id, first.dimension
        ids = {key: doc.ref.document_id for key, doc in documents.items()}
        before = vector_store.document_states(model_id, dimension, list(ids.values()))
        changed = {
            key
            for key, doc in documents.items()
            if (s := before.get(ids[key])) is None or (s.content_hash, s.rows) != (doc.content_hash, len(chunks[key]))
        }
        written = vector_store.replace_documents(
            model_id,
            dimension,
            {ids[k]: document_rows(documents[k], chunks[k], embeddings[k]) for k in sorted(changed)},
        )
        after = vector_store.document_states(model_id, dimension, list(ids.values()))
        mismatched = []
        for key, doc in documents.items():
            state = after.get(ids[key])
            ok = state is not None and (state.content_hash, state.rows, state.dimension) == (
                doc.content_hash,
                len(chunks[key]),
                dimension,
            )
            if not ok:
                mismatched.append({"key": doc.ref.key, "expected_rows": len(chunks[key]), "found": repr(state)})
            context.add_asset_metadata(
                {
                    "status": "ingested" if key in changed else "unchanged",
                    "tenant": doc.ref.tenant,
                    "document_key": doc.ref.key,
                    "content_hash": doc.content_hash,
                    "source_etag": doc.etag,
                    "size_bytes": doc.size,
                    "kind": doc.parsed.kind,
                    "pages": doc.parsed.pages,
                    "chunks": len(chunks[key]),
                    "tokens": sum(c.tokens for c in chunks[key]),
                    "embedding_calls": embeddings[key].calls,
                    "embedded": embeddings[key].embedded,
                    "cache_hits": embeddings[key].cache_hits,
                    "model": model_id,
                    "vectors_written": len(chunks[key]) if key in changed else 0,
                    **({"sidecar_fields": sorted(doc.metadata)} if doc.metadata else {}),
                },
                partition_key=key,
            )
        context.log.info(f"{written} vectors written for {len(changed)} document(s); {len(documents) - len(changed)} unchanged")
        # Batch-wide figures are named batch_*: each partition's own metadata is merged over
        # them and would shadow a shared name.
        return dg.MaterializeResult(
            metadata={"batch_documents": len(documents), "batch_documents_written": len(changed), "batch_vectors_written": written},
            check_results=[
                dg.AssetCheckResult(
                    check_name="rows_match_chunks",
                    passed=not mismatched,
                    metadata={"documents_checked": len(documents), "mismatched": dg.MetadataValue.json(mismatched)},
                )
            ],
        )

    return [chunks, embeddings, vector_index]
