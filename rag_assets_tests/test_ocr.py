"""Scanned PDFs: a page without a text layer is rendered by pdfium and read by RapidOCR
(its bundled ONNX models), page numbers kept; limits named when they refuse a file."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from rag_assets.lib.parsing import BadDocument, parse_document
from rag_assets_tests.test_documents_e2e import query, run_ingest

NOTICE = ["Notice to all staff", "The north gate closes at ten in the evening.", "Report lost badges to security."]
MEMO = ["Memo from the harbour master", "Tugboats are refuelled on Tuesdays."]


def scan(lines: list[str]):
    """A page as a scanner gives it: an A4 image at 150 dpi with the lines on it."""
    from PIL import Image, ImageDraw, ImageFont

    page = Image.new("RGB", (1240, 1754), "white")
    draw = ImageDraw.Draw(page)
    font = ImageFont.load_default(size=48)  # Pillow's own font: no system fonts needed
    for n, line in enumerate(lines):
        draw.text((100, 150 + n * 80), line, fill="black", font=font)
    return page


def scanned_pdf(*pages: list[str]) -> bytes:
    """A PDF of page images only: no text layer."""
    images = [scan(lines) for lines in pages]
    buffer = io.BytesIO()
    images[0].save(buffer, "PDF", resolution=150, save_all=True, append_images=images[1:])
    return buffer.getvalue()


def test_ocr_models_ship_with_the_package():
    import rapidocr_onnxruntime

    models = list((Path(rapidocr_onnxruntime.__file__).parent / "models").glob("*.onnx"))
    assert len(models) >= 3  # detection, direction, recognition: nothing to download


def test_a_scanned_pdf_is_read_page_by_page():
    parsed = parse_document("scan.pdf", scanned_pdf(NOTICE, MEMO))
    assert parsed.kind == "pdf" and parsed.pages == 2
    assert [(u.page, u.text, u.metadata) for u in parsed.units] == [
        (1, "\n".join(NOTICE), {"ocr": True}),
        (2, "\n".join(MEMO), {"ocr": True}),
    ]


def test_too_many_scanned_pages_are_refused_by_name():
    with pytest.raises(BadDocument) as caught:
        parse_document("big-scan.pdf", scanned_pdf(NOTICE, MEMO, NOTICE), max_ocr_pages=2)
    assert caught.value.reason == "3 pages without a text layer, more than the OCR limit of 2 (RAG_MAX_OCR_PAGES)"


def test_a_scanned_pdf_is_found_by_a_query(rag_env, instance, tmp_path):
    (tmp_path / "inbox" / "globex").mkdir(parents=True)
    (tmp_path / "inbox" / "globex" / "notice.pdf").write_bytes(scanned_pdf(NOTICE))
    report = run_ingest(rag_env, instance, tmp_path / "inbox")
    assert report.ingested == ["globex/notice.pdf"] and report.failed == []
    hit = query(rag_env, "when does the north gate close", "globex", k=1)[0]
    assert (hit.key, hit.page) == ("globex/notice.pdf", 1) and "ten in the evening" in hit.text
