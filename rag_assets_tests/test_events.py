"""S3 event messages as S3 sends them to SQS (directly or through SNS)."""

from __future__ import annotations

import json

import pytest

from rag_assets.lib.events import CREATED, IGNORED, REMOVED, BadEvent, S3Event, latest_per_key, parse_message


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
    events = parse_message(
        json.dumps({"Records": [record("ObjectCreated:Put", "a/1"), record("ObjectRemoved:Delete", "a/2")]})
    )
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
    short, long_ = (
        S3Event(CREATED, "ObjectCreated:Put", "docs", "a/y", e, s) for e, s in (("e1", "FF"), ("e2", "0100"))
    )
    assert latest_per_key([long_, short])[("docs", "a/y")].etag == "e2"
