"""The Python Language Reference corpus and its 60 hand-written questions, as this module
gave them before benchmarks/corpora.py took them in (the `pydoc` corpus there, with lexical
and keyword queries beside the questions). Kept for the benchmarks that import it."""

from __future__ import annotations

from collections.abc import Sequence

import corpora

from rag_assets.lib.retrieval_eval import distinct_documents, ndcg_at, recall_at  # noqa: F401

LEFT_OUT = corpora.PYDOC_LEFT_OUT
QUERIES: list[tuple[str, frozenset[str]]] = [(q.text, q.relevant) for q in corpora.PYDOC_QUESTIONS]


def documents() -> dict[str, str]:
    """Topic name -> its text, the gathering topics left out."""
    return corpora.pydoc_documents()


def split_queries() -> tuple[list[tuple[str, frozenset[str]]], list[tuple[str, frozenset[str]]]]:
    """(tuning queries, held-out queries)."""
    return QUERIES[0::2], QUERIES[1::2]


def scores(
    ranked_chunks_docs: Sequence[Sequence[str]], queries: Sequence[tuple[str, frozenset[str]]]
) -> dict[str, float]:
    """Mean recall@5 and nDCG@10 of each query's ranked chunk documents."""
    return corpora.scores(ranked_chunks_docs, [relevant for _, relevant in queries])
