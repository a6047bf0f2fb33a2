"""Reading an image document: its thumbnail beside it, its analysis (versioned, cached by
content) as the text the index embeds (docs/architecture.md, Images)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rag_assets.lib.images import (
    ANALYSIS_MAX_SIDE,
    analysis_text,
    image_facts,
    image_sha256,
    is_image,
    next_version,
    open_image,
    shown,
    thumbnail_bytes,
    thumbnail_key,
)
from rag_assets.lib.keys import DocRef, document_tenant
from rag_assets.lib.parsing import BadDocument, ParsedDocument, Unit
from rag_assets.resources.image_analysis import AnalysisRecord, AnalysisStore, ImageAnalyzer
from rag_assets.resources.object_store import ObjectStore


def image_reader(
    ref: DocRef, *, object_store: ObjectStore, analyzer: ImageAnalyzer, analyses: AnalysisStore, max_pixels: int
) -> Callable[[bytes], ParsedDocument]:
    """What parse_document calls with an image's bytes: writes its thumbnail, analyzes it
    (unless this item's latest analysis is of these bytes by this analyzer, or the cache has
    one), keeps the analysis as a new version, and gives its text as one unit."""

    def read(data: bytes) -> ParsedDocument:
        image = open_image(ref.key, data, max_pixels)
        thumb = thumbnail_key(ref.tenant, ref.key)
        try:
            facts = image_facts(image)
            thumbnail = thumbnail_bytes(image, thumb)
            for_analysis = shown(image, ANALYSIS_MAX_SIDE)
        except (OSError, ValueError, SyntaxError) as e:  # Pillow's errors for truncated or damaged data
            raise BadDocument(ref.key, f"corrupt image ({type(e).__name__}: {e})") from None
        object_store.write(DocRef(ref.tenant, ref.root, thumb).uri, thumbnail)
        identity, sha = analyzer.identity, image_sha256(data)
        latest = analyses.latest(ref.document_id)
        version = next_version((latest.version, latest.image_sha256, latest.analyzer) if latest else None, sha, identity.fingerprint)
        if version is None:
            version, analysis = latest.version, latest.analysis
        else:
            analysis = analyses.cached(sha, identity.fingerprint)
            if analysis is None:
                analysis = analyzer.analyze(ref.key, for_analysis, facts)
                analyses.remember(sha, identity.fingerprint, analysis)
            analyses.add(AnalysisRecord(ref.document_id, ref.tenant, ref.key, version, sha, identity, thumb, analysis))
        metadata = {
            "thumbnail_key": thumb,
            "analysis_version": version,
            "analyzer": f"{identity.analyzer}:{identity.model}",
            "image_category": analysis.category,
            "image_width": facts.width,
            "image_height": facts.height,
        }
        return ParsedDocument(kind="image", units=[Unit(text=analysis_text(analysis), metadata=metadata)])

    return read


def forget_images(object_store: ObjectStore, analyses: AnalysisStore, uri: str, key: str, document_ids: Sequence[str]) -> int:
    """After an image's rows are purged: delete its thumbnail and its analyses, under every
    tenant it was indexed as. Returns the analyses deleted."""
    if not is_image(key) or not document_ids:
        return 0
    root = uri[: -len(key) - 1]
    for document_id in document_ids:
        tenant = document_tenant(document_id, uri)
        object_store.delete(DocRef(tenant, root, thumbnail_key(tenant, key)).uri)
    return analyses.delete_items(document_ids)
