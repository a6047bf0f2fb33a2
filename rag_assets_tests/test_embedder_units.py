import hashlib
from collections.abc import Sequence

import numpy as np
import pytest
from pydantic import PrivateAttr

from rag_assets.components.index_pipeline import split_by_document
from rag_assets.resources.embedders import (
    Embedder,
    EmbedStats,
    PostgresEmbeddingCache,
    RateLimiter,
    embed_with_cache,
    embedding_cache_from_uri,
    retry_delay,
)
from rag_assets_tests.store_fixtures import pg_server_fixture  # noqa: F401 - the fixture pg_server


class FakeClock:
    def __init__(self):
        self.now, self.sleeps = 100.0, []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def clock():
    return FakeClock()


def test_rate_limiter_requests_per_second(clock):
    limiter = RateLimiter(requests_per_second=4, tokens_per_minute=1e9, clock=clock, sleep=clock.sleep)
    waits = [limiter.acquire(1) for _ in range(5)]
    assert waits == pytest.approx([0, 0.25, 0.25, 0.25, 0.25])
    assert clock.now - 100 == pytest.approx(1.0)


def test_rate_limiter_idle_time_refills_but_does_not_burst(clock):
    limiter = RateLimiter(requests_per_second=2, tokens_per_minute=1e9, clock=clock, sleep=clock.sleep)
    limiter.acquire(1)
    clock.now += 60
    assert [limiter.acquire(1), limiter.acquire(1)] == pytest.approx([0, 0.5])


def test_rate_limiter_tokens_per_minute(clock):
    # 600 tokens a minute: 10 a second
    limiter = RateLimiter(requests_per_second=1000, tokens_per_minute=600, clock=clock, sleep=clock.sleep)
    assert limiter.acquire(500) == 0
    assert limiter.acquire(300) == pytest.approx(20.0)  # 100 left, 200 more at 10/s
    assert limiter.acquire(10_000) == pytest.approx(60.0)  # capped to a minute's budget, not forever
    assert sum(clock.sleeps) == pytest.approx(80.0)


@pytest.mark.parametrize(
    "headers, expected",
    [
        ({"Retry-After": "7"}, 7.0),
        ({"retry-after": "2.5"}, 2.5),
        ({"RETRY-AFTER-MS": "1500"}, 1.5),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),  # the precise header wins
        ({"Retry-After": "3600"}, 30.0),  # capped
        ({"Retry-After": "-5"}, 0.0),
        ({"retry-after-ms": "soon", "Retry-After": "4"}, 4.0),
    ],
)
def test_retry_delay_honours_server_headers(headers, expected):
    assert retry_delay(3, headers, jitter=lambda: 0.0) == pytest.approx(expected)


@pytest.mark.parametrize(
    "attempt, headers, low, high",
    [
        (1, None, 0.25, 0.5),
        (2, {}, 0.5, 1.0),
        (4, {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, 2.0, 4.0),
        (20, {"x-other": "1"}, 15.0, 30.0),  # backoff is capped too
    ],
)
@pytest.mark.parametrize("jitter", [0.0, 0.5, 0.999999])
def test_retry_delay_backoff_within_jitter_bounds(attempt, headers, low, high, jitter):
    delay = retry_delay(attempt, headers, jitter=lambda: jitter)
    assert low <= delay <= high
    assert delay == pytest.approx(low * (1 + jitter))


class FakeEmbedder(Embedder):
    """Deterministic 8-d vectors from the text's hash; records every call."""

    name: str = "fake-a"
    batch_size: int = 2
    _calls: list = PrivateAttr(default_factory=list)

    @property
    def model_id(self) -> str:
        return f"fake:{self.name}"

    @property
    def dimension(self) -> int:
        return 8

    @property
    def spec(self) -> str:
        return self.model_id

    def embed(self, texts: Sequence[str], stats: EmbedStats | None = None) -> np.ndarray:
        self._calls.append(list(texts))
        if stats is not None:
            for start in range(0, len(texts), self.batch_size):
                stats.batches.append(list(range(start, min(start + self.batch_size, len(texts)))))
                stats.calls += 1
        seeds = [np.frombuffer(hashlib.sha256(f"{self.name}:{t}".encode()).digest()[:8], np.uint8) for t in texts]
        vectors = np.array(seeds, dtype=np.float32).reshape(len(texts), 8) + 1
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    @property
    def embedded(self) -> list[str]:
        return [t for call in self._calls for t in call]


@pytest.fixture(params=["sqlite", "postgresql"])
def cache(request, tmp_path):
    """Each form of the cache: one machine's SQLite file, and the shared PostgreSQL table."""
    if request.param == "sqlite":
        return embedding_cache_from_uri(str(tmp_path / "cache" / "embeddings.sqlite"))
    pg = request.getfixturevalue("pg_server")
    cache = embedding_cache_from_uri(pg.dsn)
    assert isinstance(cache, PostgresEmbeddingCache)
    with cache._connect() as conn:  # a fresh table for each test
        conn.execute("TRUNCATE rag_embedding_cache")
    return cache


def test_second_call_embeds_nothing(cache):
    embedder, texts = FakeEmbedder(), ["a", "b", "c"]
    first, _stats1, fresh1 = embed_with_cache(embedder, cache, texts)
    second, stats2, fresh2 = embed_with_cache(embedder, cache, texts)
    assert embedder.embedded == texts
    assert fresh1.tolist() == [True] * 3 and fresh2.tolist() == [False] * 3
    assert stats2.calls == 0 and stats2.batches == []
    np.testing.assert_array_equal(first, second)
    assert first.dtype == np.float32 and first.shape == (3, 8)


def test_duplicates_embedded_once_and_batches_index_the_input(cache):
    embedder = FakeEmbedder()
    embed_with_cache(embedder, cache, ["b"])
    texts = ["a", "b", "a", "c", "d", "c", "a"]
    vectors, stats, fresh = embed_with_cache(embedder, cache, texts)
    assert embedder.embedded == ["b", "a", "c", "d"]
    assert fresh.tolist() == [True, False, True, True, True, True, True]
    assert stats.batches == [[0, 2, 6, 3, 5], [4]]  # embedder batches [a, c], [d], as indices of `texts`
    assert sorted(i for b in stats.batches for i in b) == [i for i, f in enumerate(fresh) if f]
    for i, j in [(0, 2), (0, 6), (3, 5)]:
        np.testing.assert_array_equal(vectors[i], vectors[j])
    np.testing.assert_allclose(vectors, FakeEmbedder().embed(texts), rtol=1e-6)


def test_models_do_not_share_cache_entries(cache):
    a, b = FakeEmbedder(name="fake-a"), FakeEmbedder(name="fake-b")
    va, _, _ = embed_with_cache(a, cache, ["same text"])
    vb, _, fresh = embed_with_cache(b, cache, ["same text"])
    assert b.embedded == ["same text"] and fresh.tolist() == [True]
    assert not np.allclose(va, vb)


def test_empty_input(cache):
    vectors, stats, fresh = embed_with_cache(FakeEmbedder(), cache, [])
    assert vectors.shape == (0, 8) and fresh.shape == (0,) and stats.calls == 0


@pytest.mark.parametrize(
    "counts, batches, expected",
    [
        ({"a": 2, "b": 3}, [[0, 1, 2], [3, 4]], {"a": 1, "b": 2}),
        ({"a": 2, "b": 0, "c": 1}, [[0], [1, 2]], {"a": 2, "b": 0, "c": 1}),
        ({"a": 1, "b": 1}, [], {"a": 0, "b": 0}),
        ({"a": 3}, [[0, 1, 2], [2, 0]], {"a": 2}),
    ],
)
def test_split_by_document(counts, batches, expected):
    assert split_by_document(counts, batches) == expected


@pytest.mark.parametrize(
    "spec, kind, model_id, dimension",
    [
        ("local:all-MiniLM-L6-v2", "LocalEmbedder", "local:all-MiniLM-L6-v2", 384),
        ("local:all-MiniLM-L6-v2+int8", "LocalEmbedder", "local:all-MiniLM-L6-v2+int8", 384),
        ("local:all-MiniLM-L6-v2+float32", "LocalEmbedder", "local:all-MiniLM-L6-v2", 384),
        ("local:all-MiniLM-L6-v2+bf16", "LocalEmbedder", "local:all-MiniLM-L6-v2", 384),
        ("openai:text-embedding-3-small", "OpenAIEmbedder", "openai:text-embedding-3-small", 1536),
        ("openai:text-embedding-3-small@256", "OpenAIEmbedder", "openai:text-embedding-3-small@256", 256),
    ],
)
def test_embedder_specs(spec, kind, model_id, dimension):
    from rag_assets.resources.embedders import embedder_from_spec

    embedder = embedder_from_spec(spec)
    assert (type(embedder).__name__, embedder.model_id, embedder.dimension) == (kind, model_id, dimension)


@pytest.mark.parametrize(
    "spec",
    [
        "openai:text-embedding-3-small@big",
        "cohere:x",
        "local:",
        "nothing",
        "local:all-MiniLM-L6-v2+fp16",
        "local:all-MiniLM-L6-v2+",
    ],
)
def test_bad_embedder_specs(spec):
    from rag_assets.resources.embedders import embedder_from_spec

    with pytest.raises(ValueError, match="RAG_EMBEDDER="):
        embedder_from_spec(spec)
