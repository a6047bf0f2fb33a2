#!/usr/bin/env bash
# Install the PostgreSQL 15 server and the pgvector extension on Debian bookworm.
#
# Debian bookworm ships no pgvector package, so the extension is built from
# Debian's own source package (trixie, deb-src only: no binary comes from
# trixie). Idempotent: exits at once when PG15 and pgvector are already there.
# Must run as root (it uses apt-get). Noisy output goes to $LOG.
set -euo pipefail

PG_MAJOR=15
PG_BIN="/usr/lib/postgresql/${PG_MAJOR}/bin"
PG_CONFIG="${PG_BIN}/pg_config"
SRC_SUITE=trixie
SRC_LIST=/etc/apt/sources.list.d/pgvector-src.sources
LOG=/tmp/install-postgres.log

step() { printf '[install-postgres] %s\n' "$*"; }

is_installed() {
    [[ -x "${PG_BIN}/initdb" && -x "${PG_CONFIG}" ]] || return 1
    [[ -f "$("${PG_CONFIG}" --sharedir)/extension/vector.control" ]] || return 1
    [[ -f "$("${PG_CONFIG}" --pkglibdir)/vector.so" ]]
}

if is_installed; then
    step "PostgreSQL ${PG_MAJOR} and pgvector already installed; nothing to do"
    exit 0
fi

if [[ ${EUID} -ne 0 ]]; then
    step "must run as root (apt-get install)" >&2
    exit 1
fi

: >"${LOG}"
on_error() {
    step "FAILED; last lines of ${LOG}:" >&2
    tail -n 40 "${LOG}" >&2
}
trap on_error ERR
start=${SECONDS}
export DEBIAN_FRONTEND=noninteractive

step "adding deb-src for ${SRC_SUITE} (pgvector source only)"
cat >"${SRC_LIST}" <<SOURCES
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: ${SRC_SUITE}
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES

step "apt-get update"
apt-get update >>"${LOG}" 2>&1

step "installing postgresql-${PG_MAJOR}, postgresql-server-dev-${PG_MAJOR}, build tools"
apt-get install -y --no-install-recommends \
    "postgresql-${PG_MAJOR}" "postgresql-server-dev-${PG_MAJOR}" \
    build-essential dpkg-dev ca-certificates >>"${LOG}" 2>&1

build_dir=$(mktemp -d /tmp/pgvector-build.XXXXXX)
trap 'rm -rf "${build_dir}"' EXIT

step "fetching Debian source package pgvector/${SRC_SUITE}"
(cd "${build_dir}" && apt-get source -y "pgvector/${SRC_SUITE}") >>"${LOG}" 2>&1
src_dir=$(find "${build_dir}" -mindepth 1 -maxdepth 1 -type d -name 'pgvector-*' | head -n 1)
[[ -n "${src_dir}" ]] || { echo "no pgvector source dir in ${build_dir}" >>"${LOG}"; false; }

# OPTFLAGS="" drops -march=native, as Debian's own build does.
step "building and installing $(basename "${src_dir}") for PostgreSQL ${PG_MAJOR}"
make -C "${src_dir}" -j"$(nproc)" PG_CONFIG="${PG_CONFIG}" OPTFLAGS="" >>"${LOG}" 2>&1
make -C "${src_dir}" install PG_CONFIG="${PG_CONFIG}" OPTFLAGS="" >>"${LOG}" 2>&1

is_installed || { echo "vector.control / vector.so missing after install" >>"${LOG}"; false; }
step "done in $((SECONDS - start))s"
