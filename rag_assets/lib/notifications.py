"""Progress notifications: the message each tenant gets about its documents, and the tokens
and signatures that keep one tenant's messages from another (docs/architecture.md,
Notifications). Pure functions; rag_assets.sensors.notify reads Dagster's record into them."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import asdict, dataclass, field

# Per document, in the order a document lives them; a catchup date gets the same.
QUEUED, STARTED, INGESTED, UNCHANGED, FAILED, DELETED = "queued", "started", "ingested", "unchanged", "failed", "deleted"
TYPES = (QUEUED, STARTED, INGESTED, UNCHANGED, FAILED, DELETED)
# Webhook: "t=UNIX,v1=" + hex HMAC-SHA256(RAG_NOTIFY_SECRET, f"{t}." + body) (sign_webhook).
SIGNATURE_HEADER = "X-Rag-Signature"
WEBHOOK_TOLERANCE_SECONDS = 300  # how far a receiver lets a signature's timestamp be from its clock


@dataclass(frozen=True)
class Notification:
    """One message: `id` is the same each time the same Dagster event is read (a receiver
    drops what it has seen: delivery is at least once)."""

    id: str
    type: str
    tenant: str
    document_key: str  # an object key, or SOURCE/DATE for a catchup partition
    run_id: str
    at: float  # when Dagster recorded the event (seconds since the epoch)
    detail: dict = field(default_factory=dict)

    def as_json(self) -> dict:
        return asdict(self)

    def body(self) -> bytes:
        return json.dumps(self.as_json(), sort_keys=True, separators=(",", ":")).encode("utf-8")


def message_id(storage_id: int, kind: str, tenant: str, document_key: str) -> str:
    """The idempotency key: one Dagster event (its storage id) gives each document one message."""
    return hashlib.sha256(f"{storage_id}\0{kind}\0{tenant}\0{document_key}".encode()).hexdigest()[:24]


def notification(storage_id: int, kind: str, tenant: str, document_key: str, run_id: str, at: float, **detail) -> Notification:
    if kind not in TYPES:
        raise ValueError(f"unknown notification type {kind!r}")
    return Notification(message_id(storage_id, kind, tenant, document_key), kind, tenant, document_key, run_id, at, detail)


def run_failure_reason(run_id: str, error: str, run_tenants: Collection[str]) -> str:
    """What a tenant is told of a run that failed as a whole (no document named): the run's
    error only when every document of the run is that tenant's (an error may quote any of
    the run's documents: a path, a key); else a generic reason with the run id, which an
    operator looks up in Dagster."""
    if len(set(run_tenants)) == 1:
        return error
    return f"its run {run_id} failed; an operator can see why in Dagster"


def tenant_token(secret: str, tenant: str) -> str:
    """What a client shows the hub to hear one tenant: HMAC-SHA256(secret, "tenant:" + tenant)."""
    return hmac.new(secret.encode(), f"tenant:{tenant}".encode(), hashlib.sha256).hexdigest()


def publisher_token(secret: str) -> str:
    """What the notifier shows the hub to publish (no tenant's token can publish)."""
    return hmac.new(secret.encode(), b"publisher", hashlib.sha256).hexdigest()


# --- webhook signatures ------------------------------------------------------------------------


class WebhookRefused(ValueError):
    """A webhook request whose signature or timestamp does not hold; the message says which."""


def _webhook_mac(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign_webhook(secret: str, body: bytes, timestamp: int) -> str:
    """The `X-Rag-Signature` value of a body sent at `timestamp` (seconds since the epoch)."""
    return f"t={int(timestamp)},v1={_webhook_mac(secret, int(timestamp), body)}"


def verify_webhook(secret: str, header: str | None, body: bytes, now: float, tolerance: float = WEBHOOK_TOLERANCE_SECONDS) -> int:
    """What a receiver runs on each request: the signature's timestamp if the header signs
    this body with `secret` and the timestamp is within `tolerance` seconds of `now`; else
    WebhookRefused. A request captured and sent again later is refused once the window has
    passed; within it, drop message ids already seen (X-Rag-Message-Id: delivery is at least
    once anyway). Several `v1=` (a secret being changed) are accepted if one matches."""
    fields = [part.strip().partition("=") for part in (header or "").split(",")]
    stamps = [value for name, _, value in fields if name == "t"]
    signatures = [value for name, _, value in fields if name == "v1"]
    if len(stamps) != 1 or not re.fullmatch(r"[0-9]{1,12}", stamps[0]) or not signatures:
        raise WebhookRefused(f"no t=TIMESTAMP,v1=SIGNATURE in {SIGNATURE_HEADER}")
    timestamp = int(stamps[0])
    expected = _webhook_mac(secret, timestamp, body).encode()
    if not any(hmac.compare_digest(expected, s.encode("ascii", "replace")) for s in signatures):
        raise WebhookRefused("the signature does not match the body")
    if abs(now - timestamp) > tolerance:
        when = f"{now - timestamp:.0f} s ago" if now > timestamp else f"{timestamp - now:.0f} s ahead"
        raise WebhookRefused(f"signed {when}, outside the {tolerance:g} s window (a replay?)")
    return timestamp


def safe_cursor(counts: dict[str, Sequence[int]], limit: int, after: int) -> int:
    """How far a tick may move its one cursor, given the storage ids each event type returned
    (ascending, at most `limit` each): up to the last id of a type whose page was full (it
    may have more after), else to the newest id seen. Events past that wait for the next
    tick, so a document's messages never go out of order."""
    full = [ids[-1] for ids in counts.values() if len(ids) >= limit]
    if full:
        return min(full)
    return max((ids[-1] for ids in counts.values() if ids), default=after)


def in_order(messages: Iterable[tuple[int, Notification]]) -> list[Notification]:
    """Messages by the storage id of their event, then type order (a run's start before its
    documents' results)."""
    return [m for _, m in sorted(messages, key=lambda pair: (pair[0], TYPES.index(pair[1].type), pair[1].document_key))]
