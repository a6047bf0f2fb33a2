"""Retrieval quality and latency of each search mode (hybrid, vector, keyword), on labelled
corpora, through the stores the pipeline writes: what DEFAULT_MODE is chosen by (D31).

    python benchmarks/search_modes.py [--stores lancedb,pgvector] [--corpora pydoc,...] [--k 20] [--json]

The corpora: those of benchmarks/corpora.py (lexical, keyword and natural queries over pydoc,
stdlib and dagster documents). Each corpus is chunked as the pipeline chunks a text file
(RAG_CHUNK_TOKENS/RAG_CHUNK_OVERLAP, the defaults unless set), embedded with RAG_EMBEDDER
(default the local all-MiniLM-L6-v2; vectors kept in benchmarks/out/ for the next run), and written through
`replace_documents` (50 documents
a call, one tenant, beside a second tenant holding the same chunks, whose rows must never come
back) into a fresh LanceDB table and a fresh pgvector table (a throwaway PostgreSQL 15,
rag_assets_tests/pg_server.py). Then every query runs through `rag_assets.search.search` in
each mode with k chunks (default 20, CANDIDATES: hybrid fuses 20 of each side), its
vector embedded beforehand (its embedding time is reported on its own line). Scores are by
document (ranked chunks folded to distinct documents): recall@5, MRR (1 / rank of the first
relevant document, 0 past k chunks) and nDCG@10. Latency: the median of search() per query,
the store's work only.

Two more rows per corpus check whether a store's own hybrid would do better than fusing in
search(): LanceDB's `table.search(query_type="hybrid")` (its RRFReranker, depth 20) and the
one-statement SQL of `PgVectorStore.hybrid_sql` (`... native`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")

import numpy as np

from rag_assets.lib.chunking import chunk_units
from rag_assets.lib.hashing import chunk_id
from rag_assets.lib.keys import DocRef
from rag_assets.lib.parsing import parse_document
from rag_assets.lib.retrieval_eval import Scores
from rag_assets.resources.embedders import embedder_from_spec
from rag_assets.resources.vector_stores import VectorRow
from rag_assets.search import CANDIDATES, MODES, search
from rag_assets.settings import Settings

TENANT, NEIGHBOUR = "bench", "neighbour"
DOCS_PER_CALL = 50


def load_corpora(names: list[str] | None):
    """[(corpus name, documents, [(query, relevant documents, kind)])]."""
    import corpora

    out = []
    for name in names or corpora.CORPORA:
        c = corpora.corpus(name)
        out.append((c.name, c.documents, [(q.text, q.relevant, q.kind) for q in c.queries]))
    return out


def chunk_rows(documents: dict[str, str], embedder, settings: Settings, tenant: str, vectors=None):
    """{document id: rows} as the pipeline writes them, and the vectors (embedded once)."""
    chunks = []
    for name, text in documents.items():
        parsed = parse_document(f"{name}.txt", text.encode())
        ref = DocRef(tenant, "s3://bench", name)
        for chunk in chunk_units(
            ref.document_id, parsed.units, max_tokens=settings.chunk_tokens, overlap=settings.chunk_overlap
        ):
            chunks.append((ref, chunk))
    if vectors is None:
        vectors = cached_embed(embedder, [c.text for _, c in chunks])
    entries = [(ref.document_id, ref.key, chunk.ordinal, chunk.text) for ref, chunk in chunks]
    docs = rows_by_document(tenant, embedder.model_id, entries, vectors)
    return docs, vectors


def rows_by_document(tenant: str, model: str, entries, vectors) -> dict[str, list[VectorRow]]:
    """{document id: rows} as the pipeline writes them, from (document id, document key,
    ordinal, text) and each entry's vector; the content hash is the document id."""
    docs: dict[str, list[VectorRow]] = {}
    for (document_id, key, ordinal, text), vector in zip(entries, vectors, strict=True):
        docs.setdefault(document_id, []).append(
            VectorRow(
                chunk_id=chunk_id(document_id, ordinal, text),
                tenant=tenant,
                document_id=document_id,
                document_key=key,
                ordinal=ordinal,
                text=text,
                content_hash=document_id,
                model=model,
                vector=np.asarray(vector, dtype=np.float32),
            )
        )
    return docs


CACHE = ROOT / "benchmarks" / "out" / "embeddings"


def cached_embed(embedder, texts: list[str]) -> np.ndarray:
    """The texts' vectors, kept in benchmarks/out/ (ignored by git) under a digest of the model
    and the texts, so that a second run measures the searches without embedding again."""
    import hashlib

    digest = hashlib.sha256("\0".join([embedder.model_id, *texts]).encode()).hexdigest()[:24]
    path = CACHE / f"{digest}.npy"
    if path.exists():
        return np.load(path)
    vectors = np.asarray(embedder.embed(texts), dtype=np.float32)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors


def write(store, model: str, dimension: int, docs: dict[str, list[VectorRow]]) -> float:
    started = time.perf_counter()
    ids = list(docs)
    for start in range(0, len(ids), DOCS_PER_CALL):
        store.replace_documents(model, dimension, {d: docs[d] for d in ids[start : start + DOCS_PER_CALL]})
    return time.perf_counter() - started


def evaluate(rankings: list[list[str]], queries) -> dict[str, float]:
    """recall@5, MRR and nDCG@10 by document over each query's ranked chunk documents, as
    `rag-assets eval` scores them (rag_assets.lib.retrieval_eval)."""
    scores = Scores(5)
    for ranked, (_, relevant, _) in zip(rankings, queries, strict=True):
        scores.add(ranked, relevant)
    return scores.means()


def searcher(store, embedder, mode: str, k: int):
    """search() in one mode: (text, vector) -> the hits' keys, best first."""

    def run(text, vector):
        return [h.key for h in search(store, embedder, TENANT, [text], k=k, mode=mode, vectors=[vector])[0]]

    return run


def native_hybrid(kind: str, store, model: str, dimension: int, k: int):
    """A store's own hybrid search, as docs/stores.md shows applications: (text, vector) -> keys."""
    if kind == "lancedb":
        import lancedb

        from rag_assets.resources.vector_stores import table_name

        table = lancedb.connect(store.uri).open_table(table_name(model, dimension))

        def run(text, vector):
            rows = (
                table.search(query_type="hybrid").vector(vector).text(text).distance_type("cosine")
                .where(f"tenant = '{TENANT}'", prefilter=True).limit(max(k, CANDIDATES)).to_list()
            )  # fmt: skip
            return [r["document_key"] for r in rows[:k]]

        return run
    from rag_assets.resources.pgvector_store import PgVectorStore, pg_table_name

    sql = PgVectorStore.hybrid_sql(pg_table_name(model, dimension))

    def run(text, vector):
        conn = store._conn()
        params = {"vector": vector, "text": text, "tenant": TENANT, "model": model, "depth": max(k, CANDIDATES), "k": k}
        with conn.transaction():
            conn.execute("SET LOCAL client_min_messages = warning")
            if store.iterative_scan:
                conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
            return [r[1] for r in conn.execute(sql, params).fetchall()]

    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stores", default="lancedb,pgvector")
    parser.add_argument("--corpora", default=None, help="names in benchmarks/corpora.py (default: all)")
    parser.add_argument("--k", type=int, default=CANDIDATES, help=f"chunks per query (default {CANDIDATES})")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    settings = Settings.from_env()
    embedder = embedder_from_spec(settings.embedder, settings)
    embedder.embed(["warm up"])
    corpora_list = load_corpora(args.corpora.split(",") if args.corpora else None)
    wanted = args.stores.split(",")
    results, notes, cleanups = [], [], []

    def make_store(kind: str):
        if kind == "lancedb":
            from rag_assets.resources.vector_stores import LanceDBStore

            return LanceDBStore(uri=tempfile.mkdtemp(prefix="bench-modes-"))
        from rag_assets.resources.pgvector_store import PgVectorStore, pg_table_name
        from rag_assets_tests.pg_server import TemporaryPostgres

        if not cleanups:
            pg = TemporaryPostgres(dbname="bench").start()
            cleanups.append(pg)
        store = PgVectorStore(dsn=cleanups[0].dsn)
        store._conn().execute(f"DROP TABLE IF EXISTS {pg_table_name(embedder.model_id, embedder.dimension)}")
        return store

    try:
        for name, documents, queries in corpora_list:
            texts = [q for q, _, _ in queries]
            embed_ms = []
            for text in texts[:50]:  # one query at a time, as `rag-assets query` embeds
                started = time.perf_counter()
                embedder.embed([text])
                embed_ms.append((time.perf_counter() - started) * 1000)
            query_vectors = cached_embed(embedder, texts)
            print(
                f"... {name}: {len(documents)} documents, {len(queries)} queries; chunking and embedding",
                file=sys.stderr,
                flush=True,
            )
            docs, vectors = chunk_rows(documents, embedder, settings, TENANT)
            neighbour, _ = chunk_rows(documents, embedder, settings, NEIGHBOUR, vectors)
            chunks = sum(len(rs) for rs in docs.values())
            for kind in wanted:
                store = make_store(kind)  # an empty table of the embedder's model
                model = embedder.model_id
                seconds = write(store, model, embedder.dimension, {**docs, **neighbour})
                print(f"    {kind}: {2 * chunks:,} rows written in {seconds:.1f} s", file=sys.stderr, flush=True)
                runs = {mode: searcher(store, embedder, mode, args.k) for mode in MODES}
                runs["hybrid (native)"] = native_hybrid(kind, store, model, embedder.dimension, args.k)
                for mode, run in runs.items():
                    run(texts[0], query_vectors[0])  # connections and caches
                    ranked, latencies = [], []
                    for text, vector in zip(texts, query_vectors, strict=True):
                        started = time.perf_counter()
                        keys = run(text, vector)
                        latencies.append((time.perf_counter() - started) * 1000)
                        ranked.append(keys)
                    by_kind = {"all": queries} | {
                        k: [q for q in queries if q[2] == k] for k in sorted({q[2] for q in queries})
                    }
                    for label, subset in by_kind.items():
                        if label != "all" and len(by_kind) == 2:
                            continue  # one kind only: "all" says it
                        picked = [ranked[i] for i, q in enumerate(queries) if q in subset]
                        results.append(
                            {
                                "corpus": name, "queries": label, "n": len(subset), "store": kind, "mode": mode,
                                **{m: round(v, 3) for m, v in evaluate(picked, subset).items()},
                                "p50_ms": round(statistics.median(latencies), 2),
                            }
                        )  # fmt: skip
                if hasattr(store, "close"):
                    store.close()
            notes.append(
                f"{name}: {len(documents)} documents, {chunks:,} chunks per tenant; query embedding "
                f"median {statistics.median(embed_ms):.1f} ms ({embedder.model_id}, one at a time)"
            )
    finally:
        for pg in cleanups:
            pg.stop()

    if args.json:
        print(json.dumps({"results": results, "notes": notes}, indent=2))
        return 0
    print(
        f"\nSearch modes: k={args.k} chunks per query, scored by document; latency = search() per query, "
        "embedding excluded (see notes)."
    )
    print(f"{platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}\n")
    header = (
        f"| {'corpus':<8} | {'queries':<8} | {'n':>3} | {'store':<8} | {'mode':<15} | recall@5 |   MRR | nDCG@10 "
        "| p50 ms |"
    )
    print(header)
    print("|" + "|".join("-" * len(c) for c in header.split("|")[1:-1]) + "|")
    for r in results:
        print(
            f"| {r['corpus']:<8} | {r['queries']:<8} | {r['n']:>3} | {r['store']:<8} | {r['mode']:<15} | "
            f"{r['recall@5']:>8.3f} | {r['mrr']:>5.3f} | {r['ndcg@10']:>7.3f} | {r['p50_ms']:>6.1f} |"
        )
    for note in notes:
        print(f"- {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
