"""One contract for every vector store, run against LanceDB (on disk), pgvector (a real
PostgreSQL 15 server) and Pinecone (the real `pinecone` client against a local fake of its
HTTP API); then what is particular to each store, and the pipeline end to end on pgvector
and on Pinecone with nothing changed but RAG_INDEX_URI."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import threading
import time
from pathlib import Path

import numpy as np
import psycopg
import pytest

from rag_assets.lib.hashing import chunk_id
from rag_assets.lib.keys import DocRef, in_span
from rag_assets.resources.pgvector_store import PgVectorStore, pg_table_name
from rag_assets.resources.pinecone_store import (
    MAX_METADATA_BYTES,
    PineconeStore,
    document_prefix,
    id_state,
    vector_id,
    vector_metadata,
)
from rag_assets.resources.stores import vector_store_from_uri
from rag_assets.resources.vector_stores import (
    MIXED,
    DimensionMismatch,
    IndexedDocument,
    LanceDBStore,
    VectorRow,
    VectorStore,
    chunk_digest,
    table_name,
)
from rag_assets.resources.vector_stores import (
    store_kind as kind_of_uri,
)
from rag_assets_tests.fakes.pinecone_server import FakePineconeServer
from rag_assets_tests.store_fixtures import (  # the *_fixture functions are pytest fixtures, used by name
    CONTRACT_DIMENSION,
    PINECONE_INDEX,
    PINECONE_KEY,
    STORE_KINDS,
    make_store,
    pg_server_fixture,  # noqa: F401
    pinecone_env_fixture,  # noqa: F401
    pinecone_server_fixture,  # noqa: F401
    store_fixture,  # noqa: F401
    store_kind_fixture,  # noqa: F401
    unique,
)

DIM = CONTRACT_DIMENSION


# --- building rows ----------------------------------------------------------------------------


def unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return (v / np.linalg.norm(v)).astype(np.float32)


def with_cosine(q: np.ndarray, cos: float, rng: np.random.Generator) -> np.ndarray:
    """A unit vector at exactly cosine `cos` from unit vector `q`."""
    r = rng.normal(size=q.shape)
    r -= r.dot(q) * q
    r /= np.linalg.norm(r)
    return unit(cos * q + np.sqrt(1 - cos**2) * r)


def doc_id(tenant: str, key: str) -> str:
    return DocRef(tenant, "s3://bucket", key).document_id


def content(label: str) -> str:
    return hashlib.sha256(label.encode()).hexdigest()


def make_doc(
    tenant: str,
    key: str,
    vectors,
    *,
    model: str,
    version: str = "v1",
    texts=None,
    metadata=None,
    pages=None,
    etag: str | None = None,
    pipeline: str = "pipe-1",
) -> tuple[str, list[VectorRow]]:
    """A document's rows as the pipeline builds them (ids from the real chunk_id); the source
    etag defaults to one per version."""
    did = doc_id(tenant, key)
    rows = []
    for i, vector in enumerate(vectors):
        text = texts[i] if texts else f"{key} chunk {i} ({version})"
        rows.append(
            VectorRow(
                chunk_id=chunk_id(did, i, text),
                tenant=tenant,
                document_id=did,
                document_key=key,
                ordinal=i,
                text=text,
                content_hash=content(f"{did}/{version}"),
                model=model,
                vector=np.asarray(vector, dtype=np.float32),
                page=pages[i] if pages else i + 1,
                row=None,
                metadata=dict(metadata[i]) if metadata else {"ordinal": i},
                source_etag=f'"etag-{version}"' if etag is None else etag,
                pipeline=pipeline,
            )
        )
    return did, rows


def random_vectors(n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [unit(rng.normal(size=DIM)) for _ in range(n)]


def all_rows(store: VectorStore, model: str, tenant: str, k: int = 1000):
    """Every row of a tenant, by querying with k large (from two opposite directions)."""
    hits = {}
    for v in (np.ones(DIM), -np.ones(DIM)):
        for h in store.query(model, DIM, unit(v), tenant=tenant, k=k):
            hits[h.chunk_id] = h
    return hits


def indexed(rows: list[VectorRow]) -> IndexedDocument:
    """What list_documents must say of a document whose rows are exactly `rows`."""
    first = rows[0]
    return IndexedDocument(
        document_id=first.document_id,
        tenant=first.tenant,
        document_key=first.document_key,
        content_hash=first.content_hash,
        source_etag=first.source_etag,
        pipeline=first.pipeline,
        rows=len(rows),
        chunk_digest=chunk_digest(r.chunk_id for r in rows),
    )


# --- writing around the store ----------------------------------------------------------------

# A pgvector table as the store created it before rows had a source etag and pipeline.
OLD_PG_TABLE = """
    CREATE TABLE {table} (
        id text PRIMARY KEY, content text NOT NULL, key text NOT NULL, embedding vector({dim}) NOT NULL,
        metadata jsonb NOT NULL DEFAULT '{{}}'::jsonb, created_at timestamptz NOT NULL DEFAULT now(),
        tenant text NOT NULL, document_id text NOT NULL, ordinal integer NOT NULL, page integer, "row" integer,
        content_hash text NOT NULL, model text NOT NULL
    );
    COMMENT ON TABLE {table} IS 'rag_assets model={model}'"""
NEW_FIELDS = ("source_etag", "pipeline")


def add_rows_directly(store: VectorStore, kind: str, model: str, rows: list[VectorRow], old: bool = False) -> None:
    """Add rows beside whatever the index holds, deleting nothing (what a replace that stopped
    half-way leaves), through each store's own low-level write path. `old`: into an index made
    before rows had a source etag and pipeline (the table is created with the old schema;
    Pinecone gets ids `<prefix><content hash>#<chunk id>` and no such metadata)."""
    if kind == "lancedb":
        import lancedb
        import pyarrow as pa

        assert isinstance(store, LanceDBStore)
        schema = store._schema(DIM)
        if old:
            schema = pa.schema([f for f in schema if f.name not in NEW_FIELDS])
        db, name = lancedb.connect(store.uri), table_name(model, DIM)
        table = db.create_table(name, schema=schema) if old else db.open_table(name)
        records = [
            {
                "id": r.chunk_id, "tenant": r.tenant, "document_id": r.document_id, "document_key": r.document_key,
                "ordinal": r.ordinal, "page": r.page, "row": r.row, "text": r.text, "content_hash": r.content_hash,
                "model": r.model, "metadata": json.dumps(r.metadata), "vector": r.vector.tolist(),
                **({} if old else {"source_etag": r.source_etag, "pipeline": r.pipeline}),
            }
            for r in rows
        ]  # fmt: skip
        table.add(pa.Table.from_pylist(records, schema=schema))
    elif kind == "pgvector":
        from pgvector.psycopg import register_vector

        assert isinstance(store, PgVectorStore)
        table = pg_table_name(model, DIM)
        columns = ["id", "content", "key", "embedding", "metadata", "tenant", "document_id", "ordinal", "page", "row"]
        columns += ["content_hash", "model", *([] if old else NEW_FIELDS)]
        with psycopg.connect(store.dsn, autocommit=True) as conn:
            if old:
                conn.execute(OLD_PG_TABLE.format(table=table, dim=DIM, model=model))
            register_vector(conn)
            for r in rows:
                values = [r.chunk_id, r.text, r.document_key, r.vector, psycopg.types.json.Jsonb(r.metadata), r.tenant]
                values += [r.document_id, r.ordinal, r.page, r.row, r.content_hash, r.model]
                values += [] if old else [r.source_etag, r.pipeline]
                names = ", ".join(f'"{c}"' for c in columns)
                conn.execute(f"INSERT INTO {table} ({names}) VALUES ({', '.join(['%s'] * len(values))})", values)
    else:
        assert isinstance(store, PineconeStore)
        vectors = []
        for r in rows:
            meta = vector_metadata(r)
            vid = vector_id(r)
            if old:
                meta = {k: v for k, v in meta.items() if k not in NEW_FIELDS}
                vid = f"{document_prefix(r.model, r.document_id)}{r.content_hash}#{r.chunk_id}"
            vectors.append({"id": vid, "values": r.vector.tolist(), "metadata": meta})
        store._open(model, DIM).upsert(vectors=vectors, namespace=store.namespace)


# --- the labelled query set -----------------------------------------------------------------


def labelled_set(model: str):
    """50 rows of tenant acme (10 documents of 5), 5 queries whose 3 nearest rows are known
    (cosines 0.97 / 0.90 / 0.80, everything else below 0.6), and for each query a row of
    tenant globex that IS the query vector."""
    rng = np.random.default_rng(20240601)
    queries: list[np.ndarray] = []
    while len(queries) < 5:
        q = unit(rng.normal(size=DIM))
        if all(abs(float(q @ p)) < 0.3 for p in queries):
            queries.append(q)
    labelled = [
        (j, rank, with_cosine(q, cos, rng)) for j, q in enumerate(queries) for rank, cos in enumerate((0.97, 0.9, 0.8))
    ]
    distractors = []
    while len(distractors) < 35:
        v = unit(rng.normal(size=DIM))
        if all(float(v @ q) < 0.6 for q in queries):
            distractors.append(v)
    vectors = [v for _, _, v in labelled] + distractors
    order = rng.permutation(len(vectors))  # spread the labelled rows over the documents
    docs, position = {}, {}
    for d in range(10):
        key = f"acme/doc{d}.txt"
        chosen = [int(i) for i in order[d * 5 : (d + 1) * 5]]
        did, rows = make_doc("acme", key, [vectors[i] for i in chosen], model=model)
        docs[did] = rows
        for slot, i in enumerate(chosen):
            position[i] = rows[slot].chunk_id
    expected = [[position[j * 3 + rank] for rank in range(3)] for j in range(5)]
    gdid, grows = make_doc("globex", "globex/copies.txt", queries, model=model)
    docs[gdid] = grows
    # The labels are the truth: check them against an exact search.
    acme = [r for did, rows in docs.items() if not did.startswith("globex") for r in rows]
    for q, want in zip(queries, expected, strict=True):
        scores = sorted(((float(r.vector @ q), r.chunk_id) for r in acme), reverse=True)
        assert [c for _, c in scores[:3]] == want and scores[2][0] - scores[3][0] > 0.15
    return docs, queries, expected


# ============================================================================================
# The contract, for every store
# ============================================================================================


def test_replace_then_listing_and_hits_carry_every_field(store: VectorStore):
    model = unique("m")
    texts = ["Grüße aus Köln — 日本語のテキスト", "second chunk", "third chunk"]
    meta = [
        {"owner": "sales", "n": 1, "ratio": 0.25, "tags": ["a", "b"], "nested": {"x": [1, 2]}, "none": None},
        {"owner": "hr", "n": 2},
        {},
    ]
    vectors = random_vectors(3, seed=1)
    did, rows = make_doc(
        "acme", "acme/handbook.pdf", vectors, model=model, texts=texts, metadata=meta, pages=[None, 2, 3]
    )
    other, other_rows = make_doc("acme", "acme/other.md", random_vectors(2, seed=2), model=model)

    assert store.replace_documents(model, DIM, {did: rows, other: other_rows}) == 5

    listed = store.list_documents(model, DIM, [did, other, doc_id("acme", "acme/missing.txt")])
    assert listed == {d: indexed(rs) for d, rs in ((did, rows), (other, other_rows))}
    assert (listed[did].source_etag, listed[did].pipeline) == ('"etag-v1"', "pipe-1")
    assert listed[did].uri == "s3://bucket/acme/handbook.pdf"

    hits = store.query(model, DIM, vectors[0], tenant="acme", k=5)
    assert len(hits) == 5
    first = hits[0]
    assert (first.chunk_id, first.document_id, first.key, first.tenant) == (
        rows[0].chunk_id,
        did,
        "acme/handbook.pdf",
        "acme",
    )
    assert (first.text, first.page, first.metadata) == (texts[0], None, meta[0])
    assert first.score == pytest.approx(1.0, abs=1e-4)
    by_id = {h.chunk_id: h for h in hits}
    assert (by_id[rows[1].chunk_id].page, by_id[rows[1].chunk_id].metadata) == (2, meta[1])
    assert by_id[rows[2].chunk_id].metadata == {}
    # Scores are cosine similarities, best first.
    for h in hits:
        row = next(r for r in rows + other_rows if r.chunk_id == h.chunk_id)
        assert h.score == pytest.approx(float(row.vector @ vectors[0]), abs=1e-4)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_replace_shrinking_a_document_leaves_exactly_its_new_chunks(store: VectorStore):
    model = unique("m")
    did, five = make_doc("acme", "acme/report.pdf", random_vectors(5, seed=3), model=model, version="v1")
    keep, keep_rows = make_doc("acme", "acme/keep.txt", random_vectors(3, seed=4), model=model)
    store.replace_documents(model, DIM, {did: five, keep: keep_rows})

    _, two = make_doc("acme", "acme/report.pdf", random_vectors(2, seed=5), model=model, version="v2")
    assert store.replace_documents(model, DIM, {did: two}) == 2

    listed = store.list_documents(model, DIM, [did, keep])
    assert (listed[did].content_hash, listed[did].rows) == (two[0].content_hash, 2)
    assert listed == {did: indexed(two), keep: indexed(keep_rows)}  # keep: untouched
    found = all_rows(store, model, "acme")
    assert {c for c, h in found.items() if h.document_id == did} == {r.chunk_id for r in two}
    assert {c for c, h in found.items() if h.document_id == keep} == {r.chunk_id for r in keep_rows}
    assert all(h.text.endswith("(v2)") for h in found.values() if h.document_id == did)


def test_replace_is_idempotent_and_an_empty_replace_empties_the_document(store: VectorStore):
    model = unique("m")
    did, rows = make_doc("acme", "acme/a.txt", random_vectors(4, seed=6), model=model)
    store.replace_documents(model, DIM, {did: rows})
    store.replace_documents(model, DIM, {did: rows})  # the same batch again (a re-run)
    assert store.list_documents(model, DIM, [did]) == {did: indexed(rows)}
    assert len(all_rows(store, model, "acme")) == 4

    assert store.replace_documents(model, DIM, {did: []}) == 0
    assert store.list_documents(model, DIM, [did]) == {} == store.list_documents(model, DIM)
    assert all_rows(store, model, "acme") == {}


def test_a_replace_told_what_the_index_held_leaves_exactly_the_new_rows(store: VectorStore):
    """`held` (what list_documents said just before) may spare a store its own read; the result
    must be the same: a new source version of the same chunks, other chunks, a new document."""
    model = unique("m")
    same, same_rows = make_doc(
        "acme", "acme/same-chunks.txt", random_vectors(3, seed=31), model=model, texts=["a", "b", "c"]
    )
    other, other_rows = make_doc("acme", "acme/other-chunks.txt", random_vectors(3, seed=32), model=model)
    store.replace_documents(model, DIM, {same: same_rows, other: other_rows})
    held = store.list_documents(model, DIM, [same, other])
    _, same_v2 = make_doc(
        "acme", "acme/same-chunks.txt", random_vectors(3, seed=33), model=model, texts=["a", "b", "c"], version="v2"
    )
    _, other_v2 = make_doc("acme", "acme/other-chunks.txt", random_vectors(2, seed=34), model=model, version="v2")
    new, new_rows = make_doc("acme", "acme/new.txt", random_vectors(2, seed=35), model=model)
    store.replace_documents(model, DIM, {same: same_v2, other: other_v2, new: new_rows}, held=held)
    assert store.list_documents(model, DIM) == {
        same: indexed(same_v2),
        other: indexed(other_v2),
        new: indexed(new_rows),
    }
    assert len(all_rows(store, model, "acme")) == 7


def test_a_batch_of_many_documents_is_one_call(store: VectorStore):
    model = unique("m")
    docs = dict(make_doc("acme", f"acme/d{i:02d}.txt", random_vectors(7, seed=100 + i), model=model) for i in range(30))
    assert store.replace_documents(model, DIM, docs) == 210  # Pinecone: 3 upserts of <= 100
    assert store.list_documents(model, DIM, list(docs)) == {d: indexed(rs) for d, rs in docs.items()}
    assert store.list_documents(model, DIM) == {d: indexed(rs) for d, rs in docs.items()}
    assert len(all_rows(store, model, "acme")) == 210


def test_delete_documents(store: VectorStore):
    model = unique("m")
    assert store.delete_documents(model, DIM, [doc_id("acme", "nothing/yet.txt")]) == 0  # no table yet
    gone, gone_rows = make_doc("acme", "acme/gone.txt", random_vectors(3, seed=7), model=model)
    stays, stay_rows = make_doc("acme", "acme/stays.txt", random_vectors(2, seed=8), model=model)
    store.replace_documents(model, DIM, {gone: gone_rows, stays: stay_rows})

    assert store.delete_documents(model, DIM, [gone, doc_id("acme", "acme/never.txt")]) == 3
    assert set(store.list_documents(model, DIM, [gone, stays])) == {stays} == set(store.list_documents(model, DIM))
    assert {h.document_id for h in all_rows(store, model, "acme").values()} == {stays}
    assert store.delete_documents(model, DIM, [gone]) == 0


def test_list_documents_filters_by_documents_and_tenant(store: VectorStore):
    model, neighbour = unique("m"), unique("m")
    docs = dict(
        [
            make_doc("acme", "acme/a.txt", random_vectors(3, seed=40), model=model),
            make_doc("acme", "acme/b.txt", random_vectors(2, seed=41), model=model, etag="", pipeline=""),
            make_doc("globex", "globex/g.txt", random_vectors(1, seed=42), model=model, etag='W/"3-x"', pipeline="p2"),
        ]
    )
    a, b, g = docs
    unknown = doc_id("acme", "acme/unknown.txt")
    # Another model of the same dimension in the same index (Pinecone: the same namespace).
    n, n_rows = make_doc("acme", "acme/a.txt", random_vectors(2, seed=43), model=neighbour)
    store.replace_documents(neighbour, DIM, {n: n_rows})
    assert store.list_documents(model, DIM) == {}  # this model has no table/rows yet
    store.replace_documents(model, DIM, docs)
    want = {d: indexed(rs) for d, rs in docs.items()}

    def listing(**kwargs) -> dict[str, IndexedDocument]:
        return store.list_documents(model, DIM, **kwargs)

    assert listing() == want
    assert listing(document_ids=[g, a, unknown, a]) == {a: want[a], g: want[g]}
    assert listing(tenant="acme") == {a: want[a], b: want[b]}
    assert listing(tenant="globex") == {g: want[g]}
    assert listing(document_ids=[a, g, unknown], tenant="acme") == {a: want[a]}
    assert listing(document_ids=[g], tenant="acme") == {}
    assert listing(document_ids=[]) == {} == listing(document_ids=[], tenant="acme")
    assert listing(document_ids=[unknown]) == {} == listing(tenant="initech") == listing(tenant="ACME")
    assert (want[b].source_etag, want[b].pipeline) == ("", "") and want[g].source_etag == 'W/"3-x"'
    assert store.list_documents(neighbour, DIM) == {n: indexed(n_rows)}
    assert store.list_documents(unique("m"), DIM) == {}  # a model never written


def test_list_documents_filters_by_key_prefix(store: VectorStore):
    """A daily-partitioned source (keys `orders/<date>/<record id>`): what the index holds for
    one date. The prefix combines with tenant and document ids (the intersection)."""
    model, neighbour = unique("m"), unique("m")
    keys = {
        "acme": [
            "orders/2025-01-01/r1",
            "orders/2025-01-01/r2",
            "orders/2025-01-02/r1",
            "orders/2025-01-011/r9",  # shares "orders/2025-01-01" but not "orders/2025-01-01/"
            "Orders/2025-01-01/r3",  # case matters
            "archive/orders/2025-01-01/r4",  # a prefix, not a substring
            "orders",
        ],
        "globex": ["orders/2025-01-01/g1"],
    }
    docs = dict(
        make_doc(tenant, key, random_vectors(1 + i % 2, seed=300 + i), model=model)
        for tenant, ks in keys.items()
        for i, key in enumerate(ks)
    )
    want = {d: indexed(rs) for d, rs in docs.items()}
    by_key = {(w.tenant, w.document_key): d for d, w in want.items()}
    # The same key under another model of the same dimension (Pinecone: the same namespace).
    n, n_rows = make_doc("acme", "orders/2025-01-01/r1", random_vectors(1, seed=399), model=neighbour)
    store.replace_documents(neighbour, DIM, {n: n_rows})
    assert store.list_documents(model, DIM, key_prefix="orders/") == {}  # no rows of this model yet
    store.replace_documents(model, DIM, docs)

    def listing(**kwargs) -> dict[str, IndexedDocument]:
        return store.list_documents(model, DIM, **kwargs)

    def of(*pairs: tuple[str, str]) -> dict[str, IndexedDocument]:
        return {by_key[p]: want[by_key[p]] for p in pairs}

    day = "orders/2025-01-01/"
    a1, a2, g1 = ("acme", day + "r1"), ("acme", day + "r2"), ("globex", day + "g1")
    assert listing(key_prefix=day) == of(a1, a2, g1)
    assert listing(key_prefix="orders/2025-01-01") == of(a1, a2, g1, ("acme", "orders/2025-01-011/r9"))
    assert listing(key_prefix="orders/") == {d: w for d, w in want.items() if w.document_key.startswith("orders/")}
    assert listing(key_prefix="orders") == {d: w for d, w in want.items() if w.document_key.startswith("orders")}
    assert listing(key_prefix=day + "r1") == of(a1)  # a whole key is a prefix of itself
    assert listing(key_prefix=day + "r1/") == {} == listing(key_prefix="orders/2025-01-03/")
    assert listing(key_prefix="ORDERS/") == {} == listing(key_prefix="rders/")
    assert listing(key_prefix="") == want == listing(key_prefix=None)
    # With a tenant.
    assert listing(key_prefix=day, tenant="acme") == of(a1, a2)
    assert listing(key_prefix=day, tenant="globex") == of(g1)
    assert listing(key_prefix="Orders/", tenant="globex") == {} == listing(key_prefix=day, tenant="initech")
    assert listing(key_prefix="", tenant="globex") == of(g1)
    # With document ids (and both).
    some = [by_key[a1], by_key[("acme", "orders/2025-01-02/r1")], by_key[g1], doc_id("acme", day + "unknown")]
    assert listing(document_ids=some, key_prefix=day) == of(a1, g1)
    assert listing(document_ids=some, key_prefix=day, tenant="acme") == of(a1)
    assert listing(document_ids=some, key_prefix="orders/2025-01-02/", tenant="globex") == {}
    assert listing(document_ids=some, key_prefix="") == of(a1, ("acme", "orders/2025-01-02/r1"), g1)
    assert listing(document_ids=[], key_prefix=day) == {}
    # Another model's rows under the same key stay apart.
    assert store.list_documents(neighbour, DIM, key_prefix=day) == {n: indexed(n_rows)}
    assert store.list_documents(unique("m"), DIM, key_prefix=day) == {}  # a model never written


# Keys with the characters a LIKE pattern or a SQL string treats specially, and non-ASCII.
LITERAL_KEYS = [
    "a%b/x", "axb/x", "a_b/x", "ab/x", "a\\b/x", "a\\\\b/x", "a\\%b/x", "a\\_b/x",
    "%/x", "_/x", "\\/x", "x/100%", "x/1000",
    "o'k/x", "ok/x", "o''k/x", "q\"uote/x",
    "Grüße/x", "grüße/x", "GRÜSSE/x", "café/x", "cafe\u0301/x", "日本/x", "日本語/x", "😀/x",
]  # fmt: skip


# (prefix, the keys it must list): each a literal prefix, whatever its characters.
LITERAL_PREFIXES = [
    ("a%b/", ["a%b/x"]),  # not "axb/x", "a_b/x" or "ab/x"
    ("a_b/", ["a_b/x"]),  # not "a%b/x" or "axb/x"
    ("a%", ["a%b/x"]),
    ("a_", ["a_b/x"]),
    ("%", ["%/x"]),
    ("_", ["_/x"]),
    ("a\\", ["a\\b/x", "a\\\\b/x", "a\\%b/x", "a\\_b/x"]),  # the escape character itself
    ("a\\b/", ["a\\b/x"]),
    ("a\\\\", ["a\\\\b/x"]),
    ("a\\%", ["a\\%b/x"]),
    ("a\\_", ["a\\_b/x"]),
    ("\\", ["\\/x"]),
    ("x/100%", ["x/100%"]),  # not "x/1000"
    ("o'k/", ["o'k/x"]),
    ("o''k/", ["o''k/x"]),
    ("'", []),
    ("x' OR '1'='1", []),
    ("q\"", ["q\"uote/x"]),
    ("Grüße/", ["Grüße/x"]),  # not "grüße/x" nor "GRÜSSE/x"
    ("Grü", ["Grüße/x"]),
    ("café", ["café/x"]),  # precomposed é, not e + combining accent
    ("cafe\u0301", ["cafe\u0301/x"]),
    ("cafe", ["cafe\u0301/x"]),
    ("日本", ["日本/x", "日本語/x"]),
    ("日本/", ["日本/x"]),
    ("😀", ["😀/x"]),
    ("", LITERAL_KEYS),
    ("zzz", []),
]


def test_list_documents_key_prefix_is_literal(store: VectorStore):
    """The prefix is matched character for character: LIKE wildcards, the escape character,
    quotes and non-ASCII in it mean themselves, and case matters."""
    model = unique("m")
    vectors = random_vectors(len(LITERAL_KEYS), seed=350)
    docs = dict(make_doc("acme", key, [v], model=model) for key, v in zip(LITERAL_KEYS, vectors, strict=True))
    store.replace_documents(model, DIM, docs)
    want = {d: indexed(rs) for d, rs in docs.items()}
    some = list(docs)[:4]  # a%b/x, axb/x, a_b/x, ab/x
    for prefix, expected in LITERAL_PREFIXES:
        assert expected == [k for k in LITERAL_KEYS if k.startswith(prefix)], prefix  # the test's own premise
        listed = store.list_documents(model, DIM, key_prefix=prefix)
        assert sorted(w.document_key for w in listed.values()) == sorted(expected), prefix
        assert listed == {d: w for d, w in want.items() if w.document_key in expected}, prefix
        assert store.list_documents(model, DIM, key_prefix=prefix, tenant="acme") == listed, prefix
        assert store.list_documents(model, DIM, key_prefix=prefix, tenant="globex") == {}, prefix
        in_some = {d: w for d, w in listed.items() if d in some}
        assert store.list_documents(model, DIM, some, key_prefix=prefix) == in_some, prefix


@pytest.mark.parametrize("prefix", ["", "a", "x/", "日本"])
def test_a_span_of_keys_lists_what_the_index_holds_there_in_code_point_order(store: VectorStore, prefix: str):
    """A listing pass reads the index a span of keys a tick (`list_key_span`): spans that tile
    the keys list each document once, compared by code point (UTF-8 bytes) whatever the store,
    with wildcards, quotes and non-ASCII meaning themselves."""
    model = unique("m")
    vectors = random_vectors(len(LITERAL_KEYS), seed=360)
    docs = dict(make_doc("acme", key, [v], model=model) for key, v in zip(LITERAL_KEYS, vectors, strict=True))
    store.replace_documents(model, DIM, docs)
    want = {d: indexed(rs) for d, rs in docs.items() if rs[0].document_key.startswith(prefix)}
    # Cuts at keys and between them, in code point order ("x/100%" < "x/100%!" < "x/1000"; "日本" < "😀").
    cuts = [*sorted({"", *sorted(LITERAL_KEYS)[1::3], "x/100%!", "日"}), None]
    listed: dict[str, IndexedDocument] = {}
    for start, stop in itertools.pairwise(cuts):
        span = store.list_key_span(model, DIM, prefix, start, stop)
        expected = {d: w for d, w in want.items() if in_span(w.document_key, start, stop)}
        assert span == expected, (start, stop)
        assert not set(span) & set(listed), (start, stop)
        listed |= span
    assert listed == want
    assert store.list_key_span(model, DIM, prefix, "\U0010ffff", None) == {}  # past every key
    assert store.list_key_span(unique("m"), DIM, prefix, "", None) == {}  # a model never written


def test_a_new_chunking_changes_the_chunk_digest(store: VectorStore):
    """Same bytes, same content hash, same number of chunks, other chunk ids (cut differently):
    only the chunk digest shows it."""
    model = unique("m")
    vectors = random_vectors(3, seed=44)
    did, rows = make_doc("acme", "acme/c.txt", vectors, model=model, texts=["ab", "cd", "ef"])
    store.replace_documents(model, DIM, {did: rows})
    before = store.list_documents(model, DIM)[did]
    _, recut = make_doc("acme", "acme/c.txt", vectors, model=model, texts=["a", "bcd", "ef"])
    assert [r.content_hash for r in recut] == [r.content_hash for r in rows]
    store.replace_documents(model, DIM, {did: recut})
    after = store.list_documents(model, DIM)[did]
    assert after == indexed(recut) and after.chunk_digest != before.chunk_digest
    assert dataclasses.replace(after, chunk_digest=before.chunk_digest) == before


def test_chunk_digest_is_over_sorted_ids_whatever_their_case(store: VectorStore):
    """The store computes the digest itself (pgvector: in SQL): ids of mixed case and
    punctuation sort by code point, not by a locale's collation."""
    model = unique("m")
    did, rows = make_doc("acme", "acme/ids.txt", random_vectors(6, seed=45), model=model)
    ids = ["b-1", "B_2", "a.3", "A", "Z~", "_9"]
    rows = [dataclasses.replace(r, chunk_id=i) for r, i in zip(rows, ids, strict=True)]
    store.replace_documents(model, DIM, {did: rows})
    assert store.list_documents(model, DIM)[did].chunk_digest == chunk_digest(ids)
    assert chunk_digest(ids) == hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()[:16]


def test_rows_of_two_states_show_mixed(store: VectorStore, store_kind: str):
    """A replace cut short leaves rows of two versions: the listing says MIXED (LanceDB and
    pgvector per field; Pinecone sees it in the ids, so all three fields), and the next
    replace converges."""
    model = unique("m")
    did, rows = make_doc("acme", "acme/half.txt", random_vectors(4, seed=46), model=model)
    keep, keep_rows = make_doc("acme", "acme/keep.txt", random_vectors(2, seed=47), model=model)
    store.replace_documents(model, DIM, {did: rows, keep: keep_rows})
    # Two rows of a newer version of the source (same bytes: same content hash) added beside.
    newer = make_doc("acme", "acme/half.txt", random_vectors(2, seed=48), model=model, etag='"e2"', texts=["n", "m"])[1]
    add_rows_directly(store, store_kind, model, newer)
    listed = store.list_documents(model, DIM)
    half = listed[did]
    assert (half.rows, half.source_etag) == (6, MIXED)
    assert half.chunk_digest == chunk_digest(r.chunk_id for r in rows + newer)
    per_field = store_kind != "pinecone"
    assert (half.content_hash, half.pipeline) == ((rows[0].content_hash, "pipe-1") if per_field else (MIXED, MIXED))
    assert (half.tenant, half.document_key) == ("acme", "acme/half.txt")
    assert listed[keep] == indexed(keep_rows)
    # A row of other content and another pipeline.
    other = make_doc("acme", "acme/half.txt", random_vectors(1, seed=49), model=model, version="v2", pipeline="p2")[1]
    add_rows_directly(store, store_kind, model, other)
    half = store.list_documents(model, DIM, [did], tenant="acme")[did]
    assert (half.content_hash, half.source_etag, half.pipeline, half.rows) == (MIXED, MIXED, MIXED, 7)
    store.replace_documents(model, DIM, {did: rows})
    assert store.list_documents(model, DIM) == {did: indexed(rows), keep: indexed(keep_rows)}


def test_an_index_from_before_source_etag_and_pipeline(store: VectorStore, store_kind: str):
    """Rows written before rows had a source etag and pipeline (LanceDB/pgvector: a table of
    the old schema, met first by a read; Pinecone: ids with the content hash) are listed with
    "" for both, queried, and replaced without error."""
    model = unique("m")
    did, old_rows = make_doc("acme", "acme/old.txt", random_vectors(3, seed=50), model=model)
    other, other_rows = make_doc("globex", "globex/old.txt", random_vectors(2, seed=51), model=model)
    add_rows_directly(store, store_kind, model, old_rows + other_rows, old=True)

    def as_old(rows):
        return dataclasses.replace(indexed(rows), source_etag="", pipeline="")

    assert store.list_documents(model, DIM) == {did: as_old(old_rows), other: as_old(other_rows)}
    assert store.list_documents(model, DIM, [did]) == {did: as_old(old_rows)}
    assert store.list_documents(model, DIM, tenant="globex") == {other: as_old(other_rows)}
    assert {h.chunk_id for h in store.query(model, DIM, old_rows[0].vector, tenant="acme", k=10)} == {
        r.chunk_id for r in old_rows
    }
    # The same chunks again, now with their source etag and pipeline.
    _, new_rows = make_doc("acme", "acme/old.txt", random_vectors(3, seed=50), model=model, etag='"e1"', pipeline="p1")
    assert store.replace_documents(model, DIM, {did: new_rows}) == 3
    assert store.list_documents(model, DIM) == {did: indexed(new_rows), other: as_old(other_rows)}
    assert len(store.query(model, DIM, old_rows[0].vector, tenant="acme", k=10)) == 3
    if store_kind == "pinecone":  # the replace removed the document's old ids; the other's stay
        stored = set(store._list_ids(store._index, None, store.namespace))
        assert stored == {vector_id(r) for r in new_rows} | {
            f"{document_prefix(model, other)}{r.content_hash}#{r.chunk_id}" for r in other_rows
        }


def test_queries_of_an_empty_index_find_nothing(store: VectorStore):
    model = unique("m")
    assert store.query(model, DIM, unit(np.ones(DIM)), tenant="acme", k=3) == []
    assert store.list_documents(model, DIM, [doc_id("acme", "acme/x.txt")]) == {}
    assert store.list_documents(model, DIM) == {} == store.list_documents(model, DIM, tenant="acme")


def test_metadata_filter(store: VectorStore):
    model = unique("m")
    meta = [
        {"owner": "sales", "n": 1, "flag": True, "label": "50%_off"},
        {"owner": "sales", "n": 2, "flag": False, "label": "o'brien"},
        {"owner": "hr", "n": 3, "flag": True, "nested": {"owner": "sales"}},  # not a top-level match
        {"owner": "hr", "n": 1.5, "label": "50x_off"},
        {"owner": "sales", "n": 3, "tags": ["sales"]},
    ]
    did, rows = make_doc("acme", "acme/m.csv", random_vectors(5, seed=9), model=model, metadata=meta)
    gdid, grows = make_doc("globex", "globex/m.csv", random_vectors(5, seed=10), model=model, metadata=meta)
    store.replace_documents(model, DIM, {did: rows, gdid: grows})
    q = unit(np.ones(DIM))

    def ords(where):
        hits = store.query(model, DIM, q, tenant="acme", k=50, where=where)
        assert all(h.tenant == "acme" for h in hits)
        return sorted(h.metadata.get("n") for h in hits)

    assert ords({"owner": "sales"}) == [1, 2, 3]
    assert ords({"owner": "sales", "n": 3}) == [3]
    assert ords({"flag": True}) == [1, 3]
    assert ords({"flag": False}) == [2]
    assert ords({"n": 1}) == [1] == ords({"n": 1.0})  # numbers compare as numbers
    assert ords({"n": 1.5}) == [1.5]
    assert ords({"n": True}) == []  # a boolean is not the number 1
    assert ords({"label": "50%_off"}) == [1]  # LIKE wildcards in the value are literal
    assert ords({"label": "o'brien"}) == [2]
    assert ords({"missing": "x"}) == []
    assert ords({"owner": "nobody"}) == []
    assert ords(None) == ords({}) == [1, 1.5, 2, 3, 3]
    for bad in ({"n": None}, {"n": [1]}, {"": 1}, {"n": float("nan")}):
        with pytest.raises(ValueError):
            store.query(model, DIM, q, tenant="acme", where=bad)


def test_dimension_mismatch_is_refused_with_a_clear_error(store: VectorStore):
    model = unique("m")
    did, rows = make_doc("acme", "acme/wide.txt", [unit(np.ones(DIM + 1))], model=model)
    with pytest.raises(DimensionMismatch, match=rf"dimension {DIM + 1}.*dimension {DIM}"):
        store.replace_documents(model, DIM, {did: rows})
    assert store.list_documents(model, DIM, [did]) == {}  # nothing was written

    ok, ok_rows = make_doc("acme", "acme/ok.txt", random_vectors(2, seed=11), model=model)
    store.replace_documents(model, DIM, {ok: ok_rows})
    with pytest.raises(DimensionMismatch, match=rf"dimension {DIM - 1}.*dimension {DIM}"):
        store.query(model, DIM, unit(np.ones(DIM - 1)), tenant="acme")


def test_a_model_of_another_dimension_never_mixes(store: VectorStore, store_kind: str):
    model = unique("m")
    did, rows = make_doc("acme", "acme/a.txt", random_vectors(2, seed=12), model=model)
    store.replace_documents(model, DIM, {did: rows})
    rng = np.random.default_rng(0)
    _, narrow = make_doc("acme", "acme/a.txt", [unit(rng.normal(size=8)) for _ in range(3)], model=model)
    if store_kind == "pinecone":  # one index has one dimension: refused, naming both
        with pytest.raises(DimensionMismatch, match=rf"index '{PINECONE_INDEX}' has dimension {DIM}.*8-dimensional"):
            store.replace_documents(model, 8, {did: narrow})
        with pytest.raises(DimensionMismatch):
            store.query(model, 8, unit(np.ones(8)), tenant="acme")
    else:  # a table per model and dimension
        store.replace_documents(model, 8, {did: narrow})
        assert store.list_documents(model, 8, [did])[did].rows == 3
        assert len(store.query(model, 8, unit(np.ones(8)), tenant="acme", k=10)) == 3
    assert store.list_documents(model, DIM, [did])[did].rows == 2
    assert len(store.query(model, DIM, unit(np.ones(DIM)), tenant="acme", k=10)) == 2


def test_a_tenant_never_sees_another_tenants_rows(store: VectorStore):
    model = unique("m")
    tenants = {"acme": 6, "globex": 5, "acme2": 4, "o'hara": 3}
    docs, vectors = {}, {}
    for t, n in tenants.items():
        vs = random_vectors(n, seed=len(t) * 7 + n)
        # Each row claims to be acme's in its own metadata: only the real tenant column counts.
        did, rows = make_doc(t, f"{t}/doc.txt", vs, model=model, metadata=[{"tenant": "acme", "owner": t}] * n)
        docs[did], vectors[t] = rows, vs
    store.replace_documents(model, DIM, docs)

    for t, n in tenants.items():
        found = all_rows(store, model, t)
        assert len(found) == n and {h.tenant for h in found.values()} == {t}
        assert {h.key for h in found.values()} == {f"{t}/doc.txt"}
    # A query that IS another tenant's row still gets only acme's rows.
    for other in ("globex", "acme2", "o'hara"):
        for v in vectors[other]:
            hits = store.query(model, DIM, v, tenant="acme", k=3)
            assert len(hits) == 3 and {h.tenant for h in hits} == {"acme"}
            assert all(h.score < 0.9999 for h in hits)
    # Metadata filters cannot widen the tenant.
    spoof = store.query(model, DIM, vectors["globex"][0], tenant="acme", k=50, where={"tenant": "acme"})
    assert {h.tenant for h in spoof} == {"acme"} and len(spoof) == 6
    assert store.query(model, DIM, vectors["globex"][0], tenant="acme", k=50, where={"owner": "globex"}) == []
    for where in (
        {"owner": "x' OR tenant = 'globex"},
        {"owner": "x%' OR '1'='1"},
        {"owner' OR '1'='1": "acme"},
        {'owner": "globex"} OR {"a': "b"},
        {"owner": "globex\\"},
    ):
        assert store.query(model, DIM, vectors["globex"][0], tenant="acme", k=50, where=where) == [], where
    # Tenant names that look like query syntax match no tenant at all.
    for phrasing in [
        "acme' OR '1'='1",
        "acme' OR tenant <> '",
        "acme'--",
        'acme" OR "1"="1',
        "%",
        "acme%",
        "_cme",
        "ACME",
        " acme",
        "acme ",
        "*",
        "acme,globex",
        "{tenant}",
        "acme\\",
        "o''hara",
        "o\\'hara",
    ]:
        assert store.query(model, DIM, vectors["globex"][0], tenant=phrasing, k=50) == [], phrasing
    for missing in ("", None, "acme\x00"):
        with pytest.raises(ValueError):
            store.query(model, DIM, vectors["acme"][0], tenant=missing)


def test_a_small_tenant_still_gets_k_results(store: VectorStore):
    model = unique("m")
    big = dict(make_doc("big", f"big/{i}.txt", random_vectors(50, seed=200 + i), model=model) for i in range(6))
    small_id, small = make_doc("small", "small/only.txt", random_vectors(12, seed=300), model=model)
    store.replace_documents(model, DIM, {**big, small_id: small})
    for seed in range(3):
        hits = store.query(model, DIM, random_vectors(1, seed=400 + seed)[0], tenant="small", k=10)
        assert len(hits) == 10 and {h.tenant for h in hits} == {"small"}


def test_the_labelled_query_set(store: VectorStore):
    model = unique("m")
    docs, queries, expected = labelled_set(model)
    store.replace_documents(model, DIM, docs)
    for q, want in zip(queries, expected, strict=True):
        hits = store.query(model, DIM, q, tenant="acme", k=3)
        assert [h.chunk_id for h in hits] == want
        assert [round(h.score, 3) for h in hits] == [0.97, 0.9, 0.8]


def test_top_k_agrees_across_stores(tmp_path, pg_server, pinecone_server, pinecone_env):
    """The same rows and queries in all three stores: the same top-5 ids and scores."""
    model = unique("m")
    docs, queries, expected = labelled_set(model)
    answers = {}
    for kind in STORE_KINDS:
        s = make_store(kind, tmp_path=tmp_path, pg=pg_server, pinecone=pinecone_server)
        s.replace_documents(model, DIM, docs)
        answers[kind] = [s.query(model, DIM, q, tenant="acme", k=5) for q in queries]
    ids = {kind: [[h.chunk_id for h in hits] for hits in a] for kind, a in answers.items()}
    assert [top[:3] for top in ids["lancedb"]] == expected
    assert ids["lancedb"] == ids["pgvector"] == ids["pinecone"]
    scores = {kind: np.array([[h.score for h in hits] for hits in a]) for kind, a in answers.items()}
    assert np.allclose(scores["lancedb"], scores["pgvector"], atol=1e-5)
    assert np.allclose(scores["lancedb"], scores["pinecone"], atol=1e-5)


# ============================================================================================
# URIs: the one place a store is chosen
# ============================================================================================


def test_vector_store_from_uri_picks_the_store():
    lance = vector_store_from_uri("./.rag/index")
    assert isinstance(lance, LanceDBStore) and lance.uri == "./.rag/index"
    assert isinstance(vector_store_from_uri("s3://bucket/index"), LanceDBStore)
    pg = vector_store_from_uri("postgresql://rag@db.example.com:5432/rag?sslmode=require")
    assert isinstance(pg, PgVectorStore) and pg.dsn.endswith("/rag?sslmode=require")
    assert isinstance(vector_store_from_uri("postgres://u@h/db"), PgVectorStore)
    pc = vector_store_from_uri("pinecone://docs?namespace=v2")
    assert isinstance(pc, PineconeStore) and (pc.index_name, pc.namespace, pc.host, pc.per_tenant) == (
        "docs",
        "v2",
        None,
        False,
    )
    per = vector_store_from_uri("pinecone://docs?namespace=%7Btenant%7D&host=http://127.0.0.1:9/")
    assert (per.namespace, per.host, per.per_tenant, per.namespace_for("acme")) == (
        "{tenant}",
        "http://127.0.0.1:9/",
        True,
        "acme",
    )
    assert vector_store_from_uri("pinecone://docs?namespace=kb-{tenant}").namespace_for("acme") == "kb-acme"
    assert vector_store_from_uri("pinecone://docs").namespace == ""
    with pytest.raises(ValueError, match="nmspace"):
        vector_store_from_uri("pinecone://docs?nmspace=x")
    with pytest.raises(ValueError, match="pinecone://INDEX"):
        vector_store_from_uri("pinecone://")
    assert [kind_of_uri(u) for u in ("./x", "postgresql://h/d", "pinecone://i")] == ["lancedb", "postgres", "pinecone"]


# ============================================================================================
# LanceDB: the indexes a table gets as it grows (docs/decisions.md D37)
# ============================================================================================

ANN_ROWS = 400  # ann_index_rows lowered for the tests (default 200,000; product quantization needs >= 256 rows)


def lance_table(store: LanceDBStore, model: str):
    import lancedb

    return lancedb.connect(store.uri).open_table(table_name(model, DIM))


def lance_index_types(store: LanceDBStore, model: str) -> dict[str, str]:
    """{column: index type as LanceDB lists it} of the model's table."""
    return {i.columns[0]: i.index_type for i in lance_table(store, model).list_indices()}


def clustered_docs(model: str, tenant: str, docs: int, seed: int) -> dict[str, list[VectorRow]]:
    """`docs` documents of 10 rows: each document near one of 8 topics, its rows near the
    document (the structure embeddings have; benchmarks/stores.py makes its corpus alike)."""
    rng = np.random.default_rng(seed)
    topics = [unit(rng.normal(size=DIM)) for _ in range(8)]
    out = {}
    for d in range(docs):
        centre = unit(topics[d % 8] + rng.normal(size=DIM) * 0.5 / np.sqrt(DIM))
        did, rows = make_doc(tenant, f"{tenant}/doc{d}.txt", [unit(centre + rng.normal(size=DIM) * 0.5 / np.sqrt(DIM))
                                                              for _ in range(10)], model=model)  # fmt: skip
        out[did] = rows
    return out


def exact_top(rows: list[VectorRow], q: np.ndarray, k: int) -> list[str]:
    scores = sorted((-float(r.vector @ q), r.chunk_id) for r in rows)
    return [c for _, c in scores[:k]]


@pytest.mark.parametrize(
    ("docs_per_tenant", "trained_over"),
    [(5, None), (40, 450), (60, 1800)],
    ids=["below-threshold", "past-threshold", "retrained-at-4x"],
)
@pytest.mark.parametrize("k", [1, 10])
def test_lancedb_past_the_threshold_has_its_indexes_and_answers_as_the_exact_scan(tmp_path, docs_per_tenant,
                                                                                   trained_over, k):
    """A bitmap index on tenant and a B-tree on document_key from the first write; an IVF_PQ
    index on the vectors built by the write that takes the table to ann_index_rows (here the
    third, to 450 rows), built again over all rows at 4 times that (1,800); either way each
    tenant gets exactly its own top k,
    the same ids and scores as an exact scan (a small corpus: the probes and the re-ranking of
    10 x max(k, 10) candidates by the exact vectors leave nothing to the codes; D37)."""
    store = LanceDBStore(uri=str(tmp_path / "lance"), ann_index_rows=ANN_ROWS)
    model = unique("m")
    names = ["acme", "globex", "initech"]
    tenants = {t: clustered_docs(model, t, docs_per_tenant, seed=i) for i, t in enumerate(names)}
    for start in range(0, docs_per_tenant, 5):  # writes of 150 rows, the tenants mixed as the pipeline mixes them
        batch = {d: rs for docs in tenants.values() for d, rs in list(docs.items())[start : start + 5]}
        store.replace_documents(model, DIM, batch)
    small_id, small = make_doc("small", "small/only.txt", random_vectors(12, seed=300), model=model)
    store.replace_documents(model, DIM, {small_id: small})

    indexes = [(i.columns[0], i.index_type, i.name) for i in lance_table(store, model).list_indices()]
    assert sorted((c, t) for c, t, _ in indexes if c != "vector") == [
        ("document_key", "BTree"), ("tenant", "Bitmap"), ("text", "FTS")
    ]  # fmt: skip
    vector = [name for c, t, name in indexes if c == "vector"]
    assert vector == ([] if trained_over is None else [f"vector_idx_trained_{trained_over}"])
    if vector:
        stats = lance_table(store, model).index_stats(vector[0])
        assert stats.index_type == "IVF_PQ" and stats.distance_type == "cosine"

    rows = {t: [r for rs in docs.values() for r in rs] for t, docs in tenants.items()} | {"small": small}
    rng = np.random.default_rng(7)
    for tenant, mine in rows.items():
        by_id = {r.chunk_id: r for r in mine}
        for i in range(8):
            q = unit(mine[int(rng.integers(len(mine)))].vector + rng.normal(size=DIM) * 0.3 / np.sqrt(DIM))
            hits = store.query(model, DIM, q, tenant=tenant, k=k)
            assert {h.tenant for h in hits} == {tenant}
            assert [h.chunk_id for h in hits] == exact_top(mine, q, k), (tenant, i)
            assert [round(h.score, 4) for h in hits] == [round(float(by_id[h.chunk_id].vector @ q), 4) for h in hits]
    # A tenant asked for more than it has gets all its rows, and nobody else's.
    assert {h.chunk_id for h in store.query(model, DIM, small[0].vector, tenant="small", k=50)} == {
        r.chunk_id for r in small
    }
    assert all_rows(store, model, "acme").keys() == {r.chunk_id for r in rows["acme"]}


@pytest.mark.parametrize("nprobes", [1, 20])
@pytest.mark.parametrize("k", [5, 12])
def test_lancedb_a_small_tenant_past_the_threshold_gets_k_rows_whatever_the_probes(tmp_path, nprobes, k):
    """A tenant with few rows among many: the probed partitions may hold fewer than k of its
    rows (with 1 probe, surely); the store then answers by an exact scan, so it gets its own
    k nearest (D37)."""
    store = LanceDBStore(uri=str(tmp_path / "lance"), ann_index_rows=ANN_ROWS, ann_nprobes=nprobes)
    model = unique("m")
    big = clustered_docs(model, "big", 60, seed=3)
    small_id, small = make_doc("small", "small/only.txt", random_vectors(12, seed=301), model=model)
    store.replace_documents(model, DIM, {**big, small_id: small})
    assert "vector" in lance_index_types(store, model)
    for seed in range(4):
        q = random_vectors(1, seed=500 + seed)[0]
        hits = store.query(model, DIM, q, tenant="small", k=k)
        assert [h.chunk_id for h in hits] == exact_top(small, q, k)


@pytest.mark.parametrize("folded_in_by", ["optimize", "a-later-write"])
def test_lancedb_rows_written_after_the_vector_index_are_found_before_and_after_optimize(tmp_path, folded_in_by):
    """Rows written after the IVF_PQ index was built are searched flat until optimize() adds
    them to it; a replaced document's old rows are gone at once, indexed or not."""
    uri = str(tmp_path / "lance")
    # No optimize() after writes: fts_reindex_* and compact_every out of reach.
    never = {"fts_reindex_rows": 10**9, "fts_reindex_fraction": 1e9, "compact_every": 0}
    store = LanceDBStore(uri=uri, ann_index_rows=ANN_ROWS, **never)
    model = unique("m")
    docs = clustered_docs(model, "acme", 50, seed=1)
    store.replace_documents(model, DIM, docs)
    index = "vector_idx_trained_500"
    assert lance_table(store, model).index_stats(index).num_unindexed_rows == 0

    fresh_id, fresh = make_doc("acme", "acme/new.txt", random_vectors(3, seed=77), model=model)
    replaced_id = next(iter(docs))
    old = docs[replaced_id]
    _, replacement = make_doc("acme", old[0].document_key, random_vectors(2, seed=78), model=model, version="v2")
    store.replace_documents(model, DIM, {fresh_id: fresh, replaced_id: replacement})

    def check() -> None:
        for row in [*fresh, *replacement]:
            hits = store.query(model, DIM, row.vector, tenant="acme", k=5)
            assert hits[0].chunk_id == row.chunk_id and hits[0].score == pytest.approx(1.0, abs=1e-5)
        for row in old:  # no ghosts: the replaced rows are gone from the index's answers
            assert row.chunk_id not in {h.chunk_id for h in store.query(model, DIM, row.vector, tenant="acme", k=10)}
        assert store.query(model, DIM, fresh[0].vector, tenant="globex", k=5) == []

    stats = lance_table(store, model).index_stats(index)
    assert stats.num_unindexed_rows > 0  # the new rows are not in the index yet
    check()

    if folded_in_by == "optimize":
        lance_table(store, model).optimize()
    else:  # a store whose bound the unindexed rows reach: its next write runs optimize()
        _, more = make_doc("acme", "acme/more.txt", random_vectors(2, seed=79), model=model)
        eager = LanceDBStore(uri=uri, ann_index_rows=ANN_ROWS, fts_reindex_rows=5)
        eager.replace_documents(model, DIM, {more[0].document_id: more})
    stats = lance_table(store, model).index_stats(index)
    assert stats.num_unindexed_rows == 0 and stats.num_indexed_rows == lance_table(store, model).count_rows()
    check()


# ============================================================================================
# pgvector
# ============================================================================================


def pg_connect(pg_server):
    return psycopg.connect(pg_server.dsn, autocommit=True)


def test_pgvector_schema_is_seed_003_compatible(pg_server):
    model = unique("m")
    store = PgVectorStore(dsn=pg_server.dsn)
    did, rows = make_doc("acme", "acme/a.txt", random_vectors(2, seed=13), model=model)
    store.replace_documents(model, DIM, {did: rows})
    table = pg_table_name(model, DIM)
    with pg_connect(pg_server) as conn:
        columns = dict(
            conn.execute(
                "SELECT column_name, format_type(atttypid, atttypmod) FROM information_schema.columns c "
                "JOIN pg_attribute a ON a.attrelid = to_regclass(c.table_name) AND a.attname = c.column_name "
                "WHERE c.table_name = %s",
                (table,),
            ).fetchall()
        )
        # the embedding processor's content_embeddings, then our own columns
        assert {k: columns[k] for k in ("id", "content", "key", "embedding", "metadata", "created_at")} == {
            "id": "text",
            "content": "text",
            "key": "text",
            "embedding": f"vector({DIM})",
            "metadata": "jsonb",
            "created_at": "timestamp with time zone",
        }
        assert {"tenant", "document_id", "ordinal", "page", "row", "content_hash", "model"} <= set(columns)
        indexes = dict(
            conn.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s", (table,)).fetchall()
        )
        assert "USING hnsw (embedding vector_cosine_ops)" in indexes[f"{table}_hnsw"]
        assert "(tenant)" in indexes[f"{table}_tenant"] and "(document_id)" in indexes[f"{table}_document"]
        assert any("PRIMARY KEY" in d or "_pkey" in n for n, d in indexes.items())
        row = conn.execute(f"SELECT id, content, key, metadata, created_at FROM {table} WHERE ordinal = 0").fetchone()
        assert row[:4] == (rows[0].chunk_id, rows[0].text, "acme/a.txt", {"ordinal": 0}) and row[4] is not None
        # its readers can be given exactly their shape with a view
        conn.execute(
            f"CREATE VIEW content_embeddings_{table[-10:]} AS SELECT id, content, key, embedding, metadata, "
            f"created_at FROM {table}"
        )


def test_pgvector_table_names_fit_and_models_never_share_a_table(pg_server):
    long = "openai:" + "x" * 80
    assert len(pg_table_name(long, 3072)) <= 48 and pg_table_name(long, 3072).endswith("__3072")
    assert pg_table_name(long, 3072) != pg_table_name(long + "y", 3072)
    assert pg_table_name("local:all-MiniLM-L6-v2", 384) == "chunks__local_all_minilm_l6_v2__384"
    tag = unique("m")
    a, b = f"{tag}/a-b", f"{tag}/a_b"  # different models, one slug
    assert pg_table_name(a, DIM) == pg_table_name(b, DIM)
    did, rows = make_doc("acme", "acme/a.txt", random_vectors(1, seed=14), model=a)
    PgVectorStore(dsn=pg_server.dsn).replace_documents(a, DIM, {did: rows})
    _, rows_b = make_doc("acme", "acme/a.txt", random_vectors(1, seed=14), model=b)
    with pytest.raises(RuntimeError, match="another model"):
        PgVectorStore(dsn=pg_server.dsn).replace_documents(b, DIM, {did: rows_b})


def test_pgvector_replace_is_one_transaction(pg_server):
    """A batch that fails half-way (pgvector refuses NaN during the COPY) changes nothing."""
    model = unique("m")
    store = PgVectorStore(dsn=pg_server.dsn)
    a, a_rows = make_doc("acme", "acme/a.txt", random_vectors(3, seed=15), model=model)
    b, b_rows = make_doc("acme", "acme/b.txt", random_vectors(3, seed=16), model=model)
    store.replace_documents(model, DIM, {a: a_rows, b: b_rows})
    before = store.list_documents(model, DIM, [a, b])

    _, new_a = make_doc("acme", "acme/a.txt", random_vectors(1, seed=17), model=model, version="v2")
    bad = np.full(DIM, np.nan, dtype=np.float32)
    _, new_b = make_doc("acme", "acme/b.txt", [random_vectors(1, seed=18)[0], bad], model=model, version="v2")
    with pytest.raises(psycopg.Error, match="NaN"):
        store.replace_documents(model, DIM, {a: new_a, b: new_b})
    assert store.list_documents(model, DIM, [a, b]) == before
    assert store.replace_documents(model, DIM, {a: new_a}) == 1  # the connection is usable again


def test_pgvector_concurrent_writers(pg_server):
    """First writers racing to create the table, and two writers of one document, all succeed."""
    model = unique("m")
    errors, docs = [], {}

    def write(i: int, key: str, n: int) -> None:
        try:
            did, rows = make_doc("acme", key, random_vectors(n, seed=500 + i), model=model, version=f"v{i}")
            docs.setdefault(key, did)
            PgVectorStore(dsn=pg_server.dsn).replace_documents(model, DIM, {did: rows})
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=write, args=(i, f"acme/{i}.txt", 3)) for i in range(6)]
    threads += [threading.Thread(target=write, args=(10 + i, "acme/same.txt", 2 + i)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    listed = PgVectorStore(dsn=pg_server.dsn).list_documents(model, DIM, list(docs.values()))
    assert all(listed[docs[f"acme/{i}.txt"]].rows == 3 for i in range(6))
    same = listed[docs["acme/same.txt"]]
    assert MIXED not in (same.content_hash, same.source_etag) and same.rows in {2, 3, 4, 5}  # one writer's rows


def fresh_database(pg_server, *settings: str) -> str:
    """A new database on the session's server (the store creates the extension itself)."""
    name = unique("db").replace("-", "_")
    with pg_connect(pg_server) as conn:
        conn.execute(f"CREATE DATABASE {name}")
        for setting in settings:
            conn.execute(f"ALTER DATABASE {name} SET {setting}")
    return pg_server.dsn.rsplit("/", 1)[0] + "/" + name


def test_pgvector_hnsw_with_a_small_tenant_uses_iterative_scan(pg_server):
    """With the HNSW index doing the search, a tenant holding 0.5% of the rows still gets k."""
    dsn = fresh_database(pg_server, "enable_seqscan = off")  # make the planner use HNSW, as at scale
    model = unique("m")
    store = PgVectorStore(dsn=dsn)
    assert store.pgvector_version >= (0, 8) and store.iterative_scan
    rng = np.random.default_rng(1)
    big = {}
    for d in range(30):
        did, rows = make_doc("big", f"big/{d}.txt", [unit(rng.normal(size=DIM)) for _ in range(100)], model=model)
        big[did] = rows
    small_id, small = make_doc("small", "small/a.txt", [unit(rng.normal(size=DIM)) for _ in range(15)], model=model)
    store.replace_documents(model, DIM, {**big, small_id: small})
    table = pg_table_name(model, DIM)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP INDEX {table}_tenant")  # leave the planner the HNSW index only
        conn.execute(f"ANALYZE {table}")
    q = unit(rng.normal(size=DIM))
    hits = store.query(model, DIM, q, tenant="small", k=10)
    assert len(hits) == 10 and {h.tenant for h in hits} == {"small"}
    exact = sorted(small, key=lambda r: -float(r.vector @ q))[:10]
    assert len({h.chunk_id for h in hits} & {r.chunk_id for r in exact}) >= 8  # approximate, nearly exact
    with psycopg.connect(dsn, autocommit=True) as conn:
        from pgvector.psycopg import register_vector

        register_vector(conn)
        params = {"vector": q, "tenant": "small", "model": model, "k": 10}
        plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + store.query_sql(table), params))
        assert f"Index Scan using {table}_hnsw" in plan  # what the store ran
        # Without the iterative scan, filtering 40 graph candidates finds almost none of them.
        assert len(conn.execute(store.query_sql(table), params).fetchall()) < 10


def test_pgvector_text_with_nul_is_stored(pg_server):
    model = unique("m")
    store = PgVectorStore(dsn=pg_server.dsn)
    did, rows = make_doc(
        "acme", "acme/nul.txt", random_vectors(1, seed=19), model=model, texts=["a\x00b"], metadata=[{"k": "x\x00y"}]
    )
    store.replace_documents(model, DIM, {did: rows})
    hit = store.query(model, DIM, rows[0].vector, tenant="acme", k=1)[0]
    assert (hit.text, hit.metadata) == ("a\ufffdb", {"k": "x\ufffdy"})


def test_pgvector_creates_the_extension_and_reports_a_bad_server(pg_server):
    dsn = fresh_database(pg_server)
    model = unique("m")
    did, rows = make_doc("acme", "acme/a.txt", random_vectors(1, seed=20), model=model)
    PgVectorStore(dsn=dsn).replace_documents(model, DIM, {did: rows})  # CREATE EXTENSION vector
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
    with pytest.raises(ConnectionError, match=r"cannot connect to postgresql://u:\*\*\*@127.0.0.1:1/x"):
        PgVectorStore(dsn="postgresql://u:secret@127.0.0.1:1/x?connect_timeout=2").query(
            model, DIM, rows[0].vector, tenant="a"
        )


def test_pgvector_an_old_table_met_first_by_a_write_or_by_many_at_once_is_migrated(pg_server):
    """A table of the old schema met first by a write (the contract test meets one first by a
    read), and one met first by several fresh stores at once, writers and readers: each adds
    the columns or finds them added, none fails."""
    model = unique("m")
    did, old_rows = make_doc("acme", "acme/old.txt", random_vectors(2, seed=52), model=model)
    add_rows_directly(PgVectorStore(dsn=pg_server.dsn), "pgvector", model, old_rows, old=True)
    new, new_rows = make_doc("acme", "acme/new.txt", random_vectors(1, seed=53), model=model)
    assert PgVectorStore(dsn=pg_server.dsn).replace_documents(model, DIM, {new: new_rows}) == 1
    assert PgVectorStore(dsn=pg_server.dsn).list_documents(model, DIM) == {
        did: dataclasses.replace(indexed(old_rows), source_etag="", pipeline=""),
        new: indexed(new_rows),
    }

    model = unique("m")
    did, old_rows = make_doc("acme", "acme/old.txt", random_vectors(2, seed=52), model=model)
    add_rows_directly(PgVectorStore(dsn=pg_server.dsn), "pgvector", model, old_rows, old=True)
    errors, written = [], {}

    def write(i: int) -> None:
        try:
            d, rows = make_doc("acme", f"acme/{i}.txt", random_vectors(2, seed=530 + i), model=model)
            written[d] = rows
            PgVectorStore(dsn=pg_server.dsn).replace_documents(model, DIM, {d: rows})
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    def read(_: int) -> None:
        try:
            assert did in PgVectorStore(dsn=pg_server.dsn).list_documents(model, DIM, [did])
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=f, args=(i,)) for i in range(3) for f in (write, read)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with pg_connect(pg_server) as conn:
        added = conn.execute(
            "SELECT column_name, data_type, is_nullable, column_default FROM information_schema.columns "
            "WHERE table_name = %s AND column_name IN ('source_etag', 'pipeline') ORDER BY column_name",
            (pg_table_name(model, DIM),),
        ).fetchall()
    assert added == [("pipeline", "text", "NO", "''::text"), ("source_etag", "text", "NO", "''::text")]
    want = {d: indexed(rows) for d, rows in written.items()}
    want[did] = dataclasses.replace(indexed(old_rows), source_etag="", pipeline="")
    assert PgVectorStore(dsn=pg_server.dsn).list_documents(model, DIM) == want


def test_pgvector_chunk_digest_ignores_the_database_collation(pg_server):
    """In a database whose default collation is ICU en-US ('a' < 'B' < 'b'), the SQL digest
    still sorts ids by code point, as chunk_digest does, and non-ASCII ids hash as UTF-8."""
    name = unique("db").replace("-", "_")
    with pg_connect(pg_server) as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C'")
    store = PgVectorStore(dsn=pg_server.dsn.rsplit("/", 1)[0] + "/" + name)
    model = unique("m")
    ids = ["b", "B", "a", "A", "_x", "é", "Z", "ß", "日本"]
    did, rows = make_doc("acme", "acme/ids.txt", random_vectors(len(ids), seed=54), model=model)
    rows = [dataclasses.replace(r, chunk_id=i) for r, i in zip(rows, ids, strict=True)]
    store.replace_documents(model, DIM, {did: rows})
    with psycopg.connect(store.dsn) as conn:  # the collation would order them otherwise
        table = pg_table_name(model, DIM)
        collated = conn.execute(f"SELECT array_agg(id ORDER BY id) FROM {table}").fetchone()[0]
    assert collated != sorted(ids)
    assert store.list_documents(model, DIM)[did] == indexed(rows)
    store.close()


# ============================================================================================
# Pinecone
# ============================================================================================


@pytest.fixture
def pc_store(pinecone_server, pinecone_env):
    store = make_store("pinecone", tmp_path=Path("."), pinecone=pinecone_server)
    yield store
    store.close()


def upserts_since(server: FakePineconeServer, start: int) -> list[dict]:
    return [r for r in server.requests[start:] if r["path"].endswith("/vectors/upsert")]


def test_pinecone_upserts_in_batches_of_100_with_bounded_parallelism(pc_store, pinecone_server):
    model = unique("m")
    docs = dict(make_doc("acme", f"acme/{i}.txt", random_vectors(25, seed=600 + i), model=model) for i in range(10))
    pc_store._open(model, DIM)
    index = pc_store._index
    in_flight, peak, lock = [0], [0], threading.Lock()
    real_upsert = index.upsert

    def slow_upsert(**kwargs):
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
        time.sleep(0.05)
        try:
            return real_upsert(**kwargs)
        finally:
            with lock:
                in_flight[0] -= 1

    index.upsert = slow_upsert
    start = len(pinecone_server.requests)
    pc_store.replace_documents(model, DIM, docs)
    sizes = sorted(len(r["json"]["vectors"]) for r in upserts_since(pinecone_server, start))
    assert sizes == [50, 100, 100] and 1 < peak[0] <= pc_store.parallelism
    assert all(r["json"]["namespace"] == pc_store.namespace for r in upserts_since(pinecone_server, start))


def test_pinecone_ids_deletes_and_no_delete_by_filter(pc_store, pinecone_server):
    """Serverless cannot delete by filter (the fake refuses it too): ids carry a per-document
    prefix, found by list-by-prefix, deleted by id."""
    model = unique("m")
    did, rows = make_doc("acme", "acme/a.txt", random_vectors(5, seed=21), model=model)
    start = len(pinecone_server.requests)
    pc_store.replace_documents(model, DIM, {did: rows})
    stored = set(pinecone_server.index(PINECONE_INDEX).ns(pc_store.namespace))
    prefix = document_prefix(model, did)
    assert stored == {f"{prefix}{id_state(r.content_hash, r.source_etag, r.pipeline)}#{r.chunk_id}" for r in rows}
    assert len(prefix) == 17 and prefix.endswith("#")
    _, two = make_doc("acme", "acme/a.txt", random_vectors(2, seed=22), model=model, version="v2")
    pc_store.replace_documents(model, DIM, {did: two})
    assert pc_store.delete_documents(model, DIM, [did]) == 2
    assert not pinecone_server.index(PINECONE_INDEX).ns(pc_store.namespace)
    deletes = [r for r in pinecone_server.requests[start:] if r["path"].endswith("/vectors/delete")]
    assert deletes and all("filter" not in r["json"] and r["status"] == 200 for r in deletes)
    lists = [r for r in pinecone_server.requests[start:] if r["path"].endswith("/vectors/list")]
    assert {r["query"]["prefix"][0] for r in lists} == {prefix}


def test_pinecone_a_replace_cut_short_converges(pc_store, pinecone_server):
    """Upsert first, delete after: stopped in between, the document has too many rows (never
    none), list_documents shows it, and the next replace leaves exactly the new chunks."""
    model = unique("m")
    did, five = make_doc("acme", "acme/a.txt", random_vectors(5, seed=23), model=model)
    pc_store.replace_documents(model, DIM, {did: five})
    _, two = make_doc("acme", "acme/a.txt", random_vectors(2, seed=24), model=model, version="v2")
    index = pc_store._index
    real_delete = index.delete

    def crash(**kwargs):
        raise ConnectionError("process killed")

    index.delete = crash
    with pytest.raises(ConnectionError):
        pc_store.replace_documents(model, DIM, {did: two})
    state = pc_store.list_documents(model, DIM, [did])[did]
    assert (state.content_hash, state.source_etag, state.pipeline, state.rows) == (MIXED, MIXED, MIXED, 7)
    assert state.chunk_digest == chunk_digest(r.chunk_id for r in five + two)
    index.delete = real_delete
    pc_store.replace_documents(model, DIM, {did: two})
    assert pc_store.list_documents(model, DIM, [did]) == {did: indexed(two)}


def test_pinecone_a_replace_lists_again_at_once_then_backs_off_until_its_freshness_timeout():
    """Serverless listings are eventually fresh: a replace lists the document again until it
    shows exactly the new ids, at once, then after 0.2, 0.4 ... 2 s; past `freshness_timeout`
    it gives up (and warns)."""
    checks, sleeps = iter([False] * 7 + [True]), []
    until_fresh = PineconeStore(index_name="x")._until_fresh().copy(sleep=sleeps.append)
    assert until_fresh(lambda: next(checks)) is True
    assert sleeps == pytest.approx([0, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0])
    calls = []
    assert PineconeStore(index_name="x", freshness_timeout=0)._until_fresh()(lambda: calls.append(1)) is False
    assert calls == [1]


def test_pinecone_metadata_fits_the_40kb_limit(pc_store, pinecone_server):
    model = unique("m")
    huge_text = "Lorem ipsum dolor sit amet. " * 3000  # 84 KB
    meta = [
        {"owner": "sales", "blob": "x" * 50_000, "small": 1},
        {"owner": "hr", "a": "y" * 30_000, "b": "z" * 20_000},
        {},
    ]
    did, rows = make_doc(
        "acme",
        "acme/big.txt",
        random_vectors(3, seed=25),
        model=model,
        texts=["short", "also short", huge_text],
        metadata=meta,
    )
    pc_store.replace_documents(model, DIM, {did: rows})  # the fake refuses anything over 40 KB
    for r in pinecone_server.index(PINECONE_INDEX).ns(pc_store.namespace).values():
        assert len(json.dumps(r["metadata"], separators=(",", ":")).encode()) <= MAX_METADATA_BYTES
    hits = {h.text[:5]: h for h in pc_store.query(model, DIM, unit(np.ones(DIM)), tenant="acme", k=3)}
    assert hits["short"].metadata == {"owner": "sales", "small": 1, "_truncated": ["metadata.blob"]}
    assert hits["also "].metadata == {"owner": "hr", "b": "z" * 20_000, "_truncated": ["metadata.a"]}
    cut = hits["Lorem"]
    assert (
        cut.metadata == {"_truncated": ["text"]} and huge_text.startswith(cut.text) and 30_000 < len(cut.text) < 40_000
    )
    # Deterministic: the same row gives the same metadata.
    assert vector_metadata(rows[2]) == vector_metadata(rows[2])
    assert (
        pc_store.query(model, DIM, unit(np.ones(DIM)), tenant="acme", k=3, where={"owner": "sales"})[0].text == "short"
    )


def test_pinecone_upserts_stay_under_2mb(pc_store, pinecone_server):
    model = unique("m")
    meta = [{"pad": "p" * 30_000}] * 120  # 100 of these would be a 3 MB request
    did, rows = make_doc("acme", "acme/fat.txt", random_vectors(120, seed=26), model=model, metadata=meta)
    start = len(pinecone_server.requests)
    pc_store.replace_documents(model, DIM, {did: rows})
    upserts = upserts_since(pinecone_server, start)
    assert len(upserts) > 2 and all(r["status"] == 200 for r in upserts)
    assert pc_store.list_documents(model, DIM, [did])[did].rows == 120


def test_pinecone_namespace_per_tenant(pinecone_server, pinecone_env, tmp_path):
    model = unique("m")
    base = unique("kb")
    store = make_store("pinecone", tmp_path=tmp_path, pinecone=pinecone_server, namespace=base + "-{tenant}")
    a, a_rows = make_doc("acme", "acme/a.txt", random_vectors(3, seed=27), model=model)
    g, g_rows = make_doc("globex", "globex/g.txt", random_vectors(2, seed=28), model=model)
    store.replace_documents(model, DIM, {a: a_rows, g: g_rows})
    spaces = pinecone_server.index(PINECONE_INDEX).namespaces
    assert len(spaces[f"{base}-acme"]) == 3 and len(spaces[f"{base}-globex"]) == 2
    assert {h.tenant for h in store.query(model, DIM, g_rows[0].vector, tenant="acme", k=10)} == {"acme"}
    assert store.query(model, DIM, g_rows[0].vector, tenant="initech", k=10) == []
    assert {d: s.rows for d, s in store.list_documents(model, DIM, [a, g]).items()} == {a: 3, g: 2}
    assert store.delete_documents(model, DIM, [g]) == 2 and not spaces[f"{base}-globex"]
    # A row whose document id names another tenant would land in the wrong namespace: refused.
    _, wrong = make_doc("acme", "acme/x.txt", random_vectors(1, seed=29), model=model)
    stray = dataclasses.replace(wrong[0], document_id="globex:s3://bucket/acme/x.txt")
    with pytest.raises(ValueError, match="tenant 'acme'"):
        store.replace_documents(model, DIM, {stray.document_id: [stray]})


def test_pinecone_list_documents_of_per_tenant_namespaces(pinecone_env):
    """namespace={tenant} and no tenant: the namespaces come from describe_index_stats; rows of
    another model, of the same model under another namespace layout, and the default namespace
    are left out."""
    model, neighbour = unique("m"), unique("m")
    made: list[PineconeStore] = []
    with FakePineconeServer(index_name=PINECONE_INDEX, dimension=DIM, api_key=PINECONE_KEY) as server:

        def store(namespace: str) -> PineconeStore:
            made.append(PineconeStore(index_name=PINECONE_INDEX, namespace=namespace, host=server.url))
            return made[-1]

        per = store("{tenant}")
        a, a_rows = make_doc("acme", "acme/a.txt", random_vectors(3, seed=60), model=model)
        g, g_rows = make_doc("globex", "globex/g.txt", random_vectors(2, seed=61), model=model)
        per.replace_documents(model, DIM, {a: a_rows, g: g_rows})
        x, x_rows = make_doc("acme", "acme/x.txt", random_vectors(2, seed=62), model=model)
        store("shared").replace_documents(model, DIM, {x: x_rows})
        store("").replace_documents(model, DIM, {x: x_rows})
        n, n_rows = make_doc("acme", "acme/a.txt", random_vectors(1, seed=63), model=neighbour)
        per.replace_documents(neighbour, DIM, {n: n_rows})

        start = len(server.requests)
        assert per.list_documents(model, DIM) == {a: indexed(a_rows), g: indexed(g_rows)}
        requests = server.requests[start:]
        listed = {r["query"]["namespace"][0] for r in requests if r["path"] == "/vectors/list"}
        assert [r["path"] for r in requests].count("/describe_index_stats") == 1
        assert listed == {"acme", "globex", "shared"}  # "shared" fits {tenant}, but holds no tenant "shared"
        assert per.list_documents(model, DIM, tenant="globex") == {g: indexed(g_rows)}
        assert per.list_documents(model, DIM, [a, g, x], tenant="acme") == {a: indexed(a_rows)}
        assert per.list_documents(model, DIM, [a, g, x]) == {a: indexed(a_rows), g: indexed(g_rows)}
        assert per.list_documents(model, DIM, tenant="initech") == {}
        assert per.list_documents(neighbour, DIM) == {n: indexed(n_rows)}
        assert store("kb-{tenant}").list_documents(model, DIM) == {}
        assert store("shared").list_documents(model, DIM) == {x: indexed(x_rows)}
        assert store("").list_documents(model, DIM) == {x: indexed(x_rows)}
        for s in made:
            s.close()


def test_pinecone_list_documents_pages_ids_and_fetches_at_most_100(pc_store, pinecone_server):
    """Everything: ids a page of 100 at a time, then one vector per document, 100 ids a fetch;
    by document: one listing per document prefix. (The documents are written by another store:
    the one that wrote them fetches nothing back, see the next test.)"""
    model = unique("m")
    docs = dict(make_doc("acme", f"acme/{i:03d}.txt", random_vectors(2, seed=700 + i), model=model) for i in range(130))
    writer = make_store("pinecone", tmp_path=Path("."), pinecone=pinecone_server, namespace=pc_store.namespace)
    writer.replace_documents(model, DIM, docs)
    writer.close()
    start = len(pinecone_server.requests)
    assert pc_store.list_documents(model, DIM) == {d: indexed(rs) for d, rs in docs.items()}
    requests = pinecone_server.requests[start:]
    lists = [r for r in requests if r["path"] == "/vectors/list"]
    fetches = [r for r in requests if r["path"] == "/vectors/fetch"]
    assert len(lists) == 3 and all("prefix" not in r["query"] for r in lists)  # 260 ids
    assert sorted(len(r["query"]["ids"]) for r in fetches) == [30, 100]
    opened = {
        r["path"] for r in requests if r["path"].startswith("/indexes/")
    }  # this store's first call: describe the index
    assert {r["path"] for r in requests} - opened == {"/vectors/list", "/vectors/fetch"}  # no query, no stats
    some = sorted(docs)[:5]
    start = len(pinecone_server.requests)
    assert pc_store.list_documents(model, DIM, some) == {d: indexed(docs[d]) for d in some}
    prefixes = [r["query"]["prefix"][0] for r in pinecone_server.requests[start:] if r["path"] == "/vectors/list"]
    assert sorted(prefixes) == sorted(document_prefix(model, d) for d in some)
    # Many documents of a small namespace: the whole namespace's ids (3 pages), not 120 listings.
    many = sorted(docs)[:120]
    start = len(pinecone_server.requests)
    assert pc_store.list_documents(model, DIM, many) == {d: indexed(docs[d]) for d in many}
    lists = [r for r in pinecone_server.requests[start:] if r["path"] == "/vectors/list"]
    assert len(lists) == 3 and all("prefix" not in r["query"] for r in lists)


def test_pinecone_a_store_lists_what_it_wrote_without_fetching_it_back(pc_store, pinecone_server):
    """The ids listed show the state the store wrote: their metadata is known, nothing is
    fetched. A document another writer changed since (another state) is fetched, and a
    deleted one is not listed."""
    model = unique("m")
    docs = dict(make_doc("acme", f"acme/{i:03d}.txt", random_vectors(2, seed=800 + i), model=model) for i in range(30))
    pc_store.replace_documents(model, DIM, docs)
    start = len(pinecone_server.requests)
    assert pc_store.list_documents(model, DIM, key_prefix="acme/") == {d: indexed(rs) for d, rs in docs.items()}
    assert not [r for r in pinecone_server.requests[start:] if r["path"] == "/vectors/fetch"]
    first, second = sorted(docs)[:2]
    other = make_store("pinecone", tmp_path=Path("."), pinecone=pinecone_server, namespace=pc_store.namespace)
    changed = [dataclasses.replace(r, content_hash="changed") for r in docs[first]]
    other.replace_documents(model, DIM, {first: changed})
    other.close()
    pc_store.delete_documents(model, DIM, [second])
    start = len(pinecone_server.requests)
    listed = pc_store.list_documents(model, DIM)
    assert listed[first] == indexed(changed) and second not in listed and len(listed) == 29
    fetched = [i for r in pinecone_server.requests[start:] if r["path"] == "/vectors/fetch" for i in r["query"]["ids"]]
    assert [i.split("#")[0] + "#" for i in fetched] == [document_prefix(model, first)]


def test_pinecone_index_host_api_key_and_metric(pinecone_server, monkeypatch, tmp_path):
    model = unique("m")
    monkeypatch.delenv("PINECONE_API_KEY", raising=False)
    store = vector_store_from_uri(f"pinecone://{PINECONE_INDEX}?host={pinecone_server.url}")
    with pytest.raises(RuntimeError, match="PINECONE_API_KEY"):
        store.query(model, DIM, unit(np.ones(DIM)), tenant="acme")
    monkeypatch.setenv("PINECONE_API_KEY", PINECONE_KEY)
    direct = vector_store_from_uri(f"pinecone://{PINECONE_INDEX}?namespace={unique('ns')}&index_host={pinecone_server.url}")
    did, rows = make_doc("acme", "acme/a.txt", random_vectors(2, seed=30), model=model)
    start = len(pinecone_server.requests)
    direct.replace_documents(model, DIM, {did: rows})
    assert not [r for r in pinecone_server.requests[start:] if r["path"].startswith("/indexes")]  # no describe
    assert len(direct.query(model, DIM, rows[0].vector, tenant="acme")) == 2
    dots = FakePineconeServer(index_name="dots", dimension=DIM, metric="dotproduct")
    with dots, pytest.raises(ValueError, match="dotproduct"):
        vector_store_from_uri(f"pinecone://dots?host={dots.url}").query(model, DIM, unit(np.ones(DIM)), tenant="a")


# ============================================================================================
# The pipeline end to end, with only RAG_INDEX_URI changed
# ============================================================================================


def ingest_folder(root: Path, instance):
    from rag_assets.definitions import build_definitions
    from rag_assets.ingest import discover, ingest
    from rag_assets.resources.object_store import ObjectStore
    from rag_assets.settings import Settings

    settings = Settings.from_env()
    refs, unfound = discover([str(root)], ObjectStore(), None, settings.tenant_from_key)
    assert not unfound
    return ingest(refs, defs=build_definitions(settings), instance=instance, batch_size=50)


def write_inbox(root: Path) -> Path:
    (root / "acme").mkdir(parents=True)
    (root / "globex").mkdir()
    (root / "acme" / "vacation.md").write_text(
        "# Vacation\nEvery employee gets twenty five days of paid vacation a year.\n"
    )
    (root / "acme" / "office.txt").write_text("The office is at 12 Harbour Street in Rotterdam.\n")
    (root / "acme" / "office.meta.json").write_text('{"owner": "facilities"}')
    (root / "globex" / "security.txt").write_text("Report a stolen laptop to the security team within one hour.\n")
    return root


def query_text(text: str, tenant: str, k: int = 3, where=None):
    from rag_assets.defs.resources import build_resources
    from rag_assets.settings import Settings

    resources = build_resources(Settings.from_env())
    embedder, store = resources["embedder"], resources["vector_store"]
    return store.query(
        embedder.model_id, embedder.dimension, embedder.embed([text])[0], tenant=tenant, k=k, where=where
    )


def check_pipeline_end_to_end(instance, tmp_path: Path, kind: str):
    import dagster as dg

    from rag_assets.defs.resources import build_resources
    from rag_assets.settings import Settings

    assert type(build_resources(Settings.from_env())["vector_store"]).__name__ == kind
    root = write_inbox(tmp_path / "inbox")
    report = ingest_folder(root, instance)
    assert sorted(report.ingested) == ["acme/office.txt", "acme/vacation.md", "globex/security.txt"]
    assert report.failed == [] and report.vectors == report.chunks == 3
    checks = [
        r.event_log_entry.dagster_event.asset_check_evaluation_data
        for run_id in report.runs
        for r in instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
    ]
    assert checks and all(c.passed for c in checks)  # read back from the store: rows == chunks

    hits = query_text("how many days of paid vacation", "acme")
    assert hits[0].key == "acme/vacation.md" and hits[0].tenant == "acme"
    assert {h.tenant for h in query_text("stolen laptop security team", "acme", k=10)} == {"acme"}
    assert query_text("stolen laptop", "globex")[0].key == "globex/security.txt"
    assert [h.key for h in query_text("where is the office", "acme", where={"owner": "facilities"})] == [
        "acme/office.txt"
    ]

    again = ingest_folder(root, instance)
    assert again.ingested == [] and again.vectors == 0 and len(again.unchanged) == 3

    (root / "acme" / "vacation.md").write_text("# Vacation\nEvery employee gets thirty days of paid vacation.\n")
    changed = ingest_folder(root, instance)
    assert changed.ingested == ["acme/vacation.md"]
    assert "thirty" in query_text("how many days of paid vacation", "acme")[0].text
    return report


def test_pipeline_end_to_end_on_pgvector(rag_env, instance, tmp_path, pg_server, monkeypatch):
    dsn = fresh_database(pg_server)
    monkeypatch.setenv("RAG_INDEX_URI", dsn)
    check_pipeline_end_to_end(instance, tmp_path, "PgVectorStore")
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT tenant, key FROM chunks__local_all_minilm_l6_v2__384 ORDER BY key").fetchall()
    assert rows == [("acme", "acme/office.txt"), ("acme", "acme/vacation.md"), ("globex", "globex/security.txt")]


def test_pipeline_end_to_end_on_pinecone(rag_env, instance, tmp_path, monkeypatch):
    with FakePineconeServer(index_name="docs", dimension=384, api_key="e2e-key") as server:
        monkeypatch.setenv("PINECONE_API_KEY", "e2e-key")
        monkeypatch.setenv("RAG_INDEX_URI", f"pinecone://docs?namespace={{tenant}}&host={server.url}")
        check_pipeline_end_to_end(instance, tmp_path, "PineconeStore")
        spaces = server.index("docs").namespaces
        assert {ns: len(v) for ns, v in spaces.items() if v} == {"acme": 2, "globex": 1}
