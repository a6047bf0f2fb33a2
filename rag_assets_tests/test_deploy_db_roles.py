"""deploy/db-roles.sql against a real PostgreSQL: the two database roles of a deployment
(deploy/README.md, "The database roles"), made by a master user like RDS's (CREATEROLE and
CREATEDB, not a superuser). Each role does its job in its own database (Dagster's storage
through deploy/dagster.yaml; pgvector rows, the embedding cache and image analyses through the
project's own stores) and is refused the other's tables, reading and writing."""

from __future__ import annotations

import os
import subprocess
import uuid
from types import SimpleNamespace

import numpy as np
import psycopg
import pytest
import yaml
from psycopg import sql

from rag_assets_tests.live import REPO
from rag_assets_tests.pg_server import PG_BIN
from rag_assets_tests.store_fixtures import pg_server_fixture  # noqa: F401 - the session's PostgreSQL

SCRIPT = REPO / "deploy" / "db-roles.sql"
STRONG = "correct horse battery staple"


@pytest.fixture
def cluster(pg_server):
    """Unique names for this test's roles and databases; a master user owning the vectors
    database (as RDS makes the db_name database) with pgvector enabled in it (RDS's master may,
    this one may not: the script's CREATE EXTENSION IF NOT EXISTS then finds it). All dropped after."""
    suffix = uuid.uuid4().hex[:8]
    c = SimpleNamespace(
        pg=pg_server,
        master=f"master_{suffix}",
        storage=f"storage_{suffix}",
        vectors=f"vectors_{suffix}",
        nobody=f"nobody_{suffix}",
        storage_db=f"dagster_{suffix}",
        vectors_db=f"rag_{suffix}",
    )
    with psycopg.connect(pg_server.dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN CREATEROLE CREATEDB").format(sql.Identifier(c.master)))
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(c.nobody)))
        admin.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(c.vectors_db), sql.Identifier(c.master))
        )
    with psycopg.connect(dsn(c, "postgres", c.vectors_db), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION vector")
    yield c
    with psycopg.connect(pg_server.dsn, autocommit=True) as admin:
        for db in (c.storage_db, c.vectors_db):
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db)))
        for role in (c.storage, c.vectors, c.nobody, c.master):
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def dsn(c, user: str, database: str) -> str:
    return f"postgresql://{user}@127.0.0.1:{c.pg.port}/{database}"


def run_script(c, **overrides) -> subprocess.CompletedProcess:
    """psql running deploy/db-roles.sql as the master user, connected to the vectors database,
    as the db-setup task does (deploy/ecs.tf); a None override unsets that variable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "RAG_DB_"))}
    settings = {
        "PGHOST": "127.0.0.1",
        "PGPORT": str(c.pg.port),
        "PGUSER": c.master,
        "PGDATABASE": c.vectors_db,
        "RAG_DB_STORAGE_ROLE": c.storage,
        "RAG_DB_STORAGE_PASSWORD": STRONG + " 1",
        "RAG_DB_STORAGE_DATABASE": c.storage_db,
        "RAG_DB_VECTORS_ROLE": c.vectors,
        "RAG_DB_VECTORS_PASSWORD": STRONG + " 2",
        **overrides,
    }
    env.update({k: v for k, v in settings.items() if v is not None})
    command = [str(PG_BIN / "psql"), "--no-psqlrc", "--set=ON_ERROR_STOP=1", f"--file={SCRIPT}"]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)


def superuser_query(c, database: str, query: str, *params):
    with psycopg.connect(dsn(c, "postgres", database), autocommit=True) as conn:
        return conn.execute(query, params).fetchall()


def password_hashes(c) -> dict[str, str]:
    rows = superuser_query(
        c, "postgres", "SELECT rolname, rolpassword FROM pg_authid WHERE rolname = ANY(%s)", [c.storage, c.vectors]
    )
    return dict(rows)


def dagster_instance_as(c, tmp_path, monkeypatch, user: str):
    """deploy/dagster.yaml's storage (the run launcher and compute logs need AWS: left out) as `user`."""
    import dagster as dg

    config = yaml.safe_load((REPO / "deploy" / "dagster.yaml").read_text())
    (tmp_path / "dagster.yaml").write_text(
        yaml.safe_dump({"storage": config["storage"], "telemetry": config["telemetry"]})
    )
    for name, value in {
        "DAGSTER_PG_HOST": "127.0.0.1",
        "DAGSTER_PG_PORT": str(c.pg.port),
        "DAGSTER_PG_DB": c.storage_db,
        "DAGSTER_PG_USERNAME": user,
        "DAGSTER_PG_PASSWORD": "unused-with-trust-auth",
    }.items():
        monkeypatch.setenv(name, value)
    return dg.DagsterInstance.from_config(str(tmp_path))


def write_vectors(c, user: str):
    """The vector rows, the embedding cache and an image analysis, through the project's stores."""
    from rag_assets.lib.images import Analysis
    from rag_assets.resources.embedders import PostgresEmbeddingCache
    from rag_assets.resources.image_analysis import PostgresAnalysisStore
    from rag_assets.resources.pgvector_store import PgVectorStore
    from rag_assets.resources.vector_stores import VectorRow

    uri = dsn(c, user, c.vectors_db)
    store = PgVectorStore(dsn=uri)
    try:
        row = VectorRow(
            chunk_id="c-1", tenant="acme", document_id="acme:s3://docs/acme/handbook.txt",
            document_key="acme/handbook.txt", ordinal=0, text="vacation: 25 days", content_hash="h-1",
            model="test:roles", vector=np.ones(4, dtype=np.float32),
        )  # fmt: skip
        assert store.replace_documents("test:roles", 4, {row.document_id: [row]}) == 1
        assert set(store.list_documents("test:roles", 4)) == {row.document_id}
    finally:
        store.close()
    cache = PostgresEmbeddingCache(dsn=uri)
    cache.put_many("test:roles", {"hash-1": np.ones(4, dtype=np.float32)})
    assert set(cache.get_many("test:roles", ["hash-1"])) == {"hash-1"}
    analyses = PostgresAnalysisStore(dsn=uri)
    analyses.remember("sha-1", "offline", Analysis(category="photo", summary="a boat"))
    assert analyses.cached("sha-1", "offline").summary == "a boat"


def refused_connection(c, user: str, database: str) -> str:
    with pytest.raises(psycopg.OperationalError) as refused:
        psycopg.connect(dsn(c, user, database)).close()
    return str(refused.value)


def refused_statement(c, user: str, database: str, statement: str) -> None:
    """Refused at the schema: schema public is its role's only (the tables' own privileges
    would refuse too; the script does not rely on them alone)."""
    with (
        psycopg.connect(dsn(c, user, database), autocommit=True) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied for schema public"),
    ):
        conn.execute(statement)


def test_each_role_does_its_job_and_cannot_touch_the_others_tables(cluster, tmp_path, monkeypatch):
    c = cluster
    done = run_script(c)
    assert done.returncode == 0, done.stderr
    assert f"role {c.storage} in database {c.storage_db}, role {c.vectors} in database {c.vectors_db}" in done.stdout

    # Two login roles with passwords (SCRAM), nothing more.
    attributes = superuser_query(
        c, "postgres", "SELECT rolname, rolcanlogin, rolsuper, rolcreatedb, rolcreaterole, rolbypassrls "
        "FROM pg_roles WHERE rolname = ANY(%s) ORDER BY rolname", [c.storage, c.vectors],
    )  # fmt: skip
    assert attributes == sorted(
        [(c.storage, True, False, False, False, False), (c.vectors, True, False, False, False, False)]
    )
    first = password_hashes(c)
    assert all(h.startswith("SCRAM-SHA-256$") for h in first.values()) and len(set(first.values())) == 2

    # Each role does its job: Dagster's storage (its tables made by migration) ...
    with dagster_instance_as(c, tmp_path, monkeypatch, c.storage) as instance:
        import dagster as dg

        run = instance.create_run_for_job(dg.GraphDefinition(name="noop", node_defs=[]).to_job())
        instance.report_engine_event("stored by the storage role", run)
        assert [e.message for e in instance.all_logs(run.run_id)][-1] == "stored by the storage role"
    dagster_tables = dict(
        superuser_query(c, c.storage_db, "SELECT tablename, tableowner FROM pg_tables WHERE schemaname = 'public'")
    )
    assert {"runs", "event_logs", "jobs"} <= set(dagster_tables) and set(dagster_tables.values()) == {c.storage}
    # ... and the vectors, the embedding cache and image analyses.
    write_vectors(c, c.vectors)
    vector_tables = dict(
        superuser_query(c, c.vectors_db, "SELECT tablename, tableowner FROM pg_tables WHERE schemaname = 'public'")
    )
    assert {"rag_embedding_cache", "rag_image_analysis_cache"} <= set(vector_tables)
    assert set(vector_tables.values()) == {c.vectors}
    (vector_table,) = [
        t for t in vector_tables if t not in {"rag_embedding_cache", "rag_image_analysis_cache", "rag_image_analyses"}
    ]

    # Neither may connect to the other's database; a role given nothing, to neither.
    assert "permission denied for database" in refused_connection(c, c.vectors, c.storage_db)
    assert "permission denied for database" in refused_connection(c, c.storage, c.vectors_db)
    for database in (c.storage_db, c.vectors_db):
        assert "permission denied for database" in refused_connection(c, c.nobody, database)

    # Had someone granted CONNECT by mistake, the tables would still be out of reach (schema
    # public is its role's only): no reading, no writing, no table of its own there.
    with psycopg.connect(c.pg.dsn, autocommit=True) as admin:
        for database, role in ((c.storage_db, c.vectors), (c.vectors_db, c.storage)):
            admin.execute(
                sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(database), sql.Identifier(role))
            )
    refused_statement(c, c.vectors, c.storage_db, "SELECT * FROM public.runs")
    refused_statement(c, c.vectors, c.storage_db, "INSERT INTO public.runs DEFAULT VALUES")
    refused_statement(c, c.vectors, c.storage_db, "CREATE TABLE public.stolen (x int)")
    refused_statement(c, c.storage, c.vectors_db, f"SELECT * FROM public.{vector_table}")
    refused_statement(c, c.storage, c.vectors_db, "INSERT INTO public.rag_embedding_cache VALUES ('m', 'h', '')")
    refused_statement(c, c.storage, c.vectors_db, "DELETE FROM public.rag_image_analysis_cache")
    refused_statement(c, c.storage, c.vectors_db, "CREATE TABLE public.stolen (x int)")

    # Run again (a password changed): the same roles, the new password, the tables untouched;
    # and the mistaken CONNECT grants revoked.
    again = run_script(c, RAG_DB_STORAGE_PASSWORD=STRONG + " changed")
    assert again.returncode == 0, again.stderr
    second = password_hashes(c)
    assert second[c.storage] != first[c.storage]
    assert "permission denied for database" in refused_connection(c, c.vectors, c.storage_db)
    assert "permission denied for database" in refused_connection(c, c.storage, c.vectors_db)
    with dagster_instance_as(c, tmp_path, monkeypatch, c.storage) as instance:
        assert instance.get_run_by_id(run.run_id) is not None
    write_vectors(c, c.vectors)


@pytest.mark.parametrize(
    "overrides, says",
    [
        ({"RAG_DB_VECTORS_PASSWORD": None}, "must have 16 characters at least"),
        ({"RAG_DB_STORAGE_PASSWORD": "unused"}, "must have 16 characters at least"),
        ({"RAG_DB_STORAGE_ROLE": None}, "must be two different role names"),
        ({"RAG_DB_VECTORS_ROLE": "{storage}"}, "must be two different role names"),
        ({"RAG_DB_VECTORS_ROLE": "{master}"}, "must be two different role names"),
        ({"RAG_DB_STORAGE_ROLE": 'Robert"; DROP TABLE runs; --'}, "must be two different role names"),
        ({"RAG_DB_STORAGE_DATABASE": "{vectors_db}"}, "the storage and vectors databases must differ"),
    ],
)
def test_bad_parameters_change_nothing(cluster, overrides, says):
    c = cluster
    overrides = {k: v.format(**vars(c)) if isinstance(v, str) else v for k, v in overrides.items()}
    refused = run_script(c, **overrides)
    assert refused.returncode != 0 and says in refused.stderr, refused.stderr
    assert (
        superuser_query(c, "postgres", "SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", [c.storage, c.vectors])
        == []
    )
    assert superuser_query(c, "postgres", "SELECT datname FROM pg_database WHERE datname = %s", c.storage_db) == []
