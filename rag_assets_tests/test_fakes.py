"""The fake OpenAI / Pinecone servers, exercised through the REAL client libraries."""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from pinecone import Pinecone, RetryConfig
from pinecone.errors.exceptions import (
    ApiError,
    PayloadTooLargeError,
    ServiceError,
    UnauthorizedError,
)

from rag_assets_tests.fakes.openai_server import FakeOpenAIServer
from rag_assets_tests.fakes.pinecone_server import FakePineconeServer

MODEL = "text-embedding-3-small"
DIM = 8
SERVERLESS = {"serverless": {"cloud": "aws", "region": "us-east-1"}}


def _post_error(url: str, body: bytes) -> tuple[int, Any]:
    """POST without credentials via urllib; return the error status and JSON body."""
    req = urllib.request.Request(url, data=body, method="POST")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req)
    with info.value as err:
        return err.code, json.load(err)


# --- OpenAI -------------------------------------------------------------------------------


@pytest.fixture
def oai_server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as server:
        yield server


def _client(server: FakeOpenAIServer, max_retries: int = 0, key: str = "test") -> openai.OpenAI:
    return openai.OpenAI(api_key=key, base_url=server.base_url, max_retries=max_retries)


def _dot(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def test_openai_default_base64_and_float_formats(oai_server: FakeOpenAIServer) -> None:
    client = _client(oai_server)
    b64 = client.embeddings.create(model=MODEL, input=["a", "b"])
    assert [len(d.embedding) for d in b64.data] == [1536, 1536]
    assert [d.index for d in b64.data] == [0, 1]
    assert oai_server.requests[-1]["json"]["encoding_format"] == "base64"  # client default
    assert oai_server.requests[-1]["headers"]["authorization"] == "Bearer test"
    flt = client.embeddings.create(model=MODEL, input=["a", "b"], encoding_format="float")
    assert oai_server.requests[-1]["json"]["encoding_format"] == "float"
    assert len(flt.data) == 2 and len(flt.data[1].embedding) == 1536
    for x, y in zip(b64.data[0].embedding, flt.data[0].embedding, strict=True):
        assert math.isclose(x, y, abs_tol=1e-6)  # same vector after the float32 round-trip
    assert math.isclose(_dot(flt.data[0].embedding, flt.data[0].embedding), 1.0)
    assert flt.usage.prompt_tokens == 2 and flt.model == MODEL


def test_openai_embeddings_deterministic_and_lexical(oai_server: FakeOpenAIServer) -> None:
    client = _client(oai_server)
    texts = ["the cat sat on the mat", "a cat sat on a mat", "quantum chromodynamics lecture"]
    e = [d.embedding for d in client.embeddings.create(model=MODEL, input=texts).data]
    assert _dot(e[0], e[1]) > 0.4 and abs(_dot(e[0], e[2])) < 0.1
    assert client.embeddings.create(model=MODEL, input=texts[0]).data[0].embedding == e[0]
    small = client.embeddings.create(model=MODEL, input="x", dimensions=256)
    assert len(small.data[0].embedding) == 256


def test_openai_scripted_429_is_rate_limit_error(oai_server: FakeOpenAIServer) -> None:
    oai_server.fail_next(429, retry_after=7)
    with pytest.raises(openai.RateLimitError) as info:
        _client(oai_server).embeddings.create(model=MODEL, input=["a"])
    assert info.value.response.headers["retry-after"] == "7"
    assert info.value.code == "rate_limit_exceeded"
    assert _client(oai_server).embeddings.create(model=MODEL, input="a").data  # queue drained


def test_openai_client_retries_are_recorded_with_timing(oai_server: FakeOpenAIServer) -> None:
    oai_server.fail_next(500)
    oai_server.fail_next(429, retry_after=0.3)
    result = _client(oai_server, max_retries=2).embeddings.create(model=MODEL, input=["a"])
    assert len(result.data) == 1
    reqs = oai_server.requests_to("/v1/embeddings")
    assert [r["status"] for r in reqs] == [500, 429, 200]
    assert reqs[2]["time"] - reqs[1]["time"] >= 0.3  # Retry-After honoured
    assert reqs[2]["headers"]["x-stainless-retry-count"] == "2"


def test_openai_auth_and_input_validation() -> None:
    with FakeOpenAIServer(api_key="right") as server:
        with pytest.raises(openai.AuthenticationError):
            _client(server, key="wrong").embeddings.create(model=MODEL, input="a")
        status, body = _post_error(f"{server.base_url}/embeddings", b'{"model": "x", "input": "a"}')
        assert status == 401 and "API key" in body["error"]["message"]
        client = _client(server, key="right")
        with pytest.raises(openai.BadRequestError):
            client.embeddings.create(model=MODEL, input=["ok", ""])
        with pytest.raises(openai.BadRequestError):
            client.embeddings.create(model=MODEL, input=["w"] * 2049)
        with pytest.raises(openai.NotFoundError):
            client.embeddings.create(model="no-such-model", input="a")
        assert len(client.embeddings.create(model=MODEL, input=["w"] * 2048).data) == 2048


def test_stopped_server_refuses_pooled_connections(oai_server: FakeOpenAIServer) -> None:
    client = _client(oai_server)
    client.embeddings.create(model=MODEL, input="a")  # leaves a kept-alive connection
    oai_server.stop()
    with pytest.raises(openai.APIConnectionError):
        client.embeddings.create(model=MODEL, input="a")


# --- Pinecone -----------------------------------------------------------------------------


@pytest.fixture
def pc_server() -> Iterator[FakePineconeServer]:
    with FakePineconeServer(index_name="docs", dimension=DIM) as server:
        yield server


@pytest.fixture
def pc(pc_server: FakePineconeServer) -> Iterator[Pinecone]:
    no_retry = RetryConfig(max_retries=0)
    with Pinecone(api_key="test", host=pc_server.url, retry_config=no_retry) as client:
        yield client


def _vec(*hot: int) -> list[float]:
    return [1.0 if i in hot else 0.0 for i in range(DIM)]


def test_pinecone_control_plane(pc_server: FakePineconeServer, pc: Pinecone) -> None:
    desc = pc.indexes.describe("docs")
    assert (desc.name, desc.host, desc.status.ready) == ("docs", pc_server.url, True)
    assert (desc.dimension, desc.metric, desc.deployment.cloud) == (DIM, "cosine", "aws")
    assert pc.describe_index("docs").spec.serverless is not None  # 9.x-style accessors
    assert [i.name for i in pc.indexes.list()] == ["docs"]
    created = pc.indexes.create(name="other", dimension=3, metric="dotproduct", spec=SERVERLESS)
    assert created.host == f"{pc_server.url}/_index/other"
    with pc.index(name="other") as other:
        other.upsert(vectors=[("x", [1.0, 2.0, 3.0])])
        assert other.describe_index_stats().total_vector_count == 1
    assert pc_server.index("docs").namespaces == {}
    assert pc_server.requests[0]["headers"]["x-pinecone-api-version"] == "2026-07"
    with pytest.raises(ApiError) as info:
        pc.indexes.describe("missing")
    assert info.value.status_code == 404
    # Older API versions get the legacy describe shape.
    req = urllib.request.Request(f"{pc_server.url}/indexes/docs", headers={"Api-Key": "k"})
    with urllib.request.urlopen(req) as resp:
        legacy = json.load(resp)
    assert (legacy["dimension"], legacy["metric"], legacy["spec"]) == (DIM, "cosine", SERVERLESS)


def test_pinecone_batched_upsert_query_filter(pc_server: FakePineconeServer, pc: Pinecone) -> None:
    vectors = [
        {
            "id": f"doc{i // 10}#chunk{i % 10}",
            "values": _vec(i % DIM, (i + 1) % DIM),
            "metadata": {"doc": f"doc{i // 10}", "n": i, "tags": ["odd" if i % 2 else "even"]},
        }
        for i in range(250)
    ]
    with pc.index(name="docs") as index:
        resp = index.upsert(vectors=vectors, namespace="ns1", batch_size=100, show_progress=False)
        assert (resp.upserted_count, resp.total_batch_count, resp.has_errors) == (250, 3, False)
        sizes = sorted(len(r["json"]["vectors"]) for r in pc_server.requests_to("/vectors/upsert"))
        assert sizes == [50, 100, 100]
        assert index.describe_index_stats().namespaces["ns1"].vector_count == 250

        # Candidates: even n in 30..44; only n=34 and n=42 have component 2 set (tie -> id order).
        flt = {"$and": [{"doc": {"$in": ["doc3", "doc4"]}}, {"n": {"$lt": 45}}, {"tags": "even"}]}
        res = index.query(
            vector=_vec(2), top_k=3, namespace="ns1", filter=flt, include_metadata=True
        )
        assert [m.id for m in res.matches][:2] == ["doc3#chunk4", "doc4#chunk2"]
        assert res.matches[0].score >= res.matches[1].score >= res.matches[2].score
        assert all(m.metadata["n"] % 2 == 0 and 30 <= m.metadata["n"] < 45 for m in res.matches)
        assert index.query(vector=_vec(2), top_k=5, namespace="elsewhere").matches == []

        either = {"$or": [{"n": 0}, {"n": {"$eq": 8}}]}
        ors = index.query(vector=_vec(0), top_k=10, namespace="ns1", filter=either)
        assert sorted(m.id for m in ors.matches) == ["doc0#chunk0", "doc0#chunk8"]
        neither = {"doc": {"$nin": ["doc0"]}, "n": {"$ne": 10}}
        nor = index.query(vector=_vec(0), top_k=300, namespace="ns1", filter=neither)
        assert len(nor.matches) == 239
        with pytest.raises(ApiError, match="operator"):
            index.query(vector=_vec(0), top_k=1, namespace="ns1", filter={"n": {"$regex": "x"}})


def test_pinecone_list_paginates_and_delete(pc_server: FakePineconeServer, pc: Pinecone) -> None:
    with pc.index(host=pc_server.url) as index:
        records = [(f"a#{i:03d}", _vec(i % DIM)) for i in range(25)] + [("b#1", _vec(1))]
        index.upsert(vectors=records, namespace="n")
        page = index.list_paginated(prefix="a#", limit=10, namespace="n")
        assert [v.id for v in page.vectors] == [f"a#{i:03d}" for i in range(10)]
        assert page.pagination is not None and page.pagination.next
        pages = list(index.list(prefix="a#", limit=10, namespace="n"))
        assert [len(p.vectors) for p in pages] == [10, 10, 5]
        assert len(pc_server.requests_to("/vectors/list")) == 4
        assert [len(p.vectors) for p in index.list(namespace="n")] == [26]  # default limit 100

        index.delete(ids=["a#000", "a#001", "nope"], namespace="n")
        assert list(index.fetch(ids=["a#000", "a#002"], namespace="n").vectors) == ["a#002"]
        with pytest.raises(ApiError) as info:
            index.delete(filter={"doc": "x"}, namespace="n")
        assert info.value.status_code == 400 and "metadata filtering" in info.value.message
        index.delete(delete_all=True, namespace="n")
        assert index.describe_index_stats().total_vector_count == 0


def test_pinecone_delete_by_filter_when_enabled() -> None:
    with (
        FakePineconeServer(dimension=2, delete_by_filter=True) as server,
        Pinecone(api_key="k", host=server.url) as pc,
        pc.index(host=server.url) as index,
    ):
        index.upsert(vectors=[("a", [1, 0], {"doc": "x"}), ("b", [0, 1], {"doc": "y"})])
        index.delete(filter={"doc": {"$eq": "x"}})
        assert list(server.index().ns("")) == ["b"]


def test_pinecone_limits_are_enforced(pc_server: FakePineconeServer, pc: Pinecone) -> None:
    with pc.index(name="docs") as index:
        with pytest.raises(ApiError) as info:
            index.upsert(vectors=[("v", [1.0, 2.0, 3.0])])
        assert info.value.status_code == 400
        expected = f"Vector dimension 3 does not match the dimension of the index {DIM}"
        assert info.value.message == expected
        with pytest.raises(ApiError, match="1000"):
            index.upsert(vectors=[(f"v{i}", _vec(0)) for i in range(1001)])
        with pytest.raises(ApiError, match="40960"):
            index.upsert(vectors=[("v", _vec(0), {"text": "x" * 41_000})])
        with pytest.raises(ApiError, match="512"):
            index.upsert(vectors=[("v" * 513, _vec(0))])
        with pytest.raises(ApiError, match="non-zero"):
            index.upsert(vectors=[("v", _vec())])
        big = [(f"v{i}", _vec(0), {"t": "y" * 30_000}) for i in range(80)]  # ~2.4 MB
        with pytest.raises(PayloadTooLargeError):
            index.upsert(vectors=big)
        with pytest.raises(ApiError, match="dimension"):
            index.query(vector=[1.0], top_k=1)
        assert pc_server.index().namespaces.get("", {}) == {}  # nothing partially stored


def test_pinecone_auth_and_faults(pc_server: FakePineconeServer, pc: Pinecone) -> None:
    status, body = _post_error(f"{pc_server.url}/describe_index_stats", b"{}")
    assert (status, body["error"]["code"]) == (401, "UNAUTHENTICATED")
    with (
        FakePineconeServer(api_key="right") as strict,
        Pinecone(api_key="wrong", host=strict.url) as bad,
        pytest.raises(UnauthorizedError),
    ):
        bad.indexes.describe("test-index")
    pc_server.fail_next(503)
    with pytest.raises(ServiceError):
        pc.indexes.describe("docs")
    assert pc.indexes.describe("docs").name == "docs"
    pc_server.fail_next(429, retry_after=0.1)
    with pc.index(name="docs") as index:  # Index does not inherit retry_config: it retries
        assert index.describe_index_stats().dimension == DIM
    statuses = [r["status"] for r in pc_server.requests_to("/describe_index_stats")]
    assert statuses[-2:] == [429, 200]
