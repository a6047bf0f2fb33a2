"""Token-aware chunking with overlap. Chunks never cross a unit (page, row)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from rag_assets.lib.hashing import chunk_id
from rag_assets.lib.parsing import Unit

# Word pieces and punctuation: a close, dependency-free stand-in for a subword tokenizer
# (all-MiniLM-L6-v2's WordPiece gives ~1.2x as many tokens on English prose).
_TOKEN = re.compile(r"\w+|[^\w\s]")
_SENTENCE_END = re.compile(r"[.!?;:]$")


@dataclass(frozen=True)
class Chunk:
    chunk_id: str
    ordinal: int
    text: str
    tokens: int
    page: int | None = None
    row: int | None = None
    char_start: int = 0
    char_end: int = 0
    metadata: dict = field(default_factory=dict)


def count_tokens(text: str) -> int:
    return sum(1 for _ in _TOKEN.finditer(text))


def split_spans(text: str, max_tokens: int, overlap: int) -> list[tuple[int, int, int]]:
    """(char_start, char_end, tokens) windows of at most `max_tokens` tokens, consecutive
    windows sharing `overlap` tokens. A window ends at a sentence end when one falls in its
    last third, so chunks rarely cut a sentence in two."""
    if max_tokens <= 0 or not 0 <= overlap < max_tokens:
        raise ValueError(f"need 0 <= overlap < max_tokens, got overlap={overlap}, max_tokens={max_tokens}")
    spans = [m.span() for m in _TOKEN.finditer(text)]
    windows: list[tuple[int, int, int]] = []
    start = 0
    while start < len(spans):
        end = min(start + max_tokens, len(spans))
        if end < len(spans):
            floor = start + max(1, (2 * max_tokens) // 3, overlap + 1)
            for cut in range(end, floor, -1):
                if _SENTENCE_END.search(text[spans[cut - 1][0] : spans[cut - 1][1]]):
                    end = cut
                    break
        windows.append((spans[start][0], spans[end - 1][1], end - start))
        if end == len(spans):
            break
        start = max(end - overlap, start + 1)
    return windows


def chunk_units(document_id: str, units: list[Unit], *, max_tokens: int = 160, overlap: int = 32) -> list[Chunk]:
    """Chunks of a document, numbered across it, each with a stable id."""
    chunks: list[Chunk] = []
    for unit in units:
        for start, end, tokens in split_spans(unit.text, max_tokens, overlap):
            text = unit.text[start:end]
            ordinal = len(chunks)
            chunks.append(
                Chunk(
                    chunk_id=chunk_id(document_id, ordinal, text),
                    ordinal=ordinal,
                    text=text,
                    tokens=tokens,
                    page=unit.page,
                    row=unit.row,
                    char_start=start,
                    char_end=end,
                    metadata=unit.metadata,
                )
            )
    return chunks
