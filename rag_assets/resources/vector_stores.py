"""Vector stores behind one contract, chosen by RAG_INDEX_URI (`rag_assets.resources.stores.vector_store_from_uri`).

LanceDB lives here; pgvector in `pgvector_store.py`, Pinecone in `pinecone_store.py`. The
contract is checked for all three by `rag_assets_tests/test_vector_store_contract.py`.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib
import json
import logging
import os
import re
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import dagster as dg
import numpy as np

from rag_assets.lib.keys import in_span

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VectorRow:
    """One chunk in the index. Every row carries its tenant and document."""

    chunk_id: str
    tenant: str
    document_id: str
    document_key: str
    ordinal: int
    text: str
    content_hash: str
    model: str
    vector: np.ndarray
    page: int | None = None
    row: int | None = None
    metadata: dict = field(default_factory=dict)
    source_etag: str = ""  # the source object's version (ETag; size+mtime for files) the row was made from
    pipeline: str = ""  # fingerprint of how the text was read and cut (lib.identity.pipeline_fingerprint)


@dataclass(frozen=True)
class Hit:
    key: str
    tenant: str
    page: int | None
    score: float
    text: str
    document_id: str
    chunk_id: str
    metadata: dict = field(default_factory=dict)


MIXED = "mixed"  # a field whose value differs between a document's rows (a write that stopped half-way)


@dataclass(frozen=True)
class IndexedDocument:
    """What the index holds for one document: the store's side of every comparison with the
    source (`VectorStore.list_documents`)."""

    document_id: str
    tenant: str
    document_key: str
    content_hash: str  # MIXED when the rows disagree
    source_etag: str  # the source version the rows were made from ("" for rows older than the field)
    pipeline: str  # how they were read and cut ("" for rows older than the field)
    rows: int
    chunk_digest: str  # chunk_digest() of the rows' chunk ids

    @property
    def uri(self) -> str:
        """The object's URI (the document id is `TENANT:URI`, lib.keys.DocRef)."""
        return self.document_id[len(self.tenant) + 1 :]


def chunk_digest(chunk_ids: Iterable[str]) -> str:
    """One short digest of a document's chunk ids, whatever their order: equal digests mean
    the same chunks (a new chunking gives new ids: ids hash the text)."""
    return hashlib.sha256("\n".join(sorted(chunk_ids)).encode("utf-8")).hexdigest()[:16]


def one_or_mixed(values: Iterable[str]) -> str:
    distinct = set(values)
    return distinct.pop() if len(distinct) == 1 else MIXED


def group_documents(rows: Iterable[Mapping]) -> dict[str, IndexedDocument]:
    """IndexedDocuments from row records with the keys document_id, tenant, document_key,
    content_hash, source_etag, pipeline and chunk_id (for stores that list rows, not groups)."""
    grouped: dict[str, list[Mapping]] = {}
    for row in rows:
        grouped.setdefault(row["document_id"], []).append(row)
    return {
        doc_id: IndexedDocument(
            document_id=doc_id,
            tenant=rs[0]["tenant"],
            document_key=rs[0]["document_key"],
            content_hash=one_or_mixed(r["content_hash"] for r in rs),
            source_etag=one_or_mixed(r["source_etag"] or "" for r in rs),
            pipeline=one_or_mixed(r["pipeline"] or "" for r in rs),
            rows=len(rs),
            chunk_digest=chunk_digest(r["chunk_id"] for r in rs),
        )
        for doc_id, rs in grouped.items()
    }


class DimensionMismatch(ValueError):
    pass


def check_rows(rows: Sequence[VectorRow], dimension: int) -> None:
    for row in rows:
        if row.vector.shape != (dimension,):
            raise DimensionMismatch(
                f"{row.document_key}: vector of dimension {row.vector.shape[-1]} for an index of dimension "
                f"{dimension} (model {row.model}); a model change needs its own table"
            )


def require_tenant(tenant: str) -> str:
    """Every query names exactly one tenant: a non-empty string (no NUL, which SQL text refuses)."""
    if not tenant or not isinstance(tenant, str):
        raise ValueError("a query must name a tenant")
    if "\x00" in tenant:
        raise ValueError("a tenant name cannot contain NUL")
    return tenant


def check_query_text(text) -> str:
    """A keyword query is any string: quotes, operators, NUL and the empty string are text (no
    query syntax is read from it); an empty or all-stop-word text matches nothing."""
    if not isinstance(text, str):
        raise TypeError(f"a keyword query is a string, not {type(text).__name__}")
    return text


class UnsupportedSearch(ValueError):
    """A search mode the store has no index for (Pinecone: keyword and hybrid)."""


def check_query_vector(vector, dimension: int) -> np.ndarray:
    vector = np.asarray(vector, dtype=np.float32)
    if vector.shape != (dimension,):
        raise DimensionMismatch(
            f"query vector of dimension {vector.shape[-1] if vector.ndim else 0} for an index of dimension {dimension}"
        )
    return vector


Scalar = str | int | float | bool


def check_where(where: Mapping[str, Scalar] | None) -> dict[str, Scalar]:
    """A metadata filter: equality on top-level fields of a row's `metadata` (AND of all pairs).

    Values are strings, numbers or booleans; every store applies it before the vector search
    and checks it again on the results (`matches_where`), so the semantics are the same
    everywhere: same JSON type and equal value (a list-valued field never equals a scalar).
    """
    if not where:
        return {}
    if not isinstance(where, Mapping):
        raise TypeError(f"where must be a mapping of metadata field -> value, not {type(where).__name__}")
    out = {}
    for key, value in where.items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"where: field names are non-empty strings, got {key!r}")
        if not isinstance(value, (str, int, float, bool)) or (isinstance(value, float) and not np.isfinite(value)):
            raise ValueError(f"where[{key!r}]: values are strings, finite numbers or booleans, got {value!r}")
        out[key] = value
    return out


def _same(a, b) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    return type(a) is type(b) and a == b


def matches_where(metadata: Mapping, where: Mapping[str, Scalar]) -> bool:
    return all(key in metadata and _same(metadata[key], value) for key, value in where.items())


def admitted(hits: Iterable[Hit], tenant: str, where: Mapping[str, Scalar]) -> list[Hit]:
    """Every store's last check on what its search returned, belt and braces: only rows of
    `tenant` that meet `where`, whatever the store's own filter did."""
    return [h for h in hits if h.tenant == tenant and matches_where(h.metadata, where)]


class VectorStore(dg.ConfigurableResource, ABC):
    """Where vectors live. A table (or namespace) per embedding model and dimension."""

    # The search modes (rag_assets.search.MODES) this store has an index for; a keyword
    # index is kept by the same writes as the vectors.
    search_modes: ClassVar[tuple[str, ...]] = ("vector",)
    # Why a store has vector search only: the end of the one-line error for the other modes.
    vector_only_reason: ClassVar[str] = "this store keeps no keyword index"

    @abstractmethod
    def replace_documents(
        self,
        model_id: str,
        dimension: int,
        documents: Mapping[str, Sequence[VectorRow]],
        held: Mapping[str, IndexedDocument] | None = None,
    ) -> int:
        """Make each document's rows exactly the given ones, in one write. Returns rows written.
        `held`: what `list_documents` said of these documents just before (none concurrently
        written since): a store may use it instead of reading them again (Pinecone does)."""

    @abstractmethod
    def delete_documents(self, model_id: str, dimension: int, document_ids: Sequence[str]) -> int:
        """Remove every row of these documents. Returns rows deleted."""

    @abstractmethod
    def list_documents(
        self,
        model_id: str,
        dimension: int,
        document_ids: Sequence[str] | None = None,
        tenant: str | None = None,
        key_prefix: str | None = None,
    ) -> dict[str, IndexedDocument]:
        """What the index holds, one entry per document that has rows: every document (the
        default), only `document_ids`, only `tenant`'s, only those whose `document_key` starts
        with `key_prefix` (literally: case-sensitive, no wildcards; "" matches every key), or
        any combination of these (the intersection). Cheap enough for each sensor tick and
        reconciliation: one scan or query, no vectors read."""

    def list_key_span(
        self, model_id: str, dimension: int, key_prefix: str, start: str, stop: str | None
    ) -> dict[str, IndexedDocument]:
        """`list_documents(key_prefix=...)` of the documents whose `document_key` lies in
        [`start`, `stop`) (`stop` None: no end), compared by code point: one page of a listing
        pass, which walks the index in key order beside the source (docs/scale.md). This default
        lists every key under the prefix and keeps the span's; a store that can ask for a range
        of keys overrides it."""
        found = self.list_documents(model_id, dimension, key_prefix=key_prefix)
        return {d: doc for d, doc in found.items() if in_span(doc.document_key, start, stop)}

    @abstractmethod
    def query(
        self,
        model_id: str,
        dimension: int,
        vector: np.ndarray,
        tenant: str,
        k: int = 5,
        where: Mapping[str, Scalar] | None = None,
    ) -> list[Hit]:
        """The k rows of `tenant` nearest to `vector`, best first (score = cosine similarity).

        The tenant is mandatory and applied inside the store before the search; `where` adds
        equality conditions on metadata fields (see `check_where`).
        """

    def keyword_query(
        self,
        model_id: str,
        dimension: int,
        text: str,
        tenant: str,
        k: int = 5,
        where: Mapping[str, Scalar] | None = None,
    ) -> list[Hit]:
        """The k rows of `tenant` whose text best matches the words of `text` (any of them),
        best first; score = the store's text rank (LanceDB: BM25; pgvector: ts_rank), to
        compare only within one query. Tenant and `where` as in `query`. The text is words,
        never query syntax: quotes, operators and the empty string cannot make it fail."""
        raise UnsupportedSearch(f"keyword search: {self.vector_only_reason}")


def table_name(model_id: str, dimension: int) -> str:
    return f"chunks__{re.sub(r'[^a-z0-9]+', '_', model_id.lower()).strip('_')}__{dimension}"


def sql_quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def check_key_prefix(key_prefix: str | None) -> str | None:
    """A `list_documents` key prefix: None (no filter) or a string, matched literally."""
    if key_prefix is not None and not isinstance(key_prefix, str):
        raise TypeError(f"key_prefix must be a string, not {type(key_prefix).__name__}")
    return key_prefix


FTS_COLUMN = "text"
TENANT_COLUMN = "tenant"
VECTOR_COLUMN = "vector"
MIN_CANDIDATES = 10  # a vector query asks the index for at least this many rows (then keeps k)
PQ_MIN_ROWS = 256  # product quantization trains 256 centroids per sub-vector: it needs at least that many rows


def ann_config(rows: int, dimension: int):
    """The LanceDB vector index: IVF_PQ under cosine, sqrt(rows) partitions (LanceDB's own
    rule), an 8-bit code per 16 dimensions (24 bytes a row at 384-d; narrower vectors: per 8, 4,
    2 or 1 dimensions, at least 4 codes a row). Queries re-rank its candidates by the exact
    vectors (`LanceDBStore.refine_factor`), so the codes need only find the neighbourhood
    (docs/stores.md, LanceDB; docs/decisions.md D37)."""
    from lancedb.index import IvfPq

    sub = next((d for d in (16, 8, 4, 2) if dimension % d == 0 and dimension // d >= 4), 1)
    return IvfPq(distance_type="cosine", num_partitions=max(1, round(rows**0.5)), num_sub_vectors=dimension // sub)


ANN_INDEX_PREFIX = "vector_idx_trained_"  # + the rows it was trained over: vector_idx_trained_200000


def trained_rows(index_name: str) -> int:
    """The rows a vector index of this store was trained over (its name says), 0 if unknown."""
    tail = index_name.removeprefix(ANN_INDEX_PREFIX)
    return int(tail) if index_name.startswith(ANN_INDEX_PREFIX) and tail.isdigit() else 0


def fts_config():
    """The LanceDB full-text index of the chunk text. English: lower case, ASCII folding,
    stemming, stop words out, tokens split on whitespace and punctuation (as pgvector's
    'english' configuration); no positions (no phrase queries)."""
    from lancedb.index import FTS

    return FTS(
        with_position=False, base_tokenizer="simple", language="English", lower_case=True,
        stem=True, remove_stop_words=True, ascii_folding=True,
    )  # fmt: skip


@functools.cache
def lancedb_connection(uri: str, process: int):
    """One LanceDB connection per URI and process (`process`: os.getpid(), so a forked child
    opens its own): its session caches the indexes a query reads (docs/decisions.md D37)."""
    import lancedb

    return lancedb.connect(uri)


def import_meanwhile(module: str) -> None:
    """Import `module` in a thread of its own, unless it is imported already: whoever imports
    it later waits for that import instead of making it (Python's import locks)."""

    def load() -> None:
        with contextlib.suppress(Exception):  # the import where it is used says what is wrong
            importlib.import_module(module)

    if module not in sys.modules:
        threading.Thread(target=load, name=f"import {module}", daemon=True).start()


class LanceDBStore(VectorStore):
    """LanceDB at a local path or URI (`./.rag/index`, `s3://bucket/index`), with a full-text
    (BM25) index on the chunk text beside the vectors."""

    uri: str
    compact_every: int = 50  # table versions between compactions
    # A write runs optimize() (compaction + the full-text index's incremental update) once the
    # rows the index has not taken in reach fts_reindex_rows, or fts_reindex_fraction of the
    # rows it has (a small table: cheap to optimize, and its queries need not scan). Until
    # then keyword queries scan those rows unindexed (docs/stores.md, D31).
    fts_reindex_rows: int = 10_000
    fts_reindex_fraction: float = 0.1
    # The vector (ANN) index, IVF_PQ: built by the first write that leaves the table with at
    # least ann_index_rows rows (and PQ_MIN_ROWS); below that a query is an exact scan of the
    # tenant's rows, found through the bitmap index on `tenant`: fast enough, and exact. Kept
    # by the same optimize() as the full-text index (new rows are searched flat until then),
    # which adds rows to the partitions and codes trained at the build; once the table holds
    # ann_retrain_growth times the rows it was trained over, a write builds it again over all
    # rows (a full retrain) and drops the old one. Queries probe ann_nprobes partitions and
    # re-rank refine_factor * max(k, 10) candidates by the exact vectors; fewer than k found
    # (a small tenant): an exact scan instead (docs/stores.md, LanceDB; docs/decisions.md D37).
    ann_index_rows: int = 200_000
    ann_retrain_growth: float = 4.0
    ann_nprobes: int = 20
    refine_factor: int = 10

    search_modes: ClassVar[tuple[str, ...]] = ("hybrid", "vector", "keyword")

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # Importing lancedb costs ~2.5 s of CPU here (the pydantic models of lance_namespace). A run
        # that writes the index imports it while its first steps read, chunk and embed, which
        # mostly wait on other processes (the reader, the embedding service) (docs/decisions.md D33).
        import_meanwhile("lancedb")

    def _db(self):
        """One connection per URI and process: its session caches the indexes a query reads
        (a fresh connection per query read 19 index deltas from disk each time: 84 ms p50
        against 26 ms at 1,000,000 rows, D37). Tables are still opened per call, at their
        latest version."""
        return lancedb_connection(self.uri, os.getpid())

    def _schema(self, dimension: int):
        import pyarrow as pa

        return pa.schema(
            [
                ("id", pa.string()),
                ("tenant", pa.string()),
                ("document_id", pa.string()),
                ("document_key", pa.string()),
                ("ordinal", pa.int32()),
                ("page", pa.int32()),
                ("row", pa.int32()),
                ("text", pa.string()),
                ("content_hash", pa.string()),
                ("model", pa.string()),
                ("metadata", pa.string()),
                ("vector", pa.list_(pa.float32(), dimension)),
                ("source_etag", pa.string()),
                ("pipeline", pa.string()),
            ]
        )

    def _table(self, model_id: str, dimension: int, create: bool = False):
        db = self._db()
        name = table_name(model_id, dimension)
        try:
            table = db.open_table(name)
        except (FileNotFoundError, ValueError):
            if not create:
                return None
            table = db.create_table(name, schema=self._schema(dimension), exist_ok=True)
        # Tables written before the index kept each row's source version and pipeline get the
        # columns (empty: such rows compare as out of date and are rewritten once).
        missing = [f for f in ("source_etag", "pipeline") if f not in table.schema.names]
        if missing:
            table.add_columns({f: "CAST('' AS STRING)" for f in missing})
        return table

    @staticmethod
    def _indexes(table, column: str, kinds: tuple[str, ...]) -> list:
        """The indexes of one of `kinds` (FTS, BITMAP, IVF_PQ: LanceDB lists them as FTS,
        Bitmap, IvfPq) on `column`."""

        def kind(name: str) -> str:
            return name.replace("_", "").upper()

        wanted = {kind(k) for k in kinds}
        return [i for i in table.list_indices() if kind(i.index_type) in wanted and i.columns == [column]]

    @classmethod
    def _find_index(cls, table, column: str, kinds: tuple[str, ...]):
        return next(iter(cls._indexes(table, column, kinds)), None)

    @classmethod
    def _index(cls, table, column: str, kinds: tuple[str, ...], config):
        """The table's index of one of `kinds` on `column`, created with `config` (on an older
        table, over its rows) when it has none."""
        found = cls._find_index(table, column, kinds)
        if found is None:
            try:
                table.create_index(column, config=config, replace=False)
            except (RuntimeError, ValueError, OSError):
                found = cls._find_index(table, column, kinds)  # a concurrent first writer made it
                if found is None:
                    raise
            else:
                found = cls._find_index(table, column, kinds)
        return found

    @classmethod
    def _fts_index(cls, table):
        """The table's full-text index on the chunk text (`fts_config`)."""
        return cls._index(table, FTS_COLUMN, ("FTS",), fts_config())

    @classmethod
    def _tenant_index(cls, table):
        """A bitmap index on `tenant` (few distinct values): the prefilter of every query reads
        the tenant's row ids from it instead of scanning the column (docs/decisions.md D37)."""
        from lancedb.index import Bitmap

        return cls._index(table, TENANT_COLUMN, ("BITMAP", "BTREE"), Bitmap())

    @classmethod
    def _key_index(cls, table):
        """A B-tree index on `document_key`: a listing pass reads the index one span of keys a
        tick (`list_key_span`) without scanning the column (docs/decisions.md D40)."""
        from lancedb.index import BTree

        return cls._index(table, "document_key", ("BTREE",), BTree())

    def replace_documents(self, model_id, dimension, documents, held=None):
        rows = [r for rs in documents.values() for r in rs]
        check_rows(rows, dimension)
        if not documents:
            return 0
        table = self._table(model_id, dimension, create=True)
        fts = self._fts_index(table)  # kept from the table's first write on
        self._tenant_index(table)  # likewise
        self._key_index(table)  # likewise
        data = self._arrow(rows, dimension)
        ids = ", ".join(sql_quote(d) for d in documents)
        # One commit: upsert the documents' chunks and drop their rows that are no longer chunks.
        (
            table.merge_insert("id")
            .when_matched_update_all()
            .when_not_matched_insert_all()
            .when_not_matched_by_source_delete(f"document_id IN ({ids})")
            .execute(data)
        )
        self._upkeep(table, fts, dimension)
        return len(rows)

    def _arrow(self, rows: Sequence[VectorRow], dimension: int):
        """Rows as the table holds them (metadata as JSON text with sorted keys)."""
        import pyarrow as pa

        return pa.Table.from_pylist(
            [
                {
                    "id": r.chunk_id,
                    "tenant": r.tenant,
                    "document_id": r.document_id,
                    "document_key": r.document_key,
                    "ordinal": r.ordinal,
                    "page": r.page,
                    "row": r.row,
                    "text": r.text,
                    "content_hash": r.content_hash,
                    "model": r.model,
                    "metadata": json.dumps(r.metadata, sort_keys=True, default=str),
                    "vector": r.vector.astype(np.float32).tolist(),
                    "source_etag": r.source_etag,
                    "pipeline": r.pipeline,
                }
                for r in rows
            ],
            schema=self._schema(dimension),
        )

    def _upkeep(self, table, fts, dimension: int) -> None:
        """After a write: build the vector index once the table holds `ann_index_rows` rows;
        optimize() (compaction, and the incremental update of every index: full-text, tenant,
        vector) every `compact_every` versions, or once the rows an index has not taken in
        reach the bound. Until then queries scan those rows, so nothing written is missed; a
        failed optimize (a concurrent writer's commit came first) leaves the write as it is
        and the next write tries again (docs/stores.md, D31, D37)."""
        ann = self._vector_index(table, dimension)
        unindexed = [self._unindexed(table, index) for index in (fts, ann) if index is not None]
        if (self.compact_every and table.version % self.compact_every == 0) or any(
            rows >= min(self.fts_reindex_rows, max(1, self.fts_reindex_fraction * indexed))
            for indexed, rows in unindexed
        ):
            try:
                table.optimize()
            except (RuntimeError, OSError) as e:
                log.warning("%s: optimize() after the write failed; the next write tries again: %s", table.name, e)

    @staticmethod
    def _unindexed(table, index) -> tuple[int, int]:
        """(rows the index holds, rows it has not taken in yet)."""
        stats = table.index_stats(index.name)
        return (stats.num_indexed_rows or 0, stats.num_unindexed_rows or 0) if stats else (0, 0)

    def _vector_index(self, table, dimension: int):
        """The table's IVF_PQ index on the vectors: built here when the table has reached
        `ann_index_rows` rows and has none, built again over all rows (a full retrain) when the
        table has grown `ann_retrain_growth` times past the rows it was trained over; None
        below the threshold. In between, optimize() adds new rows to it (D37)."""
        kinds = ("IVF_PQ",)
        found = self._indexes(table, VECTOR_COLUMN, kinds)
        current = max(found, key=lambda i: trained_rows(i.name), default=None)
        rows = table.count_rows()
        if current is None and rows < max(self.ann_index_rows, PQ_MIN_ROWS):
            return None
        if current is not None and not rows >= self.ann_retrain_growth * trained_rows(current.name) > 0:
            return current
        started = time.perf_counter()
        try:
            table.create_index(
                VECTOR_COLUMN, config=ann_config(rows, dimension), name=f"{ANN_INDEX_PREFIX}{rows}", replace=False
            )
        except (RuntimeError, ValueError, OSError) as e:  # a concurrent writer's build came first
            log.warning("%s: building the vector index failed; the next write tries again: %s", table.name, e)
            return current
        seconds = time.perf_counter() - started
        for old in found:
            with contextlib.suppress(RuntimeError, ValueError, OSError):  # a concurrent writer dropped it
                table.drop_index(old.name)
        log.info(
            "%s: %s the vector index (IVF_PQ) over %d rows in %.1f s", table.name, "rebuilt" if found else "built",
            rows, seconds, extra={"ann_index_rows": rows, "ann_index_seconds": seconds},
        )  # fmt: skip
        return max(self._indexes(table, VECTOR_COLUMN, kinds), key=lambda i: trained_rows(i.name), default=None)

    def delete_documents(self, model_id, dimension, document_ids):
        table = self._table(model_id, dimension)
        if table is None or not document_ids:
            return 0
        where = f"document_id IN ({', '.join(sql_quote(d) for d in document_ids)})"
        before = table.count_rows(where)
        table.delete(where)
        return before

    def list_documents(self, model_id, dimension, document_ids=None, tenant=None, key_prefix=None):
        key_prefix = check_key_prefix(key_prefix)
        if document_ids is not None and not document_ids:
            return {}
        table = self._table(model_id, dimension)
        if table is None:
            return {}
        conditions = []
        if tenant is not None:
            conditions.append(f"tenant = {sql_quote(tenant)}")
        if key_prefix:  # "" matches every key: no condition
            conditions.append(f"document_key LIKE {sql_quote(_like_escape(key_prefix) + '%')} ESCAPE '\\'")
        ids = list(document_ids) if document_ids is not None else [None]
        found = []
        for start in range(0, len(ids), 2_000):  # many ids: a scan per 2,000, not one huge IN list
            part = ids[start : start + 2_000]
            where = list(conditions)
            if document_ids is not None:
                where.append(f"document_id IN ({', '.join(sql_quote(d) for d in part)})")
            found += self._listed_rows(table, where)
        if key_prefix:  # belt and braces: a listing for deletions must never admit another key
            found = [r for r in found if r["document_key"].startswith(key_prefix)]
        return group_documents(found)

    def list_key_span(self, model_id, dimension, key_prefix, start, stop):
        key_prefix = check_key_prefix(key_prefix)
        table = self._table(model_id, dimension)
        if table is None:
            return {}
        conditions = [f"document_key >= {sql_quote(max(start, key_prefix))}"]  # byte order of UTF-8: code points
        if stop is not None:
            conditions.append(f"document_key < {sql_quote(stop)}")
        if key_prefix:
            conditions.append(f"document_key LIKE {sql_quote(_like_escape(key_prefix) + '%')} ESCAPE '\\'")
        found = self._listed_rows(table, conditions)
        # belt and braces, as list_documents: a listing for deletions never admits another key
        keys = (r for r in found if r["document_key"].startswith(key_prefix))
        return group_documents(r for r in keys if in_span(r["document_key"], start, stop))

    @staticmethod
    def _listed_rows(table, conditions: Sequence[str]) -> list[dict]:
        """The rows meeting every condition, with what `group_documents` reads (no vectors)."""
        columns = ["document_id", "tenant", "document_key", "content_hash", "source_etag", "pipeline", "id"]
        scan = table.search().select(columns).limit(None)
        if conditions:
            scan = scan.where(" AND ".join(conditions))
        return scan.to_arrow().rename_columns([*columns[:-1], "chunk_id"]).to_pylist()

    def query(self, model_id, dimension, vector, tenant, k=5, where=None):
        require_tenant(tenant)
        where = check_where(where)
        vector = check_query_vector(vector, dimension)
        table = self._table(model_id, dimension)
        if table is None:
            return []
        condition = self._condition(tenant, where)
        found = self._nearest(table, vector, condition, k)
        return admitted(self._hits(found, lambda r: float(1.0 - r["_distance"])), tenant, where)

    def _nearest(self, table, vector: np.ndarray, condition: str, k: int) -> list[dict]:
        """The k rows meeting `condition` nearest to `vector`. With no vector index: an exact
        scan (the probes and refinement are ignored). With it: ann_nprobes partitions of every
        delta of the index, refine_factor * max(k, 10) candidates re-ranked by the exact
        vectors; when that finds fewer than k rows (a tenant, or a `where`, with few rows in
        those partitions) the same query again as an exact scan, cheap for so few rows, so a
        tenant with k rows always gets k (D37)."""

        def search(exact: bool) -> list[dict]:
            query = table.search(vector).distance_type("cosine").where(condition, prefilter=True)
            if exact:
                query = query.bypass_vector_index()
            else:
                query = query.nprobes(self.ann_nprobes).refine_factor(self.refine_factor)
            return query.limit(max(k, MIN_CANDIDATES)).to_list()[:k]

        found = search(exact=False)
        return found if len(found) >= k else search(exact=True)

    def keyword_query(self, model_id, dimension, text, tenant, k=5, where=None):
        from lancedb.query import MatchQuery

        require_tenant(tenant)
        where = check_where(where)
        text = check_query_text(text)
        k = int(k)
        table = self._table(model_id, dimension)
        if table is None or k < 1 or not text.strip():
            return []
        self._fts_index(table)  # a table written before the index existed gets it here, once
        condition = self._condition(tenant, where)
        # A MatchQuery: the text is words to match (any of them), never parsed as query syntax.
        query = MatchQuery(text, FTS_COLUMN)
        found = table.search(query, query_type="fts").where(condition, prefilter=True).limit(k).to_list()
        found.sort(key=lambda r: (-r["_score"], r["id"]))  # ties in a fixed order
        return admitted(self._hits(found, lambda r: float(r["_score"])), tenant, where)

    @staticmethod
    def _condition(tenant: str, where: Mapping[str, Scalar]) -> str:
        return " AND ".join(
            [f"tenant = {sql_quote(tenant)}", *(_lance_metadata_condition(f, v) for f, v in where.items())]
        )

    @staticmethod
    def _hits(found: Iterable[Mapping], score) -> Iterable[Hit]:
        return (
            Hit(
                key=r["document_key"],
                tenant=r["tenant"],
                page=r["page"],
                score=score(r),
                text=r["text"],
                document_id=r["document_id"],
                chunk_id=r["id"],
                metadata=json.loads(r["metadata"] or "{}"),
            )
            for r in found
        )


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _lance_metadata_condition(field: str, value: Scalar) -> str:
    """A prefilter on the JSON text of `metadata` (written with sort_keys and ", "/": " separators).

    Lance's JSON functions need its binary JSON column type, which this table does not use, so
    the field is matched as the text `"field": VALUE` followed by `,` or `}`. It can only err
    towards extra rows (a nested field of the same name), which `matches_where` then drops.
    """
    texts = {json.dumps(value)}
    if isinstance(value, (int, float)) and not isinstance(value, bool) and float(value).is_integer():
        texts |= {json.dumps(int(value)), json.dumps(float(value))}  # 3 and 3.0 are equal numbers
    likes = [
        f"metadata LIKE {sql_quote('%' + _like_escape(json.dumps(field) + ': ' + text) + end + '%')} ESCAPE '\\'"
        for text in sorted(texts)
        for end in (",", "}")
    ]
    return "(" + " OR ".join(likes) + ")"


PG_SCHEMES = ("postgresql://", "postgres://")
PINECONE_SCHEME = "pinecone://"


def store_kind(uri: str) -> str:
    """The Dagster kind tag of the store RAG_INDEX_URI names: lancedb, postgres or pinecone."""
    if uri.startswith(PG_SCHEMES):
        return "postgres"
    if uri.startswith(PINECONE_SCHEME):
        return "pinecone"
    return "lancedb"
