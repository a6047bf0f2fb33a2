"""Progress notifications: the message each tenant gets about its documents, and the tokens
and signatures that keep one tenant's messages from another (docs/architecture.md,
Notifications). Pure functions; rag_assets.defs.notifications.sensors reads Dagster's record into them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
from collections.abc import Collection, Iterable, Sequence
from dataclasses import asdict, dataclass, field

from rag_assets.lib.keys import BadTenant, check_tenant

# Per document, in the order a document lives them; a catchup date gets the same.
QUEUED, STARTED, INGESTED, UNCHANGED, FAILED, DELETED = (
    "queued",
    "started",
    "ingested",
    "unchanged",
    "failed",
    "deleted",
)
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


def notification(
    storage_id: int, kind: str, tenant: str, document_key: str, run_id: str, at: float, **detail
) -> Notification:
    if kind not in TYPES:
        raise ValueError(f"unknown notification type {kind!r}")
    return Notification(
        message_id(storage_id, kind, tenant, document_key), kind, tenant, document_key, run_id, at, detail
    )


def run_failure_reason(run_id: str, error: str, run_tenants: Collection[str]) -> str:
    """What a tenant is told of a run that failed as a whole (no document named): the run's
    error only when every document of the run is that tenant's (an error may quote any of
    the run's documents: a path, a key); else a generic reason with the run id, which an
    operator looks up in Dagster."""
    if len(set(run_tenants)) == 1:
        return error
    return f"its run {run_id} failed; an operator can see why in Dagster"


# --- watch tokens ----------------------------------------------------------------------------
#
# `v1.KEY_ID.TENANT.EXPIRES.MAC`: MAC is base64url HMAC-SHA256 over everything before it,
# keyed by a key derived from RAG_NOTIFY_SECRET and KEY_ID. The hub, which holds the secret,
# accepts a token of its current key id (RAG_NOTIFY_KEY_ID: change it and every older token
# is refused), unexpired, not revoked (its id in the file RAG_NOTIFY_REVOKED names), for the
# tenant asked. A watcher holds only its token: it cannot make another tenant's.

TOKEN_VERSION = "v1"
DEFAULT_KEY_ID = "1"
DEFAULT_TTL = "7d"
MAX_TTL_SECONDS = 366 * 86_400
MAX_TOKEN_LENGTH = 512
_KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")
_DURATION = re.compile(r"([0-9]{1,9})([smhd])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}


class TokenRefused(ValueError):
    """A watch token the hub does not accept; the message says why (short: a close reason)."""


def parse_duration(text: str) -> int:
    """Seconds in `30s`, `15m`, `12h` or `7d` (more than 0, at most MAX_TTL_SECONDS)."""
    match = _DURATION.fullmatch(text.strip()) if isinstance(text, str) else None
    if not match:
        raise ValueError(f"{text!r} is not a duration: a whole number and s, m, h or d (30s, 12h, 7d)")
    seconds = int(match[1]) * _UNITS[match[2]]
    if not 0 < seconds <= MAX_TTL_SECONDS:
        raise ValueError(f"{text!r}: want more than 0 and at most {MAX_TTL_SECONDS // 86_400}d")
    return seconds


def check_key_id(key_id: object) -> str:
    if not isinstance(key_id, str) or not _KEY_ID.fullmatch(key_id):
        raise ValueError(f"key id {key_id!r}: want 1 to 32 letters, digits, '_' or '-'")
    return key_id


@dataclass(frozen=True)
class WatchToken:
    key_id: str
    tenant: str
    expires: int  # seconds since the epoch
    id: str  # what a deny list names (token_id)


def token_id(token: str) -> str:
    """A token's id for the deny list: the start of its SHA-256 (the token itself stays secret)."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def _token_mac(secret: str, key_id: str, payload: str) -> str:
    key = hmac.new(secret.encode(), f"rag-assets watch key\0{key_id}".encode(), hashlib.sha256).digest()
    mac = hmac.new(key, payload.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def watch_token(secret: str, tenant: str, expires: int, key_id: str = DEFAULT_KEY_ID) -> str:
    """What `rag-assets notify-token` prints: one tenant's right to watch until `expires`."""
    if not secret:
        raise ValueError("watch tokens are signed with RAG_NOTIFY_SECRET: it is not set")
    payload = f"{TOKEN_VERSION}.{check_key_id(key_id)}.{check_tenant(tenant)}.{int(expires)}"
    return f"{payload}.{_token_mac(secret, key_id, payload)}"


def read_watch_token(token: object) -> tuple[WatchToken, str, str]:
    """A token taken apart, not verified: (its fields, the signed payload, its MAC). A tenant
    may hold dots; a key id, the expiry and the MAC do not."""
    if not isinstance(token, str) or not token.isascii() or len(token) > MAX_TOKEN_LENGTH:
        raise TokenRefused("not a watch token")
    if re.fullmatch(r"[0-9a-f]{64}", token):
        raise TokenRefused("an old-style token (no expiry): ask for a new one (rag-assets notify-token)")
    version, _, rest = token.partition(".")
    key_id, _, rest = rest.partition(".")
    tenant, expires, mac = rest.rsplit(".", 2) if rest.count(".") >= 2 else ("", "", "")
    if (
        version != TOKEN_VERSION
        or not _KEY_ID.fullmatch(key_id)
        or not re.fullmatch(r"[0-9]{1,12}", expires)
        or not mac
    ):
        raise TokenRefused("not a watch token")
    try:
        check_tenant(tenant)
    except BadTenant:
        raise TokenRefused("not a watch token") from None
    payload = token[: -len(mac) - 1]
    return WatchToken(key_id, tenant, int(expires), token_id(token)), payload, mac


def verify_watch_token(
    secret: str,
    token: object,
    tenant: str,
    now: float,
    key_id: str = DEFAULT_KEY_ID,
    revoked: Collection[str] = (),
) -> WatchToken:
    """The token if it lets its holder watch `tenant` at `now`; else TokenRefused saying why:
    not a token, forged (its MAC is not ours), of a retired key id, expired, revoked (its id
    in `revoked`), or another tenant's."""
    parsed, payload, mac = read_watch_token(token)
    if not hmac.compare_digest(mac.encode(), _token_mac(secret, parsed.key_id, payload).encode()):
        raise TokenRefused("forged token (its signature does not match)")
    if parsed.key_id != key_id:
        raise TokenRefused("token of a retired key id: ask for a new one")
    if now >= parsed.expires:
        raise TokenRefused(f"token expired at {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(parsed.expires))} UTC")
    if parsed.id in revoked:
        raise TokenRefused("token revoked")
    if parsed.tenant != tenant:
        raise TokenRefused(f"this token is for tenant {parsed.tenant!r}, not {tenant!r}")
    return parsed


def publisher_token(secret: str) -> str:
    """What the notifier shows the hub to publish (no watch token can publish)."""
    return hmac.new(secret.encode(), b"publisher", hashlib.sha256).hexdigest()


# --- webhook signatures ------------------------------------------------------------------------


class WebhookRefused(ValueError):
    """A webhook request whose signature or timestamp does not hold; the message says which."""


def _webhook_mac(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign_webhook(secret: str, body: bytes, timestamp: int) -> str:
    """The `X-Rag-Signature` value of a body sent at `timestamp` (seconds since the epoch)."""
    return f"t={int(timestamp)},v1={_webhook_mac(secret, int(timestamp), body)}"


def verify_webhook(
    secret: str, header: str | None, body: bytes, now: float, tolerance: float = WEBHOOK_TOLERANCE_SECONDS
) -> int:
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


def ordered_messages(messages: Iterable[tuple[int, Notification]]) -> list[Notification]:
    """Messages by the storage id of their event, then type order (a run's start before its
    documents' results)."""
    return [m for _, m in sorted(messages, key=lambda pair: (pair[0], TYPES.index(pair[1].type), pair[1].document_key))]
