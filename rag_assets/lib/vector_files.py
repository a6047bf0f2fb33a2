"""What the embed step and its remote half (rag_assets.frontends.pipes_embed) exchange through the work
location: the request's field name and the vectors as a .npy file (docs/architecture.md,
Remote steps). Pure: numpy only, so the worker and the step share it without either importing
the other."""

from __future__ import annotations

import io

import numpy as np

REQUEST = "rag_embed"  # the event field (Lambda) or Pipes extra (ECS) holding the request


def encode_vectors(vectors: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(vectors, dtype=np.float32), allow_pickle=False)
    return buffer.getvalue()


def decode_vectors(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)
