"""Turn an object's bytes into text units (pages, rows, a whole text file)."""

from __future__ import annotations

import csv
import html
import io
import logging
import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import BinaryIO

PDF_TYPES = {".pdf"}
TEXT_TYPES = {".txt", ".md", ".markdown"}
CSV_TYPES = {".csv"}
SUPPORTED_TYPES = PDF_TYPES | TEXT_TYPES | CSV_TYPES


class BadDocument(Exception):
    """A document that cannot be read. The message names the file and the reason."""

    def __init__(self, name: str, reason: str):
        super().__init__(f"{name}: {reason}")
        self.name = name
        self.reason = reason
        self.etag: str | None = None  # the source version that could not be read, when known


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


def parse_pdf(name: str, data: bytes) -> ParsedDocument:
    """Pages of text with their numbers (1-based). pypdf's per-font warnings are counted,
    not printed: a LaTeX PDF can produce hundreds of them."""
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
                except Exception:  # pypdf raises assorted errors for unsupported crypto
                    unlocked = 0
                if not unlocked:
                    raise BadDocument(name, "encrypted PDF: it needs a password")
            units = []
            for number, page in enumerate(reader.pages, start=1):
                text = (page.extract_text() or "").replace("\x00", "")
                units.append(Unit(text=sanitize_page(text), page=number))
        except BadDocument:
            raise
        except Exception as e:  # untrusted input: whatever pypdf trips over, the file is corrupt
            raise BadDocument(name, f"corrupt PDF ({type(e).__name__}: {e})") from None
        finally:
            pypdf_logger.removeHandler(handler)
            pypdf_logger.propagate = old_propagate
    units = [u for u in units if u.text]
    if not units:
        raise BadDocument(name, f"PDF has no extractable text in {len(reader.pages)} page(s) (scanned? OCR is not built)")
    return ParsedDocument(kind="pdf", units=units, pages=len(reader.pages), warnings=handler.count)


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
            extra = {k: v for k, v in row.items() if k and k != text_column and v and len(v) <= 256}
            units.append(Unit(text=text, row=number, metadata=extra))
    if not units:
        raise BadDocument(name, f"CSV has no rows with text in {text_column!r}")
    return ParsedDocument(kind="csv", units=units)


class _Prefixed(io.RawIOBase):
    """A binary stream whose first bytes were read already (to detect the encoding)."""

    def __init__(self, head: bytes, rest: BinaryIO):
        self._head, self._rest = head, rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n], self._head = self._head[:n], self._head[n:]
            return n
        data = self._rest.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def stream_csv(name: str, stream: BinaryIO, columns: Sequence[str], sample: int = 1 << 16) -> Iterator[dict]:
    """The rows of a CSV read from a binary stream a buffer at a time, never whole, in the
    encoding its first `sample` bytes show. Raises BadDocument when a column is missing or
    the file is not CSV text."""
    head = stream.read(sample)
    encoding = detect_encoding(name, head, complete=len(head) < sample)
    text = io.TextIOWrapper(io.BufferedReader(_Prefixed(head, stream)), encoding=encoding, newline="")
    reader = csv.DictReader(text)
    try:
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            shown = ", ".join((reader.fieldnames or [])[:12]) or "none"
            raise BadDocument(name, f"CSV has no {', '.join(map(repr, missing))} column{'s' * (len(missing) > 1)} (columns: {shown})")
        yield from reader
    except csv.Error as e:
        raise BadDocument(name, f"malformed CSV at line {reader.line_num} ({e})") from None
    except UnicodeDecodeError as e:
        raise BadDocument(name, f"not {encoding} text past its first {sample} bytes ({e.reason})") from None


def parse_document(name: str, data: bytes, *, csv_text_column: str = "formatted_text") -> ParsedDocument:
    """Parse by file type. Raises BadDocument (file name + reason) for anything unreadable."""
    suffix = PurePosixPath(name).suffix.lower()
    if suffix not in SUPPORTED_TYPES:
        supported = ", ".join(sorted(SUPPORTED_TYPES))
        raise BadDocument(name, f"unsupported file type {suffix or '(none)'!r} (supported: {supported})")
    if not data:
        raise BadDocument(name, "empty file (0 bytes)")
    if suffix in PDF_TYPES:
        return parse_pdf(name, data)
    if suffix in CSV_TYPES:
        return parse_csv(name, data, csv_text_column)
    return parse_text(name, data)
