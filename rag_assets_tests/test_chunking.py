import itertools
import random
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rag_assets.lib.chunking import (
    CHUNK_OVERLAP,
    CHUNK_TOKENS,
    chunk_units,
    count_tokens,
    estimate_word_pieces,
    sentence_spans,
    split_spans,
)
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
    for (_, end), (start, _) in itertools.pairwise(index):
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
        assert c.tokens == round(estimate_word_pieces(c.text)) and estimate_word_pieces(c.text) <= 40
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


# sentence_spans: the chunker since docs/decisions.md D30.

COUNTS = {"estimate": estimate_word_pieces, "regex": count_tokens, "letters": lambda t: sum(len(w) for w in t.split())}


def tokens_of(text: str) -> list[tuple[int, int]]:
    return [m.span() for m in TOKEN.finditer(text)]


def check_chunks(text: str, spans, max_tokens: int, count) -> None:
    """Every chunk within the limit (unless it is a single token), in order, starting and
    ending on tokens; every token in some chunk."""
    tokens = tokens_of(text)
    starts, ends = {a for a, _ in tokens}, {b for _, b in tokens}
    covered = []
    for a, b, n in spans:
        assert a in starts and b in ends and a < b
        assert n == round(count(text[a:b]))
        assert count(text[a:b]) <= max_tokens + 1e-9 or len(tokens_of(text[a:b])) == 1
        covered += [t for t in tokens if a <= t[0] and t[1] <= b]
    assert sorted(set(covered)) == tokens  # covers the whole text
    assert [a for a, _, _ in spans] == sorted(a for a, _, _ in spans)


@pytest.mark.parametrize(
    "text", [words(500), prose(60, 1), prose(60, 2) + "\n\n" + words(300), "One. Two! Three? " * 40, "x " * 3]
)
@pytest.mark.parametrize("max_tokens, overlap", [(1, 0), (5, 2), (16, 0), (64, 16), (224, 0), (224, 32)])
@pytest.mark.parametrize("count", COUNTS.values(), ids=COUNTS.keys())
def test_sentence_spans_invariants(text, max_tokens, overlap, count):
    check_chunks(text, sentence_spans(text, max_tokens, overlap, count), max_tokens, count)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            ["alpha", "Beta", "gamma_delta", "HTTPServer", "x1", "中文", ".", ",", ";", "\n", "\n\n", " ", "2024"]
        ),
        max_size=400,
    ),
    st.integers(min_value=1, max_value=80),
    st.integers(min_value=0, max_value=79),
)
def test_sentence_spans_properties(pieces, max_tokens, overlap):
    text = " ".join(pieces)
    overlap = min(overlap, max_tokens - 1)
    check_chunks(text, sentence_spans(text, max_tokens, overlap), max_tokens, estimate_word_pieces)


def sentences(n: int, seed: int = 0, length: tuple[int, int] = (8, 20)) -> list[str]:
    rng = random.Random(seed)
    return [words(rng.randint(*length), seed + i).capitalize() + "." for i in range(n)]


def test_cuts_at_sentence_ends_when_one_is_in_range():
    text = " ".join(sentences(80, 3))
    spans = sentence_spans(text, 60, 0, count_tokens)
    assert len(spans) > 5
    for a, b, _ in spans:
        assert text[b - 1] == "." and (a == 0 or text[a - 2] == ".")  # whole sentences


def test_prefers_paragraph_ends():
    # 15 paragraphs of 4 sentences of 10 tokens, a line each: a sentence end at 100 tokens
    # would fill chunks of 100, but the paragraph end at 80 is taken.
    paragraphs = ["\n".join(sentences(4, seed, (9, 9))) for seed in range(0, 60, 4)]
    text = "\n\n".join(paragraphs)
    spans = sentence_spans(text, 100, 0, count_tokens)
    ends = {text.index(p) + len(p) for p in paragraphs}
    assert len(spans) > 3 and all(b in ends for _, b, _ in spans)


def test_cuts_inside_a_sentence_only_when_it_alone_is_too_long():
    long_sentence = words(150).capitalize() + "."
    text = "A short one. " + long_sentence + " Another short one."
    spans = sentence_spans(text, 40, 0, count_tokens)
    assert all(n <= 40 for _, _, n in spans)
    assert text[: spans[0][1]] == "A short one." or text[spans[0][0] : spans[0][1]].startswith("A short one.")
    assert text[spans[-1][0] : spans[-1][1]].endswith("Another short one.")


def test_balanced_chunks_rather_than_a_scrap():
    text = " ".join(sentences(30, 5, (9, 9)))  # 30 sentences of 10 regex tokens
    sizes = [n for _, _, n in sentence_spans(text, 110, 0, count_tokens)]
    assert len(sizes) == 3 and max(sizes) - min(sizes) <= 10  # 100/100/100, not 110/110/80


def test_overlap_is_whole_sentences():
    text = " ".join(sentences(40, 7, (5, 7)))
    spans = sentence_spans(text, 50, 20, count_tokens)
    for (a, b, _), (c, d, _) in itertools.pairwise(spans):
        assert a < c <= b  # the next chunk starts within this one...
        assert text[c - 2] == "." and count_tokens(text[c:b]) <= 20  # ...at a sentence start, at most 20 tokens back


def test_no_overlap_means_disjoint_chunks():
    text = " ".join(sentences(40, 9))
    spans = sentence_spans(text, 50, 0)
    assert all(b < c for (_, b, _), (c, _, _) in itertools.pairwise(spans))


def test_an_injected_count_sizes_the_chunks():
    text = " ".join(sentences(60, 11))
    letters = COUNTS["letters"]
    spans = sentence_spans(text, 300, 0, letters)
    assert all(letters(text[a:b]) <= 300 for a, b, _ in spans)
    assert len(spans) != len(sentence_spans(text, 300, 0, count_tokens))


@pytest.mark.parametrize(
    "word, pieces", [("the", 1), ("a", 1), (".", 1), ("__init__", 5), ("snake_case", 3), ("2024", 2), ("中文", 2)]
)
def test_word_piece_estimate(word, pieces):
    assert estimate_word_pieces(word) == pytest.approx(pieces, abs=0.5)


def test_word_piece_estimate_is_additive_over_whitespace():
    text = prose(20, 4) + " __init__ ScheduleDefinition 2024"
    assert estimate_word_pieces(text) == pytest.approx(sum(estimate_word_pieces(w) for w in text.split()))


def test_default_chunks_fit_the_local_model_window():
    assert CHUNK_TOKENS + 2 <= 256 and 0 <= CHUNK_OVERLAP < CHUNK_TOKENS  # [CLS] and [SEP] are the model's too
    chunks = chunk_units(DOC, [Unit(prose(400, 13), page=1)])
    assert all(c.tokens <= CHUNK_TOKENS for c in chunks) and len(chunks) > 5
