"""The local WebSocket hub: the notification sensor publishes to it, `rag-assets watch`
subscribes to one tenant. Every connection says who it is in its first message:

    {"subscribe": "acme", "token": WATCH_TOKEN}   -> {"subscribed": "acme"}, then acme's messages
    {"publish": PUBLISHER_TOKEN}                  -> then messages, each to its tenant's subscribers

A watch token (`rag-assets notify-token`, lib.notifications.watch_token) names its tenant and
expiry and is signed with a key derived from RAG_NOTIFY_SECRET and RAG_NOTIFY_KEY_ID; the
hub refuses (close code 1008, the reason said) a token that is forged, of another key id,
expired, revoked (its id in the file RAG_NOTIFY_REVOKED names) or another tenant's, and
closes a subscription when its token expires or is revoked. Publishing takes
lib.notifications.publisher_token, which no watch token is. A publisher message that is not
a JSON object with a valid tenant is dropped and counted; the relay goes on.

    python -m rag_assets.frontends.notify_hub --url ws://127.0.0.1:8765   (make dev starts it when RAG_NOTIFY=ws://...)
    python -m rag_assets.frontends.notify_hub --url wss://0.0.0.0:8765 --certfile hub.pem --keyfile hub.key
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import json
import logging
import os
import ssl
import time
from collections import defaultdict
from urllib.parse import urlsplit

from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed

from rag_assets.lib.display import printable
from rag_assets.lib.keys import BadTenant, check_tenant, is_valid_tenant
from rag_assets.lib.notifications import (
    DEFAULT_KEY_ID,
    TokenRefused,
    check_key_id,
    publisher_token,
    token_id,
    verify_watch_token,
)

log = logging.getLogger("rag_assets.frontends.notify_hub")
HELLO_SECONDS = 10.0
RECHECK_SECONDS = 5.0  # how often a subscription's token is checked again (revoked, expired)
POLICY_VIOLATION = 1008
SAY_WHO = "say who you are first: subscribe or publish"


class Revocations:
    """The ids of revoked watch tokens: the lines of a file (`#` starts a comment; a whole
    token stands for its id), read again whenever the file changes. No file: none revoked."""

    def __init__(self, path: str | None):
        self.path = path
        self._seen: tuple[int, int] | None = None
        self._ids: frozenset[str] = frozenset()

    def ids(self) -> frozenset[str]:
        if not self.path:
            return frozenset()
        try:
            stat = os.stat(self.path)
            if (stat.st_mtime_ns, stat.st_size) != self._seen:
                with open(self.path, encoding="utf-8", errors="replace") as f:
                    lines = [line.partition("#")[0].strip() for line in f]
                self._ids = frozenset(token_id(x) if x.startswith("v1.") else x for x in lines if x)
                self._seen = (stat.st_mtime_ns, stat.st_size)
        except FileNotFoundError:
            self._ids, self._seen = frozenset(), None
        except OSError as e:  # keep what was read last
            log.warning("cannot read RAG_NOTIFY_REVOKED %s: %s", self.path, e)
        return self._ids


async def refuse(connection: ServerConnection, reason: str) -> None:
    """Close with 1008 and a reason (a close frame holds at most 123 bytes of it)."""
    await connection.close(POLICY_VIOLATION, reason.encode()[:123].decode(errors="ignore"))


class Hub:
    def __init__(
        self,
        secret: str,
        key_id: str = DEFAULT_KEY_ID,
        revoked: str | None = None,
        recheck_seconds: float = RECHECK_SECONDS,
    ):
        if not secret:
            raise ValueError("the hub needs RAG_NOTIFY_SECRET: watch tokens are signed with it")
        self.secret, self.key_id, self.recheck_seconds = secret, check_key_id(key_id), recheck_seconds
        self.revocations = Revocations(revoked)
        self.subscribers: dict[str, set[ServerConnection]] = defaultdict(set)
        self.dropped = 0  # publisher messages dropped: not JSON, not an object, no valid tenant

    async def handle(self, connection: ServerConnection) -> None:
        try:
            await self.serve(connection)
        except ConnectionClosed:  # the client went: nothing to clean up beyond what serve did
            pass

    async def serve(self, connection: ServerConnection) -> None:
        try:
            hello = json.loads(await asyncio.wait_for(connection.recv(), HELLO_SECONDS))
        except (TimeoutError, ValueError, RecursionError):
            await refuse(connection, SAY_WHO)
            return
        if not isinstance(hello, dict):
            await refuse(connection, SAY_WHO)
        elif "publish" in hello:
            if not hmac.compare_digest(str(hello["publish"]).encode(), publisher_token(self.secret).encode()):
                await refuse(connection, "not a publisher")
                return
            await self.relay(connection)
        elif "subscribe" in hello:
            await self.subscribe(connection, hello["subscribe"], hello.get("token"))
        else:
            await refuse(connection, SAY_WHO)

    async def subscribe(self, connection: ServerConnection, tenant: object, token: object) -> None:
        try:
            check_tenant(tenant)
            granted = verify_watch_token(self.secret, token, tenant, time.time(), self.key_id, self.revocations.ids())
        except (BadTenant, TokenRefused) as e:
            reason = "not a valid tenant name" if isinstance(e, BadTenant) else str(e)
            log.warning("refused a subscription to tenant %s: %s", printable(repr(tenant)[:80]), reason)
            await refuse(connection, reason)
            return
        log.info("tenant %r subscribed (token %s, key id %s)", tenant, granted.id, granted.key_id)
        self.subscribers[tenant].add(connection)
        try:
            await connection.send(json.dumps({"subscribed": tenant}))
            while True:  # until the client goes, its token expires or is revoked
                left = granted.expires - time.time()
                if left <= 0:
                    await refuse(connection, "token expired")
                    break
                try:
                    await asyncio.wait_for(connection.wait_closed(), min(left, self.recheck_seconds))
                    break
                except TimeoutError:
                    pass
                if granted.id in self.revocations.ids():
                    log.info("tenant %r: token %s revoked, subscription closed", tenant, granted.id)
                    await refuse(connection, "token revoked")
                    break
        finally:
            self.subscribers[tenant].discard(connection)
            if not self.subscribers[tenant]:
                del self.subscribers[tenant]

    async def relay(self, publisher: ServerConnection) -> None:
        async for raw in publisher:
            try:
                text = raw.decode() if isinstance(raw, bytes) else raw
                message = json.loads(text)
            except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
                self.drop("not JSON")
                continue
            if not isinstance(message, dict):
                self.drop("not a JSON object")
            elif not is_valid_tenant(message.get("tenant")):
                self.drop("no valid tenant")
            else:
                broadcast(self.subscribers.get(message["tenant"], ()), text)

    def drop(self, why: str) -> None:
        self.dropped += 1
        log.warning("dropped a publisher message (%s); %d dropped since the hub started", why, self.dropped)


async def run(
    host: str,
    port: int,
    secret: str,
    ready: asyncio.Event | None = None,
    *,
    key_id: str = DEFAULT_KEY_ID,
    revoked: str | None = None,
    recheck_seconds: float = RECHECK_SECONDS,
    tls: ssl.SSLContext | None = None,
) -> None:
    hub = Hub(secret, key_id, revoked, recheck_seconds)
    async with serve(hub.handle, host, port, ssl=tls) as server:
        log.info("notification hub on %s://%s:%s (key id %s)", "wss" if tls else "ws", host, port, key_id)
        if ready is not None:
            ready.set()
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    from rag_assets.settings import Settings

    parser = argparse.ArgumentParser(description="The local WebSocket hub of progress notifications.")
    parser.add_argument("--url", default="ws://127.0.0.1:8765", help="where to listen (RAG_NOTIFY): ws:// or wss://HOST:PORT")
    parser.add_argument("--certfile", help="wss://: the hub's certificate chain (PEM)")
    parser.add_argument("--keyfile", help="wss://: its private key (PEM; default: in --certfile)")
    parser.add_argument("--recheck-seconds", type=float, default=RECHECK_SECONDS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    where = urlsplit(args.url)
    if where.scheme not in ("ws", "wss") or not where.hostname or not where.port:
        parser.error(f"--url {args.url!r}: want ws://HOST:PORT (or wss://HOST:PORT with --certfile)")
    if (where.scheme == "wss") != bool(args.certfile):
        parser.error("wss:// takes --certfile (and --keyfile); ws:// takes neither (or run the hub behind a TLS proxy)")
    tls = None
    if args.certfile:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(args.certfile, args.keyfile)
    settings = Settings.from_env()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        asyncio.run(
            run(
                where.hostname, where.port, settings.notify_secret or "", key_id=settings.notify_key_id,
                revoked=settings.notify_revoked, recheck_seconds=args.recheck_seconds, tls=tls,
            )
        )  # fmt: skip
    except ValueError as e:
        parser.error(str(e))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
