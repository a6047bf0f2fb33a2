"""Pure parts of the sensors: S3 event messages, sync plans, retry decisions."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from rag_assets.lib.events import CREATED, IGNORED, REMOVED, BadEvent, S3Event, latest_per_key, parse_message
from rag_assets.lib.keys import DocRef, encode_partition_key
from rag_assets.lib.sync import document_for_sidecar, plan_sync
from rag_assets.resources.config import SyncConfig
from rag_assets.sensors.s3 import ATTEMPT_TAG, range_tags, resolve_sidecars, retry_requests, sidecar_finder


def record(name: str, key: str, etag: str | None = "e1", sequencer: str = "", bucket: str = "docs") -> dict:
    obj = {"key": key, **({"eTag": etag} if etag else {}), **({"sequencer": sequencer} if sequencer else {})}
    return {"eventName": name, "s3": {"bucket": {"name": bucket}, "object": obj}}


@pytest.mark.parametrize(
    "name, kind",
    [
        ("ObjectCreated:Put", CREATED),
        ("ObjectCreated:CompleteMultipartUpload", CREATED),
        ("ObjectCreated:Copy", CREATED),
        ("ObjectRemoved:Delete", REMOVED),
        ("ObjectRemoved:DeleteMarkerCreated", REMOVED),
        ("LifecycleExpiration:Delete", REMOVED),
        ("ObjectRestore:Post", IGNORED),
        ("ObjectRestore:Completed", IGNORED),
        ("LifecycleTransition", IGNORED),
        ("ObjectTagging:Put", IGNORED),
    ],
)
def test_event_kinds(name, kind):
    assert parse_message(json.dumps({"Records": [record(name, "acme/a.pdf")]}))[0].kind == kind


def test_keys_are_url_decoded_as_s3_encodes_them():
    (event,) = parse_message(json.dumps({"Records": [record("ObjectCreated:Put", "acme%2Fa+b%2Bc+%C3%A9.pdf")]}))
    assert event.key == "acme/a b+c é.pdf"


def test_test_event_is_empty_and_several_records_are_kept_in_order():
    assert parse_message(json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "docs"})) == []
    events = parse_message(json.dumps({"Records": [record("ObjectCreated:Put", "a/1"), record("ObjectRemoved:Delete", "a/2")]}))
    assert [(e.kind, e.key) for e in events] == [(CREATED, "a/1"), (REMOVED, "a/2")]


def test_messages_through_sns_are_unwrapped():
    inner = json.dumps({"Records": [record("ObjectCreated:Put", "acme/x.txt")]})
    assert parse_message(json.dumps({"Type": "Notification", "Message": inner}))[0].key == "acme/x.txt"


@pytest.mark.parametrize(
    "body, message",
    [
        ("{not json", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"hello": 1}', "no Records"),
        ('{"Records": [{"eventName": "ObjectCreated:Put"}]}', "record without"),
        (json.dumps({"Records": [record("ObjectExploded:Boom", "a/b")]}), "unknown S3 event name"),
    ],
)
def test_malformed_messages_raise_bad_event(body, message):
    with pytest.raises(BadEvent, match=message):
        parse_message(body)


def test_latest_per_key_orders_by_sequencer_not_arrival():
    late_create = S3Event(CREATED, "ObjectCreated:Put", "docs", "a/x", "e1", "0055AED6DCD90281E5")
    delete = S3Event(REMOVED, "ObjectRemoved:Delete", "docs", "a/x", None, "0055AED6DCD90281E6")
    assert latest_per_key([delete, late_create])[("docs", "a/x")] is delete
    # Sequencers of different lengths compare as numbers.
    short, long_ = (S3Event(CREATED, "ObjectCreated:Put", "docs", "a/y", e, s) for e, s in (("e1", "FF"), ("e2", "0100")))
    assert latest_per_key([long_, short])[("docs", "a/y")].etag == "e2"


def partition(key: str, root: str = "s3://docs") -> str:
    return encode_partition_key(DocRef(key.split("/")[0], root, key))


def test_plan_adds_new_partitions_batches_runs_and_purges_only_known_documents():
    known = [partition("acme/old.pdf"), partition("acme/gone.pdf")]
    plan = plan_sync(
        root="s3://docs",
        present={f"acme/new{i}.pdf": f"e{i}" for i in range(5)} | {"acme/old.pdf": "e9", "top.pdf": "e"},
        gone=["acme/gone.pdf", "acme/never-seen.pdf"],
        known_partitions=known,
        tenant_rule="segment:0",
        batch_size=2,
    )
    assert plan.add == [partition(f"acme/new{i}.pdf") for i in range(5)]
    # old.pdf alone (gone.pdf sits between it and the new ones in partition order), then pairs.
    assert [len(b.members) for b in plan.batches] == [1, 2, 2, 1]
    assert plan.purge == [partition("acme/gone.pdf")]
    assert plan.skipped and plan.skipped[0][0] == "top.pdf"


def test_run_keys_follow_the_objects_versions():
    def keys(present):
        plan = plan_sync(root="s3://docs", present=present, gone=[], known_partitions=[], tenant_rule="segment:0", batch_size=10)
        return [b.run_key for b in plan.batches]

    assert keys({"a/x.pdf": "e1"}) == keys({"a/x.pdf": "e1"})  # a duplicate event: same run key
    assert keys({"a/x.pdf": "e1"}) != keys({"a/x.pdf": "e2"})  # a replaced object: a new run


def test_sidecars_stand_for_their_documents():
    objects = {"acme/r.pdf": "d1", "acme/r.meta.json": "m1", "acme/s.pdf.meta.json": "m2"}
    find = sidecar_finder(lambda base: {k: v for k, v in objects.items() if k.startswith(base)})
    assert resolve_sidecars({"acme/r.meta.json": "m1"}, find) == {"acme/r.pdf": "d1+meta:m1"}
    assert resolve_sidecars({"acme/s.pdf.meta.json": "m2"}, find) == {}  # its document has not arrived
    assert document_for_sidecar("acme/r.meta.json", {"acme/r.pdf", "acme/rx.pdf"}) == "acme/r.pdf"
    assert resolve_sidecars({}, find, removed=["acme/r.meta.json"], stamp="7") == {"acme/r.pdf": "d1+meta:removed@7"}


def failed_run(first, last, attempt=1):
    return SimpleNamespace(run_id="r1", tags={**range_tags(first, last), ATTEMPT_TAG: str(attempt)})


def test_a_batch_with_unreadable_documents_is_split_around_them_at_once():
    ordered = ["p1", "p2", "p3", "p4"]
    requests = retry_requests(failed_run("p1", "p4"), 1000.0, ["p2"], ordered, SyncConfig(batch_size=10), now=1000.0)
    ranges = [(r.tags["dagster/asset_partition_range_start"], r.tags["dagster/asset_partition_range_end"]) for r in requests]
    assert ranges == [("p1", "p1"), ("p3", "p4")]


@pytest.mark.parametrize(
    "attempt, now, expected",
    [(1, 1010.0, 0), (1, 1031.0, 1), (2, 1059.0, 0), (2, 1061.0, 1), (4, 99999.0, 0)],
)
def test_other_failures_retry_with_backoff_up_to_a_limit(attempt, now, expected):
    config = SyncConfig(retry_base_seconds=30, max_attempts=4)
    requests = retry_requests(failed_run("p1", "p2", attempt), 1000.0, None, ["p1", "p2"], config, now=now)
    assert len(requests) == expected
    if requests:
        assert requests[0].tags[ATTEMPT_TAG] == str(attempt + 1)
