-- The two database roles of a deployment (deploy/README.md, "The database roles"): one owns
-- Dagster's storage (runs, events, schedules), one owns the vector rows, the embedding cache
-- and image analyses; each connects to its own database only, so neither can read the
-- other's tables. Idempotent: run it once after the first apply, and again after changing a
-- role's password (it sets both passwords every time).
--
-- Run by the RDS master user (psql 15 or later), connected to the vectors database. The
-- db-setup task does it (deploy/ecs.tf); by hand:
--   PGHOST=... PGUSER=<master> PGDATABASE=rag PGPASSWORD=... PGSSLMODE=require \
--   RAG_DB_STORAGE_ROLE=dagster_storage RAG_DB_STORAGE_PASSWORD=... \
--   RAG_DB_VECTORS_ROLE=rag_vectors RAG_DB_VECTORS_PASSWORD=... \
--   psql --no-psqlrc --set=ON_ERROR_STOP=1 --file=deploy/db-roles.sql
--
-- Parameters, from the environment (or psql --set NAME=VALUE when the variable is unset):
--   RAG_DB_STORAGE_ROLE, RAG_DB_STORAGE_PASSWORD, RAG_DB_STORAGE_DATABASE (default dagster)
--   RAG_DB_VECTORS_ROLE, RAG_DB_VECTORS_PASSWORD, RAG_DB_VECTORS_DATABASE (default: this one)
-- Passwords: 16 characters at least. They travel to the server inside ALTER ROLE (over TLS);
-- a server logging DDL statements (log_statement = ddl or all) would log them.

\set ON_ERROR_STOP on
\set QUIET on

\getenv storage_role RAG_DB_STORAGE_ROLE
\getenv storage_password RAG_DB_STORAGE_PASSWORD
\getenv storage_database RAG_DB_STORAGE_DATABASE
\getenv vectors_role RAG_DB_VECTORS_ROLE
\getenv vectors_password RAG_DB_VECTORS_PASSWORD
\getenv vectors_database RAG_DB_VECTORS_DATABASE
\if :{?storage_database}
\else
  \set storage_database dagster
\endif
\if :{?vectors_database}
\else
  SELECT current_database() AS vectors_database \gset
\endif

-- ---- the parameters, checked before anything changes -------------------------------------

\if :{?storage_role}
\else
  \set storage_role ''
\endif
\if :{?vectors_role}
\else
  \set vectors_role ''
\endif
\if :{?storage_password}
\else
  \set storage_password ''
\endif
\if :{?vectors_password}
\else
  \set vectors_password ''
\endif

SELECT :'storage_role' ~ '^[a-z_][a-z0-9_]{0,62}$' AND :'vectors_role' ~ '^[a-z_][a-z0-9_]{0,62}$'
       AND :'storage_role' <> :'vectors_role'
       AND current_user NOT IN (:'storage_role', :'vectors_role') AS roles_ok,
       length(:'storage_password') >= 16 AND length(:'vectors_password') >= 16 AS passwords_ok,
       :'storage_database' <> :'vectors_database' AS databases_ok \gset
\if :roles_ok
\else
  \warn 'db-roles.sql: RAG_DB_STORAGE_ROLE and RAG_DB_VECTORS_ROLE must be two different role names'
  \warn '(lower-case letters, digits, _), neither the user running this'
  DO $$ BEGIN RAISE EXCEPTION 'db-roles.sql: bad role names'; END $$;
\endif
\if :passwords_ok
\else
  \warn 'db-roles.sql: RAG_DB_STORAGE_PASSWORD and RAG_DB_VECTORS_PASSWORD must have 16 characters at least'
  DO $$ BEGIN RAISE EXCEPTION 'db-roles.sql: missing or short passwords'; END $$;
\endif
\if :databases_ok
\else
  \warn 'db-roles.sql: the storage and vectors databases must differ'
  DO $$ BEGIN RAISE EXCEPTION 'db-roles.sql: one database for both roles'; END $$;
\endif

-- ---- the roles: log in, nothing else (no superuser, no CREATEDB, no CREATEROLE) ------------

SELECT format('CREATE ROLE %I', :'storage_role')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'storage_role') \gexec
SELECT format('CREATE ROLE %I', :'vectors_role')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'vectors_role') \gexec
ALTER ROLE :"storage_role" WITH LOGIN NOCREATEDB NOCREATEROLE PASSWORD :'storage_password';
ALTER ROLE :"vectors_role" WITH LOGIN NOCREATEDB NOCREATEROLE PASSWORD :'vectors_password';

-- ---- the databases: each role may connect to its own only ----------------------------------

SELECT format('CREATE DATABASE %I', :'storage_database')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'storage_database') \gexec
SELECT format('CREATE DATABASE %I', :'vectors_database')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'vectors_database') \gexec

REVOKE ALL ON DATABASE :"storage_database" FROM PUBLIC;
REVOKE ALL ON DATABASE :"storage_database" FROM :"vectors_role";
GRANT CONNECT ON DATABASE :"storage_database" TO :"storage_role";

REVOKE ALL ON DATABASE :"vectors_database" FROM PUBLIC;
REVOKE ALL ON DATABASE :"vectors_database" FROM :"storage_role";
GRANT CONNECT ON DATABASE :"vectors_database" TO :"vectors_role";

-- ---- in each database: its role creates its tables in schema public, nobody else sees it ---

\connect :"storage_database"
REVOKE ALL ON SCHEMA public FROM PUBLIC;
REVOKE ALL ON SCHEMA public FROM :"vectors_role";
GRANT USAGE, CREATE ON SCHEMA public TO :"storage_role";

\connect :"vectors_database"
-- pgvector: created by the master user (the vectors role may not create extensions).
CREATE EXTENSION IF NOT EXISTS vector;
REVOKE ALL ON SCHEMA public FROM PUBLIC;
REVOKE ALL ON SCHEMA public FROM :"storage_role";
GRANT USAGE, CREATE ON SCHEMA public TO :"vectors_role";

\echo db-roles.sql: role :storage_role in database :storage_database, role :vectors_role in database :vectors_database
