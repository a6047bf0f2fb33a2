"""Reading within limits: a document that takes too long or needs too much memory fails by
name with the limit, and the next document is read by a fresh worker."""

from __future__ import annotations

import pickle

import pytest

from rag_assets.lib.parsing import BadDocument
from rag_assets.parse_sandbox import ParseSandbox
from rag_assets_tests.test_ocr import NOTICE, scanned_pdf


def test_a_refusal_keeps_its_name_reason_and_kind_across_processes():
    error = pickle.loads(pickle.dumps(BadDocument("acme/a.png", "the analyzer failed", transient=True)))
    assert (error.name, error.reason, error.transient, str(error)) == (
        "acme/a.png",
        "the analyzer failed",
        True,
        "acme/a.png: the analyzer failed",
    )


def test_too_slow_fails_by_name_and_the_next_document_is_read():
    with ParseSandbox(seconds=0.5, memory_mb=0) as sandbox:
        with pytest.raises(BadDocument) as caught:
            sandbox.parse("acme/scan.pdf", scanned_pdf(NOTICE))  # OCR takes seconds
        assert (caught.value.name, caught.value.reason) == (
            "acme/scan.pdf",
            "took more than 0.5 s to read (RAG_MAX_SECONDS_PER_DOCUMENT)",
        )
        assert sandbox.parse("acme/a.txt", b"Still here.").units[0].text == "Still here."


def test_too_big_fails_by_name_and_the_next_document_is_read():
    with ParseSandbox(seconds=60, memory_mb=300) as sandbox:
        with pytest.raises(BadDocument) as caught:
            sandbox.parse("acme/huge.txt", b"word " * (60 << 20))  # 300 MB of text, and its copies
        assert caught.value.name == "acme/huge.txt" and "300 MiB (RAG_MAX_MEMORY_MB)" in caught.value.reason
        assert sandbox.parse("acme/a.txt", b"Still here.").units[0].text == "Still here."


def test_what_a_parser_refuses_comes_back_as_it_was():
    with ParseSandbox(seconds=60, memory_mb=2048) as sandbox, pytest.raises(BadDocument) as caught:
        sandbox.parse("acme/broken.pdf", b"%PDF-1.4 not really")
    assert caught.value.reason.startswith("corrupt PDF")


def test_no_limits_reads_in_this_process():
    assert ParseSandbox(0, 0).parse("acme/a.md", b"# Title").kind == "text"
