"""Vector stores behind one contract. LanceDB here; the store is chosen by RAG_INDEX_URI."""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import dagster as dg
import numpy as np


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


@dataclass(frozen=True)
class DocumentState:
    """What the index holds for one document: which content, how many rows, of which width."""

    content_hash: str
    rows: int
    dimension: int


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
    if not tenant or not isinstance(tenant, str):
        raise ValueError("a query must name a tenant")
    return tenant


class VectorStore(dg.ConfigurableResource, ABC):
    """Where vectors live. A table (or namespace) per embedding model and dimension."""

    @abstractmethod
    def replace_documents(self, model_id: str, dimension: int, documents: Mapping[str, Sequence[VectorRow]]) -> int:
        """Make each document's rows exactly the given ones, in one write. Returns rows written."""

    @abstractmethod
    def delete_documents(self, model_id: str, dimension: int, document_ids: Sequence[str]) -> int:
        """Remove every row of these documents. Returns rows deleted."""

    @abstractmethod
    def document_states(self, model_id: str, dimension: int, document_ids: Sequence[str]) -> dict[str, DocumentState]:
        """The indexed state of each document that has rows."""

    @abstractmethod
    def query(self, model_id: str, dimension: int, vector: np.ndarray, tenant: str, k: int = 5) -> list[Hit]:
        """The k rows of `tenant` nearest to `vector`, best first (score = cosine similarity)."""


def table_name(model_id: str, dimension: int) -> str:
    return f"chunks__{re.sub(r'[^a-z0-9]+', '_', model_id.lower()).strip('_')}__{dimension}"


def sql_quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class LanceDBStore(VectorStore):
    """LanceDB at a local path or URI (`./.rag/index`, `s3://bucket/index`)."""

    uri: str
    compact_every: int = 50  # table versions between compactions

    def _db(self):
        import lancedb

        return lancedb.connect(self.uri)

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
            ]
        )

    def _table(self, model_id: str, dimension: int, create: bool = False):
        db = self._db()
        name = table_name(model_id, dimension)
        try:
            return db.open_table(name)
        except (FileNotFoundError, ValueError):
            if not create:
                return None
            return db.create_table(name, schema=self._schema(dimension), exist_ok=True)

    def replace_documents(self, model_id, dimension, documents):
        import pyarrow as pa

        rows = [r for rs in documents.values() for r in rs]
        check_rows(rows, dimension)
        if not documents:
            return 0
        table = self._table(model_id, dimension, create=True)
        data = pa.Table.from_pylist(
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
                }
                for r in rows
            ],
            schema=self._schema(dimension),
        )
        ids = ", ".join(sql_quote(d) for d in documents)
        # One commit: upsert the documents' chunks and drop their rows that are no longer chunks.
        (
            table.merge_insert("id")
            .when_matched_update_all()
            .when_not_matched_insert_all()
            .when_not_matched_by_source_delete(f"document_id IN ({ids})")
            .execute(data)
        )
        if self.compact_every and table.version % self.compact_every == 0:
            table.optimize()
        return len(rows)

    def delete_documents(self, model_id, dimension, document_ids):
        table = self._table(model_id, dimension)
        if table is None or not document_ids:
            return 0
        where = f"document_id IN ({', '.join(sql_quote(d) for d in document_ids)})"
        before = table.count_rows(where)
        table.delete(where)
        return before

    def document_states(self, model_id, dimension, document_ids):
        table = self._table(model_id, dimension)
        if table is None or not document_ids:
            return {}
        where = f"document_id IN ({', '.join(sql_quote(d) for d in document_ids)})"
        found = table.search().where(where).select(["document_id", "content_hash"]).limit(None).to_arrow().to_pylist()
        states: dict[str, DocumentState] = {}
        for item in found:
            old = states.get(item["document_id"])
            # Rows of two contents for one document would be a bug; show it as a mismatch.
            content = item["content_hash"] if old is None or old.content_hash == item["content_hash"] else "mixed"
            states[item["document_id"]] = DocumentState(content, (old.rows if old else 0) + 1, dimension)
        return states

    def query(self, model_id, dimension, vector, tenant, k=5):
        require_tenant(tenant)
        table = self._table(model_id, dimension)
        if table is None:
            return []
        vector = np.asarray(vector, dtype=np.float32)
        if vector.shape != (dimension,):
            raise DimensionMismatch(f"query vector of dimension {vector.shape[-1]} for an index of dimension {dimension}")
        found = (
            table.search(vector)
            .distance_type("cosine")
            .where(f"tenant = {sql_quote(tenant)}", prefilter=True)
            .limit(k)
            .to_list()
        )
        return [
            Hit(
                key=r["document_key"],
                tenant=r["tenant"],
                page=r["page"],
                score=float(1.0 - r["_distance"]),
                text=r["text"],
                document_id=r["document_id"],
                chunk_id=r["id"],
                metadata=json.loads(r["metadata"] or "{}"),
            )
            for r in found
            if r["tenant"] == tenant  # belt and braces: never another tenant's row
        ]


def vector_store_from_uri(uri: str) -> VectorStore:
    """RAG_INDEX_URI: a LanceDB path or URI. (pgvector and Pinecone arrive with issue 5.)"""
    if uri.startswith(("postgresql://", "postgres://", "pinecone://")):
        raise NotImplementedError(f"RAG_INDEX_URI={uri!r}: this store is not built yet; use a LanceDB path")
    return LanceDBStore(uri=uri)
