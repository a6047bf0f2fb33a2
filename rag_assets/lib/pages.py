"""Running headers, footers and page numbers: lines that repeat at the top or bottom of most
pages of a document, dropped before it is chunked (docs/decisions.md D30). Pure."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

EDGE_LINES = 3  # lines looked at from the top and from the bottom of each page
MIN_SHARE = 0.5  # a line must sit at an edge of more than this share of the pages
MIN_PAGES = 3  # documents of fewer pages keep every line

_DIGITS = re.compile(r"\d+")
_ROMAN = re.compile(r"^[ivxlcdm]+$")


def line_key(line: str) -> str:
    """A line as it is compared across pages: spaces collapsed, case folded, every number
    (and a lone roman numeral) replaced by `#`, so that "Page 3 of 10" and "Page 4 of 10",
    or "- 7 -" and "- 8 -", are the same line."""
    key = " ".join(line.split()).casefold()
    key = _DIGITS.sub("#", key)
    return "#" if _ROMAN.fullmatch(key) else key


def _edges(lines: list[str], edge: int) -> list[int]:
    """Indices of the first and last `edge` non-blank lines."""
    filled = [i for i, line in enumerate(lines) if line.strip()]
    return sorted(set(filled[:edge] + filled[-edge:]))


def running_keys(
    pages: Sequence[str], *, edge: int = EDGE_LINES, min_share: float = MIN_SHARE, min_pages: int = MIN_PAGES
) -> set[str]:
    """The keys (`line_key`) of the lines at an edge of more than `min_share` of the pages
    with text (and of two pages at least); none for documents of fewer than `min_pages`."""
    filled = [page for page in pages if page.strip()]  # blank pages (scans before OCR) are not counted
    if len(filled) < max(2, min_pages):
        return set()
    seen: Counter[str] = Counter()
    for page in filled:
        lines = page.split("\n")
        seen.update({line_key(lines[i]) for i in _edges(lines, edge)})
    needed = max(2, math.floor(min_share * len(filled)) + 1)
    return {key for key, n in seen.items() if n >= needed and key}


def drop_running_lines(
    pages: Sequence[str], *, edge: int = EDGE_LINES, min_share: float = MIN_SHARE, min_pages: int = MIN_PAGES
) -> list[str]:
    """The pages without their running headers, footers and page numbers: the lines among
    the first and last `edge` non-blank lines of a page whose `line_key` is at an edge of
    more than `min_share` of the pages. A line found on one page only is never dropped, and
    when dropping would leave no text at all, nothing is dropped."""
    keys = running_keys(pages, edge=edge, min_share=min_share, min_pages=min_pages)
    if not keys:
        return list(pages)
    out = []
    for page in pages:
        lines = page.split("\n")
        drop = {i for i in _edges(lines, edge) if line_key(lines[i]) in keys}
        out.append("\n".join(line for i, line in enumerate(lines) if i not in drop).strip())
    if not any(p.strip() for p in out):
        return list(pages)
    return out
