import random
import re

import pytest

from rag_assets.lib.chunking import chunk_units, count_tokens, split_spans
from rag_assets.lib.parsing import Unit

TOKEN = re.compile(r"\w+|[^\w\s]")
DOC = "acme:s3://bucket/report.pdf"


def words(n: int, seed: int = 0) -> str:
    """n word tokens and no punctuation: no sentence end anywhere."""
    rng = random.Random(seed)
    return " ".join(rng.choice(["alpha", "beta", "gamma", "délta", "中文", "x1"]) for _ in range(n))


def prose(n_sentences: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    return " ".join(words(rng.randint(3, 25), seed + i).capitalize() + "." for i in range(n_sentences))


def token_index(text: str, windows):
    """Windows as (first token, end token) indices."""
    spans = [m.span() for m in TOKEN.finditer(text)]
    starts, ends = [s for s, _ in spans], [e for _, e in spans]
    return len(spans), [(starts.index(a), ends.index(b) + 1) for a, b, _ in windows]


@pytest.mark.parametrize("text", [words(500), prose(60, 1), prose(60, 2) + " " + words(300), "One. Two! Three? " * 40])
@pytest.mark.parametrize("max_tokens, overlap", [(1, 0), (5, 2), (16, 0), (64, 16), (160, 32), (50, 49)])
def test_split_spans_invariants(text, max_tokens, overlap):
    windows = split_spans(text, max_tokens, overlap)
    n, index = token_index(text, windows)
    for (a, b, tokens), (i, j) in zip(windows, index):
        assert tokens == j - i == count_tokens(text[a:b])
        assert 1 <= tokens <= max_tokens
    covered = set().union(*(range(i, j) for i, j in index))
    assert covered == set(range(n))  # every token is in some window
    assert index[0][0] == 0 and index[-1][1] == n
    for (_, end), (start, _) in zip(index, index[1:]):
        assert end - start == overlap  # consecutive windows share exactly `overlap` tokens


def test_split_spans_without_sentence_ends_uses_full_windows():
    windows = split_spans(words(100), 30, 10)
    assert [t for _, _, t in windows] == [30, 30, 30, 30, 20]
    assert token_index(words(100), windows)[1][:3] == [(0, 30), (20, 50), (40, 70)]


def test_split_spans_prefers_sentence_ends():
    text = words(25) + ". " + words(100, 1)  # a sentence ends at token 26 of the first 30
    (a, b, tokens), *_ = split_spans(text, 30, 5)
    assert text[a:b].endswith(".") and tokens == 26


def test_split_spans_ignores_sentence_ends_too_early():
    text = words(5) + ". " + words(100, 1)  # the sentence end is in the first third: not a cut
    assert split_spans(text, 30, 5)[0][2] == 30


@pytest.mark.parametrize("text", ["", "   \n\t "])
def test_split_spans_of_empty_text(text):
    assert split_spans(text, 10, 2) == []


def test_short_text_is_one_window():
    assert split_spans("  Hello, world.  ", 10, 2) == [(2, 15, 4)]


@pytest.mark.parametrize("max_tokens, overlap", [(0, 0), (-1, 0), (10, 10), (10, 11), (10, -1)])
def test_split_spans_rejects_bad_arguments(max_tokens, overlap):
    with pytest.raises(ValueError, match="overlap"):
        split_spans("some text", max_tokens, overlap)


UNITS = [Unit(prose(30, 1), page=1), Unit("Short page.", page=2), Unit(prose(30, 3), page=3)]


def test_chunk_units_numbering_and_positions():
    chunks = chunk_units(DOC, UNITS, max_tokens=40, overlap=8)
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))
    assert {c.page for c in chunks} == {1, 2, 3}
    by_page = {u.page: u for u in UNITS}
    for c in chunks:
        assert c.text == by_page[c.page].text[c.char_start : c.char_end]  # never crosses a unit
        assert c.tokens == count_tokens(c.text) <= 40
    assert [c.text for c in chunks if c.page == 2] == ["Short page."]


def test_chunk_units_carries_rows_and_metadata():
    units = [Unit("first row text", row=1, metadata={"id": "1"}), Unit("second", row=4, metadata={"id": "4"})]
    chunks = chunk_units(DOC, units)
    assert [(c.row, c.page, c.metadata, c.text) for c in chunks] == [
        (1, None, {"id": "1"}, "first row text"),
        (4, None, {"id": "4"}, "second"),
    ]


def test_chunk_ids_are_stable_and_unique():
    first, again = chunk_units(DOC, UNITS, max_tokens=40, overlap=8), chunk_units(DOC, UNITS, max_tokens=40, overlap=8)
    assert [c.chunk_id for c in first] == [c.chunk_id for c in again]
    assert len({c.chunk_id for c in first}) == len(first)
    other_tenant = chunk_units("globex:" + DOC, UNITS, max_tokens=40, overlap=8)
    assert {c.chunk_id for c in first}.isdisjoint(c.chunk_id for c in other_tenant)


def test_chunk_id_changes_when_text_changes():
    before = chunk_units(DOC, [Unit("The quick brown fox.", page=1)])
    after = chunk_units(DOC, [Unit("The quick brown cat.", page=1)])
    assert before[0].chunk_id != after[0].chunk_id


def test_editing_the_last_page_keeps_earlier_chunk_ids():
    edited = [*UNITS[:-1], Unit(UNITS[-1].text.replace("alpha", "omega") + " An added sentence.", page=3)]
    before = chunk_units(DOC, UNITS, max_tokens=40, overlap=8)
    after = chunk_units(DOC, edited, max_tokens=40, overlap=8)
    early = [c.chunk_id for c in before if c.page < 3]
    assert early and [c.chunk_id for c in after if c.page < 3] == early
    assert {c.chunk_id for c in after if c.page == 3}.isdisjoint(c.chunk_id for c in before)
