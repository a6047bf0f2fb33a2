"""pgvector store: PostgreSQL (Supabase, RDS, a local server) with the `vector` extension.

`RAG_INDEX_URI=postgresql://USER@HOST:PORT/DB?sslmode=require` (a libpq URI, handed to psycopg
as is). One table per embedding model and dimension, its columns a superset of the embedding
processor's `content_embeddings` (id, content, key, embedding, metadata, created_at), an HNSW
cosine index, btree indexes on tenant and document_id, and a full-text index: `content_tsv`, a
tsvector generated from the text, under GIN. Writes COPY the rows in binary; a batch of documents
is replaced in one transaction. Tables made before rows kept their source version and pipeline,
or before the full-text column, get those columns (and its index) on first use (`ALTER TABLE ...
ADD COLUMN IF NOT EXISTS`). See docs/stores.md.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
from collections.abc import Mapping, Sequence
from typing import ClassVar
from urllib.parse import urlsplit, urlunsplit

import numpy as np
from psycopg import sql
from pydantic import PrivateAttr

from rag_assets.resources.vector_stores import (
    MIXED,
    DimensionMismatch,
    Hit,
    IndexedDocument,
    VectorRow,
    VectorStore,
    admitted,
    check_key_prefix,
    check_query_text,
    check_query_vector,
    check_rows,
    check_where,
    require_tenant,
    table_name,
)

log = logging.getLogger(__name__)

MAX_TABLE_NAME = 48  # leaves room for index-name suffixes under PostgreSQL's 63-byte limit
HNSW_MAX_DIMENSIONS = 2000  # pgvector's limit for an HNSW index on `vector`
# What a write COPYs: each column and its binary COPY type, in order.
COPY_COLUMNS = (
    ("id", "text"), ("content", "text"), ("key", "text"), ("embedding", "vector"), ("metadata", "jsonb"),
    ("tenant", "text"), ("document_id", "text"), ("ordinal", "int4"), ("page", "int4"), ("row", "int4"),
    ("content_hash", "text"), ("model", "text"), ("source_etag", "text"), ("pipeline", "text"),
)  # fmt: skip
COLUMNS = tuple(c for c, _ in COPY_COLUMNS)
COLUMN_LIST = ", ".join(f'"{c}"' for c in COLUMNS)
COPY_TYPES = [t for _, t in COPY_COLUMNS]
# The text search configuration of the full-text column and of every keyword query: English
# stemming and stop words, as LanceDB's index (docs/stores.md, D31). Changing it needs the
# column rewritten (dropped and added again), not just this constant.
TS_CONFIG = "english"
TSV_COLUMN = "content_tsv"
TSV_DEFINITION = f"tsvector GENERATED ALWAYS AS (to_tsvector('{TS_CONFIG}', content)) STORED"
# Columns added after the first release: (name, definition), added in place to older tables.
ADDED_COLUMNS = (
    ("source_etag", "text NOT NULL DEFAULT ''"),
    ("pipeline", "text NOT NULL DEFAULT ''"),
    (TSV_COLUMN, TSV_DEFINITION),
)


# A keyword query's text as "any of its words" (see PgVectorStore.keyword_sql).
TSQUERY = f"replace(plainto_tsquery('{TS_CONFIG}', %(text)s)::text, ' & ', ' | ')::tsquery"


def tsv_index(table: str) -> str:
    return f"{table}_tsv"


def _filters(where: bool) -> list[str]:
    """The conditions every search applies before ranking: the tenant, the model, `where`."""
    return ["tenant = %(tenant)s", "model = %(model)s"] + (["metadata @> %(where)s"] if where else [])


def pg_table_name(model_id: str, dimension: int) -> str:
    """`table_name` (chunks__<model>__<dim>), shortened with a hash when the model id is long."""
    name = table_name(model_id, dimension)
    if len(name) <= MAX_TABLE_NAME:
        return name
    slug = re.sub(r"[^a-z0-9]+", "_", model_id.lower()).strip("_")
    digest = hashlib.sha256(model_id.encode()).hexdigest()[:8]
    return f"chunks__{slug[:MAX_TABLE_NAME - 20 - len(str(dimension))]}_{digest}__{dimension}"


def lock_key(*parts: str) -> int:
    """A signed 64-bit advisory-lock key for these parts."""
    return int.from_bytes(hashlib.sha256("\0".join(("rag_assets", *parts)).encode()).digest()[:8], "big", signed=True)


def redact(dsn: str) -> str:
    """The DSN without its password, for messages."""
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _clean(value):
    """PostgreSQL text and jsonb cannot hold NUL: replace it (U+FFFD), recursively."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd") if "\x00" in value else value
    if isinstance(value, dict):
        return {_clean(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    return str(value)


class PgVectorStore(VectorStore):
    """PostgreSQL + pgvector at a libpq URI (`postgresql://...`)."""

    dsn: str
    hnsw_m: int = 16
    hnsw_ef_construction: int = 64
    ef_search: int = 100  # raised to k when k is larger (pgvector's hnsw.ef_search, max 1000)

    search_modes: ClassVar[tuple[str, ...]] = ("hybrid", "vector", "keyword")

    _conns: dict = PrivateAttr(default_factory=dict)
    _ready: dict = PrivateAttr(default_factory=dict)  # table -> True once created/verified here
    _version: tuple | None = PrivateAttr(default=None)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    # --- connections ---------------------------------------------------------------------

    def _conn(self):
        """This thread's connection (autocommit; multi-statement work uses conn.transaction())."""
        import psycopg
        from pgvector.psycopg import register_vector

        key = (os.getpid(), threading.get_ident())
        conn = self._conns.get(key)
        if conn is not None and not conn.closed and not conn.broken:
            return conn
        try:
            # prepare_threshold=None: no server-side prepared statements, so a transaction-mode
            # pooler (Supabase's port 6543, pgbouncer) works too.
            conn = psycopg.connect(self.dsn, autocommit=True, prepare_threshold=None)
        except psycopg.OperationalError as e:
            raise ConnectionError(f"pgvector store: cannot connect to {redact(self.dsn)}: {e}") from e
        try:
            register_vector(conn)
        except psycopg.ProgrammingError:  # the vector type is not there yet
            self._create_extension(conn)
            register_vector(conn)
        if self._version is None:
            row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
            self._version = tuple(int(x) for x in re.findall(r"\d+", row[0])[:3]) if row else (0,)
        self._conns[key] = conn
        return conn

    def _create_extension(self, conn) -> None:
        import psycopg

        try:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key("create extension vector"),))
                conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        except psycopg.errors.InsufficientPrivilege as e:
            raise RuntimeError(
                f"pgvector store: the `vector` extension is not enabled in {redact(self.dsn)} and this user "
                "may not create it; run `CREATE EXTENSION vector` as an owner (Supabase: Database -> Extensions)"
            ) from e
        except psycopg.errors.FeatureNotSupported as e:
            raise RuntimeError(f"pgvector store: the server has no pgvector extension installed: {e}") from e

    def teardown_after_execution(self, context) -> None:
        self.close()

    def close(self) -> None:
        for key, conn in list(self._conns.items()):
            if key[0] == os.getpid():
                conn.close()
            self._conns.pop(key, None)

    @property
    def pgvector_version(self) -> tuple:
        self._conn()
        return self._version

    @property
    def iterative_scan(self) -> bool:
        """pgvector >= 0.8 can keep scanning the HNSW graph until k rows pass the filter."""
        return self.pgvector_version >= (0, 8)

    # --- schema --------------------------------------------------------------------------

    def _exists(self, conn, table: str) -> bool:
        if self._ready.get(table):
            return True
        found = conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0] is not None
        if found:
            self._verify(conn, table, None, None)
        return found

    def _verify(self, conn, table: str, model_id: str | None, dimension: int | None) -> None:
        """An existing table must be of this dimension and model (names are slugs: check), and
        gets the columns added since it was made."""
        row = conn.execute(
            "SELECT format_type(a.atttypid, a.atttypmod), obj_description(c.oid, 'pg_class'), "
            "ARRAY(SELECT attname::text FROM pg_attribute WHERE attrelid = c.oid AND attnum > 0 AND NOT attisdropped), "
            "to_regclass(%s) IS NOT NULL "
            "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
            "WHERE c.oid = to_regclass(%s) AND a.attname = 'embedding'",
            (tsv_index(table), table),
        ).fetchone()
        if row is None:
            raise RuntimeError(f"pgvector store: table {table} exists but has no `embedding` column")
        column_type, comment, columns, has_tsv_index = row
        if dimension is not None and column_type != f"vector({dimension})":
            raise DimensionMismatch(f"table {table} holds {column_type}, not vector({dimension}) (model {model_id})")
        if model_id is not None and comment and comment != f"rag_assets model={model_id}":
            raise RuntimeError(
                f"table {table} holds vectors of another model ({comment}); model {model_id!r} maps to the "
                "same table name: rename one of the models"
            )
        missing = [(name, definition) for name, definition in ADDED_COLUMNS if name not in columns]
        if missing or not has_tsv_index:
            self._add_columns(conn, table, missing)
        self._ready[table] = True

    def _add_columns(self, conn, table: str, missing: Sequence[tuple[str, str]]) -> None:
        """Migrate a table made before these columns existed, in place (empty values: such rows
        compare as out of date and are rewritten once; the full-text column is computed for
        every row, which rewrites the table once), and give it the full-text index (as every
        new table gets it: `_ensure_table` leaves it to this)."""
        import psycopg

        statements = [f'ALTER TABLE {table} ADD COLUMN IF NOT EXISTS "{n}" {d}' for n, d in missing]
        statements.append(self._tsv_index_sql(table))
        if any(n == TSV_COLUMN for n, _ in missing):
            log.warning(
                "%s: adding the full-text column %s: PostgreSQL computes it for every row, rewriting the table "
                "and rebuilding its indexes under an exclusive lock (docs/stores.md, pgvector migration)",
                table, TSV_COLUMN,
            )  # fmt: skip
        try:
            with conn.transaction():
                # The lock of table creation: concurrent first users migrate one after the other.
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key("create table", table),))
                for statement in statements:
                    conn.execute(statement)
        except psycopg.errors.InsufficientPrivilege as e:
            raise RuntimeError(
                f"pgvector store: table {table} predates the columns {[n for n, _ in missing]} or the full-text index "
                f"and this user may not add them; run `{'; '.join(statements)}` as its owner"
            ) from e
        if missing:
            log.info("%s: added the column(s) %s", table, ", ".join(n for n, _ in missing))

    @staticmethod
    def _tsv_index_sql(table: str) -> str:
        return f"CREATE INDEX IF NOT EXISTS {tsv_index(table)} ON {table} USING gin ({TSV_COLUMN})"

    def _ensure_table(self, conn, model_id: str, dimension: int) -> str:
        table = pg_table_name(model_id, dimension)
        if self._ready.get(table):
            return table
        with conn.transaction():
            # Concurrent first writers: CREATE ... IF NOT EXISTS alone races on the catalog.
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key("create table", table),))
            conn.execute(
                f"""
                CREATE TABLE IF NOT EXISTS {table} (
                    id text PRIMARY KEY,
                    content text NOT NULL,
                    key text NOT NULL,
                    embedding vector({int(dimension)}) NOT NULL,
                    metadata jsonb NOT NULL DEFAULT '{{}}'::jsonb,
                    created_at timestamptz NOT NULL DEFAULT now(),
                    tenant text NOT NULL,
                    document_id text NOT NULL,
                    ordinal integer NOT NULL,
                    page integer,
                    "row" integer,
                    content_hash text NOT NULL,
                    model text NOT NULL,
                    source_etag text NOT NULL DEFAULT '',
                    pipeline text NOT NULL DEFAULT '',
                    {TSV_COLUMN} {TSV_DEFINITION}
                )"""
            )
            if self._comment(conn, table) is None:
                comment = sql.Literal(f"rag_assets model={model_id}").as_string(conn)
                conn.execute(f"COMMENT ON TABLE {table} IS {comment}")
            if dimension <= HNSW_MAX_DIMENSIONS:
                conn.execute(
                    f"CREATE INDEX IF NOT EXISTS {table}_hnsw ON {table} USING hnsw (embedding vector_cosine_ops) "
                    f"WITH (m = {int(self.hnsw_m)}, ef_construction = {int(self.hnsw_ef_construction)})"
                )
            else:
                log.warning("%s: %d dimensions is over pgvector's HNSW limit; queries scan exactly", table, dimension)
            conn.execute(f"CREATE INDEX IF NOT EXISTS {table}_tenant ON {table} (tenant)")
            conn.execute(f"CREATE INDEX IF NOT EXISTS {table}_document ON {table} (document_id)")
            # A listing pass reads one span of keys a tick (list_key_span), in code point order.
            conn.execute(f'CREATE INDEX IF NOT EXISTS {table}_key ON {table} (key COLLATE "C")')
        # The full-text index comes with _verify's migration: an older table met here has no
        # column to index yet.
        self._verify(conn, table, model_id, dimension)
        return table

    @staticmethod
    def _comment(conn, table: str) -> str | None:
        return conn.execute("SELECT obj_description(to_regclass(%s), 'pg_class')", (table,)).fetchone()[0]

    # --- the contract --------------------------------------------------------------------

    def replace_documents(self, model_id, dimension, documents: Mapping[str, Sequence[VectorRow]], held=None) -> int:
        rows = [r for rs in documents.values() for r in rs]
        check_rows(rows, dimension)
        for doc_id, rs in documents.items():
            if any(r.document_id != doc_id for r in rs):
                raise ValueError(f"replace_documents: rows under {doc_id!r} belong to another document")
        if not documents:
            return 0
        conn = self._conn()
        table = self._ensure_table(conn, model_id, dimension)
        doc_ids = sorted(documents)
        with conn.transaction():
            # Writers of the same documents take turns (a second writer would otherwise fail on
            # the primary key); keys in a fixed order, so two batches never deadlock.
            keys = sorted({lock_key(table, d) for d in doc_ids})
            conn.execute("SELECT count(pg_advisory_xact_lock(k)) FROM unnest(%s::bigint[]) AS k", (keys,))
            conn.execute(f"DELETE FROM {table} WHERE document_id = ANY(%s)", (doc_ids,))
            copy_sql = f"COPY {table} ({COLUMN_LIST}) FROM STDIN WITH (FORMAT BINARY)"
            with conn.cursor() as cur, cur.copy(copy_sql) as copy:
                copy.set_types(COPY_TYPES)
                for r in rows:
                    copy.write_row(
                        (
                            r.chunk_id,
                            _clean(r.text),
                            _clean(r.document_key),
                            np.asarray(r.vector, dtype=np.float32),
                            _jsonb(_clean(r.metadata)),
                            _clean(r.tenant),
                            r.document_id,
                            r.ordinal,
                            r.page,
                            r.row,
                            r.content_hash,
                            r.model,
                            _clean(r.source_etag),
                            _clean(r.pipeline),
                        )
                    )
        return len(rows)

    def delete_documents(self, model_id, dimension, document_ids):
        if not document_ids:
            return 0
        conn = self._conn()
        table = pg_table_name(model_id, dimension)
        if not self._exists(conn, table):
            return 0
        with conn.transaction():
            cur = conn.execute(f"DELETE FROM {table} WHERE document_id = ANY(%s)", (list(document_ids),))
            return cur.rowcount

    def list_documents(self, model_id, dimension, document_ids=None, tenant=None, key_prefix=None):
        key_prefix = check_key_prefix(key_prefix)
        if document_ids is not None and not document_ids:
            return {}
        conn = self._conn()
        table = pg_table_name(model_id, dimension)
        if not self._exists(conn, table):
            return {}
        conditions, params = [], []
        if document_ids is not None:
            conditions.append("document_id = ANY(%s)")
            params.append(list(document_ids))
        if tenant is not None:
            conditions.append("tenant = %s")
            params.append(tenant)
        if key_prefix:  # "" matches every key: no condition
            # starts_with: a literal prefix, no wildcards to escape (keys are stored with NUL
            # replaced, so the prefix is too). No index serves it: alone, a sequential scan.
            conditions.append("starts_with(key, %s)")
            params.append(_clean(key_prefix))
        return self._listed(conn, table, conditions, params)

    def list_key_span(self, model_id, dimension, key_prefix, start, stop):
        key_prefix = check_key_prefix(key_prefix)
        conn = self._conn()
        table = pg_table_name(model_id, dimension)
        if not self._exists(conn, table):
            return {}
        # COLLATE "C" compares UTF-8 bytes, which is code point order, and uses the key index.
        conditions, params = ['key COLLATE "C" >= %s'], [_clean(max(start, key_prefix))]
        if stop is not None:
            conditions.append('key COLLATE "C" < %s')
            params.append(_clean(stop))
        if key_prefix:
            conditions.append("starts_with(key, %s)")
            params.append(_clean(key_prefix))
        return self._listed(conn, table, conditions, params)

    def _listed(self, conn, table: str, conditions: Sequence[str], params: Sequence) -> dict[str, IndexedDocument]:
        found = conn.execute(self.list_sql(table, conditions), params).fetchall()
        return {
            doc_id: IndexedDocument(doc_id, *fields, rows=rows, chunk_digest=digest)
            for doc_id, *fields, rows, digest in found
        }

    @staticmethod
    def list_sql(table: str, conditions: Sequence[str] = ()) -> str:
        """One row per document: tenant, key, content hash / source etag / pipeline (or 'mixed'
        when its rows disagree), row count, and `chunk_digest` of its ids computed in SQL (ids
        sorted by code point, which is "C" order on UTF-8, joined by a newline)."""
        fields = [
            f'CASE WHEN min({c} COLLATE "C") = max({c} COLLATE "C") THEN min({c}) ELSE \'{MIXED}\' END'
            for c in ("content_hash", "source_etag", "pipeline")
        ]
        ids = """string_agg(id, E'\\n' ORDER BY id COLLATE "C")"""
        digest = f"left(encode(sha256(convert_to({ids}, 'UTF8')), 'hex'), 16)"
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        return (
            f"SELECT document_id, min(tenant), min(key), {', '.join(fields)}, count(*), {digest} "
            f"FROM {table}{where} GROUP BY document_id"
        )

    @staticmethod
    def query_sql(table: str, where: bool = False) -> str:
        """The nearest-rows query, with %(vector)s %(tenant)s %(model)s %(k)s [%(where)s]."""
        filters = " AND ".join(_filters(where))
        # relaxed_order may return rows slightly out of order: the outer query sorts them.
        return f"""
            WITH nearest AS MATERIALIZED (
                SELECT id, key, tenant, page, content, document_id, metadata,
                       embedding <=> %(vector)s AS distance
                FROM {table}
                WHERE {filters}
                ORDER BY embedding <=> %(vector)s
                LIMIT %(k)s
            )
            SELECT id, key, tenant, page, content, document_id, metadata, distance FROM nearest ORDER BY distance, id"""

    def query(self, model_id, dimension, vector, tenant, k=5, where=None):
        require_tenant(tenant)
        where = check_where(where)
        vector = check_query_vector(vector, dimension)
        k = int(k)
        if k < 1:
            return []
        conn = self._conn()
        table = pg_table_name(model_id, dimension)
        if not self._exists(conn, table):
            return []
        params = {"tenant": tenant, "model": model_id, "vector": vector, "k": k}
        if where:
            params["where"] = _jsonb(_clean(where))
        sql = self.query_sql(table, bool(where))
        with conn.transaction():
            conn.execute(f"SET LOCAL hnsw.ef_search = {min(1000, max(self.ef_search, k))}")
            if self.iterative_scan:
                # Keep walking the graph until k rows of this tenant pass the filter, instead of
                # filtering ef_search candidates (which returns too few for a small tenant).
                conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
            found = conn.execute(sql, params).fetchall()
        return admitted(_hits(found, lambda distance: 1.0 - distance), tenant, where)

    @staticmethod
    def keyword_sql(table: str, where: bool = False) -> str:
        """The best text matches, with %(text)s %(tenant)s %(model)s %(k)s [%(where)s].

        `plainto_tsquery` reads the text as words (no operators: quotes, `&`, `|`, `!`, `:*`
        are text; stop words and punctuation drop out; it never fails on what it is given) and
        ANDs them; its output, a quoted tsquery, has ` & ` only between terms, so replacing it
        with ` | ` asks for any of the words, ranked (a question rarely holds all of its words
        in one chunk). ts_rank: how often the words occur, rarer words not weighed more (no IDF);
        it ranked the labelled corpora far better than ts_rank_cd (D31)."""
        filters = " AND ".join(_filters(where))
        return f"""
            SELECT id, key, tenant, page, content, document_id, metadata, ts_rank({TSV_COLUMN}, words.q) AS score
            FROM {table}, (SELECT {TSQUERY} AS q) AS words
            WHERE {filters} AND {TSV_COLUMN} @@ words.q
            ORDER BY score DESC, id
            LIMIT %(k)s"""

    @classmethod
    def hybrid_sql(cls, table: str, where: bool = False) -> str:
        """Hybrid search in one statement, for applications that query the table themselves:
        the %(depth)s nearest rows and the %(depth)s best text matches fused by reciprocal rank
        (1 / (60 + rank), summed), the same order and scores as `rag_assets.search.search`
        in hybrid mode (scores scaled so that first in both lists is 1.0); parameters those of
        `query_sql` and `keyword_sql` plus %(depth)s."""
        from rag_assets.lib.fusion import RRF_K

        filters = " AND ".join(_filters(where))
        return f"""
            WITH vector AS MATERIALIZED (
                SELECT id, row_number() OVER (ORDER BY distance, id) AS rank
                FROM (SELECT id, embedding <=> %(vector)s AS distance FROM {table}
                      WHERE {filters}
                      ORDER BY embedding <=> %(vector)s LIMIT %(depth)s) AS nearest
            ), keyword AS MATERIALIZED (
                SELECT id, row_number() OVER (ORDER BY score DESC, id) AS rank
                FROM (SELECT id, ts_rank({TSV_COLUMN}, words.q) AS score
                      FROM {table}, (SELECT {TSQUERY} AS q) AS words
                      WHERE {filters} AND {TSV_COLUMN} @@ words.q
                      ORDER BY score DESC, id LIMIT %(depth)s) AS matched
            ), fused AS (
                SELECT id,
                       (coalesce(1.0 / ({RRF_K} + vector.rank), 0) + coalesce(1.0 / ({RRF_K} + keyword.rank), 0))
                           * {RRF_K + 1} / 2 AS score,
                       least(vector.rank, keyword.rank) AS best_rank,
                       CASE WHEN vector.rank <= keyword.rank OR keyword.rank IS NULL THEN 0 ELSE 1 END AS best_list
                FROM vector FULL OUTER JOIN keyword USING (id)
            )
            SELECT t.id, t.key, t.tenant, t.page, t.content, t.document_id, t.metadata, fused.score
            FROM fused JOIN {table} AS t USING (id)
            ORDER BY fused.score DESC, fused.best_rank, fused.best_list, t.id
            LIMIT %(k)s"""

    def keyword_query(self, model_id, dimension, text, tenant, k=5, where=None):
        require_tenant(tenant)
        where = check_where(where)
        text = check_query_text(text)
        k = int(k)
        if k < 1 or not text.strip():
            return []
        conn = self._conn()
        table = pg_table_name(model_id, dimension)
        if not self._exists(conn, table):  # an older table gets the full-text column here, once
            return []
        # NUL, which SQL text cannot hold, separates words in a query (stored text has U+FFFD).
        params = {"tenant": tenant, "model": model_id, "text": text.replace("\x00", " "), "k": k}
        if where:
            params["where"] = _jsonb(_clean(where))
        with conn.transaction():
            # A text of stop words only is an empty query (no rows), which the server says in
            # a NOTICE: not a message for whoever searched.
            conn.execute("SET LOCAL client_min_messages = warning")
            found = conn.execute(self.keyword_sql(table, bool(where)), params).fetchall()
        return admitted(_hits(found, float), tenant, where)


def _hits(found, score):
    """Hits of the rows of `query_sql` or `keyword_sql` (their last column, through `score`, is
    the hit's score)."""
    return (
        Hit(
            key=key,
            tenant=row_tenant,
            page=page,
            score=float(score(last)),
            text=content,
            document_id=document_id,
            chunk_id=chunk_id,
            metadata=metadata,
        )
        for chunk_id, key, row_tenant, page, content, document_id, metadata, last in found
    )


def _jsonb(value):
    from psycopg.types.json import Jsonb

    return Jsonb(value)
