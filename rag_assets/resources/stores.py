"""The store RAG_INDEX_URI names: the one factory of the vector stores, kept apart from their
contract (rag_assets.resources.vector_stores) so that the stores import the contract and
nothing imports back (docs/stores.md)."""

from __future__ import annotations

from rag_assets.resources.vector_stores import PG_SCHEMES, PINECONE_SCHEME, LanceDBStore, VectorStore


def vector_store_from_uri(uri: str) -> VectorStore:
    """The one place a store is picked from RAG_INDEX_URI.

    `postgresql://...` or `postgres://...`: pgvector (a libpq URI, passed to psycopg as is);
    `pinecone://INDEX[?namespace=NS][&host=URL][&index_host=URL]`: Pinecone, API key from
    PINECONE_API_KEY; anything else: a LanceDB path or URI (`./.rag/index`, `s3://bucket/index`).
    """
    if uri.startswith(PG_SCHEMES):
        from rag_assets.resources.pgvector_store import PgVectorStore

        return PgVectorStore(dsn=uri)
    if uri.startswith(PINECONE_SCHEME):
        from rag_assets.resources.pinecone_store import PineconeStore

        return PineconeStore.from_uri(uri)
    return LanceDBStore(uri=uri)
