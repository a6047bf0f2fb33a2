"""The index pipeline shared by every source family: chunks -> embeddings -> vector_index.

`build_index_pipeline` is the one factory. A family brings its own first asset (documents
from S3, the records of a date from Metabase or a CSV export...) whose value per partition
is its `SourceDocument`s: a list in memory (a document partition: one, or none once its
object is gone), or `Parts` in the work area (a date's records: thousands, a part at a time).
Each step keeps that form; parts are embedded a few at a time and written one at a time.
"""


import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import dagster as dg
import numpy as np

from rag_assets.components.golden_sets import TENANTS_WRITTEN, build_golden_check
from rag_assets.components.metadata import add_partition_metadata
from rag_assets.lib.chunking import Chunk, chunk_units
from rag_assets.lib.display import printable
from rag_assets.lib.errors import FAILED_PARTITIONS
from rag_assets.lib.parsing import SourceDocument
from rag_assets.resources.config import RagConfig
from rag_assets.resources.embedders import EmbeddingCache, EmbedStats, embed_with_cache
from rag_assets.resources.io_manager import Parts, WorkArea, parts_of
from rag_assets.resources.object_store import ObjectStore
from rag_assets.resources.vector_stores import MIXED, IndexedDocument, VectorRow, VectorStore, chunk_digest

# Every step that writes or deletes index rows takes a slot of this pool; dagster.yaml gives
# it one slot, so an ingest's write and a purge of the same document never interleave.
INDEX_WRITERS = "rag_index_writers"


class Unread(list):
    """A partition's value when its document could not be read: no documents, and why. The
    steps pass it on as an empty list; vector_index records the reason and, once the batch's
    other documents are written, fails the run naming it (docs/decisions.md D27)."""

    def __init__(self, key: str, reason: str, transient: bool = False):
        super().__init__()
        self.key, self.reason, self.transient = key, reason, transient


def unread_record(unread: Unread) -> dict:
    """The record of a partition whose document could not be read."""
    return {
        "status": "failed" if unread.transient else "unreadable",
        "document_key": unread.key,
        "reason": unread.reason,
    }


@dataclass(frozen=True)
class DocumentEmbeddings:
    model_id: str
    dimension: int
    vectors: np.ndarray  # one row per chunk, in chunk order
    embedded: int  # texts sent to the model for this document
    cache_hits: int
    calls: int  # embedding calls that carried some of this document's text


@dataclass(frozen=True)
class Outcome:
    """What vector_index did with one document: its lineage, without its text."""

    status: str  # ingested, unchanged, superseded: changed|deleted
    document_id: str
    tenant: str
    document_key: str
    content_hash: str
    source_etag: str
    source_version: str
    size_bytes: int
    kind: str
    pages: int | None
    chunks: int
    tokens: int
    embedding_calls: int
    embedded: int
    cache_hits: int
    vectors_written: int
    sidecar_fields: tuple[str, ...] = ()
    sidecar_fields_refused: tuple[str, ...] = ()


def document_rows(doc: SourceDocument, chunks: list[Chunk], emb: DocumentEmbeddings, pipeline: str) -> list[VectorRow]:
    return [
        VectorRow(
            chunk_id=c.chunk_id,
            tenant=doc.ref.tenant,
            document_id=doc.ref.document_id,
            document_key=doc.document_key,
            ordinal=c.ordinal,
            text=c.text,
            content_hash=doc.content_hash,
            model=emb.model_id,
            vector=v,
            page=c.page,
            row=c.row,
            # The project's fields win: a sidecar adds metadata, it never shadows what the parser wrote.
            metadata={**doc.metadata, **c.metadata, "char_start": c.char_start, "char_end": c.char_end},
            source_etag=doc.etag,
            pipeline=pipeline,
        )
        for c, v in zip(chunks, emb.vectors, strict=True)
    ]


def expected_state(doc: SourceDocument, chunks: list[Chunk], pipeline: str) -> tuple:
    """What the index must hold for a document: its content, source version, pipeline, chunks, key."""
    return (
        doc.content_hash,
        doc.etag,
        pipeline,
        len(chunks),
        chunk_digest(c.chunk_id for c in chunks),
        doc.document_key,
    )


def held_state(entry: IndexedDocument | None) -> tuple | None:
    """What the index holds for a document, comparable with `expected_state` (None: nothing whole)."""
    if entry is None or entry.content_hash in (MIXED, ""):
        return None
    return (entry.content_hash, entry.source_etag, entry.pipeline, entry.rows, entry.chunk_digest, entry.document_key)


def holds(entry: IndexedDocument | None, doc: SourceDocument, chunks: list[Chunk], pipeline: str) -> bool:
    """Whether the index holds exactly these chunks of this document, as this source version."""
    return held_state(entry) == expected_state(doc, chunks, pipeline)


def superseded(object_store: ObjectStore, documents: Mapping[str, SourceDocument]) -> dict[str, str]:
    """Documents whose object is no longer the version that was read (id -> what it is now:
    "deleted" or "changed"), one HEAD each, many at a time. Their rows are not written: the
    purge or the newer version's run does what is right."""

    def change_since_read(doc: SourceDocument) -> str | None:
        """How the object changed since `doc` was read: "deleted", "changed", or None (it did not)."""
        found = object_store.head(doc.ref.uri)
        return "deleted" if found is None else None if found.version == doc.version else "changed"

    ids = list(documents)
    with ThreadPoolExecutor(max_workers=16) as pool:
        return {i: s for i, s in zip(ids, pool.map(change_since_read, (documents[i] for i in ids)), strict=True) if s}


def split_by_document(counts: dict, batches: list[list[int]]) -> dict:
    """How many embedding calls carried text of each document, given the texts' order."""
    owner = [key for key, n in counts.items() for _ in range(n)]
    calls = dict.fromkeys(counts, 0)
    for batch in batches:
        for key in {owner[i] for i in batch}:
            calls[key] += 1
    return calls


def embed_documents(
    embedder, cache: EmbeddingCache, chunk_lists: Sequence[list[Chunk]]
) -> tuple[list[DocumentEmbeddings], EmbedStats, int]:
    """One embedding pass over the chunks of several documents: their embeddings, the pass's
    stats, and how many vectors came from the cache."""
    texts = [c.text for cs in chunk_lists for c in cs]
    vectors, stats, fresh = embed_with_cache(embedder, cache, texts)
    calls = split_by_document({i: len(cs) for i, cs in enumerate(chunk_lists)}, stats.batches)
    out, start = [], 0
    for i, cs in enumerate(chunk_lists):
        part = slice(start, start + len(cs))
        start += len(cs)
        embedded = int(fresh[part].sum())
        out.append(
            DocumentEmbeddings(
                embedder.model_id, embedder.dimension, vectors[part], embedded, len(cs) - embedded, calls[i]
            )
        )
    return out, stats, int((~fresh).sum())


def map_in_order(fn: Callable, items: Iterable, window: int) -> Iterator:
    """fn over items, up to `window` at a time, results in order; never more than `window`
    items taken ahead (a part is loaded only when there is room for it)."""
    with ThreadPoolExecutor(max_workers=max(1, window)) as pool:
        pending = []
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= window:
                yield pending.pop(0).result()
        for future in pending:
            yield future.result()


def owned_by(held: IndexedDocument, root: str) -> bool:
    """Whether an indexed document comes from the source whose root is `root` (its URI is below it)."""
    return held.uri.startswith(root.rstrip("/") + "/")


def document_outcome(doc: SourceDocument, status: str, chunks: list[Chunk], emb: DocumentEmbeddings) -> Outcome:
    return Outcome(
        status=status,
        document_id=doc.ref.document_id,
        tenant=doc.ref.tenant,
        document_key=doc.document_key,
        content_hash=doc.content_hash,
        source_etag=doc.etag,
        source_version=doc.version,
        size_bytes=doc.size,
        kind=doc.parsed.kind,
        pages=doc.parsed.pages,
        chunks=len(chunks),
        tokens=sum(c.tokens for c in chunks),
        embedding_calls=emb.calls,
        embedded=emb.embedded,
        cache_hits=emb.cache_hits,
        vectors_written=len(chunks) if status == "ingested" else 0,
        sidecar_fields=tuple(sorted(doc.metadata)),
        sidecar_fields_refused=doc.refused_fields,
    )


def lineage_record(outcomes: Sequence[Outcome], model: str, pipeline: str, deleted: int) -> dict:
    """A document partition's record (it holds one document, or none once its object is gone)."""
    if not outcomes:
        return {"status": "superseded: deleted"}
    (o,) = outcomes
    record = {
        k: v for k, v in o.__dict__.items() if k not in ("sidecar_fields", "sidecar_fields_refused", "document_id")
    }
    lists = {name: list(getattr(o, name)) for name in ("sidecar_fields", "sidecar_fields_refused") if getattr(o, name)}
    return {**record, "model": model, "pipeline": pipeline, **lists}


# A document on its way into the index: its partition key, the document, its chunks and their embeddings.
Entry = tuple[str, SourceDocument, list[Chunk], DocumentEmbeddings]


def aligned_parts(documents: Mapping, chunks: Mapping, embeddings: Mapping, key: str) -> Iterator[list[Entry]]:
    """A partition's documents with their chunks and embeddings, a part at a time (a list is one part)."""
    for docs, cs, embs in zip(parts_of(documents[key]), parts_of(chunks[key]), parts_of(embeddings[key]), strict=True):
        yield [(key, d, c, e) for d, c, e in zip(docs, cs, embs, strict=True)]


@dataclass
class EmbedTotals:
    """What an embeddings run's passes added up to, and what computed their vectors."""

    vectors: int = 0
    hits: int = 0
    calls: int = 0
    retries: int = 0
    tokens: int = 0
    waited: float = 0.0
    ran: EmbedStats = field(default_factory=EmbedStats)  # runtimes of the vectors embedded now (none: all cached)

    def add(self, result: tuple[list[DocumentEmbeddings], EmbedStats, int]) -> list[DocumentEmbeddings]:
        """Count one pass (`embed_documents`'s result) and return its embeddings."""
        out, stats, hits = result
        self.vectors += sum(len(e.vectors) for e in out)
        self.hits += hits
        self.calls += stats.calls
        self.retries += stats.retries
        self.tokens += stats.tokens
        self.waited += stats.seconds_waited
        for runtime in stats.runtimes:
            self.ran.ran_on(runtime, stats.bf16_probe_cosine_min)
        return out

    def runtime(self) -> dict:
        """What computed the vectors, as metadata (nothing when all came from the cache)."""
        runtime = {"embed_runtime": ", ".join(sorted(self.ran.runtimes))} if self.ran.runtimes else {}
        if self.ran.bf16_probe_cosine_min is not None:
            runtime["bf16_probe_cosine_min"] = self.ran.bf16_probe_cosine_min
        return runtime

    def summary(self) -> str:
        """The run's log line."""
        runtime = self.runtime()
        return (
            f"{self.vectors} vectors: {self.vectors - self.hits} embedded in {self.calls} call(s), "
            f"{self.hits} from the cache"
            + (f", {self.retries} retried call(s)" if self.retries else "")
            + (f" ({runtime['embed_runtime']})" if runtime else "")
        )

    def metadata(self, model_id: str, dimension: int) -> dict:
        """The batch's metadata (batch_*: each partition's own metadata is merged over it)."""
        return {
            "model": model_id,
            "dimension": dimension,
            "batch_embedding_calls": self.calls,
            "batch_retries": self.retries,
            "batch_api_tokens": self.tokens,
            "batch_cache_hits": self.hits,
            "batch_seconds_waited": round(self.waited, 3),
            **self.runtime(),
        }


@dataclass
class IndexWrites:
    """One vector_index run's writes and what it learned of them: each partition's outcomes and
    rows deleted, the vectors written, and the documents the read back found not as expected."""

    store: VectorStore
    model_id: str
    dimension: int
    pipeline_for: Callable[[str], str]  # the pipeline a document key is cut by (RagConfig.pipeline_for)
    object_store: ObjectStore
    check_source: bool  # HEAD each changed document before its rows are written (Family.check_source)
    log: dg.DagsterLogManager
    outcomes: dict[str, list[Outcome]]  # partition key -> its documents' outcomes
    deleted: dict[str, int]  # partition key -> rows deleted as no longer in it
    written: int = 0
    mismatched: list[dict] = field(default_factory=list)
    expected: dict[str, tuple] = field(default_factory=dict)  # document id -> what the index must hold after the write
    tenants_deleted: set[str] = field(default_factory=set)  # of the rows a partition that owns a key prefix deleted

    def listed(self, doc_ids: list[str]) -> Mapping:
        """What the index holds of these documents (none asked: nothing listed)."""
        return self.store.list_documents(self.model_id, self.dimension, document_ids=doc_ids) if doc_ids else {}

    def write(self, group: list[Entry], before: Mapping) -> None:
        """One write of a group of documents, against what the index held of them before it
        (all of it: absent = no rows)."""
        changed = {
            d.ref.document_id
            for _, d, cs, _ in group
            if not holds(before.get(d.ref.document_id), d, cs, self.pipeline_for(d.ref.key))
        }
        # Under the pool's slot nothing else writes these documents: what the source holds
        # now is what a purge or a later run acts on. Rows of a version that is gone are not written.
        moved = {}
        if self.check_source:
            moved = superseded(
                self.object_store, {d.ref.document_id: d for _, d, _, _ in group if d.ref.document_id in changed}
            )
        for doc_id, what in sorted(moved.items()):
            self.log.warning(f"{doc_id}: {what} since it was read; not written (a newer run or the purge has it)")
        rows = {
            d.ref.document_id: document_rows(d, cs, emb, self.pipeline_for(d.ref.key))
            for _, d, cs, emb in group
            if d.ref.document_id in changed - set(moved)
        }
        self.written += self.store.replace_documents(
            self.model_id, self.dimension, rows, held={i: before[i] for i in rows if i in before}
        )
        for key, doc, cs, emb in group:
            doc_id = doc.ref.document_id
            status = (
                f"superseded: {moved[doc_id]}" if doc_id in moved else "ingested" if doc_id in rows else "unchanged"
            )
            self.outcomes[key].append(document_outcome(doc, status, cs, emb))
            if doc_id not in moved:
                self.expected[doc_id] = expected_state(doc, cs, self.pipeline_for(doc.ref.key))

    def check(self, after: Mapping, doc_ids: Iterable[str]) -> None:
        """Read back: each document written or unchanged is held exactly as expected."""
        for doc_id in doc_ids:
            if held_state(after.get(doc_id)) != self.expected[doc_id]:
                self.mismatched.append(
                    {"document_id": doc_id, "expected": list(self.expected[doc_id]), "found": repr(after.get(doc_id))}
                )

    def write_together(self, group: list[Entry]) -> None:
        """Partitions in memory, written together: one write per batch, read back by id."""
        ids = [d.ref.document_id for _, d, _, _ in group]
        self.write(group, self.listed(ids))
        mine = [i for i in ids if i in self.expected]
        self.check(self.listed(mine), mine)

    def write_parts(
        self, key: str, items: Parts, parts: Iterable[list[Entry]], owns: Callable[[str], tuple[str, str]] | None
    ) -> None:
        """A partition in parts: listed once before (all its documents: a store lists many ids
        its own cheapest way) and once after, written a part at a time. A partition that owns
        an index key prefix (`owns`: a date's records) deletes what it holds there but did not write."""
        started = time.monotonic()
        ids = [d.ref.document_id for part in parts_of(items) for d in part]
        before = self.listed(ids)
        self.log.info(
            f"{key}: {len(before)} of its {len(ids)} record(s) held, listed in {time.monotonic() - started:.1f} s"
        )
        for n, part in enumerate(parts, 1):
            self.write(part, before)
            if n % 10 == 0 or n == len(items.files):
                self.log.info(f"{key}: part {n}/{len(items.files)} written, {self.written} vectors so far")
        mine = [i for i in ids if i in self.expected]
        if owns is None:
            self.check(self.listed(mine), mine)
        else:
            self.delete_unwritten(key, *owns(key), in_partition=set(ids), mine=mine)

    def delete_unwritten(self, key: str, key_prefix: str, root: str, in_partition: set[str], mine: list[str]) -> None:
        """Read back a partition that owns the documents of `root` under `key_prefix`, and
        delete those it holds there but did not write this time (never another source's)."""
        started = time.monotonic()
        after = self.store.list_documents(self.model_id, self.dimension, key_prefix=key_prefix)
        self.check(after, mine)
        gone = [doc_id for doc_id, held in after.items() if doc_id not in in_partition and owned_by(held, root)]
        self.deleted[key] = self.store.delete_documents(self.model_id, self.dimension, gone) if gone else 0
        self.tenants_deleted.update(after[doc_id].tenant for doc_id in gone)
        self.log.info(
            f"{key}: read back and {self.deleted[key]} row(s) no longer in it deleted in "
            f"{time.monotonic() - started:.1f} s"
        )

    def every(self) -> list[Outcome]:
        return [o for os in self.outcomes.values() for o in os]

    def summary(self) -> str:
        """The run's log line."""
        every = self.every()
        changed = sum(o.status == "ingested" for o in every)
        moved = sum(o.status.startswith("superseded") for o in every)
        deleted = sum(self.deleted.values())
        return (
            f"{self.written} vectors written for {changed} document(s); {len(every) - changed - moved} unchanged"
            + (f", {moved} superseded" if moved else "")
            + (f", {deleted} no longer in their partition deleted" if deleted else "")
        )

    def result(self, unread: int) -> dg.MaterializeResult:
        """The batch's materialization and its rows_match_chunks check. Batch-wide figures are
        named batch_*: each partition's own metadata is merged over them and would shadow a shared name."""
        every = self.every()
        changed = sum(o.status == "ingested" for o in every)
        moved = sum(o.status.startswith("superseded") for o in every)
        return dg.MaterializeResult(
            metadata={
                "batch_documents": len(every),
                "batch_documents_unread": unread,
                "batch_documents_written": changed,
                "batch_documents_superseded": moved,
                "batch_documents_deleted": sum(self.deleted.values()),
                "batch_vectors_written": self.written,
                TENANTS_WRITTEN: dg.MetadataValue.json(
                    sorted(self.tenants_deleted | {o.tenant for o in every if o.status == "ingested"})
                ),
            },
            check_results=[
                dg.AssetCheckResult(
                    check_name="rows_match_chunks",
                    passed=not self.mismatched,
                    metadata={
                        "documents_checked": len(every) - moved,
                        "mismatched": dg.MetadataValue.json(self.mismatched[:100]),
                    },
                )
            ],
        )


def partition_records(documents: Mapping, writes: IndexWrites, describe: Callable) -> dict:
    """Each partition's metadata: an unread one's record, else the family's description of its outcomes."""
    return {
        key: unread_record(documents[key])
        if isinstance(documents[key], Unread)
        else describe(
            writes.outcomes[key],
            writes.model_id,
            writes.pipeline_for(writes.outcomes[key][0].document_key if writes.outcomes[key] else ""),
            writes.deleted[key],
        )
        for key in documents
    }


def unread_failure(unread: Mapping[str, Unread], documents: int) -> dg.Failure:
    """The run's failure naming the documents that could not be read (after the others were written)."""
    failed = [{"partition": key, "key": u.key, "reason": u.reason} for key, u in unread.items()]
    listed = "\n".join(f"  {printable(f['key'])}: {printable(f['reason'])}" for f in failed)
    return dg.Failure(
        description=f"{len(failed)} of {documents} document(s) could not be read; the others were written:\n{listed}",
        metadata={FAILED_PARTITIONS: dg.MetadataValue.json(failed)},
        allow_retries=False,
    )


@dataclass(frozen=True)
class Family:
    """How a source family's index steps are built and described."""

    partitions_def: dg.PartitionsDefinition
    backfill_policy: dg.BackfillPolicy
    store_kind: str
    prefix: str = ""
    group_name: str = "documents"
    embedder_key: str = "embedder"
    store_key: str = "vector_store"
    # Documents in files: HEAD each before its rows are written (not for records of a query).
    check_source: bool = True
    # A partition that owns the documents of one source under an index key prefix (a date's
    # records): partition key -> (key prefix, the source's root). The ones it did not write this
    # time are deleted, and only those: a document of another source (another root: a folder,
    # a bucket) under the same key prefix is never its own.
    owns: Callable[[str], tuple[str, str]] | None = None
    # partition metadata from its outcomes, the model, the pipeline and the rows deleted
    describe: Callable[[Sequence[Outcome], str, str, int], dict] = lineage_record
    parallel_parts: int = 1  # parts embedded at a time
    golden_sets: bool = False  # RAG_GOLDEN_SETS is set: vector_index has the golden_sets check (components.golden_sets)


def keep_form(
    context: dg.AssetExecutionContext, work_area: WorkArea, key: str, like: list | Parts, parts: Iterable[list]
) -> list | Parts:
    """A partition's new value in the form of its input: a list, or Parts in the work area."""
    if isinstance(like, list):
        return next(iter(parts), [])
    return work_area.write_parts(context.asset_key, key, parts)


def build_index_pipeline(*, source: dg.AssetsDefinition, family: Family) -> list[dg.AssetsDefinition]:
    """chunks, embeddings and vector_index assets downstream of `source` (names get the
    family's prefix), and vector_index's golden_sets check when the family has it."""
    common = {
        "partitions_def": family.partitions_def,
        "backfill_policy": family.backfill_policy,
        "group_name": family.group_name,
    }
    chunks_name, embeddings_name, index_name = (f"{family.prefix}{n}" for n in ("chunks", "embeddings", "vector_index"))

    @dg.asset(
        name=chunks_name,
        ins={"documents": dg.AssetIn(source.key)},
        io_manager_key="work_io_manager",
        kinds={"python"},
        **common,
    )
    def chunks(
        context: dg.AssetExecutionContext, documents: dict, rag_config: RagConfig, work_area: WorkArea
    ) -> dg.MaterializeResult:
        """Each document cut into chunks at sentence ends (RAG_CHUNK_TOKENS estimated word pieces,
        RAG_CHUNK_OVERLAP of overlap), with stable ids, pages and positions."""
        counts = {"documents": 0, "chunks": 0, "tokens": 0}

        def chunked(items) -> Iterator[list]:
            for part in parts_of(items):
                out = [
                    chunk_units(
                        d.ref.document_id,
                        d.parsed.units,
                        max_tokens=rag_config.chunk_tokens,
                        overlap=rag_config.chunk_overlap,
                    )
                    for d in part
                ]
                counts["documents"] += len(part)
                counts["chunks"] += sum(len(cs) for cs in out)
                counts["tokens"] += sum(c.tokens for cs in out for c in cs)
                yield out

        out = {key: keep_form(context, work_area, key, items, chunked(items)) for key, items in documents.items()}
        context.log.info(f"{counts['chunks']} chunks from {counts['documents']} document(s)")
        return dg.MaterializeResult(value=out, metadata={f"batch_{k}": v for k, v in counts.items()})

    @dg.asset(
        name=embeddings_name,
        ins={"chunks": dg.AssetIn(chunks_name)},
        io_manager_key="work_io_manager",
        kinds={"python"},
        required_resource_keys={family.embedder_key, "embedding_cache", "work_area", "embed_runner"},
        **common,
    )
    def embeddings(context: dg.AssetExecutionContext, chunks: dict) -> dg.MaterializeResult:
        """One vector per chunk, from the cache when the text was embedded before under this model."""
        # Resources by key: a family may have its own embedder (required_resource_keys). The
        # runner sends what the cache lacks to Lambda or ECS when RAG_EMBED_ON says so.
        embedder = context.resources.embed_runner.embedder_for(context, getattr(context.resources, family.embedder_key))
        cache, work_area = context.resources.embedding_cache, context.resources.work_area
        totals = EmbedTotals()

        def embed(chunk_lists: list) -> list[DocumentEmbeddings]:
            return embed_documents(embedder, cache, chunk_lists)

        out = {}
        # Partitions in memory (documents) are embedded together: one pass fills the model's batches.
        in_memory = [key for key, items in chunks.items() if isinstance(items, list)]
        together = totals.add(embed([cs for key in in_memory for cs in chunks[key]]))
        for key in in_memory:
            out[key], together = together[: len(chunks[key])], together[len(chunks[key]) :]
        # Partitions in parts (a date's records): a few parts at a time.
        for key, items in chunks.items():
            if key not in out:
                parts = (totals.add(r) for r in map_in_order(embed, parts_of(items), family.parallel_parts))
                out[key] = work_area.write_parts(context.asset_key, key, parts)
        context.log.info(totals.summary())
        return dg.MaterializeResult(value=out, metadata=totals.metadata(embedder.model_id, embedder.dimension))

    @dg.asset(
        name=index_name,
        ins={
            "documents": dg.AssetIn(source.key),
            "chunks": dg.AssetIn(chunks_name),
            "embeddings": dg.AssetIn(embeddings_name),
        },
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
        kinds={family.store_kind},
        pool=INDEX_WRITERS,
        required_resource_keys={family.store_key, family.embedder_key, "object_store", "rag_config"},
        **common,
    )
    def vector_index(
        context: dg.AssetExecutionContext, documents: dict, chunks: dict, embeddings: dict
    ) -> Iterator[dg.MaterializeResult]:
        """Each document's chunks and vectors in the vector store, replaced in one write per
        batch (or per part of a partition that has parts). Documents that could not be read
        (`Unread`) are recorded with their reason, and the run fails naming them once the
        others are written."""
        embedder = getattr(context.resources, family.embedder_key)
        writes = IndexWrites(
            store=getattr(context.resources, family.store_key),
            model_id=embedder.model_id,
            dimension=embedder.dimension,
            # The pipeline each document is cut by: an image's includes its analyzer (RagConfig.pipeline_for).
            pipeline_for=context.resources.rag_config.pipeline_for,
            object_store=context.resources.object_store,
            check_source=family.check_source,
            log=context.log,
            outcomes={key: [] for key in documents},
            deleted=dict.fromkeys(documents, 0),
        )
        in_memory = [key for key, items in documents.items() if isinstance(items, list)]
        writes.write_together(
            [e for key in in_memory for part in aligned_parts(documents, chunks, embeddings, key) for e in part]
        )
        for key, items in documents.items():
            if not isinstance(items, list):
                writes.write_parts(key, items, aligned_parts(documents, chunks, embeddings, key), family.owns)
        add_partition_metadata(context, partition_records(documents, writes, family.describe))
        context.log.info(writes.summary())
        order = {key: n for n, key in enumerate(context.partition_keys)}  # the failures in the partitions' order
        unread = {key: documents[key] for key in sorted(documents, key=order.get) if isinstance(documents[key], Unread)}
        yield writes.result(len(unread))
        if unread:  # after the materialization: the others' rows and records are kept
            raise unread_failure(unread, len(documents))

    if family.golden_sets:
        return [
            chunks,
            embeddings,
            vector_index,
            build_golden_check(vector_index, family.store_key, family.embedder_key),
        ]
    return [chunks, embeddings, vector_index]
