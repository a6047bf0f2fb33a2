"""Lines from outside (a query per line on stdin, an eval file) read with a bound on each
line's length: a 50 MB line is skipped a chunk at a time, never held, and the lines after it
are read as usual."""

from __future__ import annotations

import io
import select
from dataclasses import dataclass
from typing import BinaryIO

CHUNK = 1 << 16
BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class LineTooLong:
    """In place of a line longer than the bound: how many bytes it had (at least what was read
    of it before it was known to be too long)."""

    length: int


class BoundedLines:
    """The lines of a binary stream, each as bytes without its line ending (`\\n` or `\\r\\n`),
    or `LineTooLong` for one of more than `limit` bytes. The last line needs no line ending; a
    UTF-8 byte order mark before the first line is dropped. At most `limit` + 64 KiB are held.

    `ready()` says whether the next line can be had without waiting for the writer: a reader
    that batches lines answers those it holds instead of waiting for a full batch (a script
    that writes a line and waits for its answer is not left hanging)."""

    def __init__(self, stream: BinaryIO, limit: int):
        self.limit = limit
        self._read = getattr(stream, "read1", stream.read)  # read1: what is there, without waiting for more
        try:
            self._fd: int | None = stream.fileno()
        except (AttributeError, OSError, io.UnsupportedOperation):
            self._fd = None  # in memory: everything is there
        self._buffer = bytearray()
        self._eof = False
        self._first = True

    def __iter__(self) -> BoundedLines:
        return self

    def _fill(self) -> None:
        chunk = self._read(CHUNK)
        if chunk:
            self._buffer += chunk
        else:
            self._eof = True

    def _line(self, end: int) -> bytes | LineTooLong:
        """The buffered line that ends at `end` (the index of its `\\n`, or the buffer's end)."""
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 1]
        if self._first:
            self._first = False
            line = line.removeprefix(BOM)
        line = line.removesuffix(b"\r")
        return LineTooLong(len(line)) if len(line) > self.limit else line

    def _skip_rest(self) -> LineTooLong:
        """Skip a line known to be too long, up to and including its `\\n`."""
        skipped = len(self._buffer)
        self._buffer.clear()
        self._first = False
        while not self._eof:
            chunk = self._read(CHUNK)
            if not chunk:
                self._eof = True
                break
            end = chunk.find(b"\n")
            if end < 0:
                skipped += len(chunk)
                continue
            self._buffer += chunk[end + 1 :]
            return LineTooLong(skipped + end)
        return LineTooLong(skipped)

    def __next__(self) -> bytes | LineTooLong:
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                return self._line(end)
            if len(self._buffer) > self.limit + len(BOM) + 1:  # room for a BOM and a "\r": too long whatever comes
                return self._skip_rest()
            if self._eof:
                if self._buffer:
                    return self._line(len(self._buffer))
                raise StopIteration
            self._fill()

    def ready(self) -> bool:
        """Whether the next line (or the end) can be read without waiting for the writer."""
        if self._eof or b"\n" in self._buffer or self._fd is None:
            return True
        try:
            readable, _, _ = select.select([self._fd], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)


def decode_line(line: bytes | LineTooLong, limit: int) -> str:
    """A line as text; ValueError saying why not (longer than `limit` bytes, not UTF-8)."""
    if isinstance(line, LineTooLong):
        raise ValueError(f"longer than {limit:,} bytes ({line.length:,})")  # noqa: TRY004 - bad data, callers catch ValueError
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"not UTF-8 (byte {line[e.start]:#04x} at position {e.start})") from None
