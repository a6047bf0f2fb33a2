"""S3 event notifications, as S3 sends them to SQS (directly or through SNS)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import unquote_plus

CREATED, REMOVED, IGNORED = "created", "removed", "ignored"
# Restores and storage-class transitions change neither the bytes nor the object's existence:
# the index must not change (an object archived and restored). Tagging and ACL changes neither.
_NO_CHANGE_PREFIXES = ("ObjectRestore:", "LifecycleTransition", "ObjectTagging:", "ObjectAcl:", "IntelligentTiering")


class BadEvent(ValueError):
    """A message that is not an S3 event notification we understand."""


@dataclass(frozen=True)
class S3Event:
    kind: str  # CREATED, REMOVED or IGNORED
    name: str  # e.g. ObjectCreated:Put
    bucket: str
    key: str
    etag: str | None = None
    sequencer: str = ""


def event_kind(name: str) -> str:
    if name.startswith("ObjectCreated:"):
        return CREATED
    if name.startswith("ObjectRemoved:") or name == "LifecycleExpiration:Delete":
        return REMOVED
    if name.startswith(_NO_CHANGE_PREFIXES) or name.startswith("LifecycleExpiration:"):
        return IGNORED
    raise BadEvent(f"unknown S3 event name {name!r}")


def parse_message(body: str) -> list[S3Event]:
    """The S3 events in one SQS message body: [] for `s3:TestEvent`; raises BadEvent for
    anything malformed. Keys are URL-decoded as S3 encodes them (`unquote_plus`)."""
    try:
        doc = json.loads(body)
    except (TypeError, json.JSONDecodeError) as e:
        raise BadEvent(f"not JSON: {e}") from None
    if isinstance(doc, dict) and doc.get("Type") == "Notification" and "Message" in doc:  # through SNS
        return parse_message(doc["Message"])
    if not isinstance(doc, dict):
        raise BadEvent("not a JSON object")
    if doc.get("Event") == "s3:TestEvent":
        return []
    records = doc.get("Records")
    if not isinstance(records, list):
        raise BadEvent("no Records list")
    events = []
    for record in records:
        try:
            name = record["eventName"]
            s3 = record["s3"]
            bucket, obj = s3["bucket"]["name"], s3["object"]
            key = unquote_plus(obj["key"])
        except (KeyError, TypeError) as e:
            raise BadEvent(f"record without {e}") from None
        events.append(S3Event(event_kind(name), name, bucket, key, obj.get("eTag"), obj.get("sequencer", "")))
    return events


def sequencer_order(sequencer: str) -> tuple[int, str]:
    """S3 sequencers are hex strings of varying length, comparable for one key once padded."""
    return (len(sequencer.lstrip("0")), sequencer.lstrip("0").upper())


def latest_per_key(events: list[S3Event]) -> dict[tuple[str, str], S3Event]:
    """The last event of each object (by sequencer; arrival order breaks ties)."""
    latest: dict[tuple[str, str], S3Event] = {}
    for event in events:
        if event.kind == IGNORED:
            continue
        key = (event.bucket, event.key)
        old = latest.get(key)
        if old is None or sequencer_order(event.sequencer) >= sequencer_order(old.sequencer):
            latest[key] = event
    return latest
