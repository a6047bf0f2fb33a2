"""TemporaryPostgres gives a working PG15 + pgvector with an HNSW index."""

from __future__ import annotations

import psycopg
from pgvector.psycopg import register_vector

from rag_assets_tests.pg_server import TemporaryPostgres


def test_temporary_postgres_pgvector_hnsw_nearest() -> None:
    with TemporaryPostgres() as pg, psycopg.connect(pg.dsn, autocommit=True) as conn:
        register_vector(conn)
        conn.execute("CREATE TABLE items (id int PRIMARY KEY, embedding vector(3))")
        conn.execute("CREATE INDEX ON items USING hnsw (embedding vector_cosine_ops)")
        rows = [(1, [1.0, 0.0, 0.0]), (2, [0.0, 1.0, 0.0]), (3, [0.0, 0.0, 1.0])]
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO items VALUES (%s, %s::vector)", rows)
        conn.execute("SET enable_seqscan = off")  # make the planner use the HNSW index
        query = "SELECT id FROM items ORDER BY embedding <=> %s::vector LIMIT 1"
        plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + query, ([0.1, 0.9, 0.2],)))
        assert "items_embedding_idx" in plan
        nearest = conn.execute(query, ([0.1, 0.9, 0.2],)).fetchone()
        assert nearest == (2,)
