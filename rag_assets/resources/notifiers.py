"""Where progress notifications go (RAG_NOTIFY): nowhere, a signed webhook, API Gateway's
WebSocket connections (docs/notifications.md), or the local WebSocket hub (rag_assets.frontends.notify_hub).

Every notifier is bounded: it gives up at `deadline` (time.monotonic()) and counts what it
could not deliver; nothing it does can hold up a run (docs/architecture.md, Notifications).
"""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import dagster as dg

from rag_assets.lib.errors import describe_error
from rag_assets.lib.notifications import SIGNATURE_HEADER, Notification, publisher_token, sign_webhook


@dataclass
class Delivery:
    """What a send did: messages delivered, not delivered (dropped), and why (a few reasons)."""

    sent: int = 0
    dropped: int = 0
    errors: list[str] = field(default_factory=list)

    def fail(self, count: int, reason: str) -> None:
        self.dropped += count
        if reason not in self.errors and len(self.errors) < 5:
            self.errors.append(reason)


class Notifier(dg.ConfigurableResource, ABC):
    """Sends messages, in order, until `deadline`; what is left undelivered is dropped and counted."""

    @abstractmethod
    def send(self, messages: Sequence[Notification], deadline: float) -> Delivery: ...

    @property
    def enabled(self) -> bool:
        return True


class NoNotifier(Notifier):
    """RAG_NOTIFY unset: nothing is sent (the notification sensor is not even running)."""

    @property
    def enabled(self) -> bool:
        return False

    def send(self, messages: Sequence[Notification], deadline: float) -> Delivery:
        return Delivery()


def _retrying(deadline: float, attempts: int, retry_on: tuple[type[BaseException], ...]):
    from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, stop_before_delay, wait_exponential

    remaining = max(0.0, deadline - time.monotonic())
    return Retrying(
        stop=stop_after_attempt(attempts) | stop_before_delay(remaining),
        wait=wait_exponential(multiplier=0.2, max=2.0),
        retry=retry_if_exception_type(retry_on),
        reraise=True,
    )


class _Retryable(Exception):
    """A response worth trying again (429, 5xx)."""


class WebhookNotifier(Notifier):
    """An HTTP POST of each message's JSON, signed with the time it is sent:
    `X-Rag-Signature: t=UNIX,v1=HMAC(secret, "UNIX." + body)` (RAG_NOTIFY_SECRET; a receiver
    refuses an old timestamp: a replay), its id in `X-Rag-Message-Id`. 429, 5xx and connection errors are
    retried with backoff; once a message cannot be delivered the rest of the tick's are
    dropped too (the receiver is down: trying each would only hold the tick)."""

    url: str
    secret: str = ""
    timeout_seconds: float = 3.0
    attempts: int = 3

    def send(self, messages: Sequence[Notification], deadline: float) -> Delivery:
        import httpx

        delivery = Delivery()
        with httpx.Client(timeout=self.timeout_seconds) as client:
            for n, message in enumerate(messages):
                body = message.body()
                headers = {"Content-Type": "application/json", "X-Rag-Message-Id": message.id}
                try:
                    for attempt in _retrying(deadline, self.attempts, (httpx.TransportError, _Retryable)):
                        with attempt:
                            if self.secret:  # each attempt signed when it is sent
                                headers[SIGNATURE_HEADER] = sign_webhook(self.secret, body, int(time.time()))
                            response = client.post(self.url, content=body, headers=headers)
                            if response.status_code == 429 or response.status_code >= 500:
                                raise _Retryable(f"HTTP {response.status_code}")
                            response.raise_for_status()
                except Exception as e:  # noqa: BLE001 - delivery only: nothing here may reach a run
                    delivery.fail(len(messages) - n, f"{self.url}: {describe_error(e)}")
                    break
                delivery.sent += 1
        return delivery


class ApiGatewayNotifier(Notifier):
    """WebSocket delivery through API Gateway: a tenant's connection ids from a DynamoDB table (the
    tenant attribute queried through `index_name`, or the table's own key when None), each
    message posted with `apigatewaymanagementapi.post_to_connection`; a connection that is
    gone (410) is deleted from the table."""

    endpoint: str  # https://API_ID.execute-api.REGION.amazonaws.com/STAGE
    table: str
    tenant_attribute: str = "user_id"
    connection_attribute: str = "connection_id"
    index_name: str | None = None

    def _connections(self, dynamodb, tenant: str) -> list[dict]:
        kwargs = {
            "TableName": self.table,
            "KeyConditionExpression": "#t = :t",
            "ExpressionAttributeNames": {"#t": self.tenant_attribute},
            "ExpressionAttributeValues": {":t": {"S": tenant}},
            **({"IndexName": self.index_name} if self.index_name else {}),
        }
        items = []
        for page in dynamodb.get_paginator("query").paginate(**kwargs):
            items.extend(page["Items"])
        return items

    def send(self, messages: Sequence[Notification], deadline: float) -> Delivery:
        import boto3
        from botocore.config import Config

        config = Config(connect_timeout=3, read_timeout=5, retries={"max_attempts": 2, "mode": "standard"})
        dynamodb = boto3.session.Session().client("dynamodb", config=config)
        gateway = boto3.session.Session().client("apigatewaymanagementapi", endpoint_url=self.endpoint, config=config)
        key_schema = [k["AttributeName"] for k in dynamodb.describe_table(TableName=self.table)["Table"]["KeySchema"]]
        delivery, connections = Delivery(), {}
        for n, message in enumerate(messages):
            if time.monotonic() > deadline:
                delivery.fail(len(messages) - n, "the tick's time for notifications ran out")
                break
            try:
                if message.tenant not in connections:
                    connections[message.tenant] = self._connections(dynamodb, message.tenant)
                for item in list(connections[message.tenant]):
                    connection = item[self.connection_attribute]["S"]
                    try:
                        gateway.post_to_connection(ConnectionId=connection, Data=message.body())
                    except gateway.exceptions.GoneException:
                        dynamodb.delete_item(TableName=self.table, Key={k: item[k] for k in key_schema})
                        connections[message.tenant].remove(item)
                delivery.sent += 1
            except Exception as e:  # noqa: BLE001 - delivery only: nothing here may reach a run
                delivery.fail(1, f"{self.endpoint}: {describe_error(e)}")
        return delivery


class WebSocketHubNotifier(Notifier):
    """Publishes to the local hub (`python -m rag_assets.frontends.notify_hub`), which hands each
    message to the clients subscribed to its tenant (`rag-assets watch`)."""

    url: str  # ws://HOST:PORT
    secret: str = ""
    timeout_seconds: float = 3.0

    def send(self, messages: Sequence[Notification], deadline: float) -> Delivery:
        from websockets.sync.client import connect

        delivery = Delivery()
        if not messages:
            return delivery
        try:
            with connect(self.url, open_timeout=self.timeout_seconds, close_timeout=1) as hub:
                hub.send(json.dumps({"publish": publisher_token(self.secret)}))
                for n, message in enumerate(messages):
                    if time.monotonic() > deadline:
                        delivery.fail(len(messages) - n, "the tick's time for notifications ran out")
                        break
                    hub.send(json.dumps(message.as_json()))
                    delivery.sent += 1
        except Exception as e:  # noqa: BLE001 - delivery only: nothing here may reach a run
            delivery.fail(len(messages) - delivery.sent - delivery.dropped, f"{self.url}: {describe_error(e)}")
        return delivery


def notifier_from_spec(spec: str | None, secret: str | None) -> Notifier:
    """RAG_NOTIFY: unset or `none`; `webhook:URL`; `apigateway:ENDPOINT?table=TABLE` (optional
    `&index=INDEX&tenant_attribute=NAME&connection_attribute=NAME`); `ws://HOST:PORT` (the hub).
    The secret is passed as `EnvVar("RAG_NOTIFY_SECRET")` when set: the UI shows resource
    config, and then shows the variable's name, not its value."""
    if secret:
        secret = dg.EnvVar("RAG_NOTIFY_SECRET")
    if not spec or spec == "none":
        return NoNotifier()
    if spec.startswith("webhook:") and len(spec) > len("webhook:"):
        return WebhookNotifier(url=spec[len("webhook:") :], secret=secret or "")
    if spec.startswith(("ws://", "wss://")):
        return WebSocketHubNotifier(url=spec, secret=secret or "")
    if spec.startswith("apigateway:"):
        parts = urlsplit(spec[len("apigateway:") :])
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        if not parts.scheme or "table" not in query:
            raise ValueError(f"RAG_NOTIFY={spec!r}: want apigateway:https://API.execute-api.REGION.amazonaws.com/STAGE?table=TABLE")
        optional = {
            k: query[q]
            for k, q in (
                ("index_name", "index"),
                ("tenant_attribute", "tenant_attribute"),
                ("connection_attribute", "connection_attribute"),
            )
            if q in query
        }
        return ApiGatewayNotifier(endpoint=parts._replace(query="").geturl(), table=query["table"], **optional)
    raise ValueError(f"RAG_NOTIFY={spec!r}: use none, webhook:URL, apigateway:ENDPOINT?table=TABLE or ws://HOST:PORT")
