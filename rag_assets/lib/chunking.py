"""Chunks cut at paragraph and sentence ends, sized in the model's word pieces. Chunks never
cross a unit (page, row). docs/decisions.md D30 chose the sizes and the way of cutting."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from rag_assets.lib.hashing import chunk_id
from rag_assets.lib.parsing import Unit

# The one place the default chunk size and overlap are written (RAG_CHUNK_TOKENS,
# RAG_CHUNK_OVERLAP, RagConfig and Settings read these). In estimated word pieces
# (`estimate_word_pieces`): all-MiniLM-L6-v2 reads 256 word pieces, two of them its [CLS] and
# [SEP]; OpenAI's models read 8,191 tokens, so any size valid for the one is for the other.
CHUNK_TOKENS = 224
CHUNK_OVERLAP = 0
# Bump when the same text, size and overlap are cut differently: the pipeline fingerprint
# (lib/identity) carries it, so every document is cut again. 2: sentence packing (D30).
CHUNKER_VERSION = "2"

# Word pieces and punctuation as a regex: the unit the cuts are made between.
_TOKEN = re.compile(r"\w+|[^\w\s]")
_SENTENCE_END = re.compile(r"[.!?;:]$")  # split_spans' (the cut before D30)
_FULL_STOP = frozenset(".!?。！？…")
_CLOSERS = frozenset("\"')]}’”»")
_CLAUSE_END = frozenset(";:")
_BLANK_LINE = re.compile(r"\n[^\S\n]*\n")
_UPPER_INSIDE = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")

Count = Callable[[str], float]


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
    """Regex tokens (`\\w+|[^\\w\\s]`): ~1/1.2 of all-MiniLM-L6-v2's word pieces on English prose."""
    return sum(1 for _ in _TOKEN.finditer(text))


def _word_pieces(word: str) -> float:
    """A close estimate of the word pieces of one regex token in an English WordPiece
    vocabulary (lower-cased, accents stripped), from its length and shape: a short word is
    one piece, a long one about one more per six letters; `snake_case` and `CamelCase`
    names are their parts (and `_` a piece of its own); digits two to a piece; CJK
    characters one each, other non-ASCII letters about two to a piece."""
    if len(word) == 1:
        return 1.0
    if "_" in word:
        parts = [p for p in word.split("_") if p]
        return word.count("_") + sum(_word_pieces(p) for p in parts)
    if word.isdigit():
        return math.ceil(len(word) / 2)
    if not word.isascii():
        cjk = len(_CJK.findall(word))
        rest = len(word) - cjk
        return cjk + (max(1.0, rest / 2) if rest else 0.0)
    parts = _UPPER_INSIDE.split(word) if not word.islower() and not word.isupper() else [word]
    if len(parts) > 1:
        return sum(_word_pieces(p.lower()) for p in parts)
    if any(ch.isdigit() for ch in word):
        return max(1.0, len(word) / 2.5)
    if word.isupper() and len(word) > 3:
        return max(1.0, len(word) / 2.5)  # acronyms and constants read as letters
    return 1.0 + max(0, len(word) - 6) / 6


def estimate_word_pieces(text: str) -> float:
    """all-MiniLM-L6-v2's word pieces of `text` (without [CLS] and [SEP]), estimated with no
    vocabulary: within a few per cent of the tokenizer on English prose and code-laden
    documentation, and rarely under it (benchmarks/quality.py reports the chunks that pass
    the model's window). Additive: the estimate of a text is the sum of its tokens'."""
    return sum(_word_pieces(m.group()) for m in _TOKEN.finditer(text))


def _boundary(text: str, spans: list[tuple[int, int]], i: int) -> int:
    """How good a place the gap after token `i` is to cut: 3 a paragraph end (a blank line),
    2 a sentence end, 1 a line end or a clause end (`;`, `:`), 0 anywhere else."""
    end = spans[i][1]
    if i + 1 == len(spans):
        return 3
    gap = text[end : spans[i + 1][0]]
    if not gap:
        return 0
    if "\n" in gap and _BLANK_LINE.search(gap):
        return 3
    token = text[spans[i][0] : end]
    stop = token in _FULL_STOP or (
        token in _CLOSERS and i > 0 and text[spans[i - 1][0] : spans[i - 1][1]] in _FULL_STOP
    )
    if stop and ("\n" in gap or not text[spans[i + 1][0]].islower()):
        return 2
    if "\n" in gap or token in _CLAUSE_END:
        return 1
    return 0


def sentence_spans(
    text: str, max_tokens: int, overlap: int = 0, count: Count = estimate_word_pieces
) -> list[tuple[int, int, int]]:
    """(char_start, char_end, tokens) chunks of `text` of at most `max_tokens` as `count`
    counts them (estimated word pieces by default; a tokenizer's count can be injected),
    cut where a paragraph ends, else where a sentence ends, else at a line or clause end,
    and inside a sentence only when it alone is longer than `max_tokens`. A text needing k
    chunks is cut into k chunks of about equal size rather than k-1 full ones and a scrap.
    With `overlap`, a chunk starts with the whole sentences (at most `overlap` tokens) that
    end the chunk before it.

    `count` must be additive over text split at whitespace (a tokenizer that splits on
    whitespace first, as WordPiece and the regex do): it is called once per sentence, and
    per word only inside a sentence longer than `max_tokens`."""
    if max_tokens <= 0 or not 0 <= overlap < max_tokens:
        raise ValueError(f"need 0 <= overlap < max_tokens, got overlap={overlap}, max_tokens={max_tokens}")
    spans = [m.span() for m in _TOKEN.finditer(text)]
    n = len(spans)
    if not n:
        return []
    levels = [_boundary(text, spans, i) for i in range(n)]
    # Costs: a segment's (the tokens up to a boundary of level >= 1) on its last token; the
    # tokens of a segment longer than a chunk each their own, to be cut between.
    cost = [0.0] * n
    cuttable = [level >= 1 for level in levels]  # where the running cost is exact
    first = 0
    for i in range(n):
        if levels[i] >= 1:
            whole = count(text[spans[first][0] : spans[i][1]])
            if whole <= max_tokens:
                cost[i] = whole
            else:
                for j in range(first, i + 1):
                    cost[j] = count(text[spans[j][0] : spans[j][1]])
                    cuttable[j] = True
            first = i + 1
    prefix = [0.0]
    for c in cost:
        prefix.append(prefix[-1] + c)

    out: list[tuple[int, int, int]] = []
    start = 0
    while start < n:
        remaining = prefix[n] - prefix[start]
        if remaining <= max_tokens:
            end = n
        else:
            target = remaining / math.ceil(remaining / max_tokens)
            end = _best_cut(levels, cuttable, prefix, start, n, max_tokens, target)
        out.append((spans[start][0], spans[end - 1][1], round(prefix[end] - prefix[start])))
        if end == n:
            break
        nxt = end
        if overlap:
            for b in range(end - 1, start, -1):  # back over whole sentences, while they fit
                if prefix[end] - prefix[b] > overlap:
                    break
                if levels[b - 1] >= 2:
                    nxt = b
        start = nxt
    return out


def _best_cut(
    levels: list[int], cuttable: list[bool], prefix: list[float], start: int, n: int, max_tokens: int, target: float
) -> int:
    """The end (exclusive token index) of the chunk that starts at `start`: at most
    `max_tokens`; a paragraph end near `target` if one is at 70% of it or more, else a
    sentence end at 50% or more, else a line or clause end at 50% or more, else the last
    place that fits (inside a sentence longer than a chunk)."""
    best: dict[int, tuple[float, int]] = {}
    last_fit = start + 1  # a token longer than a chunk is a chunk
    base = prefix[start]
    i = start
    while i < n and prefix[i + 1] - base <= max_tokens:
        if cuttable[i]:
            size = prefix[i + 1] - base
            last_fit = i + 1
            level = levels[i]
            if level >= 1 and size >= (0.7 if level == 3 else 0.5) * target:
                distance = abs(size - target)
                if level not in best or distance < best[level][0]:
                    best[level] = (distance, i + 1)
        i += 1
    for level in (3, 2, 1):
        if level in best:
            return best[level][1]
    return last_fit


def split_spans(text: str, max_tokens: int, overlap: int) -> list[tuple[int, int, int]]:
    """The cut before D30 (kept to measure against): (char_start, char_end, tokens) windows
    of at most `max_tokens` regex tokens, consecutive windows sharing `overlap` tokens. A
    window ends at a sentence end when one falls in its last third."""
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


def chunk_units(
    document_id: str,
    units: list[Unit],
    *,
    max_tokens: int = CHUNK_TOKENS,
    overlap: int = CHUNK_OVERLAP,
    count: Count = estimate_word_pieces,
) -> list[Chunk]:
    """Chunks of a document (`sentence_spans` of each unit), numbered across it, each with a
    stable id."""
    chunks: list[Chunk] = []
    for unit in units:
        for start, end, tokens in sentence_spans(unit.text, max_tokens, overlap, count):
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
