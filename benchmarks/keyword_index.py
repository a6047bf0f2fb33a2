"""What keeping the keyword (full-text) index costs the writes, and what it buys the queries.

    python benchmarks/keyword_index.py [--sizes 10000,100000] [--stores lancedb,pgvector] [--json]

Rows as the pipeline writes them: 384-d unit vectors, chunks of about 120 words drawn from the
Python Language Reference (benchmarks/pydoc_corpus.py), documents of 20 chunks, 50 documents
(1,000 rows) per `replace_documents` call, 10 tenants. For each store and size:

LanceDB (the store's own upkeep off, so that each step is timed alone): fill
the table and optimize it (everything indexed); then the median of a 1,000-row write
(`replace_documents`, the index not touched); `optimize()` after one such write (compaction
plus the incremental update of the index), with the index and, the index dropped, without it;
a full rebuild (`create_index(replace=True)`); keyword query medians (3 words, a random tenant,
k=20) with everything indexed and with 1,000 and 10,000 rows written since (scanned unindexed).

pgvector: two tables filled in alternation, one as the store makes it (generated tsvector
column + GIN) and one without them (dropped right after creation), so that the HNSW graph,
the write's main cost, grows alike in both; write rows/s of each; keyword query median; and
the migration of a table of that size (adding the generated column and the GIN index, what
the store does the first time it meets a table from before them).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import numpy as np
import pydoc_corpus

from rag_assets.lib.hashing import chunk_id
from rag_assets.lib.keys import DocRef
from rag_assets.resources.vector_stores import VectorRow

DIM, CHUNKS_PER_DOC, DOCS_PER_CALL, K = 384, 20, 50, 20
TENANTS = [f"tenant{i:02d}" for i in range(10)]
SEED = 20240601


class Rows:
    """Batches of {document_id: rows}, numbered on from wherever the last batch stopped."""

    def __init__(self, model: str):
        self.model, self.next_doc = model, 0
        self.words = " ".join(pydoc_corpus.documents().values()).split()
        self.rng, self.pyrng = np.random.default_rng(SEED), random.Random(SEED)

    def text(self) -> str:
        start = self.pyrng.randrange(len(self.words) - 130)
        return " ".join(self.words[start : start + 120])

    def batch(self, docs: int = DOCS_PER_CALL) -> dict[str, list[VectorRow]]:
        out = {}
        vectors = self.rng.normal(size=(docs * CHUNKS_PER_DOC, DIM)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        for d in range(docs):
            tenant = TENANTS[self.next_doc % len(TENANTS)]
            ref = DocRef(tenant, "s3://bench", f"{tenant}/doc{self.next_doc:07d}.txt")
            self.next_doc += 1
            rows = []
            for i in range(CHUNKS_PER_DOC):
                text = self.text()
                rows.append(
                    VectorRow(
                        chunk_id=chunk_id(ref.document_id, i, text), tenant=tenant, document_id=ref.document_id,
                        document_key=ref.key, ordinal=i, text=text, content_hash=ref.document_id, model=self.model,
                        vector=vectors[d * CHUNKS_PER_DOC + i],
                    )
                )  # fmt: skip
            out[ref.document_id] = rows
        return out

    def query(self) -> str:
        return " ".join(self.pyrng.choice(self.words) for _ in range(3))


def median_ms(fn, n: int) -> float:
    times = []
    for _ in range(n):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(times), 1)


def lancedb(size: int) -> dict:
    from rag_assets.resources.vector_stores import FTS_COLUMN, LanceDBStore, fts_config

    store = LanceDBStore(
        uri=tempfile.mkdtemp(prefix="bench-fts-"),
        compact_every=0,
        fts_reindex_rows=10**12,
        fts_reindex_fraction=10.0**12,
    )
    model, rows = "bench", Rows("bench")
    for _ in range(size // (DOCS_PER_CALL * CHUNKS_PER_DOC)):
        store.replace_documents(model, DIM, rows.batch())

    def table():  # a handle of the latest version (a handle sees only its own writes)
        return store._table(model, DIM)

    table().optimize()
    index = store._fts_index(table()).name

    def keyword():
        store.keyword_query(model, DIM, rows.query(), tenant=random.choice(TENANTS), k=K)

    out = {"store": "lancedb", "rows": size, "keyword_indexed_ms": median_ms(keyword, 30)}
    probe = next(iter(rows.batch(1).values()))[0].vector
    out["vector_ms"] = median_ms(lambda: store.query(model, DIM, probe, tenant=random.choice(TENANTS), k=K), 30)
    batches = [rows.batch() for _ in range(5)]  # made before the clock starts
    out["write_1000_ms"] = median_ms(lambda: store.replace_documents(model, DIM, batches.pop()), 5)

    def optimize_after_a_write() -> float:
        seconds = []
        for _ in range(3):
            # Written as the store writes (a merge on id), without its upkeep (which would
            # make the index again once dropped).
            added = [r for rs in rows.batch().values() for r in rs]
            latest = table()
            latest.merge_insert("id").when_matched_update_all().when_not_matched_insert_all().execute(
                store._arrow(added, DIM)
            )
            started = time.perf_counter()
            latest.optimize()
            seconds.append(time.perf_counter() - started)
        return round(statistics.median(seconds) * 1000, 1)

    out["optimize_ms"] = optimize_after_a_write()
    started = time.perf_counter()
    table().create_index(FTS_COLUMN, config=fts_config(), replace=True)
    out["rebuild_ms"] = round((time.perf_counter() - started) * 1000, 1)
    for written in range(1, 11):  # 10,000 rows written since the rebuild
        store.replace_documents(model, DIM, rows.batch())
        if written in (1, 10):
            unindexed = table().index_stats(index).num_unindexed_rows
            out[f"keyword_{unindexed}_unindexed_ms"] = median_ms(keyword, 30)
    table().optimize()
    table().drop_index(index)
    out["optimize_without_index_ms"] = optimize_after_a_write()
    return out


def pgvector(size: int, pg) -> dict:
    from rag_assets.resources.pgvector_store import TSV_COLUMN, PgVectorStore, pg_table_name, tsv_index

    store = PgVectorStore(dsn=pg.dsn)
    with_fts, without = f"with-{size}", f"without-{size}"
    rows_a, rows_b = Rows(with_fts), Rows(without)
    store.replace_documents(with_fts, DIM, rows_a.batch(1))
    store.replace_documents(without, DIM, rows_b.batch(1))
    conn = store._conn()
    plain = pg_table_name(without, DIM)
    conn.execute(f"DROP INDEX {tsv_index(plain)}")
    conn.execute(f"ALTER TABLE {plain} DROP COLUMN {TSV_COLUMN}")
    seconds = {with_fts: 0.0, without: 0.0}
    for _ in range(size // (DOCS_PER_CALL * CHUNKS_PER_DOC)):
        for model, rows in ((with_fts, rows_a), (without, rows_b)):
            batch = rows.batch()
            started = time.perf_counter()
            store.replace_documents(model, DIM, batch)
            seconds[model] += time.perf_counter() - started
    out = {"store": "pgvector", "rows": size}
    out["write_rows_s"] = round(size / seconds[with_fts])
    out["write_rows_s_without"] = round(size / seconds[without])
    out["keyword_ms"] = median_ms(
        lambda: store.keyword_query(with_fts, DIM, rows_a.query(), random.choice(TENANTS), k=K), 30
    )
    started = time.perf_counter()
    PgVectorStore(dsn=pg.dsn).list_documents(without, DIM, ["none"])  # the first use migrates
    out["migration_ms"] = round((time.perf_counter() - started) * 1000, 1)
    store.close()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--stores", default="lancedb,pgvector")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    results, pg = [], None
    try:
        for size in sizes:
            if "lancedb" in args.stores:
                print(f"... lancedb {size:,}", file=sys.stderr, flush=True)
                results.append(lancedb(size))
                print(f"    {results[-1]}", file=sys.stderr, flush=True)
            if "pgvector" in args.stores:
                from rag_assets_tests.pg_server import TemporaryPostgres

                pg = pg or TemporaryPostgres(dbname="bench").start()
                print(f"... pgvector {size:,}", file=sys.stderr, flush=True)
                results.append(pgvector(size, pg))
                print(f"    {results[-1]}", file=sys.stderr, flush=True)
    finally:
        if pg is not None:
            pg.stop()
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(
        f"\nKeyword index upkeep: writes of {DOCS_PER_CALL * CHUNKS_PER_DOC:,} rows ({DOCS_PER_CALL} documents of "
        f"{CHUNKS_PER_DOC} chunks), {DIM}-d vectors, ~120-word chunks; keyword queries of 3 words, k={K}."
    )
    print(f"{platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}\n")
    for r in results:
        if r["store"] == "lancedb":
            print(
                f"lancedb  {r['rows']:>8,} rows: write of 1,000 rows {r['write_1000_ms']:,.0f} ms; optimize() after "
                "one "
                f"{r['optimize_ms']:,.0f} ms with the FTS index, {r['optimize_without_index_ms']:,.0f} ms without; "
                "full "
                f"rebuild {r['rebuild_ms']:,.0f} ms; keyword query {r['keyword_indexed_ms']} ms all indexed, "
                + ", ".join(
                    f"{v} ms with {k.split('_')[1]} unindexed" for k, v in r.items() if k.endswith("_unindexed_ms")
                )
                + f"; vector query {r['vector_ms']} ms"
            )
        else:
            print(
                f"pgvector {r['rows']:>8,} rows: writes {r['write_rows_s']:,} rows/s with tsvector + GIN, "
                f"{r['write_rows_s_without']:,} without; keyword query {r['keyword_ms']} ms; migrating a table of "
                f"this size {r['migration_ms']:,.0f} ms"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
