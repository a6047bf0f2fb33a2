"""Retrieval quality, by document: the metrics `rag-assets eval` and the golden-set check
report, the eval file they read, and how a drop is judged (docs/decisions.md D32).

Scores are by document, as benchmarks/pydoc_corpus.py scores them: a query's ranked hits
(chunks) are folded to the ranked list of distinct document keys, each at its best chunk's
rank. recall@k is 1 when an expected document is among the first k, else 0; the reciprocal
rank is 1/rank of the first expected document (0 if none was found); nDCG@10 has binary
relevance (each expected document found among the first 10 gains 1/log2(rank + 1)), divided
by the ideal ranking's. Each is averaged over the queries.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from rag_assets.lib.lines import BoundedLines, LineTooLong, decode_line

NDCG_DEPTH = 10
MAX_QUERY_BYTES = 64 * 1024  # a query's text, in UTF-8: `query -` and eval files alike
MAX_EVAL_LINE_BYTES = 1 << 20  # one line of an eval file (a query and its expected documents)


def distinct_documents(ranked_keys: Iterable[str]) -> list[str]:
    """Document keys in the order of their best-ranked chunk."""
    return list(dict.fromkeys(ranked_keys))


def recall_at(ranked_docs: Sequence[str], expected: Iterable[str], k: int = 5) -> float:
    """1.0 if an expected document is among the first k, else 0.0."""
    return 1.0 if set(expected).intersection(ranked_docs[:k]) else 0.0


def reciprocal_rank(ranked_docs: Sequence[str], expected: Iterable[str]) -> float:
    """1/rank of the first expected document (ranks from 1), 0.0 if none is there."""
    wanted = set(expected)
    return next((1.0 / rank for rank, doc in enumerate(ranked_docs, start=1) if doc in wanted), 0.0)


def ndcg_at(ranked_docs: Sequence[str], expected: Iterable[str], k: int = NDCG_DEPTH) -> float:
    """nDCG@k with binary relevance: the gain of the expected documents among the first k
    over that of the best possible ranking (every expected document first)."""
    wanted = set(expected)
    if not wanted:
        raise ValueError("nDCG needs at least one expected document")
    gain = sum(1.0 / math.log2(rank + 2) for rank, doc in enumerate(ranked_docs[:k]) if doc in wanted)
    ideal = sum(1.0 / math.log2(rank + 2) for rank in range(min(k, len(wanted))))
    return gain / ideal


def metric_names(k: int) -> tuple[str, str, str]:
    return (f"recall@{k}", "mrr", f"ndcg@{NDCG_DEPTH}")


def score_query(ranked_keys: Iterable[str], expected: Iterable[str], k: int = 5) -> dict[str, float]:
    """One query's scores from its hits' document keys, best first (chunks folded to documents)."""
    docs, wanted = distinct_documents(ranked_keys), set(expected)
    recall, mrr, ndcg = metric_names(k)
    return {recall: recall_at(docs, wanted, k), mrr: reciprocal_rank(docs, wanted), ndcg: ndcg_at(docs, wanted)}


class Scores:
    """Running means of the queries' scores (a large eval keeps no list of them)."""

    def __init__(self, k: int = 5):
        self.k, self.queries = k, 0
        self._sums = dict.fromkeys(metric_names(k), 0.0)

    def add(self, ranked_keys: Iterable[str], expected: Iterable[str]) -> None:
        for name, value in score_query(ranked_keys, expected, self.k).items():
            self._sums[name] += value
        self.queries += 1

    def means(self) -> dict[str, float]:
        if not self.queries:
            raise ValueError("no query was scored")
        return {name: total / self.queries for name, total in self._sums.items()}


# An eval file: one JSON object a line, {"query": TEXT, "expected": [DOCUMENT KEY, ...]}.


@dataclass(frozen=True)
class EvalQuery:
    query: str
    expected: tuple[str, ...]


class BadEvalFile(ValueError):
    """An eval file that cannot be used: which file, which line (0: the file itself) and why."""

    def __init__(self, path: str, line: int, reason: str):
        self.path, self.line, self.reason = path, line, reason
        super().__init__(f"{path} line {line}: {reason}" if line else f"{path}: {reason}")


def parse_eval_line(line: bytes | LineTooLong) -> EvalQuery | None:
    """One line of an eval file: its query, or None for a blank line. Raises ValueError
    saying what is wrong with it."""
    text = decode_line(line, MAX_EVAL_LINE_BYTES)
    if not text.strip():
        return None
    try:
        item = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"not JSON ({e.msg} at column {e.colno})") from None
    except RecursionError:
        raise ValueError("not JSON this reader can read: nested too deeply") from None
    if not isinstance(item, dict):  # bad data, not a wrong argument: callers catch this ValueError
        raise ValueError(  # noqa: TRY004 - the reason above
            f'a JSON object is expected ({{"query": ..., "expected": [...]}}), not {_json_type(item)}'
        )
    missing = [name for name in ("query", "expected") if name not in item]
    if missing:
        raise ValueError(f"missing {' and '.join(repr(m) for m in missing)}")
    query, expected = item["query"], item["expected"]
    if not isinstance(query, str) or not query.strip():
        raise ValueError(f'"query" must be a non-empty string, not {json.dumps(query)[:60]}')
    try:
        size = len(query.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate ("\\ud800"): no model can read it
        raise ValueError('"query" holds a lone surrogate: not text') from None
    if size > MAX_QUERY_BYTES:
        raise ValueError(f'"query" is longer than {MAX_QUERY_BYTES:,} bytes')
    if not isinstance(expected, list) or not expected:
        raise ValueError('"expected" must be a non-empty list of document keys')
    if not all(isinstance(key, str) and key for key in expected):
        raise ValueError('"expected" must hold document keys: non-empty strings')
    return EvalQuery(query, tuple(dict.fromkeys(expected)))


def _json_type(value: object) -> str:
    names = {
        dict: "an object",
        list: "an array",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
    }
    return names.get(type(value), "null")


def read_eval_file(path: str | Path) -> list[EvalQuery]:
    """The queries of an eval file, every line checked before any is used. Raises
    BadEvalFile naming the file, the line and the reason (or the file alone: not there, not
    readable, no query in it)."""
    shown = str(path)
    queries = []
    try:
        with open(path, "rb") as stream:
            for number, line in enumerate(BoundedLines(stream, MAX_EVAL_LINE_BYTES), start=1):
                try:
                    query = parse_eval_line(line)
                except ValueError as e:
                    raise BadEvalFile(shown, number, str(e)) from None
                if query is not None:
                    queries.append(query)
    except OSError as e:
        raise BadEvalFile(shown, 0, e.strerror or type(e).__name__) from None
    if not queries:
        raise BadEvalFile(shown, 0, 'holds no query (one JSON object a line: {"query": ..., "expected": [...]})')
    return queries


def eval_digest(queries: Iterable[EvalQuery]) -> str:
    """What an eval file asks, as a digest: an evaluation compares with a previous one of the same."""
    return hashlib.sha256(json.dumps([[q.query, list(q.expected)] for q in queries]).encode()).hexdigest()


# Judging an evaluation against the one before it and the floors.


def parse_floors(spec: str | None) -> dict[str, float]:
    """RAG_GOLDEN_FLOORS: `recall@5=0.8,mrr=0.6,ndcg@10=0.7` (any of the three) -> {name: floor}."""
    known = metric_names(5)
    floors: dict[str, float] = {}
    for part in (spec or "").split(","):
        if not part.strip():
            continue
        name, sep, value = part.partition("=")
        name = name.strip().lower()
        try:
            floor = float(value)
        except ValueError:
            floor = math.nan
        if not sep or name not in known or not 0.0 <= floor <= 1.0:
            raise ValueError(
                f"RAG_GOLDEN_FLOORS: {part.strip()!r}: give NAME=VALUE, NAME one of {', '.join(known)}, VALUE in [0, 1]"
            )
        floors[name] = floor
    return floors


def regressions(
    now: Mapping[str, float], before: Mapping[str, float] | None, floors: Mapping[str, float], tolerance: float
) -> list[str]:
    """What is wrong with an evaluation: each metric below its floor, or lower than the
    previous evaluation's by more than `tolerance`."""
    found = []
    for name, value in now.items():
        if name in floors and value < floors[name]:
            found.append(f"{name} {value:.3f} is below the floor {floors[name]:.3f}")
        elif before and name in before and value < before[name] - tolerance:
            found.append(f"{name} {value:.3f} dropped from {before[name]:.3f} (tolerance {tolerance:g})")
    return found
