"""Searching one tenant's index for texts: the one function the command line, the eval and the
golden-set check call (docs/architecture.md)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rag_assets.resources.embedders import Embedder
from rag_assets.resources.vector_stores import Hit, VectorStore

MODES = ("vector",)
DEFAULT_MODE = "vector"


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
