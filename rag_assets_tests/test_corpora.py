"""The benchmark corpora (benchmarks/corpora.py) are built the same way every time, from text
that ships with what is installed, and their labels name documents they have."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import corpora


@pytest.mark.parametrize("name", corpora.CORPORA)
def test_corpora_are_deterministic_and_labelled(name):
    first = corpora.corpus(name)
    corpora.corpus.cache_clear()
    again = corpora.corpus(name)
    assert first is not again and corpora.fingerprint(first) == corpora.fingerprint(again)
    assert first == again
    assert len(first.documents) >= 40 and all(text.strip() for text in first.documents.values())
    for kind in corpora.KINDS:
        queries = first.of_kind(kind)
        assert len(queries) >= 15, kind
        tune, held_out = first.split(kind)
        assert len(tune) + len(held_out) == len(queries) and abs(len(tune) - len(held_out)) <= 1
    for q in first.queries:
        assert q.relevant and q.relevant <= first.documents.keys(), q
    assert len({q.text for q in first.queries}) == len(first.queries)


def test_lexical_queries_are_sentences_with_words_changed():
    c = corpora.corpus("pydoc")
    flat = {doc: " ".join(text.split()) for doc, text in c.documents.items()}
    for q in c.of_kind("lexical"):
        words = q.text.split()
        assert 10 <= len(words) <= 60
        assert not any(q.text in flat[d] for d in q.relevant)  # changed...
        # ...in two or three words: most of the sentence is still in its document
        assert any(sum(w in flat[d] for w in words) >= 0.7 * len(words) for d in q.relevant)


def test_keyword_queries_are_terms_of_their_documents():
    c = corpora.corpus("stdlib")
    for q in c.of_kind("keyword"):
        terms = q.text.split()
        assert 2 <= len(terms) <= 4
        for doc in q.relevant:
            assert all(t in c.documents[doc].lower() for t in terms)
