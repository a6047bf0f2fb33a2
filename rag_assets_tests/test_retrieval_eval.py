"""The retrieval metrics, the eval file reader and the bounded line reader, directly: values
computed by hand, and hypothesis for what must hold of any ranking."""

from __future__ import annotations

import io
import json
import math
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rag_assets.lib.lines import BoundedLines, LineTooLong, decode_line
from rag_assets.lib.retrieval_eval import (
    MAX_EVAL_LINE_BYTES,
    MAX_QUERY_BYTES,
    BadEvalFile,
    EvalQuery,
    Scores,
    distinct_documents,
    eval_digest,
    ndcg_at,
    parse_eval_line,
    parse_floors,
    read_eval_file,
    recall_at,
    reciprocal_rank,
    regressions,
    score_query,
)

LOG3 = 1 / math.log2(3)  # the gain at rank 2
LOG4 = 1 / math.log2(4)  # at rank 3: 0.5


@pytest.mark.parametrize(
    "ranked, expected, k, value",
    [
        (["a", "b", "c"], {"a"}, 5, 1.0),
        (["a", "b", "c"], {"c"}, 5, 1.0),
        (["a", "b", "c"], {"c"}, 2, 0.0),
        (["a", "b", "c"], {"x"}, 5, 0.0),
        (["a", "b", "c"], {"b", "x"}, 2, 1.0),  # any expected document among the first k
        ([], {"a"}, 5, 0.0),
    ],
)
def test_recall_at_k(ranked, expected, k, value):
    assert recall_at(ranked, expected, k) == value


@pytest.mark.parametrize(
    "ranked, expected, value",
    [
        (["a", "b", "c"], {"a"}, 1.0),
        (["a", "b", "c"], {"b"}, 0.5),
        (["a", "b", "c"], {"c", "b"}, 0.5),  # the first expected one counts
        (["a", "b", "c", "d"], {"d"}, 0.25),
        (["a", "b", "c"], {"x"}, 0.0),
        ([], {"a"}, 0.0),
    ],
)
def test_reciprocal_rank(ranked, expected, value):
    assert reciprocal_rank(ranked, expected) == value


@pytest.mark.parametrize(
    "ranked, expected, value",
    [
        (["a", "b", "c"], {"a"}, 1.0),
        (["a", "b", "c"], {"b"}, LOG3),  # 0.6309
        (["a", "b", "c"], {"c"}, LOG4),  # 0.5
        (["a", "b", "c"], {"a", "c"}, (1 + LOG4) / (1 + LOG3)),  # 0.9197
        (["a", "b", "c"], {"b", "c"}, (LOG3 + LOG4) / (1 + LOG3)),  # 0.6934
        (["a", "b"], {"a", "x"}, 1 / (1 + LOG3)),  # one of two found, first: 0.6131
        (["a", "b", "c"], {"x"}, 0.0),
        ([f"d{n}" for n in range(11)], {"d10"}, 0.0),  # rank 11: past nDCG@10
        ([f"d{n}" for n in range(12)], {f"d{n}" for n in range(12)}, 1.0),  # the ideal counts 10 too
    ],
)
def test_ndcg_at_10_with_binary_relevance(ranked, expected, value):
    assert ndcg_at(ranked, expected) == pytest.approx(value)


def test_ndcg_needs_an_expected_document():
    with pytest.raises(ValueError):
        ndcg_at(["a"], set())


def test_chunks_fold_to_documents_at_their_best_rank():
    assert distinct_documents(["a", "a", "b", "a", "c", "b"]) == ["a", "b", "c"]
    # Three chunks of `a` before `b`: `b` is the second document, not the fourth hit.
    assert score_query(["a", "a", "a", "b"], {"b"}, k=2) == {
        "recall@2": 1.0,
        "mrr": 0.5,
        "ndcg@10": pytest.approx(LOG3),
    }
    assert score_query(["a", "a", "a", "b"], {"b"}, k=1) == {
        "recall@1": 0.0,
        "mrr": 0.5,
        "ndcg@10": pytest.approx(LOG3),
    }


def test_scores_are_means_over_the_queries():
    scores = Scores(k=5)
    scores.add(["a", "b"], {"a"})  # 1, 1, 1
    scores.add(["a", "b"], {"b"})  # 1, 0.5, LOG3
    scores.add(["a", "b"], {"x"})  # 0, 0, 0
    assert scores.queries == 3
    assert scores.means() == pytest.approx({"recall@5": 2 / 3, "mrr": 0.5, "ndcg@10": (1 + LOG3) / 3})
    with pytest.raises(ValueError):
        Scores().means()


keys = st.text(alphabet="abcdefghijkl", min_size=1, max_size=2)


@given(ranked=st.lists(keys, max_size=40), expected=st.sets(keys, min_size=1, max_size=12), k=st.integers(1, 20))
def test_every_metric_is_between_0_and_1(ranked, expected, k):
    for value in score_query(ranked, expected, k).values():
        assert 0.0 <= value <= 1.0


@given(
    expected=st.lists(keys, min_size=1, max_size=12, unique=True),
    others=st.lists(keys, max_size=20),
    k=st.integers(1, 20),
)
def test_a_perfect_ranking_scores_1(expected, others, k):
    # Every expected document first (chunks repeated, in any order), then anything else.
    ranked = expected + expected[::-1] + [o for o in others if o not in expected]
    assert score_query(ranked, set(expected), k) == pytest.approx({f"recall@{k}": 1.0, "mrr": 1.0, "ndcg@10": 1.0})


# The eval file.


def line(obj) -> bytes:
    return json.dumps(obj).encode()


@pytest.mark.parametrize(
    "raw, reason",
    [
        (b"not json", "not JSON (Expecting value at column 1)"),
        (b'{"query": "x", "expected": ["a"]', "not JSON ("),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'["x"]', "a JSON object is expected"),
        (b'"x"', "not a string"),
        (b"null", "not null"),
        (line({"expected": ["a"]}), "missing 'query'"),
        (line({}), "missing 'query' and 'expected'"),
        (line({"query": "x"}), "missing 'expected'"),
        (line({"query": 3, "expected": ["a"]}), '"query" must be a non-empty string, not 3'),
        (line({"query": "  ", "expected": ["a"]}), '"query" must be a non-empty string'),
        (line({"query": "x" * (MAX_QUERY_BYTES + 1), "expected": ["a"]}), '"query" is longer than 65,536 bytes'),
        (b'{"query": "\\ud800", "expected": ["a"]}', "lone surrogate"),
        (line({"query": "x", "expected": "a"}), '"expected" must be a non-empty list'),
        (line({"query": "x", "expected": []}), '"expected" must be a non-empty list'),
        (line({"query": "x", "expected": ["a", 2]}), '"expected" must hold document keys'),
        (line({"query": "x", "expected": [""]}), '"expected" must hold document keys'),
        (b"\xff\xfe{}", "not UTF-8 (byte 0xff at position 0)"),
        (LineTooLong(50_000_000), "longer than 1,048,576 bytes (50,000,000)"),
    ],
)
def test_a_bad_eval_line_says_why(raw, reason):
    with pytest.raises(ValueError) as refused:
        parse_eval_line(raw)
    assert reason in str(refused.value)


def test_an_eval_line_is_a_query_and_its_documents():
    assert parse_eval_line(
        line({"query": "q", "expected": ["a", "b", "a"], "note": "extra keys are ignored"})
    ) == EvalQuery("q", ("a", "b"))
    assert parse_eval_line(b"   ") is None


def test_an_eval_file_is_read_whole_or_refused_naming_file_and_line(tmp_path):
    good = tmp_path / "acme.jsonl"
    good.write_bytes(
        b"\xef\xbb\xbf"
        + line({"query": "q1", "expected": ["a"]})
        + b"\r\n\n"
        + line({"query": "q2", "expected": ["b"]})
    )
    assert read_eval_file(good) == [EvalQuery("q1", ("a",)), EvalQuery("q2", ("b",))]

    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(line({"query": "q1", "expected": ["a"]}) + b"\n\n" + line({"query": "q3"}) + b"\n")
    with pytest.raises(BadEvalFile) as refused:
        read_eval_file(bad)
    assert str(refused.value) == f"{bad} line 3: missing 'expected'"
    assert (refused.value.line, refused.value.reason) == (3, "missing 'expected'")

    huge = tmp_path / "huge.jsonl"
    huge.write_bytes(line({"query": "q1", "expected": ["a"]}) + b'\n{"query": "' + b"x" * (50 << 20) + b'"}\n')
    with pytest.raises(BadEvalFile, match=r"huge.jsonl line 2: longer than 1,048,576 bytes"):
        read_eval_file(huge)

    for name, content, reason in [("empty.jsonl", b"", "holds no query"), ("blank.jsonl", b"\n \n", "holds no query")]:
        (tmp_path / name).write_bytes(content)
        with pytest.raises(BadEvalFile, match=f"{name}: {reason}"):
            read_eval_file(tmp_path / name)
    with pytest.raises(BadEvalFile, match="missing.jsonl: No such file or directory"):
        read_eval_file(tmp_path / "missing.jsonl")
    with pytest.raises(BadEvalFile, match="Is a directory"):
        read_eval_file(tmp_path)


def test_the_digest_follows_what_the_file_asks():
    one = [EvalQuery("q", ("a",))]
    assert eval_digest(one) == eval_digest([EvalQuery("q", ("a",))])
    assert eval_digest(one) != eval_digest([EvalQuery("q", ("b",))])


# Floors and drops.


def test_floors_are_read_from_their_spec():
    assert parse_floors(None) == parse_floors("") == {}
    assert parse_floors("recall@5=0.8, MRR=0.5,ndcg@10=1") == {"recall@5": 0.8, "mrr": 0.5, "ndcg@10": 1.0}
    for spec in ("recall@5", "recall@3=0.5", "mrr=1.5", "mrr=-0.1", "mrr=high"):
        with pytest.raises(ValueError, match="RAG_GOLDEN_FLOORS"):
            parse_floors(spec)


@pytest.mark.parametrize(
    "now, before, floors, found",
    [
        ({"mrr": 0.9}, None, {}, []),
        ({"mrr": 0.9}, {"mrr": 0.905}, {}, []),  # within the tolerance
        ({"mrr": 0.9}, {"mrr": 0.95}, {}, ["mrr 0.900 dropped from 0.950 (tolerance 0.01)"]),
        ({"mrr": 0.95}, {"mrr": 0.9}, {}, []),
        ({"mrr": 0.5}, None, {"mrr": 0.6}, ["mrr 0.500 is below the floor 0.600"]),
        (
            {"mrr": 0.5, "ndcg@10": 0.7},
            {"mrr": 0.5, "ndcg@10": 0.8},
            {"mrr": 0.5},
            ["ndcg@10 0.700 dropped from 0.800 (tolerance 0.01)"],
        ),
    ],
)
def test_a_drop_or_a_metric_below_its_floor_is_named(now, before, floors, found):
    assert regressions(now, before, floors, tolerance=0.01) == found


# Bounded lines.


def lines_of(data: bytes, limit: int = 10) -> list:
    return list(BoundedLines(io.BytesIO(data), limit))


@pytest.mark.parametrize(
    "data, expected",
    [
        (b"", []),
        (b"a\nb\n", [b"a", b"b"]),
        (b"a\r\nb", [b"a", b"b"]),  # CRLF, and a last line without its end
        (b"\n\n", [b"", b""]),
        (b"0123456789\n", [b"0123456789"]),  # exactly the limit
        (b"0123456789\r\n", [b"0123456789"]),
        (b"0123456789x\nb\n", [LineTooLong(11), b"b"]),
        (b"\xef\xbb\xbfa\nb", [b"a", b"b"]),  # a byte order mark before the first line
    ],
)
def test_bounded_lines(data, expected):
    assert lines_of(data) == expected


def test_a_50_mb_line_is_skipped_in_chunks_and_the_next_lines_read():
    data = b"first\n" + b"x" * (50 << 20) + b"\nafter\nlast"
    assert lines_of(data, limit=MAX_EVAL_LINE_BYTES) == [b"first", LineTooLong(50 << 20), b"after", b"last"]
    assert lines_of(b"y" * (3 << 20), limit=100) == [LineTooLong(3 << 20)]  # to the end, no line end


def test_a_line_is_decoded_or_refused():
    assert decode_line(b"caf\xc3\xa9", 10) == "café"
    with pytest.raises(ValueError, match=r"not UTF-8 \(byte 0xe9 at position 3\)"):
        decode_line(b"caf\xe9", 10)
    with pytest.raises(ValueError, match="longer than 10 bytes"):
        decode_line(LineTooLong(12), 10)


def test_ready_says_whether_a_line_is_there_without_waiting():
    read_end, write_end = os.pipe()
    with os.fdopen(read_end, "rb") as reader, os.fdopen(write_end, "wb", buffering=0) as writer:
        lines = BoundedLines(reader, 100)
        assert not lines.ready()  # nothing written yet
        writer.write(b"one\ntwo\n")
        assert lines.ready()
        assert next(lines) == b"one"
        assert lines.ready()  # "two" is held
        assert next(lines) == b"two"
        assert not lines.ready()  # the writer is waiting for an answer
        writer.write(b"thr")
        assert lines.ready()  # bytes are there (the rest of the line follows them)
        writer.write(b"ee\n")
        assert next(lines) == b"three"
    assert BoundedLines(io.BytesIO(b"a"), 10).ready()  # in memory: always
