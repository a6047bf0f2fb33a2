"""The OpenAI embedder through the real `openai` client against a local /v1/embeddings server."""

from __future__ import annotations

import numpy as np
import pytest

from rag_assets.definitions import build_definitions
from rag_assets.ingest import discover, ingest
from rag_assets.resources.embedders import EmbedStats, OpenAIEmbedder
from rag_assets.resources.object_store import ObjectStore
from rag_assets.settings import Settings
from rag_assets_tests.fakes.openai_server import FakeOpenAIServer


@pytest.fixture
def server():
    with FakeOpenAIServer() as s:
        yield s


def embedder(server, **kw) -> OpenAIEmbedder:
    return OpenAIEmbedder(api_key="test", base_url=server.base_url, **kw)


def test_batches_requests_and_normalises(server):
    stats = EmbedStats()
    vectors = embedder(server, batch_size=4).embed([f"text number {i}" for i in range(10)], stats)
    calls = server.requests_to("/v1/embeddings")
    assert [len(r["json"]["input"]) for r in calls] == [4, 4, 2]
    assert vectors.shape == (10, 1536) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert stats.calls == 3 and stats.retries == 0 and stats.tokens > 0


def test_retries_429_and_500_honouring_retry_after(server):
    server.fail_next(429, retry_after=0.3)
    server.fail_next(500)
    stats = EmbedStats()
    vectors = embedder(server).embed(["alpha beta", "gamma"], stats)
    calls = server.requests_to("/v1/embeddings")
    assert [r["status"] for r in calls] == [429, 500, 200]
    assert calls[1]["time"] - calls[0]["time"] >= 0.3  # waited as long as the server asked
    assert stats.calls == 1 and stats.retries == 2 and vectors.shape == (2, 1536)


def test_gives_up_after_max_retries(server):
    import openai

    server.fail_next(503, times=3)
    with pytest.raises(openai.InternalServerError):
        embedder(server, max_retries=2).embed(["x"])
    assert len(server.requests_to("/v1/embeddings")) == 3


def test_request_rate_limit_spaces_calls(server):
    embedder(server, batch_size=1, requests_per_second=10).embed([f"t{i}" for i in range(6)])
    times = [r["time"] for r in server.requests_to("/v1/embeddings")]
    # A limiter can make calls later, never sooner: 5 gaps at 10 requests/s.
    assert times[-1] - times[0] >= 0.45


def test_pipeline_runs_on_openai_by_configuration(rag_env, instance, tmp_path, server, monkeypatch):
    monkeypatch.setenv("RAG_EMBEDDER", "openai:text-embedding-3-small")
    monkeypatch.setenv("OPENAI_API_KEY", "test")
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    (tmp_path / "inbox" / "acme").mkdir(parents=True)
    (tmp_path / "inbox" / "acme" / "a.txt").write_text("Rocket skates reach ninety kilometres per hour.")
    (tmp_path / "inbox" / "acme" / "b.txt").write_text("The giant magnet attracts iron.")
    server.fail_next(429, retry_after=0.1)

    settings = Settings.from_env()
    refs, _ = discover([str(tmp_path / "inbox")], ObjectStore(), None, settings.tenant_from_key)
    report = ingest(refs, defs=build_definitions(settings), instance=instance)

    assert sorted(report.ingested) == ["acme/a.txt", "acme/b.txt"]
    served = [r for r in server.requests_to("/v1/embeddings") if r["status"] == 200]
    assert report.embedding_calls == len(served) == 1  # both documents in one request
    from rag_assets.defs.resources import build_resources

    resources = build_resources(settings)
    emb, store = resources["embedder"], resources["vector_store"]
    hits = store.query(emb.model_id, emb.dimension, emb.embed(["rocket skates speed"])[0], tenant="acme", k=1)
    assert hits[0].key == "acme/a.txt"
