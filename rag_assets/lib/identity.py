"""What makes an indexed document current: the source version it was made from and how it
was read and cut (docs/architecture.md, The index is the truth)."""

from __future__ import annotations

import hashlib

from rag_assets.lib.chunking import CHUNKER_VERSION

# Bump when parsing changes what text a document gives: every document is then re-read.
# 2: text files in any encoding charset-normalizer detects; 3: PDF pages and slides without
# their running headers, footers and page numbers (docs/decisions.md D30).
PARSER_VERSION = "3"


def _digest(*parts: object) -> str:
    return hashlib.sha256("\0".join(str(p) for p in parts).encode("utf-8")).hexdigest()[:16]


def pipeline_fingerprint(chunk_tokens: int, chunk_overlap: int, csv_text_column: str) -> str:
    """How text is read and cut: a change re-makes every document's chunks."""
    return _digest("pipeline", PARSER_VERSION, CHUNKER_VERSION, chunk_tokens, chunk_overlap, csv_text_column)


# Bump when where or how an image's thumbnail is written changes: every image is read again
# (its analysis comes from the cache). 2: under .rag-thumbnails/ (docs/architecture.md, Tenancy).
THUMBNAIL_LAYOUT = "2"


def image_pipeline(pipeline: str, analyzer: str) -> str:
    """An image's pipeline: how its analysis is cut, which analyzer made it, where its thumbnail is."""
    return _digest("image", pipeline, analyzer, THUMBNAIL_LAYOUT)


def index_identity(index_uri: str, model_id: str, pipeline: str) -> str:
    """One index as the sensors know it: a store, a model and a pipeline. Sensor state and
    run keys are per identity, so switching any of the three starts from what the new
    index holds, never from what the old one did."""
    return _digest("index", index_uri, model_id, pipeline)


def source_etag(document_etag: str, sidecar_etag: str | None = None) -> str:
    """The source's version of a document: its object's ETag (size+mtime for a file), and
    its `.meta.json` sidecar's when it has one (the sidecar's fields are in every row)."""
    return document_etag if sidecar_etag is None else f"{document_etag}+meta:{sidecar_etag}"


def split_source_etag(etag: str) -> tuple[str, str | None]:
    """(the document's etag, its sidecar's or None): `source_etag` taken apart."""
    document, sep, sidecar = etag.partition("+meta:")
    return document, sidecar if sep else None
