"""Every relative link and anchor in README.md, docs/*.md and deploy/README.md resolves.

Pure Python, no Dagster: links inside fenced code blocks and inline code are not links; an
anchor is checked against the target file's headings, slugged as GitHub does (lowercase,
punctuation other than '-' and '_' removed, spaces to '-', a repeated heading gets -1, -2...),
and against explicit `<a id=...>` / `<a name=...>` anchors."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parent.parent
FILES = sorted(
    [ROOT / "README.md", ROOT / "deploy" / "README.md", *(ROOT / "docs").glob("*.md")],
    key=lambda p: p.relative_to(ROOT).as_posix(),
)

FENCE = re.compile(r"^\s*(```|~~~)")
CODE_SPAN = re.compile(r"(`+)(?!`)(.+?)(?<!`)\1(?!`)", re.DOTALL)
# [text](target) or ![alt](target), an optional "title"; text may hold one level of brackets.
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
HTML_ANCHOR = re.compile(r"<a\s+(?:id|name)=\"([^\"]+)\"", re.IGNORECASE)
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks (a fence's own lines dropped too)."""
    out, fence = [], None
    for line in text.splitlines():
        m = FENCE.match(line)
        if m:
            if fence is None:
                fence = m.group(1)
            elif m.group(1) == fence:
                fence = None
            continue
        if fence is None:
            out.append(line)
    return out


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's text."""
    text = CODE_SPAN.sub(lambda m: m.group(2), heading)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link in a heading: its text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found: set[str] = set()
    seen: dict[str, int] = {}
    lines = prose_lines(path.read_text(encoding="utf-8"))
    for line in lines:
        m = HEADING.match(line)
        if m:
            base = slug(m.group(2))
            n = seen.get(base, 0)
            seen[base] = n + 1
            found.add(base if n == 0 else f"{base}-{n}")
    found.update(HTML_ANCHOR.findall("\n".join(lines)))
    return found


def links(path: Path) -> list[str]:
    prose = "\n".join(prose_lines(path.read_text(encoding="utf-8")))
    prose = CODE_SPAN.sub("code", prose)  # inline code is never a link, but may be a link's text
    return LINK.findall(prose)


def broken_links(path: Path) -> list[str]:
    problems = []
    for target in links(path):
        if not target or SCHEME.match(target):
            continue  # http(s):, mailto: ... are not checked here
        file_part, _, anchor = target.partition("#")
        resolved = (path.parent / unquote(file_part)).resolve() if file_part else path
        if not resolved.exists():
            problems.append(f"{target}: no such file {resolved}")
            continue
        if anchor:
            if resolved.is_dir() or resolved.suffix.lower() != ".md":
                problems.append(f"{target}: an anchor into something that is not a markdown file")
            elif unquote(anchor) not in anchors(resolved):
                problems.append(f"{target}: no heading '#{anchor}' in {resolved}")
    return problems


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_and_anchors_resolve(path: Path) -> None:
    assert broken_links(path) == []


def test_the_checker_sees_links_and_catches_a_broken_one(tmp_path: Path) -> None:
    assert sum(len(links(p)) for p in FILES) > 50  # not vacuously passing: the files hold links
    (tmp_path / "b.md").write_text("# A tick's `capacity` (measured)\n\n## Same\n\n## Same\n", encoding="utf-8")
    page = tmp_path / "a.md"
    page.write_text(
        "[ok](b.md#a-ticks-capacity-measured) [ok](b.md#same-1) [ok](#here) [ok](https://x.org/#y)\n"
        "`[not a link](nowhere.md)`\n```\n[not a link](nowhere.md)\n```\n# Here\n"
        "[bad](b.md#nope) [bad](missing.md) [`bad`](#gone)\n",
        encoding="utf-8",
    )
    assert [p.split(":")[0] for p in broken_links(page)] == ["b.md#nope", "missing.md", "#gone"]


def test_ci_runs_the_readmes_test_command() -> None:
    """.ci/run runs exactly the README's test command (`make test`), which the README keeps."""
    ci = [ln.strip() for ln in (ROOT / ".ci" / "run").read_text().splitlines()]
    command = [ln for ln in ci if ln and not ln.startswith(("#", "set ", "cd "))][-1]
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = [ln.split("#")[0].strip() for ln in readme.splitlines()]
    assert command == "make test"
    assert command in commands and "make demo" in commands
