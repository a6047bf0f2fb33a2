"""The local WebSocket hub: the notification sensor publishes to it, `rag-assets watch`
subscribes to one tenant. Every connection says who it is in its first message:

    {"subscribe": "acme", "token": TENANT_TOKEN}   -> {"subscribed": "acme"}, then acme's messages
    {"publish": PUBLISHER_TOKEN}                   -> then messages, each to its tenant's subscribers

Tokens are HMACs of RAG_NOTIFY_SECRET (lib.notifications.tenant_token, publisher_token): a
client without a tenant's token is refused (close code 1008) and hears nothing. A publisher
message that is not a JSON object with a valid tenant is dropped and counted; the relay goes on.

    python -m rag_assets.notify_hub --url ws://127.0.0.1:8765   (make dev starts it when RAG_NOTIFY=ws://...)
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import json
import logging
import os
from collections import defaultdict
from urllib.parse import urlsplit

from websockets.asyncio.server import ServerConnection, broadcast, serve

from rag_assets.lib.keys import is_valid_tenant
from rag_assets.lib.notifications import publisher_token, tenant_token

log = logging.getLogger("rag_assets.notify_hub")
HELLO_SECONDS = 10.0
POLICY_VIOLATION = 1008


class Hub:
    def __init__(self, secret: str):
        if not secret:
            raise ValueError("the hub needs RAG_NOTIFY_SECRET: tenants' tokens are derived from it")
        self.secret = secret
        self.subscribers: dict[str, set[ServerConnection]] = defaultdict(set)
        self.dropped = 0  # publisher messages dropped: not JSON, not an object, no valid tenant

    async def handle(self, connection: ServerConnection) -> None:
        try:
            hello = json.loads(await asyncio.wait_for(connection.recv(), HELLO_SECONDS))
        except (TimeoutError, ValueError):
            await connection.close(POLICY_VIOLATION, "say who you are first: subscribe or publish")
            return
        if not isinstance(hello, dict):
            await connection.close(POLICY_VIOLATION, "say who you are first: subscribe or publish")
        elif "publish" in hello:
            if not hmac.compare_digest(str(hello["publish"]), publisher_token(self.secret)):
                await connection.close(POLICY_VIOLATION, "not a publisher")
                return
            await self.relay(connection)
        elif "subscribe" in hello:
            tenant = str(hello["subscribe"])
            if not hmac.compare_digest(str(hello.get("token", "")), tenant_token(self.secret, tenant)):
                log.warning("refused a subscription to tenant %r: wrong token", tenant)
                await connection.close(POLICY_VIOLATION, f"no access to tenant {tenant!r}")
                return
            self.subscribers[tenant].add(connection)
            try:
                await connection.send(json.dumps({"subscribed": tenant}))
                await connection.wait_closed()
            finally:
                self.subscribers[tenant].discard(connection)
        else:
            await connection.close(POLICY_VIOLATION, "say who you are first: subscribe or publish")

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


async def run(host: str, port: int, secret: str, ready: asyncio.Event | None = None) -> None:
    hub = Hub(secret)
    async with serve(hub.handle, host, port) as server:
        log.info("notification hub on ws://%s:%s", host, port)
        if ready is not None:
            ready.set()
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The local WebSocket hub of progress notifications.")
    parser.add_argument("--url", default="ws://127.0.0.1:8765", help="where to listen (RAG_NOTIFY)")
    args = parser.parse_args(argv)
    where = urlsplit(args.url)
    if where.scheme != "ws" or not where.hostname or not where.port:
        parser.error(f"--url {args.url!r}: want ws://HOST:PORT")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        asyncio.run(run(where.hostname, where.port, os.environ.get("RAG_NOTIFY_SECRET", "")))
    except ValueError as e:
        parser.error(str(e))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
