"""Hostile input through the real command line and a real instance: links out of the source,
hostile nesting and names, a sidecar that claims the project's fields, tenants that break the
rule, a catchup date beside a folder document under the same key prefix. Each case shows the
batch's other documents written and the offending one failed by name (docs/architecture.md,
Tenancy; docs/guarantees.md, What is guaranteed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from rag_assets.lib.folders import NOT_FOLLOWED
from rag_assets.lib.keys import DocRef, encode_partition_key
from rag_assets.lib.parsing import MAX_CSV_LINE_CHARS
from rag_assets_tests.test_catchup import csv_source, partition_metadata, run_date, write_config, write_csv
from rag_assets_tests.test_documents_e2e import index_rows, latest_metadata
from rag_assets_tests.test_images import FERRY, text_image

CLI = [sys.executable, "-m", "rag_assets.frontends.cli"]


def cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CLI, *args], check=False, capture_output=True, text=True, env={**os.environ, **env}, timeout=600
    )


def ingest(*sources: Path, **env: str) -> tuple[int, dict]:
    done = cli("ingest", *map(str, sources), "--json", **env)
    assert done.stdout, done.stderr
    return done.returncode, json.loads(done.stdout)


def query(text: str, tenant: str, k: int = 10) -> list[dict]:
    done = cli("query", text, "--tenant", tenant, "-k", str(k), "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def unreadable(instance: dg.DagsterInstance, root: Path, key: str, tenant: str) -> dict | None:
    """The latest `unreadable` record raw_documents made of a document, if any."""
    partition = encode_partition_key(DocRef(tenant, str(root), key))
    records = instance.fetch_observations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("raw_documents"), asset_partitions=[partition]), limit=1
    ).records
    meta = {k: v.value for k, v in records[0].asset_observation.metadata.items()} if records else {}
    return meta if meta.get("status") == "unreadable" else None


def write(root: Path, files: dict[str, str | bytes]) -> Path:
    for key, body in files.items():
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        (root / key).write_bytes(body if isinstance(body, bytes) else body.encode())
    return root


def test_a_folder_source_never_follows_a_link(rag_env, instance, tmp_path):
    inbox = write(
        tmp_path / "inbox",
        {
            "globex/payroll.txt": "Globex payroll: the chief executive earns four million a year.",
            "globex/logo.png": text_image(["Globex"], size=(400, 200)),
            "evil/notes.txt": "Evil's own notes: buy more paperclips.",
            "evil/logo.png": text_image(["Evil corp"], size=(400, 200)),
        },
    )
    write(tmp_path / "outside", {"secret.txt": "A file outside the source: the vault code is 4711."})
    (inbox / "evil" / "steal.txt").symlink_to("../globex/payroll.txt")
    (inbox / "evil" / "env.txt").symlink_to("/proc/self/environ")
    (inbox / "evil" / "outside.txt").symlink_to(tmp_path / "outside" / "secret.txt")
    (inbox / "evil" / "linked").symlink_to("../globex", target_is_directory=True)
    # A link on the thumbnails' own way: evil's thumbnail would land in globex's folder.
    (inbox / ".rag-thumbnails").mkdir()
    (inbox / ".rag-thumbnails" / "evil").symlink_to("../globex", target_is_directory=True)
    globex_logo = (inbox / "globex" / "logo.png").read_bytes()

    code, report = ingest(inbox)

    assert code == 1
    reasons = {f["key"]: f["reason"] for f in report["failed"]}
    assert {k: reasons[k] for k in ("evil/steal.txt", "evil/env.txt", "evil/outside.txt")} == dict.fromkeys(
        ("evil/steal.txt", "evil/env.txt", "evil/outside.txt"), NOT_FOLLOWED
    )
    assert reasons["evil/logo.png"].startswith("its thumbnail could not be written (NotFollowed")
    assert set(reasons) == {
        "evil/steal.txt",
        "evil/env.txt",
        "evil/outside.txt",
        "evil/logo.png",
    }  # evil/linked/* never listed
    assert sorted(report["ingested"]) == ["evil/notes.txt", "globex/logo.png", "globex/payroll.txt"]
    for text in ("chief executive salary payroll", "vault code", "PATH HOME environment"):
        assert not [h for h in query(text, "evil") if h["key"] != "evil/notes.txt"], text
    assert (inbox / "globex" / "logo.png").read_bytes() == globex_logo and not (inbox / "globex" / "evil").exists()
    # A link is refused at its version, recorded like any unreadable document: not asked for again.
    assert unreadable(instance, inbox, "evil/steal.txt", "evil")["reason"] == NOT_FOLLOWED
    assert unreadable(instance, inbox, "evil/logo.png", "evil") is None  # a thumbnail's place may be fixed: asked again


def test_one_bad_document_fails_alone_across_tenants_and_is_recorded(rag_env, instance, tmp_path, monkeypatch):
    long_name = "globex/" + "n" * 250 + ".txt"  # 254 bytes: its sidecar's name would be too long for the file system
    deep = "[" * 100_000 + "]" * 100_000
    inbox = write(
        tmp_path / "inbox",
        {
            "acme/deep.json": deep,
            "acme/report.md": "Acme's quarterly report: sales of rocket skates doubled.",
            "acme/report.md.meta.json": '{"a": ' * 100_000 + "1" + "}" * 100_000,
            "acme/good.md": "Acme's canteen serves soup on Fridays.",
            long_name: "Globex's long-named memo: the car park closes at nine.",
            "globex/wide.csv": "formatted_text," + "c," * (MAX_CSV_LINE_CHARS // 2 + 1) + "\nhello,\n",
            "globex/good.txt": "Globex's badge reader at the north door is broken.",
        },
    )

    code, report = ingest(inbox)

    assert code == 1
    reasons = {f["key"]: f["reason"] for f in report["failed"]}
    assert reasons == {
        "acme/deep.json": "JSON nested too deeply to read (more levels than Python's recursion limit)",
        "acme/report.md": "its sidecar acme/report.md.meta.json is nested too deeply to read",
        "globex/wide.csv": f"line 1 is longer than {MAX_CSV_LINE_CHARS:,} characters (the limit of a CSV line)",
    }
    assert sorted(report["ingested"]) == sorted(["acme/good.md", "globex/good.txt", long_name])
    (run,) = instance.get_runs()  # the good ones were written in the same run, which then failed naming the bad
    assert run.is_failure
    for key, reason in reasons.items():
        assert unreadable(instance, inbox, key, key.split("/")[0])["reason"] == reason

    # The sensors leave them alone until they change: a listing pass asks for nothing.
    from rag_assets.defs.sync.sensors import build_listing_sensor
    from rag_assets_tests.test_sensors import ON, Harness

    monkeypatch.setenv("RAG_SOURCE_URI", str(inbox))
    assert Harness(instance, build_listing_sensor(ON)).tick(execute=False).run_requests == []


def test_a_sidecar_cannot_set_the_projects_own_fields(rag_env, instance, tmp_path):
    claims = {
        "thumbnail_key": "globex/secret.txt",
        "tenant": "globex",
        "document_id": "globex:s3://x/y",
        "department": "sales",
    }
    inbox = write(
        tmp_path / "inbox",
        {
            "acme/plan.md": "Acme's plan for next year: open a shop in Rotterdam.",
            "acme/plan.md.meta.json": json.dumps(claims),
            "acme/ferry.png": text_image(FERRY),
            "acme/ferry.png.meta.json": json.dumps({"thumbnail_key": "globex/secret.txt"}),
        },
    )
    code, report = ingest(inbox)
    assert code == 0 and sorted(report["ingested"]) == ["acme/ferry.png", "acme/plan.md"]

    (plan,) = [h for h in query("plan for next year Rotterdam shop", "acme", k=1)]
    assert plan["key"] == "acme/plan.md" and "thumbnail" not in plan
    (ferry,) = query("when does the last ferry leave", "acme", k=1)
    assert ferry["thumbnail"] == f"{inbox}/.rag-thumbnails/acme/acme/ferry.png"  # from its own key, not the sidecar's
    rows = {r["document_key"]: json.loads(r["metadata"]) for r in index_rows(rag_env)}
    assert rows["acme/plan.md"]["department"] == "sales"
    assert not {"thumbnail_key", "tenant", "document_id"} & set(rows["acme/plan.md"])
    assert rows["acme/ferry.png"]["thumbnail_key"] == ".rag-thumbnails/acme/acme/ferry.png"
    record = latest_metadata(instance, "vector_index", encode_partition_key(DocRef("acme", str(inbox), "acme/plan.md")))
    assert record["sidecar_fields"] == ["department"] and record["sidecar_fields_refused"] == [
        "document_id",
        "tenant",
        "thumbnail_key",
    ]


def test_tenants_that_break_the_rule_are_refused_by_name(rag_env, instance, tmp_path, monkeypatch):
    bad = ["-dash", "ünïcode", "a..b", "t" * 129]
    inbox = write(tmp_path / "inbox", {"acme/ok.txt": "A good document.", **{f"{t}/x.txt": "A document." for t in bad}})

    code, report = ingest(inbox)
    assert code == 1 and report["ingested"] == ["acme/ok.txt"]
    assert sorted(f["key"] for f in report["failed"]) == sorted(f"{t}/x.txt" for t in bad)
    assert all("is not a valid tenant name" in f["reason"] for f in report["failed"])

    # `--tenant` is refused before any work.
    refused = cli("ingest", str(inbox / "acme"), "--tenant", "../out")
    assert refused.returncode == 2 and "../out" in refused.stderr and "Traceback" not in refused.stderr

    # A catchup record whose tenant breaks the rule is skipped and counted.
    write_csv(
        tmp_path / "tickets" / "2025-01-01.csv",
        [
            {"id": "t1", "tenant": "acme", "formatted_text": "The rocket skates ignite when it rains."},
            {"id": "t2", "tenant": "../globex", "formatted_text": "A record of no valid tenant."},
            {"id": "t3", "tenant": "globex\x1b]0;x\x07", "formatted_text": "Another."},
        ],
    )
    source = {**csv_source("tickets/{date}.csv"), "tenant": None, "tenant_column": "tenant"}
    monkeypatch.setenv("RAG_CATCHUP_CONFIG", str(write_config(tmp_path / "c.yaml", {"tickets": source})))
    run_date(instance, "tickets", "2025-01-01")
    meta = partition_metadata(instance, "tickets_records", "2025-01-01")
    assert (meta["records"], meta["skipped_bad_tenant"]) == (1, 2)


def test_a_catchup_date_keeps_a_folder_document_under_the_same_key_prefix(rag_env, instance, tmp_path, monkeypatch):
    inbox = write(
        tmp_path / "inbox", {"exports/2025-01-02/report.txt": "A folder document whose key looks like an export's."}
    )
    assert ingest(inbox)[1]["ingested"] == ["exports/2025-01-02/report.txt"]
    day = tmp_path / "exports" / "2025-01-02.csv"
    write_csv(day, [{"id": f"p{n}", "formatted_text": f"Product {n}: a kettle that whistles."} for n in range(3)])
    monkeypatch.setenv(
        "RAG_CATCHUP_CONFIG", str(write_config(tmp_path / "c.yaml", {"exports": csv_source("exports/{date}.csv")}))
    )

    run_date(instance, "exports", "2025-01-02")
    write_csv(day, [{"id": "p0", "formatted_text": "Product 0: a kettle that whistles."}])  # p1 and p2 leave the date
    run_date(instance, "exports", "2025-01-02")

    assert partition_metadata(instance, "exports_vector_index", "2025-01-02")["rows_deleted"] == 2
    keys = sorted(r["document_key"] for r in index_rows(rag_env))
    assert keys == ["exports/2025-01-02/p0", "exports/2025-01-02/report.txt"]


@pytest.mark.slow
def test_an_image_is_read_within_the_time_limit_like_any_document(rag_env, instance, tmp_path):
    inbox = write(
        tmp_path / "inbox", {"acme/ferry.png": text_image(FERRY), "acme/note.txt": "A note that still reads."}
    )
    code, report = ingest(inbox, RAG_MAX_SECONDS_PER_DOCUMENT="0.2")
    assert code == 1 and report["ingested"] == ["acme/note.txt"]
    assert report["failed"] == [
        {"key": "acme/ferry.png", "reason": "took more than 0.2 s to read (RAG_MAX_SECONDS_PER_DOCUMENT)"}
    ]
