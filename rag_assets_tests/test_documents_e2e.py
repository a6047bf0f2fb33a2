"""The document asset graph end to end: a real Dagster instance (SQLite in DAGSTER_HOME),
LanceDB on disk, the local all-MiniLM-L6-v2 model, folders and a moto S3 server."""

from __future__ import annotations

import re
from pathlib import Path

import dagster as dg
import lancedb
import pytest

from rag_assets.definitions import build_definitions
from rag_assets.defs.resources import build_resources
from rag_assets.ingest import discover, ingest
from rag_assets.lib.keys import DocRef, encode_partition_key
from rag_assets.resources.object_store import ObjectStore
from rag_assets.resources.vector_stores import table_name
from rag_assets_tests.conftest import make_pdf

HANDBOOK = [
    "Welcome to Acme. Working hours are flexible between seven and seven. Core hours are ten to three.",
    "Vacation policy. Every employee gets twenty five days of paid vacation per year plus public holidays.",
    "Expenses. Meals on business trips are reimbursed up to sixty euros per day with receipts.",
]
LINEAGE_KEYS = {
    "content_hash",
    "source_etag",
    "pages",
    "chunks",
    "tokens",
    "embedding_calls",
    "model",
    "vectors_written",
}


def corpus(root: Path) -> Path:
    make_pdf(root / "acme" / "handbook.pdf", HANDBOOK)
    (root / "acme" / "faq.md").write_text("# FAQ\nThe office is at 12 Harbour Street in Rotterdam.\n")
    (root / "acme" / "products.csv").write_text(
        "id,formatted_text\np1,<b>Rocket Skates</b>: jet powered roller skates\np2,Giant Magnet &amp; stand\n"
    )
    (root / "acme" / "products.meta.json").write_text('{"owner": "sales", "source": "catalogue"}')
    (root / "globex").mkdir()
    (root / "globex" / "security.txt").write_text("Report a stolen laptop to the security team within one hour.\n")
    return root


def run_ingest(settings, instance, *sources, tenant=None, batch_size=50):
    refs, unfound = discover([str(s) for s in sources], ObjectStore(), tenant, settings.tenant_from_key)
    assert not unfound
    return ingest(refs, defs=build_definitions(settings), instance=instance, batch_size=batch_size)


def index_rows(settings, dimension=384) -> list[dict]:
    db = lancedb.connect(settings.index_uri)
    return db.open_table(table_name("local:all-MiniLM-L6-v2", dimension)).to_arrow().to_pylist()


def table_version(settings) -> int:
    return lancedb.connect(settings.index_uri).open_table(table_name("local:all-MiniLM-L6-v2", 384)).version


def query(settings, text, tenant, k=3):
    resources = build_resources(settings)
    embedder, store = resources["embedder"], resources["vector_store"]
    return store.query(embedder.model_id, embedder.dimension, embedder.embed([text])[0], tenant=tenant, k=k)


def latest_metadata(instance, asset: str, partition: str) -> dict:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[partition]), limit=1
    ).records
    assert records, f"{asset}[{partition}] not materialized"
    return {k: v.value for k, v in records[0].asset_materialization.metadata.items()}


def test_ingest_records_lineage_and_answers_queries(rag_env, instance, tmp_path):
    root = corpus(tmp_path / "inbox")
    report = run_ingest(rag_env, instance, root)

    assert sorted(report.ingested) == ["acme/faq.md", "acme/handbook.pdf", "acme/products.csv", "globex/security.txt"]
    assert report.failed == [] and report.unchanged == []
    assert report.vectors == report.chunks > 0 and report.embedding_calls >= 1

    handbook = encode_partition_key(DocRef("acme", str(root), "acme/handbook.pdf"))
    meta = latest_metadata(instance, "vector_index", handbook)
    assert LINEAGE_KEYS <= set(meta)
    assert meta["pages"] == 3 and meta["model"] == "local:all-MiniLM-L6-v2" and meta["status"] == "ingested"
    assert meta["vectors_written"] == meta["chunks"] >= 3
    assert len(meta["content_hash"]) == 64 and meta["kind"] == "pdf"
    assert meta["embedded"] == meta["chunks"] and meta["cache_hits"] == 0
    embedded = latest_metadata(instance, "embeddings", handbook)
    assert embedded["embed_runtime"] in ("torch-float32", "torch-bfloat16")  # auto: float32 here (no bf16 instructions)
    raw = latest_metadata(instance, "raw_documents", handbook)  # the batch's figures
    assert raw["batch_documents"] == 4 and raw["batch_pages"] == 3

    # The asset check read the index back and found exactly each document's chunks.
    checks = [
        r.event_log_entry.dagster_event.asset_check_evaluation_data
        for run_id in report.runs
        for r in instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
    ]
    assert checks and all(c.passed for c in checks)

    rows = index_rows(rag_env)
    assert len(rows) == report.chunks
    csv_rows = [r for r in rows if r["document_key"] == "acme/products.csv"]
    assert {r["row"] for r in csv_rows} == {1, 2}
    assert all('"owner": "sales"' in r["metadata"] for r in csv_rows)  # sidecar fields on every row
    assert "<b>" not in csv_rows[0]["text"] and "&amp;" not in " ".join(r["text"] for r in csv_rows)
    assert {r["tenant"] for r in rows} == {"acme", "globex"}

    hits = query(rag_env, "how many days of paid vacation", "acme")
    assert (hits[0].key, hits[0].page) == ("acme/handbook.pdf", 2)
    assert all(h.tenant == "acme" for h in query(rag_env, "stolen laptop security team", "acme", k=10))
    assert query(rag_env, "stolen laptop security team", "globex")[0].key == "globex/security.txt"


def test_same_bytes_again_embed_nothing_and_write_nothing(rag_env, instance, tmp_path):
    root = corpus(tmp_path / "inbox")
    first = run_ingest(rag_env, instance, root)
    version = table_version(rag_env)

    again = run_ingest(rag_env, instance, root)

    assert again.ingested == [] and sorted(again.unchanged) == sorted(first.ingested)
    assert again.vectors == 0 and again.embedding_calls == 0 and again.chunks == first.chunks
    assert again.runs == []  # the index listing decided: no run at all
    assert table_version(rag_env) == version  # not even an empty commit
    assert len(index_rows(rag_env)) == first.chunks


def test_a_new_instance_over_a_full_index_runs_for_the_lineage(rag_env, instance, tmp_path):
    """The index holds every document, but this Dagster instance has no record of them: they
    run (and are found unchanged), so the instance gets their lineage."""
    root = corpus(tmp_path / "inbox")
    first = run_ingest(rag_env, instance, root)
    version = table_version(rag_env)
    with dg.DagsterInstance.ephemeral() as other:
        again = run_ingest(rag_env, other, root)
        assert len(again.runs) == 1 and sorted(again.unchanged) == sorted(first.ingested)
        assert other.get_materialized_partitions(dg.AssetKey("vector_index")) == {
            encode_partition_key(DocRef(k.split("/")[0], str(root), k)) for k in first.ingested
        }
    assert table_version(rag_env) == version


def test_changed_document_reembeds_only_its_changed_chunks(rag_env, instance, tmp_path):
    root = corpus(tmp_path / "inbox")
    run_ingest(rag_env, instance, root)
    key = encode_partition_key(DocRef("acme", str(root), "acme/handbook.pdf"))
    before = latest_metadata(instance, "vector_index", key)

    make_pdf(root / "acme" / "handbook.pdf", HANDBOOK[:2] + ["Expenses. Meals are now reimbursed up to eighty euros."])
    report = run_ingest(rag_env, instance, root)

    assert report.ingested == ["acme/handbook.pdf"]
    assert sorted(report.unchanged) == ["acme/faq.md", "acme/products.csv", "globex/security.txt"]
    (run,) = report.runs  # the edited document alone
    assert instance.get_run_by_id(run).tags["dagster/asset_partition_range_start"] == key
    assert instance.get_run_by_id(run).tags["dagster/asset_partition_range_end"] == key
    rows = [r for r in index_rows(rag_env) if r["document_key"] == "acme/handbook.pdf"]
    after = latest_metadata(instance, "vector_index", key)
    assert 1 <= after["embedded"] < after["chunks"] and after["cache_hits"] >= 2  # pages 1-2 from the cache
    assert after["content_hash"] != before["content_hash"]
    assert {r["content_hash"] for r in rows} == {after["content_hash"]} and len(rows) == after["chunks"]
    assert "eighty euros" in query(rag_env, "meal reimbursement per day", "acme")[0].text


BAD_FILES = {
    "acme/locked.pdf": (None, r"encrypted PDF"),
    "acme/broken.pdf": (b"%PDF-1.4\n1 0 obj <</Type /Catalog>> garbage", r"corrupt PDF|PDF has no text"),
    "acme/empty.txt": (b"", r"empty file"),
    "acme/slides.docx": (b"PK\x03\x04 not really", r"corrupt: not a readable Office file"),
    "acme/slides.odp": (b"PK\x03\x04 not really", r"unsupported file type '\.odp'"),
    "acme/image.txt": (
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 8,
        r"not text: not UTF-8 \(byte 0x89 at offset 0\)",
    ),
    "acme/export.csv": (b"id,body\n1,hello\n", r"CSV has no 'formatted_text' column \(columns: id, body\)"),
}


def write_bad_files(root: Path) -> None:
    from reportlab.pdfgen import canvas

    for key, (data, _) in BAD_FILES.items():
        path = root / key
        if data is None:
            c = canvas.Canvas(str(path), encrypt="secret")
            c.drawString(50, 800, "top secret")
            c.showPage()
            c.save()
        else:
            path.write_bytes(data)


def test_bad_input_fails_its_own_partition_and_leaves_the_rest(rag_env, instance, tmp_path):
    root = corpus(tmp_path / "inbox")
    first = run_ingest(rag_env, instance, root)
    version, rows_before = table_version(rag_env), index_rows(rag_env)

    write_bad_files(root)
    (root / "acme" / "late.md").write_text("A good document that arrived with the bad ones.\n")
    report = run_ingest(rag_env, instance, root, batch_size=4)

    reasons = {f["key"]: f["reason"] for f in report.failed}
    assert set(reasons) == set(BAD_FILES)
    for key, (_, pattern) in BAD_FILES.items():
        assert re.search(pattern, reasons[key]), (key, reasons[key])
    assert report.ingested == ["acme/late.md"]
    assert sorted(report.unchanged) == sorted(first.ingested)
    rows_after = index_rows(rag_env)
    assert {r["id"] for r in rows_before} < {r["id"] for r in rows_after}
    assert {r["document_key"] for r in rows_after} == {*first.ingested, "acme/late.md"}
    # Only the good new document was written: one write, then the keyword index's optimize()
    # (its unindexed rows are more than a tenth of this small table's indexed ones: D31).
    assert table_version(rag_env) == version + 2

    # In Dagster: one run per batch of 4, none again without the bad ones. Each run writes what
    # it can read, records each bad document in its partition's record with the reason, then
    # fails naming them (a ranged run cannot fail one partition: dagster-io/dagster#17836).
    assert len(report.runs) == 2 and all(instance.get_run_by_id(r).is_failure for r in report.runs)
    for key, (_, pattern) in BAD_FILES.items():
        record = latest_metadata(instance, "vector_index", encode_partition_key(DocRef("acme", str(root), key)))
        assert record["status"] == "unreadable" and re.search(pattern, record["reason"]), (key, record)
    logged = " ".join(
        e.dagster_event.step_failure_data.user_failure_data.description
        for run in report.runs
        for e in instance.all_logs(run, of_type=dg.DagsterEventType.STEP_FAILURE)
    )
    assert all(key in logged for key in BAD_FILES) and "the others were written" in logged


def test_a_document_deleted_after_it_was_asked_for_is_no_failure(rag_env, instance, tmp_path):
    from rag_assets.ingest import materialize_documents
    from rag_assets.partitions import register_roots

    root = corpus(tmp_path / "inbox")
    refs = [DocRef("acme", str(root), key) for key in ("acme/faq.md", "acme/handbook.pdf")]
    register_roots(instance, [str(root)])
    (root / "acme" / "faq.md").unlink()  # between the request and the run
    done, failed, _ = materialize_documents(
        [encode_partition_key(r) for r in refs], defs=build_definitions(rag_env), instance=instance, batch_size=10
    )
    assert failed == []
    assert {done[encode_partition_key(r)]["status"] for r in refs} == {"superseded: deleted", "ingested"}
    assert {r["document_key"] for r in index_rows(rag_env)} == {"acme/handbook.pdf"}


def test_text_in_other_encodings_is_read(rag_env, instance, tmp_path):
    (tmp_path / "inbox" / "acme").mkdir(parents=True)
    (tmp_path / "inbox" / "acme" / "menu.txt").write_bytes(
        "Café crème brûlée, naïve façade; São Paulo’s best.".encode("cp1252")
    )
    (tmp_path / "inbox" / "acme" / "prices.csv").write_bytes(
        "id,formatted_text\n1,Crème brûlée costs 5 €\n".encode("cp1252")
    )
    report = run_ingest(rag_env, instance, tmp_path / "inbox")
    assert sorted(report.ingested) == ["acme/menu.txt", "acme/prices.csv"] and report.failed == []
    texts = {r["document_key"]: r["text"] for r in index_rows(rag_env)}
    assert texts["acme/menu.txt"] == "Café crème brûlée, naïve façade; São Paulo’s best."
    assert texts["acme/prices.csv"] == "Crème brûlée costs 5 €"


def test_tenants_are_isolated(rag_env, instance, tmp_path):
    for tenant in ("acme", "globex"):
        make_pdf(tmp_path / "inbox" / tenant / "same.pdf", HANDBOOK)
    report = run_ingest(rag_env, instance, tmp_path / "inbox")
    assert sorted(report.ingested) == ["acme/same.pdf", "globex/same.pdf"]

    hashes = {r["tenant"]: r["content_hash"] for r in index_rows(rag_env)}
    assert hashes["acme"] != hashes["globex"]  # sha256 over tenant + bytes
    for tenant in ("acme", "globex"):
        hits = query(rag_env, "vacation days", tenant, k=50)
        assert hits and {h.tenant for h in hits} == {tenant}
    with pytest.raises(ValueError, match="must name a tenant"):
        query(rag_env, "vacation days", "")


def test_tenant_flag_for_a_local_folder(rag_env, instance, tmp_path):
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "note.txt").write_text("Initech moved its office to Austin.\n")
    report = run_ingest(rag_env, instance, tmp_path / "flat", tenant="initech")
    assert report.ingested == ["note.txt"]
    assert query(rag_env, "where is the office", "initech")[0].key == "note.txt"


def test_s3_source_through_a_moto_server(rag_env, instance, s3_env, tmp_path):
    s3 = s3_env
    s3.create_bucket(Bucket="docs")
    root = corpus(tmp_path / "inbox")
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        s3.upload_file(str(path), "docs", path.relative_to(root).as_posix())
    etag = s3.head_object(Bucket="docs", Key="acme/handbook.pdf")["ETag"].strip('"')

    report = run_ingest(rag_env, instance, "s3://docs/acme/")

    assert sorted(report.ingested) == ["acme/faq.md", "acme/handbook.pdf", "acme/products.csv"]
    meta = latest_metadata(
        instance, "vector_index", encode_partition_key(DocRef("acme", "s3://docs", "acme/handbook.pdf"))
    )
    assert meta["source_etag"] == etag
    hit = query(rag_env, "paid vacation per year", "acme")[0]
    assert (hit.key, hit.page) == ("acme/handbook.pdf", 2)


def test_definitions_load_with_the_asset_graph_jobs_and_sensors():
    defs = build_definitions()
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    catchup = {
        f"{name}_{step}"
        for name in ("exports", "tickets")
        for step in ("records", "chunks", "embeddings", "vector_index")
    }
    assert keys == {
        "raw_documents",
        "chunks",
        "embeddings",
        "vector_index",
        "index_reconciliation",
        *catchup,
    }  # catchup.yaml's
    for job in ("ingest_documents", "purge_documents", "record_reconciliation", "exports_catchup", "tickets_catchup"):
        assert defs.resolve_job_def(job) is not None
    assert {s.name for s in defs.sensors} == {"s3_event_sensor", "listing_sensor", "notifications"}
    for asset in (
        "raw_documents",
        "chunks",
        "embeddings",
        "vector_index",
    ):  # a UI backfill: ranged runs of RAG_BATCH_SIZE
        assert defs.resolve_assets_def(asset).backfill_policy == dg.BackfillPolicy.multi_run(50)
    graph = defs.resolve_asset_graph()
    assert graph.get(dg.AssetKey("vector_index")).parent_keys == {
        dg.AssetKey("raw_documents"),
        dg.AssetKey("chunks"),
        dg.AssetKey("embeddings"),
    }
