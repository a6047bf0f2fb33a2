"""Vector-store benchmark: write throughput and query latency of each store, side by side.

    python benchmarks/stores.py [--sizes 10000,100000] [--queries 200] [--stores lancedb,pgvector,pinecone]
                                [--query-budget 30] [--write-budget 300] [--data clustered|uniform]
                                [--ef-search 200,400] [--json]

For each store and size: an empty table (namespace), then SIZE 384-d unit vectors (clustered
like embeddings by default: topics, documents near a topic, chunks near their document; or
uniform random) written as the pipeline writes them: documents of 20 chunks (about 500
characters of text and the pipeline's small metadata each), 50 documents per
`replace_documents` call, tenants mixed (10 tenants, documents assigned at random). Rows are
made a batch at a time, outside the clock, and dropped once written (only ids, tenants and
the vectors are kept, for the exact search). Write throughput is vectors / time spent in the
calls. Then up to --queries queries (near one of the tenant's chunks; uniform: random), each
naming a random tenant, k=10, through `store.query`; p50 / p95 latency in milliseconds (the
first query, which opens the connection, is not counted), and recall@10 against an exact
search of the tenant's rows. With --ef-search, pgvector's same queries over the same table run
again at each hnsw.ef_search value: the recall each buys, and its latency.

Stores: LanceDB on local disk (a bitmap index on tenant; past LanceDBStore.ann_index_rows rows
an IVF_PQ index, whose build time, part of the write time, is also reported apart; "exact p50"
is the same table queried with that index bypassed), pgvector on a throwaway PostgreSQL 15
(rag_assets_tests/pg_server.py: fsync and synchronous_commit are OFF, so writes are faster
than on a durable server; HNSW m=16, ef_construction=64, iterative scan), and Pinecone
through the real `pinecone` client against the LOCAL FAKE server
(rag_assets_tests/fakes/pinecone_server.py). The Pinecone numbers measure the client and a
pure-Python, linear-scan fake: they say nothing about Pinecone's service. Queries stop when
--query-budget seconds are spent, and the table says how many ran; writes stop when
--write-budget seconds are spent (then the table shows the vectors written, and a note says so).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rag_assets.lib.hashing import chunk_id
from rag_assets.lib.keys import DocRef
from rag_assets.resources.vector_stores import VectorRow

DIM = 384
CHUNKS_PER_DOC = 20
DOCS_PER_CALL = 50
TENANTS = [f"tenant{i:02d}" for i in range(10)]
K = 10
TOPICS = 200
SEED = 20240601
EXACT_QUERIES = 50  # queries also timed as an exact scan, where the store has an ANN index
WORDS = ["policy", "employee", "manager", "team", "request", "invoice", "contract", "customer", "report", "budget"]


def unit_rows(m: np.ndarray) -> np.ndarray:
    return (m / np.linalg.norm(m, axis=-1, keepdims=True)).astype(np.float32)


def near(center: np.ndarray, n: int, spread: float, rng: np.random.Generator) -> np.ndarray:
    """n unit vectors around `center`; spread 0.6 gives cosines near 1/sqrt(1 + 0.36) = 0.86."""
    return unit_rows(center + rng.normal(size=(n, DIM)) * (spread / np.sqrt(DIM)))


def corpus(size: int, model: str, rng: np.random.Generator, data: str = "clustered"):
    """Batches of {document_id: rows}, as vector_index hands them to the store.

    clustered: like embeddings, vectors have structure: 200 topics, each document near one
    topic, its chunks near the document. uniform: independent random unit vectors, where
    nearest neighbours barely stand out (the worst case for an ANN index).
    """
    pyrng = random.Random(SEED + size)
    topics = unit_rows(rng.normal(size=(TOPICS, DIM)))
    n_docs = size // CHUNKS_PER_DOC
    batch = {}
    for d in range(n_docs):
        tenant = pyrng.choice(TENANTS)
        ref = DocRef(tenant, "s3://bench", f"{tenant}/doc{d:06d}.pdf")
        if data == "uniform":
            vectors = unit_rows(rng.normal(size=(CHUNKS_PER_DOC, DIM)))
        else:
            vectors = near(near(topics[pyrng.randrange(TOPICS)], 1, 0.8, rng)[0], CHUNKS_PER_DOC, 0.6, rng)
        rows = []
        for i in range(CHUNKS_PER_DOC):
            text = " ".join(pyrng.choice(WORDS) for _ in range(70))
            rows.append(
                VectorRow(
                    chunk_id=chunk_id(ref.document_id, i, text),
                    tenant=tenant,
                    document_id=ref.document_id,
                    document_key=ref.key,
                    ordinal=i,
                    text=text,
                    content_hash=f"{d:064x}",
                    model=model,
                    vector=vectors[i],
                    page=i // 4 + 1,
                    metadata={"char_start": i * 500, "char_end": i * 500 + len(text)},
                )
            )
        batch[ref.document_id] = rows
        if len(batch) == DOCS_PER_CALL:
            yield batch
            batch = {}
    if batch:
        yield batch


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))]


def make_query(data: str, tenant_rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """clustered: near one of the tenant's chunks (a question about a passage); uniform: random."""
    if data == "uniform":
        return unit_rows(rng.normal(size=DIM))
    return near(tenant_rows[rng.integers(len(tenant_rows))], 1, 0.7, rng)[0]


class IndexBuilds(logging.Handler):
    """Collects the store's "built the vector index" records (LanceDBStore._vector_index logs
    the rows and seconds), so the index build is reported apart from the write time."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.builds: list[tuple[int, float]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if hasattr(record, "ann_index_seconds"):
            self.builds.append((record.ann_index_rows, record.ann_index_seconds))


def exact_lancedb_ms(store, model: str, tenant: str, q: np.ndarray) -> float:
    """One LanceDB query of the store's table with the vector index bypassed: the exact scan of
    the tenant's rows (through the scalar index on tenant) that the ANN index replaces."""
    from rag_assets.resources.vector_stores import sql_quote, table_name

    table = store._table(model, DIM)
    t0 = time.perf_counter()
    search = table.search(q).distance_type("cosine").where(f"tenant = {sql_quote(tenant)}", prefilter=True)
    search.bypass_vector_index().limit(K).to_list()
    assert table.name == table_name(model, DIM)
    return (time.perf_counter() - t0) * 1000


def run_one(
    name: str, store, size: int, queries: int, budget: float, write_budget: float, data: str, variants=None
) -> list[dict]:
    """SIZE vectors written through `store`, then its queries timed: one result, then one for each
    of `variants` (a label -> a store over the same data with other query settings)."""
    model = f"bench-{uuid.uuid4().hex[:8]}"
    rng = np.random.default_rng(SEED)
    # What was written, for an exact search to measure recall against: ids, tenants and one
    # float32 matrix (1.5 GB at 1,000,000 vectors); the rows themselves are made a batch at a
    # time and dropped once written.
    ids = np.empty(size, dtype=object)
    tenants = np.empty(size, dtype=object)
    matrix = np.empty((size, DIM), dtype=np.float32)
    builds = IndexBuilds()
    logging.getLogger("rag_assets.resources.vector_stores").addHandler(builds)
    logging.getLogger("rag_assets.resources.vector_stores").setLevel(logging.INFO)
    written, write_s = 0, 0.0
    try:
        for batch in corpus(size, model, rng, data):  # made outside the clock
            rows = [r for rs in batch.values() for r in rs]
            t0 = time.perf_counter()
            store.replace_documents(model, DIM, batch)
            write_s += time.perf_counter() - t0
            for r in rows:
                ids[written], tenants[written], matrix[written] = r.chunk_id, r.tenant, r.vector
                written += 1
            if write_s > write_budget and written < size:
                break  # reported: the row shows how many vectors were written, and a note says so
    finally:
        logging.getLogger("rag_assets.resources.vector_stores").removeHandler(builds)
    ids, tenants, matrix = ids[:written], tenants[:written], matrix[:written]

    measured = query_figures(store, model, ids, tenants, matrix, queries, budget, data, exact=bool(builds.builds))
    result = {
        "store": name,
        "vectors": size,
        "written": written,
        "write_s": round(write_s, 2),
        "write_vps": round(written / write_s),
        "index_build_s": round(sum(s for _, s in builds.builds), 1) if builds.builds else None,
        "index_builds": builds.builds,  # (rows, seconds) of each build: the first, then each retrain
        **measured,
    }
    # The same queries over the same table, through the same store with other query settings.
    variants = [
        {**result, "store": f"{name}, {label}", "variant": label, **query_figures(other, model, ids, tenants, matrix,
                                                                                   queries, budget, data)}
        for label, other in (variants or {}).items()
    ]  # fmt: skip
    return [result, *variants]


def query_figures(store, model, ids, tenants, matrix, queries: int, budget: float, data: str, exact: bool = False):
    """Up to `queries` queries (each a random tenant's, k=K; the same ones for every call), until
    `budget` seconds: p50/p95 latency and recall@10 against an exact search of the tenant's rows
    (with `exact`, LanceDB's own exact scan of the first EXACT_QUERIES, timed)."""
    qrng = np.random.default_rng(SEED + 1)
    pyrng = random.Random(SEED + 2)
    latencies, returned, recalls, exact_ms = [], [], [], []
    deadline = time.perf_counter() + budget
    for i in range(queries + 1):
        tenant = pyrng.choice(TENANTS)
        mine = np.flatnonzero(tenants == tenant)
        q = make_query(data, matrix[mine], qrng)
        t0 = time.perf_counter()
        hits = store.query(model, DIM, q, tenant=tenant, k=K)
        elapsed = time.perf_counter() - t0
        assert all(h.tenant == tenant for h in hits)
        if i:  # the first query opens connections and caches
            latencies.append(elapsed * 1000)
            returned.append(len(hits))
            truth = set(ids[mine[np.argsort(-(matrix[mine] @ q))[:K]]])
            recalls.append(len(truth & {h.chunk_id for h in hits}) / len(truth))
            if exact and i <= EXACT_QUERIES:
                exact_ms.append(exact_lancedb_ms(store, model, tenant, q))
        if time.perf_counter() > deadline and len(latencies) >= 5:
            break
    return {
        "queries": len(latencies),
        "p50_ms": round(percentile(latencies, 50), 2),
        "p95_ms": round(percentile(latencies, 95), 2),
        "exact_p50_ms": round(percentile(exact_ms, 50), 2) if exact_ms else None,
        "mean_hits": round(statistics.mean(returned), 2),
        "recall": round(statistics.mean(recalls), 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--stores", default="lancedb,pgvector,pinecone")
    parser.add_argument("--query-budget", type=float, default=30.0, help="seconds of queries per store and size")
    parser.add_argument("--write-budget", type=float, default=300.0, help="seconds of writes per store and size")
    parser.add_argument("--data", choices=["clustered", "uniform"], default="clustered", help="see corpus()")
    parser.add_argument(
        "--ef-search", default="", metavar="N,N",
        help="pgvector: the same queries again at each of these hnsw.ef_search values (the store's default: 100)",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    ef_searches = [int(v) for v in args.ef_search.split(",") if v]
    wanted = args.stores.split(",")
    results, notes, cleanups, fakes = [], [], [], []

    def stores():
        if "lancedb" in wanted:
            from rag_assets.resources.vector_stores import LanceDBStore

            tmp = tempfile.mkdtemp(prefix="bench-lance-")
            yield "lancedb", lambda: LanceDBStore(uri=tmp), dict
        if "pgvector" in wanted:
            from rag_assets.resources.pgvector_store import PgVectorStore
            from rag_assets_tests.pg_server import TemporaryPostgres

            try:
                pg = TemporaryPostgres(dbname="bench").start()
            except RuntimeError as e:
                notes.append(f"pgvector not run: {e}")
            else:
                cleanups.append(pg.stop)
                yield "pgvector", lambda: PgVectorStore(dsn=pg.dsn), lambda: {
                    f"ef_search {v}": PgVectorStore(dsn=pg.dsn, ef_search=v) for v in ef_searches
                }
        if "pinecone" in wanted:
            from rag_assets.resources.pinecone_store import PineconeStore
            from rag_assets_tests.fakes.pinecone_server import FakePineconeServer

            server = FakePineconeServer(index_name="bench", dimension=DIM, api_key="bench")
            cleanups.append(server.stop)
            fakes.append(server)
            os.environ["PINECONE_API_KEY"] = "bench"
            yield "pinecone (local fake)", lambda: PineconeStore(
                index_name="bench", namespace=f"bench-{uuid.uuid4().hex[:6]}", host=server.url
            ), dict

    try:
        for name, make, make_variants in stores():
            for size in sizes:
                store, variants = make(), make_variants()
                print(f"... {name}: {size:,} vectors", file=sys.stderr, flush=True)
                budgets = (args.query_budget, args.write_budget)
                found = run_one(name, store, size, args.queries, *budgets, args.data, variants)
                for result in found:
                    print(f"    {result}", file=sys.stderr, flush=True)
                results.extend(found)
                for each in (store, *variants.values()):
                    if hasattr(each, "close"):
                        each.close()
                for server in fakes:
                    server.indexes["bench"].namespaces.clear()  # the fake keeps everything in memory
    finally:
        for cleanup in cleanups:
            cleanup()

    if args.json:
        print(json.dumps({"results": results, "notes": notes}, indent=2))
        return 0
    print(
        f"\nVector stores: {DIM}-d {args.data} unit vectors, {len(TENANTS)} tenants, documents of {CHUNKS_PER_DOC} "
        "chunks, "
        f"{DOCS_PER_CALL} documents per replace_documents call; queries k={K} with a tenant filter."
    )
    print(f"{platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}\n")
    header = (
        f"| {'store':<24} | {'vectors':>8} | {'written':>8} | {'write s':>8} | {'write vectors/s':>15} | "
        f"{'index build s':>13} | {'queries':>7} | {'p50 ms':>7} | {'p95 ms':>7} | {'recall@10':>9} | "
        f"{'exact p50 ms':>12} |"
    )
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for r in sorted(results, key=lambda r: (r["vectors"], r["store"].split(",")[0])):  # variants after theirs
        print(
            f"| {r['store']:<24} | {r['vectors']:>8,} | {r['written']:>8,} | {r['write_s']:>8.1f} | "
            f"{r['write_vps']:>15,} | "
            f"{'-' if r['index_build_s'] is None else format(r['index_build_s'], '.1f'):>13} | "
            f"{r['queries']:>7} | {r['p50_ms']:>7.2f} | {r['p95_ms']:>7.2f} | {r['recall']:>9.3f} | "
            f"{'-' if r['exact_p50_ms'] is None else format(r['exact_p50_ms'], '.2f'):>12} |"
        )
    for r in results:
        if r.get("variant"):
            continue  # the notes of its store's own row say it
        if r["written"] < r["vectors"]:
            notes.append(
                f"{r['store']} at {r['vectors']:,}: TOO SLOW, writing stopped at the {args.write_budget:g} s budget "
                f"after {r['written']:,} vectors ({r['write_vps']:,}/s); its queries ran over those "
                f"{r['written']:,} (a full run: --write-budget 3600)"
            )
        if r["queries"] < args.queries:
            notes.append(f"{r['store']} at {r['vectors']:,}: {r['queries']} of {args.queries} queries ran within "
                         f"the {args.query_budget:g} s budget")
    notes.append(
        "pinecone (local fake): the real client against rag_assets_tests/fakes/pinecone_server.py, a pure-Python "
        "linear scan; not Pinecone's service."
    )
    notes.append("pgvector: TemporaryPostgres runs with fsync=off and synchronous_commit=off.")
    if ef_searches and "pgvector" in wanted:
        notes.append(
            "pgvector, ef_search N: the same queries over the same table at hnsw.ef_search N (the store's ef_search; "
            "the pgvector row: its default, 100); written and write s are the table's."
        )
    if "lancedb" in wanted:
        from rag_assets.resources.vector_stores import LanceDBStore

        lance = LanceDBStore(uri="unused")
        built = [r for r in results if r["store"] == "lancedb" and r["index_builds"]]
        notes.append(
            f"lancedb: a bitmap index on tenant from the first write; an IVF_PQ (cosine) index built by the write that "
            f"takes the table to {lance.ann_index_rows:,} rows (sqrt(rows) partitions, 8-bit codes of 16 dimensions), "
            f"rebuilt at {lance.ann_retrain_growth:g}x the rows it was trained over, kept by optimize() between; "
            f"queries probe {lance.ann_nprobes} partitions and re-rank {lance.refine_factor} x max(k, 10) candidates "
            "by the exact vectors. Below the threshold: an exact scan."
            + "".join(
                f" At {r['vectors']:,}: built over "
                + " and rebuilt over ".join(f"{rows:,} rows in {secs:.1f} s" for rows, secs in r["index_builds"])
                + " (index build s, part of write s)."
                for r in built
            )
        )
        if built:
            notes.append(
                f"exact p50 ms: the first {EXACT_QUERIES} queries run again on the same table with the ANN index "
                "bypassed (LanceDB's exact scan of the tenant's rows): the latency the index replaces, at recall 1."
            )
    for note in notes:
        print(f"- {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
