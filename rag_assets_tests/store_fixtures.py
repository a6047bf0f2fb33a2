"""Real parts behind the vector-store tests: one PostgreSQL + pgvector server and one fake
Pinecone server per test session, and `make_store` for a fresh store of each kind.

Import the fixture functions (`*_fixture`) into a test module; pytest knows them by their
names (`pg_server`, `pinecone_server`, `pinecone_env`, `store_kind`, `store`). conftest.py
stays as it is. PostgreSQL must be installed (`make test` runs
scripts/install-postgres.sh first): a missing server is an error, not a skip.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from rag_assets.resources.pgvector_store import PgVectorStore
from rag_assets.resources.pinecone_store import PineconeStore
from rag_assets.resources.vector_stores import LanceDBStore, VectorStore
from rag_assets_tests.fakes.pinecone_server import FakePineconeServer
from rag_assets_tests.pg_server import TemporaryPostgres

STORE_KINDS = ["lancedb", "pgvector", "pinecone"]
CONTRACT_DIMENSION = 16  # the fake Pinecone index of the contract tests
PINECONE_INDEX = "contract"
PINECONE_KEY = "test-key"


@pytest.fixture(scope="session", name="pg_server")
def pg_server_fixture() -> Iterator[TemporaryPostgres]:
    """A throwaway PostgreSQL 15 + pgvector server for the whole session."""
    with TemporaryPostgres() as pg:
        yield pg


@pytest.fixture(scope="session", name="pinecone_server")
def pinecone_server_fixture() -> Iterator[FakePineconeServer]:
    """The fake Pinecone (control plane + one serverless index of CONTRACT_DIMENSION)."""
    with FakePineconeServer(index_name=PINECONE_INDEX, dimension=CONTRACT_DIMENSION, api_key=PINECONE_KEY) as server:
        yield server


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def make_store(
    kind: str,
    *,
    tmp_path: Path,
    pg: TemporaryPostgres | None = None,
    pinecone: FakePineconeServer | None = None,
    namespace: str | None = None,
) -> VectorStore:
    """A store of `kind` that shares nothing with other tests' stores (a fresh LanceDB folder;
    pgvector tables and Pinecone ids are keyed by the test's unique model id; a fresh
    Pinecone namespace). PINECONE_API_KEY must be set (see `pinecone_env`)."""
    if kind == "lancedb":
        return LanceDBStore(uri=str(tmp_path / unique("lance")))
    if kind == "pgvector":
        assert pg is not None
        return PgVectorStore(dsn=pg.dsn)
    if kind == "pinecone":
        assert pinecone is not None
        return PineconeStore(index_name=PINECONE_INDEX, namespace=namespace or unique("ns"), host=pinecone.url)
    raise ValueError(kind)


@pytest.fixture(name="pinecone_env")
def pinecone_env_fixture(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("PINECONE_API_KEY", PINECONE_KEY)
    monkeypatch.delenv("PINECONE_CONTROLLER_HOST", raising=False)
    return PINECONE_KEY


@pytest.fixture(params=STORE_KINDS, name="store_kind")
def store_kind_fixture(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(name="store")
def store_fixture(
    store_kind: str, request: pytest.FixtureRequest, tmp_path: Path, pinecone_env: str
) -> Iterator[VectorStore]:
    """One fresh store per test, for each of lancedb, pgvector and pinecone."""
    pg = request.getfixturevalue("pg_server") if store_kind == "pgvector" else None
    fake = request.getfixturevalue("pinecone_server") if store_kind == "pinecone" else None
    made = make_store(store_kind, tmp_path=tmp_path, pg=pg, pinecone=fake)
    yield made
    if hasattr(made, "close"):
        made.close()
