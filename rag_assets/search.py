"""Searching one tenant's index for texts: the one function the command line, the eval and the
golden-set check call (docs/architecture.md)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from rag_assets.lib.retrieval_eval import NDCG_DEPTH, EvalQuery, Scores

if TYPE_CHECKING:  # the command line's parser imports MODES: no numpy, no Dagster here
    import numpy as np

    from rag_assets.resources.embedders import Embedder
    from rag_assets.resources.vector_stores import Hit, VectorStore

MODES = ("vector",)
DEFAULT_MODE = "vector"
EVAL_BATCH = 64  # queries embedded in one call by `evaluate` (and by `rag-assets query -`)


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"search mode {mode!r}: use one of {', '.join(MODES)}")
    return mode


def search(
    store: VectorStore,
    embedder: Embedder,
    tenant: str,
    texts: Sequence[str],
    k: int = 5,
    mode: str = DEFAULT_MODE,
    vectors: np.ndarray | None = None,
) -> list[list[Hit]]:
    """The k best hits of `tenant` for each text, in the order of `texts`; the texts are
    embedded in one call (the model loaded once), unless their `vectors` are given."""
    check_mode(mode)
    if not texts:
        return []
    if vectors is None:
        vectors = embedder.embed(list(texts))
    return [store.query(embedder.model_id, embedder.dimension, vector, tenant=tenant, k=k) for vector in vectors]


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
    modes: Sequence[str] = MODES,
    on_progress: Callable[[int], None] = lambda n: None,
) -> dict[str, dict[str, float]]:
    """Mean recall@k, MRR and nDCG@10 of `queries` over `tenant`'s index in each mode, by
    document (lib.retrieval_eval). Each query is embedded once for every mode, EVAL_BATCH at a
    time; `on_progress` gets the number of queries done after each batch."""
    scores = {check_mode(mode): Scores(k) for mode in modes}
    depth = eval_depth(k)
    for start in range(0, len(queries), EVAL_BATCH):
        part = queries[start : start + EVAL_BATCH]
        texts = [q.query for q in part]
        vectors = embedder.embed(texts)
        for mode, totals in scores.items():
            for query, hits in zip(part, search(store, embedder, tenant, texts, k=depth, mode=mode, vectors=vectors), strict=True):
                totals.add((h.key for h in hits), query.expected)
        on_progress(len(part))
    return {mode: totals.means() for mode, totals in scores.items()}
