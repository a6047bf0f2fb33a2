"""Reading an image document: its thumbnail under the project's own prefix, its analysis
(versioned, cached by content) as the text the index embeds (docs/architecture.md, Images)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from rag_assets.lib.errors import describe_error
from rag_assets.lib.images import analysis_text, image_sha256, is_image, next_version, read_image, thumbnail_key
from rag_assets.lib.keys import DocRef, document_tenant
from rag_assets.lib.parsing import BadDocument, ParsedDocument, Unit
from rag_assets.parse_sandbox import ParseSandbox
from rag_assets.resources.image_analysis import AnalysisRecord, AnalysisStore, ImageAnalyzer
from rag_assets.resources.object_store import ObjectStore

log = logging.getLogger(__name__)


def read_image_document(
    ref: DocRef,
    data: bytes,
    *,
    sandbox: ParseSandbox,
    object_store: ObjectStore,
    analyzer: ImageAnalyzer,
    analyses: AnalysisStore,
    max_pixels: int,
) -> ParsedDocument:
    """An image as a document: decoded in the bounded reader process (its pixels checked
    first; its facts, thumbnail, and OCR or a JPEG when an analysis is due), its thumbnail
    written under the project's own prefix, analyzed (unless this item's latest analysis is of
    these bytes by this analyzer, or the cache has one), the analysis kept as a new version,
    and its text given as one unit."""
    thumb = thumbnail_key(ref.tenant, ref.key)
    identity, sha = analyzer.identity, image_sha256(data)
    latest = analyses.latest(ref.document_id)
    version = next_version(
        (latest.version, latest.image_sha256, latest.analyzer) if latest else None, sha, identity.fingerprint
    )
    analysis = None if version is None else analyses.cached(sha, identity.fingerprint)
    due = version is not None and analysis is None
    reading = sandbox.run(
        read_image,
        ref.key,
        ref.key,
        data,
        max_pixels,
        thumb,
        ocr=due and analyzer.reads_text,
        jpeg=due and not analyzer.reads_text,
    )
    try:
        object_store.write(DocRef(ref.tenant, ref.root, thumb).uri, reading.thumbnail)
    except Exception as e:  # noqa: BLE001 - the place, not the image: a later run tries again
        raise BadDocument(
            ref.key, f"its thumbnail could not be written ({describe_error(e)})", transient=True
        ) from None
    if version is None:
        version, analysis = latest.version, latest.analysis
    else:
        if analysis is None:
            analysis = analyzer.analyze(ref.key, reading)
            analyses.remember(sha, identity.fingerprint, analysis)
        analyses.add(AnalysisRecord(ref.document_id, ref.tenant, ref.key, version, sha, identity, thumb, analysis))
    metadata = {
        "thumbnail_key": thumb,
        "analysis_version": version,
        "analyzer": f"{identity.analyzer}:{identity.model}",
        "image_category": analysis.category,
        "image_width": reading.facts.width,
        "image_height": reading.facts.height,
    }
    return ParsedDocument(kind="image", units=[Unit(text=analysis_text(analysis), metadata=metadata)])


def forget_images(
    object_store: ObjectStore, analyses: AnalysisStore, uri: str, key: str, document_ids: Sequence[str]
) -> int:
    """After an image's rows are purged: delete its thumbnail and its analyses, under every
    tenant it was indexed as. Returns the analyses deleted. A thumbnail that cannot be deleted
    (a link on its way) is logged and left: the rows are gone either way."""
    if not is_image(key) or not document_ids:
        return 0
    root = uri[: -len(key) - 1]
    for document_id in document_ids:
        tenant = document_tenant(document_id, uri)
        try:
            object_store.delete(DocRef(tenant, root, thumbnail_key(tenant, key)).uri)
        except OSError as e:
            log.warning("%s: its thumbnail was not deleted (%s)", uri, e)
    return analyses.delete_items(document_ids)
