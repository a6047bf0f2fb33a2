"""The warm model: `python -m rag_assets.frontends.embed_service` as a real process, the local embedder
through it, and a run that embeds through it."""

from __future__ import annotations

import dagster as dg
import httpx
import numpy as np
import pytest

from rag_assets.resources.embedders import EmbedStats, LocalEmbedder, decode_vectors, encode_vectors
from rag_assets_tests.conftest import free_port
from rag_assets_tests.live import embed_service

TEXTS = [
    "Vacation policy: 25 days a year.",
    "Report a stolen laptop within one hour.",
    "",
    "Ünïcödé and emoji 🚀 text.",
]


@pytest.mark.parametrize("shape", [(0, 4), (1, 4), (3, 384)])
def test_vectors_cross_the_wire_exactly(shape):
    vectors = np.random.default_rng(1).normal(size=shape).astype(np.float32)
    assert np.array_equal(decode_vectors(encode_vectors(vectors), shape[1]), vectors)


def test_a_vector_of_the_wrong_size_is_refused():
    with pytest.raises(ValueError, match="3 values, want 4"):
        decode_vectors(encode_vectors(np.ones((1, 3), dtype=np.float32)), 4)


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    with embed_service(tmp_path_factory.mktemp("embed_service") / "service.log") as url:
        yield url


def served(url: str) -> int:
    return httpx.get(f"{url}/health").json()["served"]


def test_the_service_gives_the_vectors_of_the_model_in_process(service):
    before = served(service)
    stats = EmbedStats()
    remote = LocalEmbedder(service_url=service).embed(TEXTS, stats)
    assert served(service) == before + len(TEXTS)  # it did come from the service
    assert stats.runtimes <= {"torch-float32", "torch-bfloat16"} and len(stats.runtimes) == 1  # the service's own
    local = LocalEmbedder().embed(TEXTS)
    assert remote.dtype == np.float32 and remote.shape == local.shape == (4, 384)
    assert float(np.min(np.sum(remote * local, axis=1))) > 1 - 1e-5


def test_the_service_refuses_another_model_and_bad_input(service):
    assert httpx.post(f"{service}/v1/embeddings", json={"input": ["x"], "model": "local:other"}).status_code == 400
    assert httpx.post(f"{service}/v1/embeddings", json={"input": "not a list"}).status_code == 400
    assert httpx.post(f"{service}/v1/embeddings", content=b"{not json").status_code == 400
    with pytest.raises(RuntimeError, match="embeds with local:all-MiniLM-L6-v2, not local:other"):
        LocalEmbedder(model="other", model_path=".", service_url=service).embed(["x"])


def test_without_the_service_the_model_loads_in_the_process(caplog):
    vectors = LocalEmbedder(service_url=f"http://127.0.0.1:{free_port()}").embed(TEXTS)
    assert vectors.shape == (4, 384)
    assert "unreachable" in caplog.text and "loading local:all-MiniLM-L6-v2 in this process" in caplog.text


def test_a_run_embeds_through_the_service(service, rag_env, instance, tmp_path, monkeypatch):
    """RAG_EMBED_SERVICE_URL set: the definitions' local embedder sends the run's texts there."""
    from rag_assets.definitions import build_definitions
    from rag_assets.ingest import discover, ingest
    from rag_assets.resources.object_store import ObjectStore
    from rag_assets.settings import Settings

    (tmp_path / "inbox" / "acme").mkdir(parents=True)
    (tmp_path / "inbox" / "acme" / "a.md").write_text("# Travel\n\nBook trains through the travel desk.\n")
    monkeypatch.setenv("RAG_EMBED_SERVICE_URL", service)
    settings = Settings.from_env()
    refs, _ = discover([str(tmp_path / "inbox")], ObjectStore(), None, settings.tenant_from_key)
    before = served(service)
    report = ingest(refs, defs=build_definitions(settings), instance=instance)
    assert report.ingested == ["acme/a.md"] and report.vectors == 1
    assert served(service) == before + 1
    # The embeddings step records what the service computed the vectors with.
    (record,) = instance.fetch_materializations(dg.AssetKey("embeddings"), limit=1).records
    assert record.asset_materialization.metadata["embed_runtime"].value in ("torch-float32", "torch-bfloat16")
