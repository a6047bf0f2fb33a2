"""Running headers, footers and page numbers dropped from the pages of a document
(lib/pages), and the PDF reader that uses it."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rag_assets.lib.pages import drop_running_lines, line_key, running_keys

BODY = [
    "The committee met on Tuesday to review the budget.\nIt approved the plan for the new library.",
    "Travel costs are refunded within thirty days.\nReceipts must be kept for seven years.",
    "The parking garage closes at ten in the evening.\nVisitors sign in at the front desk.",
    "Laptops that are lost or stolen are reported to the help desk at once.",
]


def paged(header=None, footer=None, bodies=BODY):
    pages = []
    for n, body in enumerate(bodies, start=1):
        lines = [header.format(n=n, total=len(bodies))] if header else []
        lines.append(body)
        if footer:
            lines.append(footer.format(n=n, total=len(bodies)))
        pages.append("\n".join(lines))
    return pages


@pytest.mark.parametrize(
    "header, footer",
    [
        ("ACME Corp - Employee Handbook", None),
        (None, "Page {n} of {total}"),
        (None, "{n}"),
        (None, "- {n} -"),
        ("Handbook 2024, chapter 3", "Page {n}"),
        ("Confidential", "Printed 2024-05-0{n}   page {n}/{total}"),
        ("   ACME   Corp  ", "PAGE {n}"),
    ],
)
def test_running_lines_are_dropped(header, footer):
    assert drop_running_lines(paged(header, footer)) == BODY


@pytest.mark.parametrize(
    "pages",
    [
        BODY,  # nothing repeats
        paged("Only two pages", "Page {n}", BODY[:2]),  # too few pages to tell
        [BODY[0]],
        [],
        ["", "", ""],
    ],
)
def test_nothing_is_dropped(pages):
    assert drop_running_lines(pages) == list(pages)


def test_a_line_on_half_the_pages_or_fewer_stays():
    pages = paged(None, None)
    pages[0] = "Draft\n" + pages[0]
    pages[1] = "Draft\n" + pages[1]  # 2 of 4: not most
    assert drop_running_lines(pages) == pages


def test_a_running_line_in_the_middle_of_a_page_stays():
    pages = paged("Handbook", None)
    middle = "line one\nline two\nline three\nHandbook\nline five\nline six\nline seven"
    pages.append("Handbook\n" + middle)
    out = drop_running_lines(pages)
    assert out[:4] == BODY and out[4] == middle  # only its edge copy went


def test_blank_pages_do_not_count():
    pages = paged("Handbook", "Page {n}")
    assert drop_running_lines([*pages, "", ""]) == [*BODY, "", ""]


def test_identical_pages_are_kept_whole():
    assert drop_running_lines(["Form A\nName:\nDate:"] * 4) == ["Form A\nName:\nDate:"] * 4


@pytest.mark.parametrize(
    "a, b",
    [("Page 3 of 10", "Page 4 of 10"), ("  - 7 -", "- 8 -"), ("iv", "xii"), ("Chapter 2  Setup", "chapter 3 setup")],
)
def test_line_keys_match(a, b):
    assert line_key(a) == line_key(b)


def test_line_keys_differ():
    assert line_key("Page 3") != line_key("Section 3")


lines = st.text(alphabet=st.sampled_from("ab 1\t"), max_size=8)
pages_of_lines = st.lists(st.lists(lines, max_size=8).map("\n".join), max_size=8)


@settings(max_examples=300, deadline=None)
@given(pages_of_lines)
def test_a_line_found_on_one_page_only_is_never_dropped(pages):
    out = drop_running_lines(pages)
    assert len(out) == len(pages)
    for page, kept in zip(pages, out, strict=True):
        kept_lines = kept.split("\n")
        for line in page.split("\n"):
            on_pages = sum(any(line_key(other) == line_key(line) for other in p.split("\n")) for p in pages)
            if on_pages == 1 and line.strip():
                assert line.strip() in (k.strip() for k in kept_lines)


@settings(max_examples=300, deadline=None)
@given(pages_of_lines)
def test_never_drops_everything_and_only_drops_lines(pages):
    out = drop_running_lines(pages)
    if any(p.strip() for p in pages):
        assert any(p.strip() for p in out)
    for page, kept in zip(pages, out, strict=True):
        remaining = page.split("\n")
        for line in kept.split("\n"):  # what is kept is lines of the page, in order
            if line.strip():
                while remaining and remaining[0].strip() != line.strip():
                    remaining.pop(0)
                assert remaining, (page, kept)
                remaining.pop(0)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.text(alphabet="xyz .", min_size=1, max_size=30), min_size=3, max_size=10),
    st.text(alphabet="HEADR", min_size=1, max_size=10),
)
def test_a_header_on_every_page_goes(bodies, header):
    pages = [f"{header}\n{body}" for body in bodies]
    keys = running_keys(pages)
    assert line_key(header) in keys or not line_key(header)
