"""Pinecone store (serverless, dense, cosine), through the `pinecone` client.

`RAG_INDEX_URI=pinecone://INDEX[?namespace=NS][&host=URL][&index_host=URL]`, the API key in
`PINECONE_API_KEY`. `namespace` is fixed (`?namespace=docs`), per tenant (`?namespace={tenant}`,
or a pattern such as `docs-{tenant}`), or Pinecone's default namespace when absent. `host` is
the control plane (default: `PINECONE_CONTROLLER_HOST`, else api.pinecone.io); `index_host`
skips the describe call and goes straight to the index's data plane.

Serverless indexes cannot delete by metadata filter, so every vector id starts with a prefix
of its document: `<doc>#<state>#<chunk id>`, where `<doc>` is a short hash of the model id and
document id, and `<state>` a short hash of the row's content hash, source etag and pipeline (ids
written before it have the 64-hex content hash there, and are read and replaced the same way).
A document's vectors are found by list-by-prefix; a replace upserts the new vectors first, then
deletes the document's other ids. `list_documents` lists ids (two `<state>`s in one document: a
replace that stopped half-way) and fetches one vector's metadata per document. See docs/stores.md.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import ClassVar
from urllib.parse import parse_qs, urlsplit

import numpy as np
import tenacity
from pydantic import PrivateAttr

from rag_assets.resources.vector_stores import (
    MIXED,
    DimensionMismatch,
    Hit,
    IndexedDocument,
    VectorRow,
    VectorStore,
    admitted,
    check_key_prefix,
    check_query_vector,
    check_rows,
    check_where,
    chunk_digest,
    require_tenant,
)

log = logging.getLogger(__name__)

UPSERT_BATCH = 100  # vectors per upsert request (Pinecone's recommendation; docs/stores.md)
MAX_REQUEST_BYTES = 1_800_000  # Pinecone refuses upsert requests over 2 MB; keep a margin
MAX_METADATA_BYTES = 40_960  # Pinecone's limit per vector
METADATA_BUDGET = 40_000  # what we allow ourselves, measured as compact ASCII JSON (an upper bound)
DELETE_BATCH = 1000  # ids per delete request
FETCH_BATCH = 100  # ids per fetch request (they travel in the URL)
MAX_TOP_K_WITH_METADATA = 1000
PREFIX_CHARS = 16
STATE_CHARS = 16
USER_FIELD = "meta_"  # user metadata fields are stored as meta_<field> (filterable copies)
FILTER_VALUE_MAX = 1024  # bytes: longer values are kept (in metadata_json) but not filterable
_PREFIX_RE = re.compile(rf"^[0-9a-f]{{{PREFIX_CHARS}}}#")
DEFAULT_NAMESPACES = ("", "__default__")  # how the default namespace is named in stats
# The metadata fields a listing reads (of one vector of each document).
LISTED_FIELDS = ("document_id", "tenant", "document_key", "model", "content_hash", "source_etag", "pipeline")


def document_prefix(model_id: str, document_id: str) -> str:
    """`<16 hex>#`: the id prefix of every vector of this document under this model."""
    digest = hashlib.sha256(f"{model_id}\0{document_id}".encode()).hexdigest()[:PREFIX_CHARS]
    return f"{digest}#"


def id_state(content_hash: str, source_etag: str, pipeline: str) -> str:
    """`<16 hex>`: the part of a vector id that differs when the row's content hash, source
    etag or pipeline does, so a listing of ids alone shows a document whose rows disagree."""
    return hashlib.sha256(f"{content_hash}\0{source_etag}\0{pipeline}".encode()).hexdigest()[:STATE_CHARS]


def vector_id(row: VectorRow) -> str:
    """`<document prefix><state>#<chunk id>` (ids of older writes have the content hash as state)."""
    state = id_state(row.content_hash, row.source_etag, row.pipeline)
    vid = f"{document_prefix(row.model, row.document_id)}{state}#{row.chunk_id}"
    if len(vid) > 512 or not vid.isascii():
        raise ValueError(f"{row.document_key}: chunk id {row.chunk_id!r} makes no valid Pinecone vector id")
    return vid


def split_id(vid: str) -> tuple[str, str, str] | None:
    """(document prefix, state, chunk id) of a vector id this store wrote, old or new scheme;
    None for an id of another shape."""
    if not _PREFIX_RE.match(vid):
        return None
    prefix, rest = vid[: PREFIX_CHARS + 1], vid[PREFIX_CHARS + 1 :]
    state, sep, chunk = rest.partition("#")
    return (prefix, state, chunk) if sep and state and chunk else None


def _size(metadata: Mapping) -> int:
    return len(json.dumps(metadata, separators=(",", ":")).encode())


def _filterable(value) -> bool:
    if isinstance(value, (bool, str)):
        return True
    if isinstance(value, (int, float)):
        return math.isfinite(value)
    return isinstance(value, list) and all(isinstance(x, str) for x in value)


def vector_metadata(row: VectorRow, budget: int = METADATA_BUDGET) -> dict:
    """The Pinecone metadata of a row, within the 40 KB limit.

    Fixed fields (tenant, document, chunk, ordinal, page, row, text, content hash, model, source
    etag, pipeline), the user metadata as exact JSON (`metadata_json`, what queries return) and
    each filterable user field (a string, number, boolean or list of strings of at most 1 KB)
    again as `meta_<field>` (what `where` filters on). Pinecone has no null: a missing page
    or row is left out. When the whole is over budget, user fields are dropped, largest first
    (ties by name), then the text is cut; what was dropped or cut is listed in `truncated`.
    """
    user = {str(k): v for k, v in row.metadata.items()}
    fixed = {
        "tenant": row.tenant,
        "document_id": row.document_id,
        "document_key": row.document_key,
        "chunk_id": row.chunk_id,
        "ordinal": row.ordinal,
        "content_hash": row.content_hash,
        "model": row.model,
        "source_etag": row.source_etag,
        "pipeline": row.pipeline,
    }
    if row.page is not None:
        fixed["page"] = row.page
    if row.row is not None:
        fixed["row"] = row.row
    text, truncated = row.text, []

    def build(user: dict, text: str) -> dict:
        meta = dict(fixed, text=text, metadata_json=json.dumps(user, sort_keys=True, default=str))
        meta.update(
            {USER_FIELD + k: v for k, v in user.items() if _filterable(v) and _size({k: v}) <= FILTER_VALUE_MAX}
        )
        if truncated:
            meta["truncated"] = list(truncated)
        return meta

    meta = build(user, text)
    if _size(meta) <= budget:
        return meta
    for key in sorted(user, key=lambda k: (-_size({k: user[k]}), k)):
        del user[key]
        truncated.append(f"metadata.{key}")
        meta = build(user, text)
        if _size(meta) <= budget:
            return meta
    truncated.append("text")
    lo, hi = 0, len(text)  # the longest prefix of the text that fits
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if _size(build(user, text[:mid])) <= budget:
            lo = mid
        else:
            hi = mid - 1
    meta = build(user, text[:lo])
    if _size(meta) > budget:
        raise ValueError(f"{row.document_key}: the fixed metadata alone is over Pinecone's limit")
    return meta


def _batches(items: Sequence[dict], count: int, size: int) -> Iterable[list[dict]]:
    """Upsert batches of at most `count` vectors and about `size` bytes of JSON."""
    batch, used = [], 0
    for item in items:
        n = len(json.dumps(item, separators=(",", ":")))
        if batch and (len(batch) >= count or used + n > size):
            yield batch
            batch, used = [], 0
        batch.append(item)
        used += n
    if batch:
        yield batch


class PineconeStore(VectorStore):
    """Pinecone: one index per embedding dimension, the model id kept in metadata and ids.
    Vector search only (docs/stores.md, D31)."""

    vector_only_reason: ClassVar[str] = (
        "a Pinecone index is vector-only here (it holds dense vectors under cosine; keyword search would "
        "need sparse vectors in a dotproduct index, docs/stores.md)"
    )

    index_name: str
    namespace: str = ""  # a fixed namespace, or a pattern with {tenant}; "" = the default namespace
    host: str | None = None  # control plane; None: PINECONE_CONTROLLER_HOST or the public API
    index_host: str | None = None  # the index's data-plane host: skips describe
    parallelism: int = 4  # upsert/list/delete requests in flight
    freshness_timeout: float = 10.0  # seconds a replace waits for its writes to be listable

    _index: object = PrivateAttr(default=None)
    _client: object = PrivateAttr(default=None)
    _dimension: int | None = PrivateAttr(default=None)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    # What this store wrote, by (namespace, document prefix): the id state and the listing's
    # metadata fields. A listing whose ids show exactly that state takes them from here instead
    # of fetching a vector (values and all) back: a date's read-back fetches nothing it wrote.
    _wrote: dict[tuple[str, str], tuple[str, dict]] = PrivateAttr(default_factory=dict)

    @classmethod
    def from_uri(cls, uri: str) -> PineconeStore:
        parts = urlsplit(uri)
        if parts.scheme != "pinecone" or not parts.netloc:
            raise ValueError(f"RAG_INDEX_URI={uri!r}: want pinecone://INDEX[?namespace=NS]")
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        unknown = set(query) - {"namespace", "host", "index_host"}
        if unknown:
            raise ValueError(
                f"RAG_INDEX_URI={uri!r}: unknown parameter(s) {sorted(unknown)} (namespace, host, index_host)"
            )
        return cls(
            index_name=parts.netloc,
            namespace=query.get("namespace", ""),
            host=query.get("host") or None,
            index_host=query.get("index_host") or None,
        )

    @property
    def per_tenant(self) -> bool:
        return "{tenant}" in self.namespace

    def namespace_for(self, tenant: str) -> str:
        return self.namespace.replace("{tenant}", tenant) if self.per_tenant else self.namespace

    def _namespace_of_document(self, document_id: str) -> str:
        """Per-tenant namespaces need the tenant of a document id (`TENANT:URI`, DocRef)."""
        if not self.per_tenant:
            return self.namespace
        tenant, sep, _ = document_id.partition(":")
        if not sep or not tenant:
            raise ValueError(
                f"document id {document_id!r} names no tenant (want TENANT:URI) for namespace={self.namespace}"
            )
        return self.namespace_for(tenant)

    # --- connection ----------------------------------------------------------------------

    def _open(self, model_id: str, dimension: int):
        """The index's data-plane client, after checking the index's dimension and metric."""
        with self._lock:
            if self._index is None:
                from pinecone import Pinecone

                if not os.environ.get("PINECONE_API_KEY"):
                    raise RuntimeError(f"RAG_INDEX_URI names Pinecone index {self.index_name!r}: set PINECONE_API_KEY")
                client = Pinecone(host=self.host) if self.host else Pinecone()
                # describe_index / Index(host=): the accessors client 7.x to 10.x share.
                if self.index_host:
                    index = client.Index(host=self.index_host)
                    stats = index.describe_index_stats()
                    found_dimension, metric = stats.dimension, getattr(stats, "metric", None) or "cosine"
                else:
                    desc = client.describe_index(self.index_name)
                    found_dimension, metric = desc.dimension, desc.metric
                    index = client.Index(host=desc.host)
                if metric != "cosine":
                    raise ValueError(
                        f"Pinecone index {self.index_name!r} uses the {metric} metric; rag_assets needs cosine"
                    )
                self._client, self._index, self._dimension = client, index, int(found_dimension)
        if dimension != self._dimension:
            raise DimensionMismatch(
                f"Pinecone index {self.index_name!r} has dimension {self._dimension}, but model {model_id!r} makes "
                f"{dimension}-dimensional vectors: use an index of dimension {dimension} for this model"
            )
        return self._index

    def teardown_after_execution(self, context) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            for thing in (self._index, self._client):
                if thing is not None and hasattr(thing, "close"):
                    thing.close()
            self._index = self._client = self._dimension = None

    def _until_fresh(self) -> tenacity.Retrying:
        """Calls a check again until it returns True or `freshness_timeout` has passed (then False)."""
        return tenacity.Retrying(
            retry=tenacity.retry_if_result(lambda fresh: not fresh),
            stop=tenacity.stop_after_delay(self.freshness_timeout),
            wait=tenacity.wait_chain(tenacity.wait_none(), tenacity.wait_exponential(multiplier=0.1, max=2.0)),
            retry_error_callback=lambda state: False,
        )

    def _pool(self) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(max_workers=max(1, self.parallelism), thread_name_prefix="pinecone")

    # --- helpers -------------------------------------------------------------------------

    @staticmethod
    def _list_ids(index, prefix: str | None, namespace: str) -> list[str]:
        """Every id with this prefix, or every id of the namespace (list_paginated: the same
        shape in client 7.x to 10.x; at most 100 ids a page)."""
        ids, token = [], None
        while True:
            page = index.list_paginated(prefix=prefix or None, namespace=namespace, pagination_token=token)
            ids.extend(v.id for v in page.vectors or [])
            token = page.pagination.next if page.pagination else None
            if not token:
                return ids

    @staticmethod
    def _namespace_sizes(index) -> dict[str, int]:
        """Vectors per namespace (describe_index_stats; the default namespace as "")."""
        namespaces = index.describe_index_stats().namespaces or {}
        return {
            ("" if ns in DEFAULT_NAMESPACES else ns): int(getattr(s, "vector_count", 0) or 0)
            for ns, s in namespaces.items()
        }

    def _namespaces(self, index, tenant: str | None) -> list[str]:
        """The namespaces to list: the fixed one, `tenant`'s, or (a pattern and no tenant) every
        namespace of the index that matches the pattern (from describe_index_stats)."""
        if not self.per_tenant:
            return [self.namespace]
        if tenant is not None:
            return [self.namespace_for(tenant)]
        pattern = re.compile(re.escape(self.namespace).replace(re.escape("{tenant}"), ".+"))
        names = index.describe_index_stats().namespaces or {}
        return sorted(ns for ns in names if ns not in DEFAULT_NAMESPACES and pattern.fullmatch(ns))

    @staticmethod
    def _one_metadata_each(index, groups: Mapping[tuple[str, str], Sequence[str]], pool: ThreadPoolExecutor) -> dict:
        """The metadata of one vector of each group ((namespace, prefix) -> its ids), fetched by id
        (FETCH_BATCH ids a request, a few in flight). A group whose fetched id is gone (deleted
        since it was listed) tries its next ids, up to three in all."""
        found: dict[tuple[str, str], dict] = {}
        for attempt in range(3):
            wanted: dict[str, dict[str, tuple[str, str]]] = {}  # namespace -> id -> group
            for key, ids in groups.items():
                if key not in found and attempt < len(ids):
                    wanted.setdefault(key[0], {})[ids[attempt]] = key
            if not wanted:
                break
            batches = [
                (namespace, ids[i : i + FETCH_BATCH])
                for namespace, by_id in wanted.items()
                for ids in [sorted(by_id)]
                for i in range(0, len(ids), FETCH_BATCH)
            ]
            replies = pool.map(lambda batch: index.fetch(ids=batch[1], namespace=batch[0]).vectors, batches)
            for (namespace, _), vectors in zip(batches, replies):
                for vid, vector in (vectors or {}).items():
                    if vid in wanted[namespace]:
                        found[wanted[namespace][vid]] = dict(vector.metadata or {})
        return found

    def _delete_ids(self, index, ids: Sequence[str], namespace: str, pool: ThreadPoolExecutor) -> None:
        chunks = [list(ids[i : i + DELETE_BATCH]) for i in range(0, len(ids), DELETE_BATCH)]
        list(pool.map(lambda chunk: index.delete(ids=chunk, namespace=namespace), chunks))

    # --- the contract --------------------------------------------------------------------

    def replace_documents(self, model_id, dimension, documents: Mapping[str, Sequence[VectorRow]], held=None) -> int:
        rows = [r for rs in documents.values() for r in rs]
        check_rows(rows, dimension)
        if not documents:
            return 0
        index = self._open(model_id, dimension)
        wanted: dict[str, tuple[str, str, set[str]]] = {}  # document -> (namespace, prefix, ids)
        payloads: dict[str, list[dict]] = {}  # namespace -> vectors to upsert
        for doc_id, rs in documents.items():
            namespace = self._namespace_of_document(doc_id)
            ids = set()
            for r in rs:
                if r.document_id != doc_id or r.model != model_id:
                    raise ValueError(
                        f"replace_documents: a row under {doc_id!r} belongs to {r.document_id!r}/{r.model!r}"
                    )
                if self.per_tenant and self.namespace_for(r.tenant) != namespace:
                    raise ValueError(f"document id {doc_id!r} does not start with its tenant {r.tenant!r}:")
                vid = vector_id(r)
                ids.add(vid)
                meta = vector_metadata(r)
                if "truncated" in meta:
                    log.warning(
                        "%s chunk %s: cut to fit Pinecone's metadata limit: %s",
                        r.document_key,
                        r.ordinal,
                        meta["truncated"],
                    )
                payloads.setdefault(namespace, []).append(
                    {"id": vid, "values": np.asarray(r.vector, dtype=np.float32).tolist(), "metadata": meta}
                )
            wanted[doc_id] = (namespace, document_prefix(model_id, doc_id), ids)
        with self._pool() as pool:
            # 1. Upsert every new vector (batches of 100, a few in flight). Until step 2 the old
            #    vectors are still there: a crash leaves a document with too many rows, never none.
            jobs = [
                pool.submit(index.upsert, vectors=batch, namespace=namespace)
                for namespace, items in payloads.items()
                for batch in _batches(items, UPSERT_BATCH, MAX_REQUEST_BYTES)
            ]
            for job in jobs:
                job.result()
            for doc_id, rs in documents.items():
                namespace, prefix, _ = wanted[doc_id]
                if rs:
                    first = rs[0]
                    self._wrote[(namespace, prefix)] = (
                        id_state(first.content_hash, first.source_etag, first.pipeline),
                        {k: getattr(first, k) for k in LISTED_FIELDS},
                    )
                else:
                    self._wrote.pop((namespace, prefix), None)
            # 2. Delete each document's ids that are not among its new ones: by what `held` says
            #    the document had when that is enough to name its ids, else found by prefix.
            def prune(doc_id: str) -> None:
                namespace, prefix, ids = wanted[doc_id]
                if held is not None:
                    old = former_ids(prefix, held.get(doc_id), documents[doc_id])
                    if old is not None:
                        if stale := sorted(old - ids):
                            self._delete_ids(index, stale, namespace, _Inline())
                        return

                def lists_exactly_its_ids() -> bool:
                    listed = set(self._list_ids(index, prefix, namespace))
                    if stale := sorted(listed - ids):
                        self._delete_ids(index, stale, namespace, _Inline())
                    return listed == ids

                # Serverless freshness is eventual: list (and delete) again until the listing is
                # exactly the new ids, at once the first time, then after 0.2, 0.4 ... 2 s.
                if not self._until_fresh()(lists_exactly_its_ids):
                    log.warning(
                        "%s: the index did not list exactly its new vectors within %ss", doc_id, self.freshness_timeout
                    )

            list(pool.map(prune, sorted(wanted)))
        return len(rows)

    def delete_documents(self, model_id, dimension, document_ids):
        if not document_ids:
            return 0
        index = self._open(model_id, dimension)

        def delete(doc_id: str) -> int:
            namespace = self._namespace_of_document(doc_id)
            self._wrote.pop((namespace, document_prefix(model_id, doc_id)), None)
            ids = self._list_ids(index, document_prefix(model_id, doc_id), namespace)
            self._delete_ids(index, ids, namespace, _Inline())
            return len(ids)

        with self._pool() as pool:
            return sum(pool.map(delete, sorted(set(document_ids))))

    def list_documents(self, model_id, dimension, document_ids=None, tenant=None, key_prefix=None):
        """See `VectorStore.list_documents`. Pinecone lists ids only by id prefix, and ids hash
        the document id, so `key_prefix` cannot narrow the listing: without `document_ids` the
        whole namespace(s) are listed as with no filter, one vector per document is fetched,
        and documents whose fetched `document_key` does not start with `key_prefix` are dropped
        afterwards (the cost of a key-prefix listing is that of an unfiltered one)."""
        key_prefix = check_key_prefix(key_prefix)
        if document_ids is not None and not document_ids:
            return {}
        index = self._open(model_id, dimension)
        groups: dict[tuple[str, str], list[tuple[str, str, str]]] = {}  # (namespace, prefix) -> (id, state, chunk)
        with self._pool() as pool:
            if document_ids is not None:  # by each document's prefix, or the whole namespace when cheaper
                wanted = sorted(set(document_ids))
                if tenant is not None and self.per_tenant:
                    wanted = [d for d in wanted if self._namespace_of_document(d) == self.namespace_for(tenant)]
                by_namespace: dict[str, list[str]] = {}
                for doc_id in wanted:
                    by_namespace.setdefault(self._namespace_of_document(doc_id), []).append(doc_id)
                sizes = self._namespace_sizes(index) if any(len(d) > 10 for d in by_namespace.values()) else {}
                listings = []
                for namespace, docs in by_namespace.items():
                    # A page of 100 ids a call for the whole namespace, against a call a document.
                    if len(docs) > 10 and sizes.get(namespace, 0) / 100 < len(docs):
                        prefixes = {document_prefix(model_id, d) for d in docs}
                        ids = [v for v in self._list_ids(index, None, namespace) if v[: PREFIX_CHARS + 1] in prefixes]
                        listings.append((namespace, ids))
                    else:
                        listings += pool.map(
                            lambda d, ns=namespace: (ns, self._list_ids(index, document_prefix(model_id, d), ns)), docs
                        )
            else:  # list every id of the namespace(s), whatever its model
                namespaces = self._namespaces(index, tenant)
                listings = list(zip(namespaces, pool.map(lambda ns: self._list_ids(index, None, ns), namespaces)))
            for namespace, ids in listings:
                for vid in ids:
                    parts = split_id(vid)
                    if parts is not None:
                        groups.setdefault((namespace, parts[0]), []).append((vid, parts[1], parts[2]))
            metadata = {  # documents this store wrote, listed with the state it wrote: nothing to fetch
                key: self._wrote[key][1]
                for key, rows in groups.items()
                if key in self._wrote and {state for _, state, _ in rows} == {self._wrote[key][0]}
            }
            ids_of = {key: [vid for vid, _, _ in rows] for key, rows in groups.items() if key not in metadata}
            metadata |= self._one_metadata_each(index, ids_of, pool)
        found: dict[str, IndexedDocument] = {}
        for (namespace, prefix), rows in sorted(groups.items()):
            meta = metadata.get((namespace, prefix))
            if meta is None:
                continue  # its vectors went away while we listed them
            doc_id, doc_tenant = str(meta.get("document_id", "")), str(meta.get("tenant", ""))
            if meta.get("model") != model_id or document_prefix(model_id, doc_id) != prefix:
                continue  # another model's document (same dimension, same namespace)
            if (tenant is not None and doc_tenant != tenant) or self.namespace_for(doc_tenant) != namespace:
                continue  # another tenant's, or in a namespace where this store never writes its tenant
            document_key = str(meta.get("document_key", ""))
            if key_prefix is not None and not document_key.startswith(key_prefix):
                continue  # Pinecone cannot filter ids by key: the key prefix is applied here
            # Ids of two states: rows of two contents, sources or pipelines (a replace cut short).
            mixed = len({state for _, state, _ in rows}) > 1
            found[doc_id] = IndexedDocument(
                document_id=doc_id,
                tenant=doc_tenant,
                document_key=document_key,
                content_hash=MIXED if mixed else str(meta.get("content_hash", "")),
                source_etag=MIXED if mixed else str(meta.get("source_etag", "")),
                pipeline=MIXED if mixed else str(meta.get("pipeline", "")),
                rows=len(rows),
                chunk_digest=chunk_digest(chunk for _, _, chunk in rows),
            )
        return found

    def query(self, model_id, dimension, vector, tenant, k=5, where=None):
        require_tenant(tenant)
        where = check_where(where)
        vector = check_query_vector(vector, dimension)
        k = int(k)
        if k < 1:
            return []
        index = self._open(model_id, dimension)
        conditions = [{"tenant": {"$eq": tenant}}, {"model": {"$eq": model_id}}]
        conditions += [{USER_FIELD + key: {"$eq": value}} for key, value in where.items()]
        found = index.query(
            vector=vector.tolist(),
            top_k=min(k, MAX_TOP_K_WITH_METADATA),
            namespace=self.namespace_for(tenant),
            filter={"$and": conditions},
            include_metadata=True,
        )
        hits = []
        for match in found.matches:
            meta = dict(match.metadata or {})
            user = json.loads(meta.get("metadata_json") or "{}")
            if meta.get("model") != model_id:
                continue  # another model's row of the same dimension in this index
            if meta.get("truncated"):
                user["_truncated"] = list(meta["truncated"])
            hits.append(
                Hit(
                    key=meta.get("document_key", ""),
                    tenant=meta.get("tenant", ""),
                    page=_int(meta.get("page")),
                    score=float(match.score),
                    text=meta.get("text", ""),
                    document_id=meta.get("document_id", ""),
                    chunk_id=meta.get("chunk_id") or match.id.rsplit("#", 1)[-1],
                    metadata=user,
                )
            )
        return admitted(hits, tenant, where)


def former_ids(prefix: str, before: IndexedDocument | None, rows: Sequence[VectorRow]) -> set[str] | None:
    """The ids a document had, when what was listed of it just before says so without a
    listing: none (it had no rows), or the same chunks under another state (a new source
    version or key: ids of this scheme and of the one before it). None: list them."""
    if before is None:
        return set()
    chunk_ids = [r.chunk_id for r in rows]
    if MIXED in (before.content_hash, before.source_etag, before.pipeline) or before.chunk_digest != chunk_digest(
        chunk_ids
    ):
        return None
    states = {id_state(before.content_hash, before.source_etag, before.pipeline), before.content_hash}
    return {f"{prefix}{state}#{c}" for state in states for c in chunk_ids}


def _int(value) -> int | None:
    """Pinecone keeps numbers as floats."""
    return None if value is None else int(value)


class _Inline:
    """A stand-in pool that runs work in the calling thread (no pools inside pool workers)."""

    @staticmethod
    def map(fn, items):
        return [fn(item) for item in items]
