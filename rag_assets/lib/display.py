"""What a terminal is shown: text from outside (object keys, CSV headers, failure reasons,
server messages) with its control characters made visible, so a key holding `ESC]0;...BEL`
cannot retitle, recolour or rewrite the terminal that prints it."""

from __future__ import annotations

import unicodedata

# Besides C0/C1 controls and line/paragraph separators: the bidirectional overrides and
# isolates, which reorder what follows them on screen ("Trojan Source", CVE-2021-42574).
_BIDI = {"\u061c", "\u200e", "\u200f", *map(chr, range(0x202A, 0x202F)), *map(chr, range(0x2066, 0x206A))}


def _visible(ch: str) -> str:
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def _hidden(ch: str) -> bool:
    return ch in _BIDI or unicodedata.category(ch) in ("Cc", "Zl", "Zp", "Cs")


def printable(text: object, *, newlines: bool = False) -> str:
    """`text` (any object, as str) with control characters as `\\xNN` / `\\uNNNN` escapes;
    `newlines=True` keeps line feeds (a multi-line message). Everything else, accents, CJK
    and emoji included, is shown as it is."""
    text = str(text)
    if not any(_hidden(ch) for ch in text):
        return text
    return "".join(ch if not _hidden(ch) or (newlines and ch == "\n") else _visible(ch) for ch in text)
