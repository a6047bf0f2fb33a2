"""Searching one tenant's index for texts: the one function the command line, the eval and the
golden-set check call (docs/architecture.md).

Three modes (docs/stores.md, D31):

- `vector`: the nearest chunks to the text's embedding; score = cosine similarity.
- `keyword`: the chunks whose text best matches the text's words (any of them), from the
  store's full-text index; score = the store's text rank (LanceDB: BM25; pgvector:
  ts_rank), comparable only within one query. Needs no embedding.
- `hybrid`: both lists, `max(k, CANDIDATES)` deep, fused by reciprocal rank
  (`lib.fusion`); score = the fused score scaled to (0, 1]: 1.0 is first in both lists,
  about 0.5 first in one and absent from the other.

A store says which modes it has (`VectorStore.search_modes`; Pinecone: vector only).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from rag_assets.lib.fusion import best_fused_score, reciprocal_rank_fusion
from rag_assets.lib.retrieval_eval import NDCG_DEPTH, EvalQuery, Scores

if TYPE_CHECKING:  # the command line reads MODES without loading numpy or Dagster
    import numpy as np

    from rag_assets.resources.embedders import Embedder
    from rag_assets.resources.vector_stores import Hit, Scalar, VectorStore

MODES = ("hybrid", "vector", "keyword")
# Chosen by benchmarks/search_modes.py: over three labelled corpora, hybrid is at least as good
# as vector on recall@5 everywhere and better on MRR and nDCG@10 on all but one corpus and
# store (D31). A store without it (Pinecone) defaults to vector.
DEFAULT_MODE = "hybrid"
CANDIDATES = 20  # each side of a hybrid search fetches max(k, CANDIDATES) hits
EVAL_BATCH = 64  # queries embedded in one call by `evaluate` (and by `rag-assets query -`)


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"search mode {mode!r}: use one of {', '.join(MODES)}")
    return mode


def mode_for(store: VectorStore, mode: str | None = None) -> str:
    """The mode a search of `store` runs in: `mode`, which the store must have (else
    UnsupportedSearch, whose one line says why), or for None the store's default:
    DEFAULT_MODE where it has it, else vector."""
    from rag_assets.resources.vector_stores import UnsupportedSearch

    if mode is None:
        return DEFAULT_MODE if DEFAULT_MODE in store.search_modes else "vector"
    check_mode(mode)
    if mode not in store.search_modes:
        raise UnsupportedSearch(f"{mode} search: {store.vector_only_reason}; use vector search")
    return mode


def search(
    store: VectorStore,
    embedder: Embedder,
    tenant: str,
    texts: Sequence[str],
    k: int = 5,
    mode: str | None = None,
    vectors: np.ndarray | None = None,
    where: Mapping[str, Scalar] | None = None,
) -> list[list[Hit]]:
    """The k best hits of `tenant` for each text, in the order of `texts`, in `mode` (None:
    the store's default, `mode_for`). Vector and hybrid embed the texts in one call (the
    model loaded once), unless their `vectors` are given; keyword embeds nothing. `where`:
    equality on metadata fields, applied by the store before ranking (`check_where`)."""
    mode = mode_for(store, mode)
    if not texts:
        return []
    model, dimension = embedder.model_id, embedder.dimension
    if mode == "keyword":
        return [store.keyword_query(model, dimension, text, tenant=tenant, k=k, where=where) for text in texts]
    if vectors is None:
        vectors = embedder.embed(list(texts))
    if mode == "vector":
        return [store.query(model, dimension, vector, tenant=tenant, k=k, where=where) for vector in vectors]
    depth = max(k, CANDIDATES)
    found = []
    for text, vector in zip(texts, vectors, strict=True):
        nearest = store.query(model, dimension, vector, tenant=tenant, k=depth, where=where)
        matching = store.keyword_query(model, dimension, text, tenant=tenant, k=depth, where=where)
        found.append(fuse(nearest, matching)[:k])
    return found


def eval_depth(k: int) -> int:
    """How many hits an evaluated query asks for: enough chunks for k and NDCG_DEPTH distinct
    documents when documents have several chunks each (as bench-quality ranks 100)."""
    return max(100, 10 * max(k, NDCG_DEPTH))


def evaluate(
    store: VectorStore,
    embedder: Embedder,
    tenant: str,
    queries: Sequence[EvalQuery],
    k: int = 5,
    modes: Sequence[str] | None = None,
    on_progress: Callable[[int], None] = lambda n: None,
) -> dict[str, dict[str, float]]:
    """Mean recall@k, MRR and nDCG@10 of `queries` over `tenant`'s index in each mode (None:
    every mode the store has), by document (lib.retrieval_eval). Each query is embedded once
    for every mode, EVAL_BATCH at a time; `on_progress` gets the number of queries done after
    each batch."""
    modes = [m for m in MODES if m in store.search_modes] if modes is None else modes
    scores = {mode_for(store, mode): Scores(k) for mode in modes}
    depth = eval_depth(k)
    for start in range(0, len(queries), EVAL_BATCH):
        part = queries[start : start + EVAL_BATCH]
        texts = [q.query for q in part]
        vectors = embedder.embed(texts)
        for mode, totals in scores.items():
            for query, hits in zip(
                part, search(store, embedder, tenant, texts, k=depth, mode=mode, vectors=vectors), strict=True
            ):
                totals.add((h.key for h in hits), query.expected)
        on_progress(len(part))
    return {mode: totals.means() for mode, totals in scores.items()}


def fuse(*rankings: Sequence[Hit]) -> list[Hit]:
    """Hits of several rankings of one query, fused by reciprocal rank, each chunk once, its
    score the fused score scaled so that first in every ranking is 1.0."""
    hits = {h.chunk_id: h for ranking in reversed(rankings) for h in ranking}
    best = best_fused_score(len(rankings))
    fused = reciprocal_rank_fusion([[h.chunk_id for h in ranking] for ranking in rankings])
    return [dataclasses.replace(hits[chunk], score=score / best) for chunk, score in fused]
