"""Turn an object's bytes into text units (pages, rows, a whole text file)."""

from __future__ import annotations

import csv
import functools
import html
import io
import logging
import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import PurePosixPath
from typing import BinaryIO

from rag_assets.lib.keys import DocRef
from rag_assets.lib.pages import drop_running_lines

PDF_TYPES = {".pdf"}
TEXT_TYPES = {".txt", ".md", ".markdown"}
CSV_TYPES = {".csv"}
# Office files, web pages, mail, JSON records (docs/decisions.md D22 names each library).
OFFICE_TYPES = {".docx", ".pptx", ".xlsx"}
HTML_TYPES = {".html", ".htm"}
MAIL_TYPES = {".eml"}
JSON_TYPES = {".json", ".jsonl"}
# Images are read by the image family's analyzer (rag_assets.defs.documents.images), not here.
IMAGE_TYPES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".tif", ".tiff", ".heic", ".heif"}
SUPPORTED_TYPES = PDF_TYPES | TEXT_TYPES | CSV_TYPES | OFFICE_TYPES | HTML_TYPES | MAIL_TYPES | JSON_TYPES | IMAGE_TYPES
# The file types this parser reads, as unreadable documents record it: one refused by an
# older parser (an unsupported type then) is tried again by this one.
READERS = " ".join(sorted(SUPPORTED_TYPES)) + " +ocr"
DEFAULT_MAX_UNPACKED_BYTES = 256 << 20  # RAG_MAX_UNPACKED_MB: an Office file (a zip) unpacked
DEFAULT_MAX_OCR_PAGES = 100  # RAG_MAX_OCR_PAGES: pages without a text layer OCRed per PDF
DEFAULT_MAX_PDF_PAGES = 2_000  # RAG_MAX_PDF_PAGES: pages a PDF may have at all
OCR_DPI, OCR_MAX_SIDE = 150, 2000  # a page is rendered at 150 dpi, its longest side at most 2,000 px
# A CSV line (a row, or the header) and a header's columns: more is refused by name, at once,
# rather than read whole (a 50 MB line, a header of 25 million columns). A field is at most
# csv.field_size_limit() characters (131,072) as it is.
MAX_CSV_LINE_CHARS = 4 << 20
MAX_CSV_COLUMNS = 10_000

# The fields that say whose a row is, where it came from and how it was made (ids, keys,
# versions, positions, an image's thumbnail and analysis): the project writes them; a sidecar
# or a record's own columns may add metadata, never set or shadow these (docs/architecture.md,
# Tenancy). Names starting with "_" or "rag_" are the project's too (Pinecone's `_truncated`).
SYSTEM_FIELDS = frozenset(
    {
        "tenant", "document_id", "document_key", "chunk_id", "content_hash", "source_etag", "source_version",
        "pipeline", "model", "char_start", "char_end", "thumbnail_key", "analysis_version", "analyzer",
        "image_category", "image_width", "image_height",
    }
)  # fmt: skip


def is_system_field(name: str) -> bool:
    return name in SYSTEM_FIELDS or name.startswith(("_", "rag_"))


def user_fields(fields: dict) -> tuple[dict, list[str]]:
    """(the fields a user may set, the names refused because the project writes them)."""
    refused = sorted(k for k in fields if is_system_field(k))
    return {k: v for k, v in fields.items() if not is_system_field(k)}, refused


class BadDocument(Exception):
    """A document that cannot be read. The message names the file and the reason."""

    def __init__(self, name: str, reason: str, *, transient: bool = False):
        super().__init__(f"{name}: {reason}")
        self.name = name
        self.reason = reason
        # transient: the file may be fine (an image analyzer that failed): a later run tries
        # again. Otherwise the document stays unread until its source version changes.
        self.transient = transient
        self.etag: str | None = None  # the source version that could not be read, when known

    def __reduce__(self):  # it crosses from the parse sandbox's worker process
        return type(self), (self.name, self.reason), {"transient": self.transient, "etag": self.etag}


@dataclass(frozen=True)
class Unit:
    """A piece of a document that chunks never cross: a PDF page, a CSV row, a text file."""

    text: str
    page: int | None = None
    row: int | None = None
    metadata: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ParsedDocument:
    kind: str
    units: list[Unit]
    pages: int | None = None
    warnings: int = 0


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# Tags and comments only: a bare "<" in prose ("a < 2 and b > 3") is text, not markup.
_TAG = re.compile(r"<!--.*?-->|</?[A-Za-z][^<>]{0,200}>", re.DOTALL)
_SPACES = re.compile(r"[ \t\u00a0]+")
_BLANK_LINES = re.compile(r"\n\s*\n\s*(\n\s*)+")


def sanitize_text(text: str) -> str:
    """Clean a record's text as the catchup pipeline does for `formatted_text`: unescape HTML entities,
    drop tags and control characters, collapse runs of spaces and blank lines."""
    text = html.unescape(_TAG.sub(" ", text))
    text = _CONTROL.sub(" ", text.replace("\r\n", "\n").replace("\r", "\n"))
    text = _SPACES.sub(" ", text)
    text = _BLANK_LINES.sub("\n\n", text)
    return "\n".join(line.strip() for line in text.split("\n")).strip()


# When several encodings read the bytes equally well, the Western ones people's files are
# mostly in (Latin-1 is Windows-1252 without its printable 0x80-0x9f).
PREFERRED_ENCODINGS = ("cp1252", "latin_1")


def detect_encoding(name: str, data: bytes, complete: bool = True) -> str:
    """The encoding of text: UTF-8 (with or without a BOM), or whatever charset-normalizer
    finds (Windows-1252, Latin-1, UTF-16 with a BOM, Shift-JIS, ...). `complete=False`: `data`
    is the start of a longer stream (a character cut at its end is not an error). Raises
    BadDocument for bytes no encoding fits."""
    try:
        data.decode("utf-8-sig")
        return "utf-8-sig"
    except UnicodeDecodeError as e:
        if not complete and e.start >= len(data) - 3 and e.reason == "unexpected end of data":
            return "utf-8-sig"
        where = f"byte 0x{data[e.start]:02x} at offset {e.start}"
    from charset_normalizer import from_bytes

    matches = list(from_bytes(data))
    if not matches:
        raise BadDocument(name, f"not text: not UTF-8 ({where}) and no other character encoding fits (binary?)")
    best = [m for m in matches if (m.chaos, m.coherence) == (matches[0].chaos, matches[0].coherence)]
    for encoding in PREFERRED_ENCODINGS:
        if any(encoding in m.could_be_from_charset for m in best):
            try:
                data.decode(encoding)
                return encoding
            except UnicodeDecodeError:
                continue
    return matches[0].encoding


def decode_text(name: str, data: bytes) -> str:
    """The text of a file in UTF-8 or another encoding (`detect_encoding`)."""
    return data.decode(detect_encoding(name, data))


_PYPDF_LOGGER_LOCK = threading.Lock()  # parse_pdf swaps the pypdf logger's handlers


class _CountingHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


def parse_pdf(
    name: str, data: bytes, max_ocr_pages: int = DEFAULT_MAX_OCR_PAGES, max_pages: int = DEFAULT_MAX_PDF_PAGES
) -> ParsedDocument:
    """Pages of text with their numbers (1-based); a page without a text layer (a scan) is
    OCRed. pypdf's per-font warnings are counted, not printed: a LaTeX PDF can produce
    hundreds of them."""
    from pypdf import PdfReader

    pypdf_logger = logging.getLogger("pypdf")
    handler = _CountingHandler()
    with _PYPDF_LOGGER_LOCK:
        old_propagate = pypdf_logger.propagate
        pypdf_logger.addHandler(handler)
        pypdf_logger.propagate = False
        try:
            reader = PdfReader(io.BytesIO(data))
            if reader.is_encrypted:
                try:
                    unlocked = reader.decrypt("")
                except Exception:  # noqa: BLE001 - pypdf raises assorted errors for unsupported crypto
                    unlocked = 0
                if not unlocked:
                    raise BadDocument(name, "encrypted PDF: it needs a password")
            if len(reader.pages) > max_pages:
                raise BadDocument(
                    name, f"{len(reader.pages):,} pages, more than the limit of {max_pages:,} (RAG_MAX_PDF_PAGES)"
                )
            units = []
            for number, page in enumerate(reader.pages, start=1):
                text = (page.extract_text() or "").replace("\x00", "")
                units.append(Unit(text=sanitize_page(text), page=number))
        except (BadDocument, MemoryError):
            raise
        except Exception as e:  # noqa: BLE001 - untrusted input: whatever pypdf trips over, the file is corrupt
            raise BadDocument(name, f"corrupt PDF ({type(e).__name__}: {e})") from None
        finally:
            pypdf_logger.removeHandler(handler)
            pypdf_logger.propagate = old_propagate
    blank = [u.page for u in units if not u.text]
    if len(blank) > max_ocr_pages:
        raise BadDocument(
            name,
            f"{len(blank)} pages without a text layer, more than the OCR limit of {max_ocr_pages} (RAG_MAX_OCR_PAGES)",
        )
    if blank:
        scanned = ocr_pdf_pages(name, data, blank)
        units = [
            Unit(text=scanned[u.page], page=u.page, metadata={"ocr": True}) if u.page in scanned else u for u in units
        ]
    units = [u for u in without_running_lines(units) if u.text]
    if not units:
        raise BadDocument(name, f"PDF has no text in {len(reader.pages)} page(s), not even by OCR")
    return ParsedDocument(kind="pdf", units=units, pages=len(reader.pages), warnings=handler.count)


@functools.cache
def ocr_engine():
    """RapidOCR with the ONNX models its package ships (nothing is downloaded), once per process."""
    from rapidocr_onnxruntime import RapidOCR

    return RapidOCR()


def ocr_image(image) -> str:
    """The text of a PIL image, its lines in reading order (rapidocr: detection, then
    recognition of each line)."""
    import numpy as np

    result, _ = ocr_engine()(np.asarray(image.convert("RGB")))
    return sanitize_page("\n".join(line[1] for line in result or ()))


def ocr_pdf_pages(name: str, data: bytes, numbers: Sequence[int]) -> dict[int, str]:
    """The OCRed text of the given pages (1-based) of a PDF, each rendered by pdfium at
    OCR_DPI with its longest side at most OCR_MAX_SIDE pixels."""
    import pypdfium2 as pdfium

    try:
        pdf = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as e:
        raise BadDocument(name, f"corrupt PDF (pdfium: {e})") from None
    try:
        out = {}
        for number in numbers:
            page = pdf[number - 1]
            width, height = page.get_size()  # points: 1/72 inch
            scale = min(OCR_DPI / 72, OCR_MAX_SIDE / max(width, height, 1))
            out[number] = ocr_image(page.render(scale=scale).to_pil())
            page.close()
        return out
    finally:
        pdf.close()


def without_running_lines(units: list[Unit]) -> list[Unit]:
    """Pages without the headers, footers and page numbers that repeat on most of them
    (lib/pages.drop_running_lines)."""
    texts = drop_running_lines([u.text for u in units])
    return [u if u.text == text else replace(u, text=text) for u, text in zip(units, texts, strict=True)]


def sanitize_page(text: str) -> str:
    text = _CONTROL.sub(" ", text.replace("\r\n", "\n"))
    return _SPACES.sub(" ", text).strip()


def parse_text(name: str, data: bytes) -> ParsedDocument:
    text = sanitize_page(decode_text(name, data))
    if not text:
        raise BadDocument(name, "text file holds only whitespace")
    return ParsedDocument(kind="text", units=[Unit(text=text)])


def parse_csv(name: str, data: bytes, text_column: str) -> ParsedDocument:
    """One unit per row, its text the sanitized `text_column`; the other short columns become
    the row's metadata."""
    units = []
    # The whole file is the sample: its encoding is found as for any text file.
    for number, row in enumerate(stream_csv(name, io.BytesIO(data), [text_column], sample=len(data) + 1), start=1):
        text = sanitize_text(row.get(text_column) or "")
        if text:
            extra = {
                k: v for k, v in row.items() if k and k != text_column and isinstance(v, str) and v and len(v) <= 256
            }
            units.append(Unit(text=text, row=number, metadata=user_fields(extra)[0]))
    if not units:
        raise BadDocument(name, f"CSV has no rows with text in {text_column!r}")
    return ParsedDocument(kind="csv", units=units)


class _Prefixed(io.RawIOBase):
    """A binary stream whose first bytes were read already (to detect the encoding). The head
    is read through a moving offset, never re-sliced: linear in its size."""

    def __init__(self, head: bytes, rest: BinaryIO):
        self._head, self._at, self._rest = memoryview(head), 0, rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self._at < len(self._head):
            n = min(len(buffer), len(self._head) - self._at)
            buffer[:n] = self._head[self._at : self._at + n]
            self._at += n
            return n
        data = self._rest.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _bounded_lines(name: str, text: io.TextIOBase, limit: int) -> Iterator[str]:
    """The lines of a text stream, each at most `limit` characters: a longer one is refused
    as soon as `limit` characters of it were read (never read whole)."""
    number = 0
    while line := text.readline(limit + 1):
        number += 1
        if len(line) > limit:
            raise BadDocument(name, f"line {number} is longer than {limit:,} characters (the limit of a CSV line)")
        yield line


def stream_csv(name: str, stream: BinaryIO, columns: Sequence[str], sample: int = 1 << 16) -> Iterator[dict]:
    """The rows of a CSV read from a binary stream a buffer at a time, never whole, in the
    encoding its first `sample` bytes show; a line longer than MAX_CSV_LINE_CHARS or a header
    of more than MAX_CSV_COLUMNS columns is refused at once. Raises BadDocument when a column
    is missing or the file is not CSV text."""
    head = stream.read(sample)
    encoding = detect_encoding(name, head, complete=len(head) < sample)
    text = io.TextIOWrapper(io.BufferedReader(_Prefixed(head, stream)), encoding=encoding, newline="")
    reader = csv.DictReader(_bounded_lines(name, text, MAX_CSV_LINE_CHARS))
    try:
        if len(reader.fieldnames or []) > MAX_CSV_COLUMNS:
            raise BadDocument(
                name, f"CSV header has {len(reader.fieldnames):,} columns, more than the limit of {MAX_CSV_COLUMNS:,}"
            )
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            shown = ", ".join((reader.fieldnames or [])[:12]) or "none"
            raise BadDocument(
                name, f"CSV has no {', '.join(map(repr, missing))} column{'s' * (len(missing) > 1)} (columns: {shown})"
            )
        yield from reader
    except csv.Error as e:
        raise BadDocument(name, f"malformed CSV at line {reader.line_num} ({e})") from None
    except UnicodeDecodeError as e:
        raise BadDocument(name, f"not {encoding} text past its first {sample} bytes ({e.reason})") from None


def parse_document(
    name: str,
    data: bytes,
    *,
    csv_text_column: str = "formatted_text",
    max_unpacked_bytes: int = DEFAULT_MAX_UNPACKED_BYTES,
    max_ocr_pages: int = DEFAULT_MAX_OCR_PAGES,
    max_pdf_pages: int = DEFAULT_MAX_PDF_PAGES,
) -> ParsedDocument:
    """Parse by file type. Raises BadDocument (file name + reason) for anything unreadable.
    `csv_text_column` is the column (CSV, XLSX) or field (JSON) of each record's text;
    an image is read by the image reader (defs.documents.images), not here."""
    suffix = PurePosixPath(name).suffix.lower()
    if suffix not in SUPPORTED_TYPES:
        supported = ", ".join(sorted(SUPPORTED_TYPES))
        raise BadDocument(name, f"unsupported file type {suffix or '(none)'!r} (supported: {supported})")
    if not data:
        raise BadDocument(name, "empty file (0 bytes)")
    if suffix in IMAGE_TYPES:
        raise BadDocument(name, "an image, and no image analyzer was given to read it")
    if suffix in PDF_TYPES:
        return parse_pdf(name, data, max_ocr_pages, max_pdf_pages)
    if suffix in CSV_TYPES:
        return parse_csv(name, data, csv_text_column)
    if suffix in OFFICE_TYPES:
        check_zip(name, data, max_unpacked_bytes)
        if suffix == ".xlsx":
            return parse_xlsx(name, data, csv_text_column)
        return parse_docx(name, data) if suffix == ".docx" else parse_pptx(name, data)
    if suffix in HTML_TYPES:
        return parse_html(name, data)
    if suffix in MAIL_TYPES:
        return parse_eml(name, data)
    if suffix in JSON_TYPES:
        return parse_json(name, data, csv_text_column, lines=suffix == ".jsonl")
    return parse_text(name, data)


_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # a compound file: an encrypted OOXML file, or .doc/.ppt/.xls


def check_zip(name: str, data: bytes, max_unpacked_bytes: int) -> None:
    """An Office file is a zip: refuse one that is not, and one that would unpack to more
    than the limit (a zip bomb), before any library opens it."""
    import zipfile

    if data.startswith(_OLE_MAGIC):
        raise BadDocument(
            name,
            "password-protected (encrypted) or a legacy binary Office file; save it unencrypted as .docx/.pptx/.xlsx",
        )
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
    except zipfile.BadZipFile as e:
        raise BadDocument(name, f"corrupt: not a readable Office file ({e})") from None
    if unpacked > max_unpacked_bytes:
        raise BadDocument(
            name,
            (
                f"unpacks to {unpacked >> 20} MiB, more than the limit of {max_unpacked_bytes >> 20} MiB "
                "(RAG_MAX_UNPACKED_MB)"
            ),
        )


def parse_html(name: str, data: bytes) -> ParsedDocument:
    """The page's main text (trafilatura: not its menus, headers or footers), its title first."""
    import trafilatura

    page = decode_text(name, data)
    text = trafilatura.extract(page, include_tables=True, include_comments=False)
    if not text or not text.strip():
        raise BadDocument(name, "HTML page has no main text")
    meta = trafilatura.extract_metadata(page)
    title = (meta.title or "").strip() if meta else ""
    body = sanitize_page(text)
    return ParsedDocument(kind="html", units=[Unit(text=f"{title}\n\n{body}" if title and title not in body else body)])


def parse_eml(name: str, data: bytes) -> ParsedDocument:
    """A mail: subject, from, to, date and body (the plain part, else the HTML part's main
    text). Attachments are named in the metadata; they are not indexed (save them as files of
    their own to index them)."""
    from email import policy
    from email.parser import BytesParser

    try:
        message = BytesParser(policy=policy.default).parsebytes(data)
    except Exception as e:  # noqa: BLE001 - the parser is lenient; what it still refuses is not a mail
        raise BadDocument(name, f"not a readable mail ({e})") from None
    headers = {h: str(message.get(h, "")).strip() for h in ("Subject", "From", "To", "Date")}
    if not any(headers.values()):
        raise BadDocument(name, "not a mail: no Subject, From, To or Date header")
    part = message.get_body(preferencelist=("plain", "html"))
    body = ""
    if part is not None:
        content = part.get_content()
        if part.get_content_subtype() == "html":
            import trafilatura

            content = trafilatura.extract(content, include_tables=True) or sanitize_text(content)
        body = sanitize_page(content)
    head = "\n".join(f"{h}: {v}" for h, v in headers.items() if v)
    attachments = [a.get_filename() or "(unnamed)" for a in message.iter_attachments()]
    metadata = {"subject": headers["Subject"], "from": headers["From"], "date": headers["Date"]}
    if attachments:
        metadata["attachments_not_indexed"] = ", ".join(attachments)
    return ParsedDocument(
        kind="eml", units=[Unit(text=f"{head}\n\n{body}".strip(), metadata={k: v for k, v in metadata.items() if v})]
    )


def parse_json(name: str, data: bytes, text_field: str, *, lines: bool) -> ParsedDocument:
    """Records of a JSON array (or one object) or of JSON Lines: one unit per record, its
    text the sanitized `text_field`, its other short scalar fields its metadata."""
    import json

    text = decode_text(name, data)
    try:
        if lines:
            records = []
            for number, line in enumerate(text.splitlines(), start=1):
                if line.strip():
                    try:
                        records.append(json.loads(line))
                    except ValueError as e:
                        raise BadDocument(name, f"malformed JSON on line {number} ({e})") from None
        else:
            loaded = json.loads(text)
            records = loaded if isinstance(loaded, list) else [loaded]
    except ValueError as e:
        raise BadDocument(name, f"malformed JSON ({e})") from None
    except RecursionError:
        raise BadDocument(name, "JSON nested too deeply to read (more levels than Python's recursion limit)") from None
    units = []
    for number, record in enumerate(records, start=1):
        if not isinstance(record, dict):
            raise BadDocument(name, f"record {number} is a {type(record).__name__}, not an object")
        value = record.get(text_field)
        body = sanitize_text(value) if isinstance(value, str) else ""
        if body:
            extra = {
                k: str(v)
                for k, v in record.items()
                if k != text_field and isinstance(v, str | int | float | bool) and len(str(v)) <= 256
            }
            units.append(Unit(text=body, row=number, metadata=user_fields(extra)[0]))
    if not units:
        raise BadDocument(
            name,
            f"no record with text in {text_field!r} ({len(records)} record(s); RAG_CSV_TEXT_COLUMN names the field)",
        )
    return ParsedDocument(kind="jsonl" if lines else "json", units=units)


# Office files: Word (python-docx), PowerPoint (python-pptx, a slide a page), Excel (openpyxl,
# a row a unit as CSV rows are). check_zip has refused corrupt, encrypted and oversized files.


def _opened(name: str, kind: str, open_file, data: bytes):
    try:
        return open_file(io.BytesIO(data))
    except MemoryError:
        raise
    except Exception as e:  # noqa: BLE001 - each library raises its own errors (KeyError, lxml, ValueError...)
        raise BadDocument(name, f"corrupt {kind} file ({type(e).__name__}: {e})") from None


def _table_text(table) -> str:
    return "\n".join(" | ".join(cell.text.strip() for cell in row.cells) for row in table.rows)


def parse_docx(name: str, data: bytes) -> ParsedDocument:
    """The body's paragraphs and tables in order, as one unit (Word has no fixed pages)."""
    import docx
    from docx.table import Table

    document = _opened(name, "Word", docx.Document, data)
    blocks = [_table_text(block) if isinstance(block, Table) else block.text for block in document.iter_inner_content()]
    text = sanitize_page("\n".join(b for b in blocks if b.strip()))
    if not text:
        raise BadDocument(name, "Word document has no text")
    return ParsedDocument(kind="docx", units=[Unit(text=text)])


def parse_pptx(name: str, data: bytes) -> ParsedDocument:
    """One unit per slide with text (its number the page): shapes' text, tables, notes."""
    import pptx

    presentation = _opened(name, "PowerPoint", pptx.Presentation, data)
    units = []
    for number, slide in enumerate(presentation.slides, start=1):
        parts = []
        for shape in slide.shapes:
            if shape.has_text_frame:
                parts.append(shape.text_frame.text)
            elif getattr(shape, "has_table", False) and shape.has_table:
                parts.append(_table_text(shape.table))
        if slide.has_notes_slide and slide.notes_slide.notes_text_frame is not None:
            parts.append(slide.notes_slide.notes_text_frame.text)
        text = sanitize_page("\n".join(p for p in parts if p.strip()))
        if text:
            units.append(Unit(text=text, page=number))
    units = [u for u in without_running_lines(units) if u.text]
    if not units:
        raise BadDocument(name, "PowerPoint file has no text on any slide")
    return ParsedDocument(kind="pptx", units=units, pages=len(presentation.slides))


def parse_xlsx(name: str, data: bytes, text_column: str) -> ParsedDocument:
    """One unit per row of each sheet, the first row the header: the row's `text_column`
    when the sheet has one, else its cells as `header: value`; the sheet in the metadata."""
    import openpyxl

    workbook = _opened(name, "Excel", lambda f: openpyxl.load_workbook(f, read_only=True, data_only=True), data)
    units = []
    try:
        for sheet in workbook.worksheets:
            rows = sheet.iter_rows(values_only=True)
            header = [str(c).strip() if c is not None else "" for c in next(rows, ())]
            has_text_column = text_column in header
            for number, values in enumerate(rows, start=2):
                row = {
                    h or f"column {i + 1}": v
                    for i, (h, v) in enumerate(zip(header, values, strict=False))
                    if v is not None
                }
                if has_text_column:
                    text = sanitize_text(str(row.get(text_column) or ""))
                    extra = user_fields({k: str(v) for k, v in row.items() if k != text_column and len(str(v)) <= 256})[
                        0
                    ]
                else:
                    text = sanitize_text("; ".join(f"{k}: {v}" for k, v in row.items()))
                    extra = {}
                if text:
                    units.append(Unit(text=text, row=number, metadata={"sheet": sheet.title, **extra}))
    finally:
        workbook.close()
    if not units:
        raise BadDocument(name, "Excel workbook has no rows with text")
    return ParsedDocument(kind="xlsx", units=units)


@dataclass(frozen=True)
class SourceDocument:
    """A fetched, parsed document: what a family's first asset yields, per partition."""

    ref: DocRef
    content_hash: str
    etag: str  # the source etag the index records (lib.identity.source_etag: with the sidecar's)
    version: str  # the object's version when it was read: checked again before the write
    size: int
    parsed: ParsedDocument
    metadata: dict = field(default_factory=dict)  # sidecar fields (never the project's own: lib.parsing.SYSTEM_FIELDS)
    index_key: str | None = None  # the index's document key when it is not ref.key (a record: source/date/id)
    refused_fields: tuple[str, ...] = ()  # what the sidecar tried to set of the project's own fields

    @property
    def document_key(self) -> str:
        return self.index_key or self.ref.key
