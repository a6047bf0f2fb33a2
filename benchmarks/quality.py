"""Retrieval quality of chunking choices and embedding runtimes, on labelled queries over
text that ships with Python (benchmarks/pydoc_corpus.py).

    python benchmarks/quality.py [--configs 160/32,96/16,...] [--embedders local:all-MiniLM-L6-v2,...]
                                 [--batch-size N] [--json]

Each configuration chunks the corpus as the pipeline does (`parse_document` of the text
file, `chunk_units` with max_tokens/overlap), embeds the chunks and the queries, ranks every
chunk by cosine (the exact search LanceDB does on a table without an ANN index) and scores
recall@5 and nDCG@10 by document, on the tuning queries and the held-out ones apart. It
prints what each choice costs too: chunks, the model's tokens, chunks longer than the model's
window (their tail is not in their vector), embedding seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")

import numpy as np  # noqa: E402
import pydoc_corpus  # noqa: E402
from tqdm import tqdm  # noqa: E402

from rag_assets.lib.chunking import chunk_units  # noqa: E402
from rag_assets.lib.parsing import parse_document  # noqa: E402
from rag_assets.resources.embedders import embedder_from_spec  # noqa: E402
from rag_assets.settings import Settings  # noqa: E402

DEFAULT_CONFIGS = "64/8,96/16,128/24,160/32,192/32,192/0,192/64,224/32"


def chunk_corpus(docs: dict[str, str], max_tokens: int, overlap: int) -> tuple[list[str], list[str]]:
    """(chunk texts, the document of each), chunked as the pipeline chunks a text file."""
    texts, owners = [], []
    for name, text in docs.items():
        parsed = parse_document(f"{name}.txt", text.encode())
        for chunk in chunk_units(name, parsed.units, max_tokens=max_tokens, overlap=overlap):
            texts.append(chunk.text)
            owners.append(name)
    return texts, owners


def rank(query_vectors: np.ndarray, chunk_vectors: np.ndarray, owners: list[str], depth: int = 100) -> list[list[str]]:
    """Each query's chunks' documents, best cosine first (vectors are unit length)."""
    sims = query_vectors @ chunk_vectors.T
    top = np.argsort(-sims, axis=1)[:, :depth]
    return [[owners[i] for i in row] for row in top]


def evaluate(embedder, docs, max_tokens: int, overlap: int) -> dict:
    texts, owners = chunk_corpus(docs, max_tokens, overlap)
    started = time.perf_counter()
    vectors = embedder.embed(texts)
    seconds = time.perf_counter() - started
    tune, held_out = pydoc_corpus.split_queries()
    result = {"chunks": len(texts), "embed_seconds": round(seconds, 2)}
    model = embedder._model  # the sentence-transformers model: its tokenizer and window
    lengths = [len(ids) for ids in model.tokenizer(texts)["input_ids"]]
    result["model_tokens"] = sum(lengths)
    result["truncated"] = sum(n > model.max_seq_length for n in lengths)
    for label, queries in (("tune", tune), ("held_out", held_out)):
        ranked = rank(embedder.embed([q for q, _ in queries]), vectors, owners)
        for metric, value in pydoc_corpus.scores(ranked, queries).items():
            result[f"{label} {metric}"] = round(value, 3)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", default=DEFAULT_CONFIGS, help="max_tokens/overlap pairs, comma separated")
    parser.add_argument("--embedders", default="local:all-MiniLM-L6-v2", help="RAG_EMBEDDER specs, comma separated")
    parser.add_argument("--batch-size", type=int, default=None, help="the embedder's batch size (default: its own)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    docs = pydoc_corpus.documents()
    configs = [tuple(int(x) for x in c.split("/")) for c in args.configs.split(",")]
    embedders = [embedder_from_spec(spec, Settings.from_env()) for spec in args.embedders.split(",")]
    if args.batch_size:
        embedders = [e.model_copy(update={"batch_size": args.batch_size}) for e in embedders]
    for embedder in embedders:
        embedder.embed(["warm up"])  # loads (or exports) the model outside the timings
    print(
        f"corpus: {len(docs)} Python reference topics, {sum(len(t) for t in docs.values()):,} characters; "
        f"{len(pydoc_corpus.QUERIES)} labelled queries (half tune, half held out); batch {embedders[0].batch_size}"
    )
    rows = []
    # Configurations outside, embedders inside: each pair is measured back to back.
    for max_tokens, overlap in tqdm(configs, desc="configurations", file=sys.stderr):
        for embedder in embedders:
            result = evaluate(embedder, docs, max_tokens, overlap)
            rows.append({"config": f"{max_tokens}/{overlap}", "embedder": embedder.model_id, **result})
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    header = ["config", "embedder", "chunks", "model_tokens", "truncated", "embed_seconds", "tune recall@5", "tune ndcg@10", "held_out recall@5", "held_out ndcg@10"]
    print(" | ".join(f"{h:>12}" for h in header))
    for row in rows:
        print(" | ".join(f"{row[h]!s:>12}" for h in header))


if __name__ == "__main__":
    main()
