"""`rag-assets` as people run it: a real process, DAGSTER_HOME on disk, the --json shapes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import lancedb
import pytest

from rag_assets.resources.vector_stores import table_name
from rag_assets_tests.conftest import free_port, make_pdf

CLI = [sys.executable, "-m", "rag_assets.frontends.cli"]


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CLI, *args], check=False, capture_output=True, text=True, env=env or os.environ.copy(), timeout=300
    )


def test_ingest_and_query_json_shapes_and_exit_codes(rag_env, tmp_path):
    inbox = tmp_path / "inbox"
    make_pdf(
        inbox / "acme" / "guide.pdf", ["Installing the rocket skates.", "Charging the rocket skates takes two hours."]
    )
    (inbox / "acme" / "empty.txt").write_text("")

    done = run_cli("ingest", str(inbox), "--json")

    assert done.returncode == 1, done.stderr  # a document failed
    report = json.loads(done.stdout)  # stdout holds exactly one JSON document
    assert set(report) == {"ingested", "unchanged", "failed", "chunks", "vectors", "embedding_calls"}
    assert report["ingested"] == ["acme/guide.pdf"]
    assert report["failed"] == [{"key": "acme/empty.txt", "reason": "empty file (0 bytes)"}]
    assert report["vectors"] == report["chunks"] == 2 and report["embedding_calls"] == 1

    (inbox / "acme" / "empty.txt").unlink()
    again = run_cli("ingest", str(inbox), "--json")
    assert again.returncode == 0
    assert json.loads(again.stdout)["unchanged"] == ["acme/guide.pdf"]

    found = run_cli("query", "how long does charging take", "--tenant", "acme", "-k", "2", "--json")
    assert found.returncode == 0, found.stderr
    hits = json.loads(found.stdout)
    assert [set(h) for h in hits] == [{"key", "tenant", "page", "score", "text"}] * 2
    assert (hits[0]["key"], hits[0]["page"], hits[0]["tenant"]) == ("acme/guide.pdf", 2, "acme")
    assert hits[0]["score"] >= hits[1]["score"]

    assert json.loads(run_cli("query", "charging", "--tenant", "globex", "--json").stdout) == []
    missing_tenant = run_cli("query", "charging")
    assert missing_tenant.returncode == 2 and "--tenant" in missing_tenant.stderr


def test_human_output_names_failures(rag_env, tmp_path):
    (tmp_path / "inbox" / "acme").mkdir(parents=True)
    (tmp_path / "inbox" / "acme" / "deck.key").write_bytes(b"PK\x03\x04")
    done = run_cli("ingest", str(tmp_path / "inbox"))
    assert done.returncode == 1
    assert "FAILED acme/deck.key: unsupported file type '.key'" in done.stdout


def test_a_killed_ingest_rerun_leaves_exactly_one_copy_of_each_chunk(rag_env, instance, tmp_path):
    inbox = tmp_path / "inbox"
    for n in range(12):
        make_pdf(
            inbox / "acme" / f"doc-{n:02}.pdf", [f"Document {n} page {p}: " + "lorem ipsum " * 40 for p in range(3)]
        )
    env = {**os.environ, "RAG_BATCH_SIZE": "3"}
    # The instance's SQLite storage exists before the child starts: two processes creating it
    # at the same moment race on its schema stamp.
    assert instance.get_runs() == []
    proc = subprocess.Popen([*CLI, "ingest", str(inbox)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        # Kill it (SIGKILL: no clean-up) once the first batch is in the index and more is under way.
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and proc.poll() is None:
            if len(instance.get_materialized_partitions(dg.AssetKey("vector_index"))) >= 3:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the ingest finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)

    killed = [r for r in instance.get_runs() if r.status == dg.DagsterRunStatus.STARTED]
    assert len(killed) == 1  # nobody told Dagster: the run holds its slot of the index writers' pool
    rerun = run_cli("ingest", str(inbox), "--json", env=env)
    assert rerun.returncode == 0, rerun.stderr  # (it would wait forever for the slot)
    assert instance.get_run_by_id(killed[0].run_id).status == dg.DagsterRunStatus.FAILURE
    report = json.loads(rerun.stdout)
    assert len(report["ingested"]) + len(report["unchanged"]) == 12 and report["unchanged"]

    rows = (
        lancedb.connect(rag_env.index_uri).open_table(table_name("local:all-MiniLM-L6-v2", 384)).to_arrow().to_pylist()
    )
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids))  # no chunk twice
    per_doc = {}
    for r in rows:
        per_doc.setdefault(r["document_key"], set()).add(r["ordinal"])
    assert len(per_doc) == 12
    assert all(ordinals == set(range(len(ordinals))) for ordinals in per_doc.values())
    assert Path(rag_env.index_uri).exists()


@pytest.mark.parametrize(
    "args, refusal",
    [
        (["query", "charging", "--tenant", ""], "argument --tenant: a tenant name is a non-empty string"),
        (
            ["query", "charging", "--tenant", "acme corp"],
            "argument --tenant: tenant 'acme corp' is not a valid tenant name",
        ),
        (
            ["query", "charging", "--tenant", "\x1b]0;pwned\x07"],
            "argument --tenant: tenant '\\x1b]0;pwned\\x07' is not",
        ),
        (["query", "charging", "--tenant", "acme", "-k", "0"], "argument -k: must be at least 1, not 0"),
        (["query", "charging", "--tenant", "acme", "-k", "-3"], "argument -k: must be at least 1, not -3"),
        (["ingest", "inbox", "--tenant", "../etc"], "argument --tenant: tenant '../etc' is not a valid tenant name"),
        (["ingest", "inbox", "--batch-size", "0"], "argument --batch-size: must be at least 1, not 0"),
    ],
)
def test_bad_arguments_are_refused_before_any_work(tmp_path, args, refusal):
    home = tmp_path / "dagster_home"
    done = run_cli(*args, env={**os.environ, "DAGSTER_HOME": str(home)})
    assert done.returncode == 2 and done.stdout == ""
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"rag-assets {args[0]}: error: {refusal}"), done.stderr
    assert "Traceback" not in done.stderr and "\x1b" not in done.stderr
    assert not home.exists()  # refused before the instance was touched


@pytest.mark.parametrize("kind", ["postgresql", "pinecone"])
def test_an_index_out_of_reach_is_one_line_naming_it(rag_env, kind):
    if kind == "postgresql":  # nothing listens there; the password is not shown
        uri, shown = f"postgresql://rag:s3cret@127.0.0.1:{free_port()}/rag", "postgresql://rag:***@127.0.0.1:"
    else:  # no PINECONE_API_KEY
        uri, shown = "pinecone://docs?namespace=v1", "pinecone://docs?namespace=v1"
    env = {k: v for k, v in os.environ.items() if k != "PINECONE_API_KEY"} | {"RAG_INDEX_URI": uri}
    done = run_cli("query", "charging", "--tenant", "acme", env=env)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith(f"rag-assets query: cannot reach the index at {shown}"), done.stderr
    assert "s3cret" not in done.stderr
    assert ("Connection refused" if kind == "postgresql" else "PINECONE_API_KEY") in done.stderr


TITLE, RED = "\x1b]0;pwned\x07", "\x1b[31m"  # retitles the terminal; turns what follows red


def test_keys_reasons_and_texts_from_outside_are_printed_escaped(rag_env, tmp_path):
    inbox = tmp_path / "inbox" / "acme"
    inbox.mkdir(parents=True)
    (inbox / f"empty{TITLE}.txt").write_text("")
    (inbox / f"{RED}rows.csv").write_text(f"id,{TITLE}note\n1,hello\n")  # no formatted_text column: its header is named
    (inbox / f"{RED}skates.txt").write_text(f"Charging the rocket skates {RED}takes two hours{TITLE}.")

    done = run_cli("ingest", str(tmp_path / "inbox"))
    assert done.returncode == 1, done.stderr
    assert "\x1b" not in done.stdout + done.stderr and "\x07" not in done.stdout + done.stderr
    assert "  FAILED acme/empty\\x1b]0;pwned\\x07.txt: empty file (0 bytes)" in done.stdout
    header = "columns: id, \\x1b]0;pwned\\x07note"
    assert f"  FAILED acme/\\x1b[31mrows.csv: CSV has no 'formatted_text' column ({header})" in done.stdout

    found = run_cli("query", "how long does charging take", "--tenant", "acme")
    assert found.returncode == 0, found.stderr
    assert "\x1b" not in found.stdout + found.stderr and "\x07" not in found.stdout
    assert " 1. " in found.stdout and "acme/\\x1b[31mskates.txt" in found.stdout

    as_json = run_cli("query", "how long does charging take", "--tenant", "acme", "--json")
    assert "\x1b" not in as_json.stdout  # json.dumps escapes it: \u001b
    assert json.loads(as_json.stdout)[0]["key"] == f"acme/{RED}skates.txt"
