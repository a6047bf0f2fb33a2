"""Catchup sources: the catchup file, records as documents, and each kind of source end to
end through a real Dagster instance: CSV exports on disk and in moto S3, a Metabase question
(a local Metabase-compatible server), and a source with its own Pinecone namespace and OpenAI
embedder (the real clients against the local fakes)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import dagster as dg
import lancedb
import pytest

from rag_assets.definitions import build_definitions
from rag_assets.defs.resources import build_resources
from rag_assets.lib.catchup import CatchupConfigError, CatchupSource, RecordCounts, load_catchup_config, record_parts
from rag_assets.resources.vector_stores import table_name
from rag_assets.settings import Settings
from rag_assets_tests.fakes.metabase_server import FakeMetabaseServer
from rag_assets_tests.fakes.openai_server import FakeOpenAIServer
from rag_assets_tests.fakes.pinecone_server import FakePineconeServer

REPO = Path(__file__).resolve().parents[1]


def write_config(path: Path, sources: dict) -> Path:
    path.write_text(json.dumps({"sources": sources}))  # JSON is YAML
    return path


def csv_source(uri: str, **extra) -> dict:
    return {"kind": "csv", "uri": uri, "start_date": "2025-01-01", "id_column": "id", "tenant": "acme", **extra}


# --- the catchup file ------------------------------------------------------------------------------


def test_the_shipped_example_loads_and_reads_the_samples():
    sources = load_catchup_config(REPO / "catchup.yaml")
    assert set(sources) == {"exports", "tickets"}
    assert Path(sources["exports"].location("2025-01-02")).is_file()
    assert sources["tickets"].tenant_column == "tenant" and sources["exports"].tenant == "acme"
    defs = build_definitions(Settings.from_env({"RAG_CATCHUP_CONFIG": str(REPO / "catchup.yaml")}))
    dates = defs.resolve_assets_def("exports_vector_index").partitions_def.get_partition_keys()
    assert dates == ["2025-01-01", "2025-01-02", "2025-01-03"]  # start_date to end_date, both included
    assert {s.name: s.default_status for s in defs.schedules if s.name.endswith("_daily")} == {
        "exports_daily": dg.DefaultScheduleStatus.STOPPED,
        "tickets_daily": dg.DefaultScheduleStatus.STOPPED,
    }


@pytest.mark.parametrize(
    "source, message",
    [
        ({"tenant_column": "t"}, "exactly one of `tenant`"),
        ({"tenant": None}, "exactly one of `tenant`"),
        ({"kind": "metabase", "uri": None}, "needs `question_id`"),
        ({"uri": None}, "needs `uri`"),
        ({"end_date": "2024-12-31"}, "before `start_date`"),
        ({"namespace": "v2"}, "for a Pinecone `index_uri`"),
        ({"chunk_rows": 0}, "chunk_rows: Value error, must be at least 1"),
        ({"colour": "red"}, "colour: Extra inputs are not permitted"),
        ({"start_date": "yesterday"}, "start_date"),
    ],
)
def test_a_bad_source_is_refused_naming_the_file_and_the_problem(tmp_path, source, message):
    path = write_config(tmp_path / "catchup.yaml", {"orders": {**csv_source("x/{date}.csv"), **source}})
    with pytest.raises(CatchupConfigError, match=str(path)) as e:
        load_catchup_config(path)
    assert message in str(e.value)


@pytest.mark.parametrize("name", ["Orders", "2024", "with-dash", "a" * 42])
def test_source_names_make_asset_names(tmp_path, name):
    with pytest.raises(CatchupConfigError, match="lower-case letters"):
        load_catchup_config(write_config(tmp_path / "c.yaml", {name: csv_source("x.csv")}))


def test_paths_are_relative_to_the_file_and_a_missing_file_has_no_sources(tmp_path):
    sources = load_catchup_config(write_config(tmp_path / "c.yaml", {"a": csv_source("in/{date}.csv")}))
    assert sources["a"].location("2025-01-02") == str(tmp_path / "in" / "2025-01-02.csv")
    assert load_catchup_config(tmp_path / "none.yaml") == {}


@pytest.mark.parametrize(
    "index_uri, namespace, expected",
    [
        ("pinecone://idx", "v2", "pinecone://idx?namespace=v2"),
        ("pinecone://idx?namespace=old&host=h", "v2", "pinecone://idx?host=h&namespace=v2"),
        (None, None, "./default"),
    ],
)
def test_a_source_may_have_its_own_index_and_namespace(index_uri, namespace, expected):
    source = CatchupSource.model_validate({**csv_source("x.csv"), "index_uri": index_uri, "namespace": namespace})
    assert source.store_uri("./default") == expected


# --- records ------------------------------------------------------------------------------------


def test_rows_become_records_in_parts_and_what_is_skipped_is_counted():
    source = CatchupSource.model_validate(
        {**csv_source("x.csv"), "tenant": None, "tenant_column": "t", "chunk_rows": 2, "metadata_columns": ["p"]}
    )
    rows = [
        {"id": "1", "t": "acme", "formatted_text": "<b>One</b> &amp; only", "p": "high"},
        {"id": "2", "t": "globex", "formatted_text": "Two"},
        {"id": "", "t": "acme", "formatted_text": "no id"},
        {"id": "3", "t": "", "formatted_text": "no tenant"},
        {"id": "4", "t": "acme", "formatted_text": "   "},
        {"id": "5", "t": "acme", "formatted_text": "Five"},
        {"id": "5", "t": "acme", "formatted_text": "Five, again"},  # the later row of an id wins
    ]
    counts = RecordCounts()
    parts = list(record_parts("orders", source, "2025-01-01", rows, counts))
    assert [[d.ref.key for d in p] for p in parts] == [["1", "2"], ["5"]]
    assert (counts.rows, counts.records, counts.no_id, counts.no_tenant, counts.no_text, counts.duplicates) == (
        7,
        3,
        1,
        1,
        1,
        1,
    )
    first = parts[0][0]
    assert first.ref.document_id == "acme:catchup://orders/1" and first.document_key == "orders/2025-01-01/1"
    assert first.parsed.units[0].text == "One & only"
    assert first.parsed.units[0].metadata == {"p": "high", "record_id": "1", "date": "2025-01-01", "source": "orders"}
    assert parts[1][0].parsed.units[0].text == "Five, again"


def test_a_record_keeps_its_id_across_dates_and_its_etag_changes_with_content_or_date():
    source = CatchupSource.model_validate(csv_source("x.csv"))

    def doc(date, text):
        return next(record_parts("o", source, date, [{"id": "7", "formatted_text": text}], RecordCounts()))[0]

    a, b, c = doc("2025-01-01", "text"), doc("2025-01-02", "text"), doc("2025-01-01", "other text")
    assert a.ref.document_id == b.ref.document_id == c.ref.document_id
    assert len({a.etag, b.etag, c.etag}) == 3 and a.etag == doc("2025-01-01", "text").etag


# --- end to end ----------------------------------------------------------------------------------


def run_date(instance, name: str, date: str, raise_on_error: bool = True):
    defs = build_definitions(Settings.from_env())
    return defs.resolve_job_def(f"{name}_catchup").execute_in_process(
        instance=instance, partition_key=date, raise_on_error=raise_on_error
    )


def partition_metadata(instance, asset: str, date: str) -> dict:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[date]), limit=1
    ).records
    return {k: v.value for k, v in records[0].asset_materialization.metadata.items()}


def index_rows(settings, model="local:all-MiniLM-L6-v2", dimension=384) -> list[dict]:
    return lancedb.connect(settings.index_uri).open_table(table_name(model, dimension)).to_arrow().to_pylist()


def search(text: str, tenant: str, k: int = 10):
    resources = build_resources(Settings.from_env())
    embedder, store = resources["embedder"], resources["vector_store"]
    return store.query(embedder.model_id, embedder.dimension, embedder.embed([text])[0], tenant=tenant, k=k)


def write_csv(path: Path, rows: list[dict]) -> None:
    import csv

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="cp1252") as f:  # not UTF-8: the export's own encoding is detected
        writer = csv.DictWriter(f, fieldnames=sorted({k for r in rows for k in r}))
        writer.writeheader()
        writer.writerows(rows)


def test_a_date_is_replaced_not_appended(rag_env, instance, tmp_path, monkeypatch):
    day = tmp_path / "exports" / "2025-01-01.csv"
    write_csv(
        day, [{"id": f"p{n}", "formatted_text": f"Product {n}: a crème brûlée maker, model {n}."} for n in range(5)]
    )
    config = write_config(
        tmp_path / "c.yaml", {"exports": csv_source("exports/{date}.csv", chunk_rows=2, parallel_chunks=2)}
    )
    monkeypatch.setenv("RAG_CATCHUP_CONFIG", str(config))

    first = run_date(instance, "exports", "2025-01-01")
    assert partition_metadata(instance, "exports_records", "2025-01-01")["records"] == 5
    meta = partition_metadata(instance, "exports_vector_index", "2025-01-01")
    assert (meta["records"], meta["records_written"], meta["rows_deleted"]) == (5, 5, 0)
    rows = index_rows(rag_env)
    assert sorted(r["document_key"] for r in rows) == [f"exports/2025-01-01/p{n}" for n in range(5)]
    assert "crème brûlée" in rows[0]["text"]
    version = lancedb.connect(rag_env.index_uri).open_table(table_name("local:all-MiniLM-L6-v2", 384)).version

    again = run_date(instance, "exports", "2025-01-01")  # nothing changed: nothing embedded, nothing written
    meta = partition_metadata(instance, "exports_vector_index", "2025-01-01")
    assert (meta["records"], meta["records_written"], meta["records_unchanged"]) == (5, 0, 5)
    embeddings = [m for m in again.asset_materializations_for_node("exports_embeddings")]
    assert embeddings[0].metadata["batch_embedding_calls"].value == 0
    assert lancedb.connect(rag_env.index_uri).open_table(table_name("local:all-MiniLM-L6-v2", 384)).version == version

    # p1 is gone from the day's result and p2 changed: p1's rows go, p2's are rewritten.
    write_csv(
        day,
        [
            {
                "id": f"p{n}",
                "formatted_text": f"Product {n}: {'a new text' if n == 2 else f'a crème brûlée maker, model {n}.'}",
            }
            for n in (0, 2, 3, 4)
        ],
    )
    run_date(instance, "exports", "2025-01-01")
    meta = partition_metadata(instance, "exports_vector_index", "2025-01-01")
    assert (meta["records"], meta["records_written"], meta["rows_deleted"]) == (4, 1, 1)
    texts = {r["document_key"]: r["text"] for r in index_rows(rag_env)}
    assert (
        set(texts) == {f"exports/2025-01-01/p{n}" for n in (0, 2, 3, 4)}
        and texts["exports/2025-01-01/p2"] == "Product 2: a new text"
    )
    assert first.success


def test_tenants_from_a_column_and_skipped_rows_counted(rag_env, instance, tmp_path, monkeypatch):
    write_csv(
        tmp_path / "tickets" / "2025-01-01.csv",
        [
            {"id": "t1", "tenant": "acme", "formatted_text": "The rocket skates ignite when it rains."},
            {"id": "t2", "tenant": "globex", "formatted_text": "The badge reader at the north door is broken."},
            {"id": "t3", "tenant": "", "formatted_text": "No tenant here."},
            {"id": "", "tenant": "acme", "formatted_text": "No id here."},
        ],
    )
    source = {**csv_source("tickets/{date}.csv"), "tenant": None, "tenant_column": "tenant"}
    monkeypatch.setenv("RAG_CATCHUP_CONFIG", str(write_config(tmp_path / "c.yaml", {"tickets": source})))
    run_date(instance, "tickets", "2025-01-01")
    meta = partition_metadata(instance, "tickets_records", "2025-01-01")
    assert (meta["rows"], meta["records"], meta["skipped_no_tenant"], meta["skipped_no_id"], meta["tenants"]) == (
        4,
        2,
        1,
        1,
        2,
    )
    assert {h.key for h in search("badge reader door", "globex")} == {"tickets/2025-01-01/t2"}
    assert {h.key for h in search("badge reader door", "acme")} == {"tickets/2025-01-01/t1"}


def test_a_large_export_in_moto_s3_is_streamed_in_parts(rag_env, instance, s3_env, tmp_path, monkeypatch):
    import io

    s3_env.create_bucket(Bucket="exports")
    body = io.StringIO()
    body.write("id,formatted_text\n")
    for n in range(2_500):
        body.write(f"r{n},Record number {n} about harbour crane {n % 97}.\n")
    s3_env.put_object(Bucket="exports", Key="daily/2025-01-02.csv", Body=body.getvalue().encode())
    config = write_config(tmp_path / "c.yaml", {"big": csv_source("s3://exports/daily/{date}.csv", chunk_rows=1_000)})
    monkeypatch.setenv("RAG_CATCHUP_CONFIG", str(config))
    run_date(instance, "big", "2025-01-02")
    assert partition_metadata(instance, "big_vector_index", "2025-01-02")["records"] == 2_500
    parts = list((tmp_path / "rag" / "work" / "big_records").rglob("part-*.pkl"))
    assert len(parts) == 3  # 1,000 + 1,000 + 500 records: never all in memory at once
    missing = run_date(instance, "big", "2025-01-03", raise_on_error=False)
    assert not missing.success
    (failure,) = [e for e in missing.all_events if e.is_step_failure]
    assert (
        "catchup source 'big': no export for 2025-01-03 at s3://exports/daily/2025-01-03.csv"
        in failure.step_failure_data.user_failure_data.description
    )
    assert (
        partition_metadata(instance, "big_vector_index", "2025-01-02")["records"] == 2_500
    )  # the other date untouched


def metabase_rows(date: str) -> list[dict]:
    return [
        {"id": 1, "tenant": "acme", "formatted_text": f"Order 1 on {date}: forty rocket skates.", "amount": 40},
        {"id": 2, "tenant": "globex", "formatted_text": f"Order 2 on {date}: a portable hole.", "amount": 1},
    ]


def test_a_metabase_question_through_its_api(rag_env, instance, tmp_path, monkeypatch):
    cards = {232: {"template_tag": "start_date", "rows": {"2025-01-01": metabase_rows("2025-01-01")}}}
    with FakeMetabaseServer(cards, api_key="mb-key") as server:
        monkeypatch.setenv("METABASE_URL", server.url)
        monkeypatch.setenv("METABASE_API_KEY", "mb-key")
        source = {"kind": "metabase", "question_id": 232, "start_date": "2025-01-01", "id_column": "id",
                  "tenant_column": "tenant", "metadata_columns": ["amount"]}  # fmt: skip
        monkeypatch.setenv("RAG_CATCHUP_CONFIG", str(write_config(tmp_path / "c.yaml", {"orders": source})))
        server.fail_next(503, times=1)
        run_date(instance, "orders", "2025-01-01")
        assert [r["status"] for r in server.requests] == [503, 200]  # retried, then answered
        (hit,) = search("rocket skates order", "acme", k=1)
        assert hit.key == "orders/2025-01-01/1" and hit.metadata["amount"] == 40

        monkeypatch.setenv("METABASE_API_KEY", "wrong")
        denied = run_date(instance, "orders", "2025-01-01", raise_on_error=False)
        (failure,) = [e for e in denied.all_events if e.is_step_failure]
        message = failure.step_failure_data.user_failure_data.description
        assert "catchup source 'orders'" in message and "question 232" in message and "401" in message
        assert partition_metadata(instance, "orders_vector_index", "2025-01-01")["records"] == 2  # left as it was


def test_a_source_with_its_own_pinecone_namespace_and_openai_model(rag_env, instance, tmp_path, monkeypatch):
    write_csv(
        tmp_path / "e" / "2025-01-01.csv",
        [{"id": f"r{n}", "formatted_text": f"Record {n} about cranes and harbours."} for n in range(430)],
    )
    with (
        FakeOpenAIServer() as openai_server,
        FakePineconeServer(index_name="clickbidtest", dimension=1536, api_key="pc-key") as pinecone,
    ):
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        monkeypatch.setenv("OPENAI_BASE_URL", openai_server.base_url)
        monkeypatch.setenv("PINECONE_API_KEY", "pc-key")
        source = csv_source(
            "e/{date}.csv",
            chunk_rows=10,  # 43 parts, 5 at a time, one embedding request each, under one 20 requests/s limit
            index_uri=f"pinecone://clickbidtest?host={pinecone.url}",
            namespace="v2",
            embedder="openai:text-embedding-3-small",
        )
        monkeypatch.setenv("RAG_CATCHUP_CONFIG", str(write_config(tmp_path / "c.yaml", {"sales": source})))
        start = time.monotonic()
        run_date(instance, "sales", "2025-01-01")
        elapsed = time.monotonic() - start
        assert len(pinecone.index("clickbidtest").namespaces["v2"]) == 430
        upserts = [r for r in pinecone.requests if r["path"].endswith("/vectors/upsert")]
        assert upserts and max(len(r["json"]["vectors"]) for r in upserts) <= 100
        calls = [r["time"] for r in openai_server.requests if r["path"].endswith("/embeddings")]
        assert len(calls) == 43
        assert max(sum(1 for t in calls if s <= t < s + 1.0) for s in calls) <= 21  # one limiter across the parts
        assert elapsed >= 42 / 20
        assert not (tmp_path / "rag" / "index").exists()  # nothing went to the default index


@pytest.mark.slow
def test_a_date_range_launched_and_watched_over_graphql(rag_env, tmp_path, monkeypatch):
    """What /process and /status were: `rag-assets catchup` launches a backfill on a real
    `dagster dev`, `rag-assets status --wait` follows it to the end; a date without its export
    fails by name and the others land."""
    import os
    import subprocess
    import sys

    from rag_assets_tests.conftest import free_port
    from rag_assets_tests.live import dagster_dev

    for day, n in (("2025-01-01", 3), ("2025-01-03", 2)):  # 2025-01-02's export is missing
        write_csv(
            tmp_path / "news" / f"{day}.csv",
            [{"id": f"{day}-{i}", "formatted_text": f"News {i} of {day} about harbours."} for i in range(n)],
        )
    monkeypatch.setenv(
        "RAG_CATCHUP_CONFIG", str(write_config(tmp_path / "c.yaml", {"news": csv_source("news/{date}.csv")}))
    )

    def cli(*args: str) -> dict:
        done = subprocess.run(
            [sys.executable, "-m", "rag_assets.frontends.cli", *args, "--json"],
            check=False,
            capture_output=True,
            text=True,
            timeout=600,
        )
        return {"code": done.returncode, **json.loads(done.stdout or "{}"), "stderr": done.stderr}

    with dagster_dev(tmp_path / "dagster_home", free_port(), "rag_assets.definitions", os.environ.copy()) as url:
        launched = cli("catchup", "news", "--start-date", "2025-01-01", "--end-date", "2025-01-03", "--url", url)
        assert launched["code"] == 0 and launched["partitions"] == ["2025-01-01", "2025-01-02", "2025-01-03"], launched
        final = cli("status", launched["backfill_id"], "--wait", "--url", url)
    assert final["code"] == 1 and final["status"] == "FAILED", final
    assert final["partitions"] == {"total": 3, "done": 2, "failed": 1, "in_progress": 0}
    assert final["records"] == 5
    (failure,) = final["failures"]
    assert failure["partition"] == "2025-01-02"
    assert failure["reason"].startswith("news_records: catchup source 'news': no export for 2025-01-02 at "), failure
    assert {h.key for h in search("news about harbours", "acme")} == {
        f"news/{d}/{d}-{i}" for d, n in (("2025-01-01", 3), ("2025-01-03", 2)) for i in range(n)
    }
