import io
import json
import logging
import re
from pathlib import Path

import pytest
from reportlab.lib.pdfencrypt import StandardEncryption
from reportlab.pdfgen import canvas

from rag_assets.lib.parsing import BadDocument, parse_document, sanitize_text

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "pypdf-sample-files"
CORPUS_PDFS = sorted(CORPUS.glob("*.pdf"))


def make_pdf(pages: list[str], encrypt=None) -> bytes:
    buf = io.BytesIO()
    c = canvas.Canvas(buf, encrypt=encrypt, invariant=1, pageCompression=0)
    for text in pages:
        if text:
            c.drawString(72, 720, text)
        c.showPage()
    c.save()
    return buf.getvalue()


def hand_made_pdf(content: bytes) -> bytes:
    """A minimal one-page PDF with `content` as its page's content stream."""
    objs = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        (
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R"
            b" /Resources << /Font << /F1 5 0 R >> >> >>"
        ),
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out, offsets = b"%PDF-1.4\n", []
    for number, obj in enumerate(objs, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, obj)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    return out + b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, xref)


def bad(name: str, data: bytes, **kwargs) -> BadDocument:
    with pytest.raises(BadDocument) as info:
        parse_document(name, data, **kwargs)
    assert str(info.value).startswith(f"{name}: "), str(info.value)
    assert info.value.name == name
    return info.value


# PDF


def test_pdf_pages_keep_their_text_and_numbers():
    parsed = parse_document("report.pdf", make_pdf(["First page text.", "", "Third page, at last."]))
    assert parsed.kind == "pdf" and parsed.pages == 3
    assert [(u.page, u.text) for u in parsed.units] == [(1, "First page text."), (3, "Third page, at last.")]


def paged_pdf(bodies: list[str], footer_first: bool = False) -> bytes:
    """A PDF whose pages have a running header and a "Page N of M" footer around their text
    (the footer first in the content stream when `footer_first`, as some writers do)."""
    buf = io.BytesIO()
    c = canvas.Canvas(buf, invariant=1, pageCompression=0)
    for n, body in enumerate(bodies, start=1):
        footer = lambda n=n: c.drawString(280, 40, f"Page {n} of {len(bodies)}")
        if footer_first:
            footer()
        c.drawString(72, 800, "ACME Corp - Employee Handbook")
        for i, line in enumerate(body.split("\n")):
            c.drawString(72, 720 - 14 * i, line)
        if not footer_first:
            footer()
        c.showPage()
    c.save()
    return buf.getvalue()


@pytest.mark.parametrize("footer_first", [False, True])
def test_pdf_running_headers_and_page_numbers_are_dropped(footer_first):
    bodies = [
        "Vacation days: 25 a year.\nAsk your manager.", "Travel is refunded.", "Parking closes at ten.",
        "Sign in at the desk.",
    ]
    parsed = parse_document("handbook.pdf", paged_pdf(bodies, footer_first))
    assert [u.text for u in parsed.units] == bodies
    assert [u.page for u in parsed.units] == [1, 2, 3, 4]


def test_pdf_of_two_pages_keeps_its_header():
    parsed = parse_document("memo.pdf", paged_pdf(["First.", "Second."]))
    assert all(u.text.startswith("ACME Corp") for u in parsed.units)


def test_pdf_suffix_is_case_insensitive():
    assert parse_document("REPORT.PDF", make_pdf(["Upper case."])).units[0].text == "Upper case."


def test_pdf_with_empty_user_password_is_read():
    data = make_pdf(["Owner-locked only."], encrypt=StandardEncryption("", ownerPassword="owner"))
    assert parse_document("locked.pdf", data).units[0].text == "Owner-locked only."


@pytest.mark.parametrize(
    "encrypt", ["secret", StandardEncryption("secret", ownerPassword="owner", strength=128)], ids=["40bit", "128bit"]
)
def test_encrypted_pdf_fails_clearly(encrypt):
    assert "encrypted" in bad("secret.pdf", make_pdf(["Hidden."], encrypt=encrypt)).reason


@pytest.mark.parametrize(
    "data",
    [
        make_pdf(["Some text."])[:300],
        make_pdf(["Some text."])[:-40],
        b"%PDF-1.7\n" + bytes(range(256)) * 4,
        b"%PDF-",
    ],
    ids=["truncated-early", "truncated-late", "garbage", "header-only"],
)
def test_corrupt_pdf_fails_clearly(data):
    assert "corrupt PDF" in bad("broken.pdf", data).reason


def test_blank_pdf_has_no_text():
    assert "PDF has no text in 2 page(s), not even by OCR" in bad("scan.pdf", make_pdf(["", ""])).reason


@pytest.mark.parametrize(
    "data",
    [
        # AssertionError from pypdf: an indirect reference inside a content stream
        hand_made_pdf(b"1 0 R BT /F1 12 Tf 72 720 Td (Hello) Tj ET"),
        # pypdf.errors.LimitReachedError: a broken catalog and a broken object header
        make_pdf(["a.", "b.", "c."])
        .replace(b"/Type /Catalog", b"/Xype /Catalog")
        .replace(b"4 0 obj\n<<", b"4 0 obj\n<X"),
    ],
    ids=["assertion-error", "limit-reached"],
)
def test_every_unreadable_pdf_is_a_bad_document(data):
    bad("odd.pdf", data)


def test_hand_made_pdf_helper_is_valid():
    assert parse_document("ok.pdf", hand_made_pdf(b"BT /F1 12 Tf 72 720 Td (Hello) Tj ET")).units[0].text == "Hello"


def _wrong_startxref(data: bytes) -> bytes:
    return re.sub(rb"startxref\s+(\d+)", lambda m: b"startxref\n%d" % (int(m.group(1)) + 7), data)


def test_pypdf_warnings_are_counted_not_logged(caplog):
    caplog.set_level(logging.DEBUG)
    parsed = parse_document("warn.pdf", _wrong_startxref(make_pdf(["Still readable."])))
    assert parsed.units[0].text == "Still readable."
    assert parsed.warnings >= 1
    assert not [r for r in caplog.records if r.name.startswith("pypdf")]


@pytest.mark.parametrize("data", [make_pdf(["ok"]), b"%PDF-1.4 garbage", make_pdf(["x"], encrypt="pw")])
def test_pypdf_logger_is_restored(data):
    logger = logging.getLogger("pypdf")
    handlers, propagate = list(logger.handlers), logger.propagate
    try:
        parse_document("a.pdf", data)
    except BadDocument:
        pass
    assert logger.handlers == handlers and logger.propagate == propagate


# Text, CSV and file types


@pytest.mark.parametrize("name", ["report.doc", "slides.odp", "README", "archive.tar.gz"])
def test_unsupported_types(name):
    assert "unsupported file type" in bad(name, b"anything").reason


@pytest.mark.parametrize("name", ["a.pdf", "a.txt", "a.csv", "a.md"])
def test_empty_file(name):
    assert "empty file" in bad(name, b"").reason


@pytest.mark.parametrize(
    "text, encoding",
    [
        ("café au lait, crème brûlée, naïve façade", "latin-1"),
        ("“Smart quotes” – dashes — and the € sign in a résumé.", "cp1252"),
        ("Hello wörld, a UTF-16 file with its byte order mark.", "utf-16"),
        ("Привет, мир! Это текст в кодировке Windows-1251.", "cp1251"),
        ("これは日本語のテキストです。", "shift_jis"),
        ("ünïcödé with a BOM", "utf-8-sig"),
    ],
)
def test_text_in_other_encodings_is_read(text, encoding):
    assert parse_document("notes.txt", text.encode(encoding)).units[0].text == text


@pytest.mark.parametrize("data", [b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, bytes(range(256)) * 8])
def test_binary_named_text_is_refused_naming_the_first_bad_byte(data):
    reason = bad("notes.txt", data).reason
    assert reason.startswith("not text: not UTF-8") and f"0x{data[0] if data[0] > 0x7f else 0x80:02x}" in reason


@pytest.mark.parametrize("data", [b" \n\t\r\n ", b"\xef\xbb\xbf  "])
def test_whitespace_text_file(data):
    assert "only whitespace" in bad("blank.md", data).reason


def test_text_file_is_one_unit():
    parsed = parse_document("notes.md", b"\xef\xbb\xbf# Title\r\n\r\nBody  \t text\x07.")
    assert [(u.text, u.page, u.row) for u in parsed.units] == [("# Title\n\nBody text .", None, None)]


def test_csv_without_text_column_lists_the_columns():
    reason = bad("export.csv", b"id,title,body\n1,a,b\n").reason
    assert "'formatted_text'" in reason and "columns: id, title, body" in reason


def test_csv_rows_become_units_with_row_numbers_and_short_metadata():
    long = "x" * 300
    data = f"id,formatted_text,note,blob\n1,first row,n1,{long}\n2,,n2,\n3,third row,,\n".encode()
    units = parse_document("export.csv", data).units
    assert [(u.text, u.row, u.metadata) for u in units] == [
        ("first row", 1, {"id": "1", "note": "n1"}),
        ("third row", 3, {"id": "3"}),
    ]


def test_csv_custom_text_column():
    units = parse_document("e.csv", b"id,body\n1,hello\n", csv_text_column="body").units
    assert units[0].text == "hello"


def test_csv_with_no_text_rows():
    assert "no rows with text" in bad("e.csv", b"id,formatted_text\n1,\n2,  <br>  \n").reason


def test_csv_with_oversized_header_is_a_bad_document():
    bad("huge.csv", b'"' + b"x" * 200_000 + b'",formatted_text\n1,hello\n')


def test_csv_with_oversized_field_is_a_bad_document():
    assert "malformed CSV" in bad("huge.csv", b'id,formatted_text\n1,"' + b"x" * 200_000 + b'"\n').reason


@pytest.mark.parametrize(
    "raw, clean",
    [
        ("<p>Caf&eacute; &amp; <b>bar</b></p>", "Café & bar"),
        ("a\x00b\x07c\x1fd\x7fe", "a b c d e"),
        ("  many \t\u00a0 spaces  ", "many spaces"),
        ("line one\r\n\r\n\r\n\r\nline two\rline three", "line one\n\nline two\nline three"),
        ("x <br/>y<div class='a'>z</div>", "x y z"),
        pytest.param(
            "if a < 2 and b > 3 then", "if a < 2 and b > 3 then",
        ),
    ],
)
def test_sanitize_text(raw, clean):
    assert sanitize_text(raw) == clean


def test_csv_text_is_sanitized():
    data = b'id,formatted_text\n1,"<p>Caf&eacute;\x01  &amp;\r\n\r\n\r\nmore</p>"\n'
    assert parse_document("e.csv", data).units[0].text == "Café &\n\nmore"


# Real-world PDFs


def test_corpus_is_present():
    assert CORPUS.is_dir() and len(CORPUS_PDFS) >= 20, f"missing PDF corpus at {CORPUS}"


def _corpus_info() -> dict:
    entries = json.loads((CORPUS / "files.json").read_text())["data"]
    return {e["path"].replace("/", "_"): e for e in entries}


@pytest.mark.parametrize("path", CORPUS_PDFS, ids=lambda p: p.name[:40])
def test_real_world_pdf(path, caplog):
    info = _corpus_info().get(path.name, {})
    try:
        parsed = parse_document(path.name, path.read_bytes())
    except BadDocument as e:
        assert str(e).startswith(f"{path.name}: ")
        if info.get("encrypted"):
            assert "encrypted" in e.reason
        return
    assert not info.get("encrypted"), "an encrypted PDF must not parse"
    assert parsed.units and all(u.text.strip() for u in parsed.units)
    assert all(1 <= u.page <= parsed.pages for u in parsed.units)
    assert parsed.pages == info.get("pages", parsed.pages)
    assert not [r for r in caplog.records if r.name.startswith("pypdf")]


def test_password_protected_sample_is_encrypted():
    (path,) = CORPUS.glob("005-*password*.pdf")
    assert "encrypted" in bad(path.name, path.read_bytes()).reason
