"""Content and chunk identities (docs/architecture.md, decision 2)."""

from __future__ import annotations

import hashlib


def content_hash(tenant: str, data: bytes, sidecar: bytes | None = None) -> str:
    """sha256 over tenant and bytes: the same file uploaded by two tenants is two documents.

    A document's `.meta.json` sidecar is part of what its rows hold, so when it has one the
    sidecar's bytes are hashed too: a new sidecar re-writes the rows (and embeds nothing)."""
    h = hashlib.sha256()
    h.update(tenant.encode("utf-8"))
    h.update(b"\0")
    h.update(data)
    if sidecar is not None:
        h.update(b"\0sidecar\0")
        h.update(sidecar)
    return h.hexdigest()


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def chunk_id(document_id: str, ordinal: int, text: str) -> str:
    """Stable id of a chunk: hash(document id, ordinal, text)."""
    h = hashlib.sha256(f"{document_id}\0{ordinal}\0".encode())
    h.update(text.encode("utf-8"))
    return h.hexdigest()[:32]
