"""Progress notifications: the message shape, cursor, watch tokens and webhook signatures
(pure); each notifier through real parts (a local HTTP receiver that checks signatures and
their timestamps, moto's DynamoDB and API Gateway management API, the WebSocket hub with real
clients, `rag-assets watch` as a process across hub restarts); the sensor over a real
instance; and a real daemon telling each tenant, in order, what happens to its documents."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import pytest

from rag_assets.definitions import build_definitions
from rag_assets.defs.notifications.sensors import build_notification_sensor
from rag_assets.frontends.cli import main as cli_main
from rag_assets.frontends.cli import watch_line
from rag_assets.frontends.notify_hub import run as run_hub
from rag_assets.lib.notifications import (
    TokenRefused,
    WebhookRefused,
    notification,
    ordered_messages,
    parse_duration,
    publisher_token,
    read_watch_token,
    run_failure_reason,
    safe_cursor,
    sign_webhook,
    token_id,
    verify_watch_token,
    verify_webhook,
    watch_token,
)
from rag_assets.resources.notifiers import (
    ApiGatewayNotifier,
    NoNotifier,
    WebhookNotifier,
    WebSocketHubNotifier,
    notifier_from_spec,
)
from rag_assets_tests.conftest import free_port
from rag_assets_tests.fakes.webhook_receiver import WebhookReceiver
from rag_assets_tests.live import REPO, Daemon, sensor_has_ticked, wait_for
from rag_assets_tests.test_sensors import ON, Harness, local_source

SECRET = "test-secret"
NOW = 1_700_000_000


def message(kind="ingested", tenant="acme", key="acme/a.txt", sid=1, **detail):
    return notification(sid, kind, tenant, key, "run-1", 1_700_000_000.0, **detail)


def token(tenant="acme", ttl=3600, key_id="1", secret=SECRET) -> str:
    """A watch token valid `ttl` seconds from now (negative: expired)."""
    return watch_token(secret, tenant, int(time.time()) + ttl, key_id)


# --- pure -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ids, limit, after, until",
    [
        ({"a": [], "b": []}, 3, 7, 7),  # nothing new: the cursor stays
        ({"a": [8, 9], "b": [10]}, 3, 7, 10),  # every page short: all of it
        ({"a": [8, 9, 12], "b": [10, 11]}, 3, 7, 12),  # a full page: up to its last id...
        ({"a": [8, 9, 12], "b": [10, 11, 13], "c": [14]}, 3, 7, 12),  # ...and no further than the first full one
    ],
)
def test_the_cursor_never_passes_an_unread_event(ids, limit, after, until):
    assert safe_cursor(ids, limit, after) == until


def test_messages_go_in_event_order_and_ids_are_stable():
    started, ingested = message("started", sid=5), message("ingested", sid=9)
    assert ordered_messages([(9, ingested), (5, started)]) == [started, ingested]
    assert message(sid=9).id == ingested.id  # the same event read again: the same id
    assert message(sid=9, tenant="globex").id != ingested.id
    assert set(json.loads(ingested.body())) == {"id", "type", "tenant", "document_key", "run_id", "at", "detail"}
    with pytest.raises(ValueError, match="unknown notification type"):
        message("done")


def old_style_token(tenant: str) -> str:
    """What every watcher used to derive from the master secret: HMAC(secret, "tenant:" + tenant)."""
    return hmac.new(SECRET.encode(), f"tenant:{tenant}".encode(), hashlib.sha256).hexdigest()


def test_a_watch_token_carries_its_tenant_and_expiry_and_verifies():
    made = watch_token(SECRET, "acme.corp@eu", NOW + 60, key_id="2025-q4")
    assert made.startswith("v1.2025-q4.acme.corp@eu.1700000060.")  # readable; a tenant may hold dots
    granted = verify_watch_token(SECRET, made, "acme.corp@eu", NOW, key_id="2025-q4")
    assert (granted.tenant, granted.expires, granted.key_id, granted.id) == (
        "acme.corp@eu",
        NOW + 60,
        "2025-q4",
        token_id(made),
    )
    assert watch_token(SECRET, "acme", NOW + 60) != watch_token(SECRET, "globex", NOW + 60)
    assert publisher_token(SECRET) not in (watch_token(SECRET, "publisher", NOW + 60), old_style_token("publisher"))


ACME = watch_token(SECRET, "acme", NOW + 60)


@pytest.mark.parametrize(
    "presented, tenant, now, options, why",
    [
        (ACME, "globex", NOW, {}, "this token is for tenant 'acme', not 'globex'"),
        (ACME, "acme", NOW + 60, {}, "token expired at 2023-11-14 22:14:20 UTC"),
        (watch_token("another-secret", "acme", NOW + 60), "acme", NOW, {}, "forged token"),
        (ACME.replace(".acme.", ".globex."), "globex", NOW, {}, "forged token"),  # its tenant changed
        (ACME.replace(".1700000060.", ".1800000060."), "acme", NOW, {}, "forged token"),  # its expiry pushed
        (ACME, "acme", NOW, {"key_id": "2"}, "token of a retired key id"),  # the key id rotated
        (ACME, "acme", NOW, {"revoked": {token_id(ACME)}}, "token revoked"),
        (old_style_token("acme"), "acme", NOW, {}, "an old-style token"),
        ("v1.1.acme.1700000060", "acme", NOW, {}, "not a watch token"),
        ("v1.1.../etc.1700000060.AAAA", "../etc", NOW, {}, "not a watch token"),
        ("v1.1.acme.soon.AAAA", "acme", NOW, {}, "not a watch token"),
        ("v1.1.acmé.1700000060.AAAA", "acme", NOW, {}, "not a watch token"),
        ("x" * 600, "acme", NOW, {}, "not a watch token"),
        (None, "acme", NOW, {}, "not a watch token"),
        (["v1"], "acme", NOW, {}, "not a watch token"),
    ],
)
def test_a_watch_token_is_refused_saying_why(presented, tenant, now, options, why):
    with pytest.raises(TokenRefused) as refused:
        verify_watch_token(SECRET, presented, tenant, now, **options)
    assert str(refused.value).startswith(why)


def test_revoking_one_token_leaves_the_tenant_s_others_and_other_tenants():
    later = watch_token(SECRET, "acme", NOW + 120)
    revoked = {token_id(ACME)}
    assert verify_watch_token(SECRET, later, "acme", NOW, revoked=revoked).tenant == "acme"
    assert verify_watch_token(SECRET, watch_token(SECRET, "globex", NOW + 60), "globex", NOW, revoked=revoked)


@pytest.mark.parametrize("tenant", ["", "../x", "a/b", "a b", "-x", "x" * 129, "a..b"])
def test_no_token_is_made_for_a_name_that_is_not_a_tenant(tenant):
    with pytest.raises(ValueError, match="tenant"):
        watch_token(SECRET, tenant, NOW)


def test_no_token_without_a_secret_or_with_a_bad_key_id():
    with pytest.raises(ValueError, match="RAG_NOTIFY_SECRET"):
        watch_token("", "acme", NOW)
    with pytest.raises(ValueError, match="key id"):
        watch_token(SECRET, "acme", NOW, key_id="a.b")
    assert read_watch_token(watch_token(SECRET, "acme", NOW, key_id="k-2"))[0].key_id == "k-2"


@pytest.mark.parametrize(
    "text, seconds", [("30s", 30), ("15m", 900), ("12h", 43_200), ("7d", 604_800), ("366d", 31_622_400)]
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "7", "0s", "1.5h", "-1d", "7 days", "1w", "367d", "d"])
def test_bad_durations_say_what_is_wanted(text):
    with pytest.raises(ValueError, match="duration|at most"):
        parse_duration(text)


BODY = b'{"id":"1","tenant":"acme"}'


@pytest.mark.parametrize(
    "header, body, now, why",
    [
        (sign_webhook(SECRET, BODY, NOW), BODY, NOW + 300, None),  # within the window
        (sign_webhook(SECRET, BODY, NOW), BODY, NOW - 300, None),  # a sender's clock a little ahead
        (f"t={NOW},v1={'0' * 64},v1={sign_webhook(SECRET, BODY, NOW).partition('v1=')[2]}", BODY, NOW, None),
        (sign_webhook(SECRET, BODY, NOW), BODY, NOW + 301, "signed 301 s ago, outside the 300 s window"),  # a replay
        (sign_webhook(SECRET, BODY, NOW), BODY, NOW - 301, "signed 301 s ahead"),
        (sign_webhook(SECRET, BODY, NOW), BODY + b" ", NOW, "the signature does not match"),
        (sign_webhook("other", BODY, NOW), BODY, NOW, "the signature does not match"),
        (
            sign_webhook(SECRET, BODY, NOW).replace(f"t={NOW}", f"t={NOW + 100}"),
            BODY,
            NOW,
            "the signature does not match",
        ),
        (
            "sha256=" + hmac.new(SECRET.encode(), BODY, hashlib.sha256).hexdigest(),
            BODY,
            NOW,
            "no t=TIMESTAMP",
        ),  # old style
        (None, BODY, NOW, "no t=TIMESTAMP"),
        (f"t=soon,v1={'0' * 64}", BODY, NOW, "no t=TIMESTAMP"),
        (f"t={NOW}", BODY, NOW, "no t=TIMESTAMP"),
        (f"t={NOW},t={NOW},v1=x", BODY, NOW, "no t=TIMESTAMP"),
        (f"t={NOW},v1=\u00e9", BODY, NOW, "the signature does not match"),
    ],
)
def test_a_webhook_signature_holds_within_its_window_only(header, body, now, why):
    if why is None:
        assert verify_webhook(SECRET, header, body, now) == NOW
    else:
        with pytest.raises(WebhookRefused, match=re.escape(why)):
            verify_webhook(SECRET, header, body, now)


@pytest.mark.parametrize(
    "tenants, told",
    [
        ({"acme"}, "PermissionError: /srv/in/acme/plans.txt"),  # every document acme's: the error itself
        (["acme", "acme"], "PermissionError: /srv/in/acme/plans.txt"),
        ({"acme", "globex"}, "its run r-1 failed; an operator can see why in Dagster"),  # it may quote the other's
    ],
)
def test_a_run_s_error_is_told_only_to_the_tenant_of_all_its_documents(tenants, told):
    assert run_failure_reason("r-1", "PermissionError: /srv/in/acme/plans.txt", tenants) == told


@pytest.mark.parametrize(
    "spec, kind",
    [
        (None, NoNotifier),
        ("none", NoNotifier),
        ("webhook:http://127.0.0.1:9/hook", WebhookNotifier),
        ("ws://127.0.0.1:8765", WebSocketHubNotifier),
        ("apigateway:https://abc.execute-api.eu-west-1.amazonaws.com/prod?table=ws&index=by-user", ApiGatewayNotifier),
    ],
)
def test_notifiers_from_spec(spec, kind):
    notifier = notifier_from_spec(spec, SECRET)
    assert type(notifier) is kind
    if kind is ApiGatewayNotifier:
        assert (notifier.endpoint, notifier.table, notifier.index_name) == (
            "https://abc.execute-api.eu-west-1.amazonaws.com/prod",
            "ws",
            "by-user",
        )


@pytest.mark.parametrize("spec", ["slack:#general", "apigateway:https://abc.example/prod", "webhook:"])
def test_bad_notify_specs_say_what_is_wanted(spec):
    with pytest.raises(ValueError, match="RAG_NOTIFY"):
        notifier_from_spec(spec, SECRET)


def test_a_watch_line():
    line = watch_line(message("ingested", chunks=3, vectors=3, seconds=1.5, documents=4, position=2).as_json())
    assert line.endswith("ingested  acme/a.txt  chunks 3, vectors 3, seconds 1.5")


@pytest.mark.parametrize(
    "sent, shown",
    [
        (
            {"type": "failed", "document_key": "acme/\x1b]0;owned\x07a.txt", "at": NOW},
            "failed    acme/\\x1b]0;owned\\x07a.txt",
        ),
        (
            {"type": "failed", "document_key": "a.txt", "at": NOW, "detail": {"reason": "bad\x1b[2J\nline"}},
            "reason bad\\x1b[2J\\x0aline",
        ),
        ({"type": "\u202eevil", "document_key": "k", "at": NOW}, "\\u202eevil"),
        ({"at": "soon", "detail": ["x"]}, "--:--:-- ?         ?"),
    ],
)
def test_a_watch_line_shows_what_the_hub_sent_without_terminal_escapes(sent, shown):
    line = watch_line(sent)
    assert shown in line and "\x1b" not in line and "\x07" not in line and "\u202e" not in line


# --- a webhook receiver ---------------------------------------------------------------------


@pytest.fixture
def receiver():
    r = WebhookReceiver(SECRET)
    yield r
    r.stop()


def test_a_webhook_gets_each_message_signed_and_retries_a_5xx(receiver):
    messages = [message("started", sid=1), message("ingested", sid=2), message("deleted", sid=3)]
    receiver.fail_next = 1
    delivery = WebhookNotifier(url=receiver.url, secret=SECRET).send(messages, time.monotonic() + 10)
    assert (delivery.sent, delivery.dropped) == (3, 0)
    assert [m["id"] for m in receiver.messages] == [m.id for m in messages] and receiver.rejected == 0

    unsigned = WebhookNotifier(url=receiver.url, secret="wrong").send(messages[:1], time.monotonic() + 10)
    assert (unsigned.sent, unsigned.dropped, receiver.rejected) == (0, 1, 1)  # a 401 is not retried


def test_a_replayed_webhook_is_refused_and_a_fresh_one_accepted():
    import httpx

    receiver = WebhookReceiver(SECRET, tolerance=1)  # a short window, so a replay is old within the test
    try:
        notifier = WebhookNotifier(url=receiver.url, secret=SECRET)
        assert notifier.send([message(sid=1)], time.monotonic() + 10).sent == 1
        ((headers, body),) = receiver.requests
        assert re.fullmatch(r"t=\d+,v1=[0-9a-f]{64}", headers["X-Rag-Signature"])
        time.sleep(2.1)
        replayed = httpx.post(
            receiver.url, content=body, headers={k: headers[k] for k in ("X-Rag-Signature", "Content-Type")}
        )
        assert replayed.status_code == 401 and "outside the 1 s window" in receiver.refusals[-1]
        assert notifier.send([message(sid=1)], time.monotonic() + 10).sent == 1  # the same message, signed now
        assert (len(receiver.messages), receiver.rejected) == (2, 1)
    finally:
        receiver.stop()


def test_a_webhook_that_is_down_costs_a_bounded_time_and_is_counted():
    notifier = WebhookNotifier(url=f"http://127.0.0.1:{free_port()}/hook", secret=SECRET, timeout_seconds=1)
    started = time.monotonic()
    delivery = notifier.send([message(sid=n) for n in range(50)], time.monotonic() + 5)
    assert (delivery.sent, delivery.dropped) == (0, 50) and "ConnectError" in delivery.errors[0]
    assert time.monotonic() - started < 5


# --- API Gateway's WebSocket connections (moto) ----------------------------------------------


def test_api_gateway_posts_to_each_connection_of_the_tenant_and_forgets_gone_ones(s3_env, monkeypatch):
    import boto3
    from moto.backends import get_backend
    from moto.core.exceptions import JsonRESTError

    dynamodb = boto3.client("dynamodb")
    table = f"ws-{time.time_ns()}"
    dynamodb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "connection_id", "KeyType": "HASH"}],
        AttributeDefinitions=[
            {"AttributeName": "connection_id", "AttributeType": "S"},
            {"AttributeName": "user_id", "AttributeType": "S"},
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "by-user",
                "KeySchema": [{"AttributeName": "user_id", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    for connection, tenant in [("c1", "acme"), ("c2", "acme"), ("c3", "globex"), ("gone", "acme")]:
        dynamodb.put_item(
            TableName=table, Item={"connection_id": {"S": f"{table}-{connection}"}, "user_id": {"S": tenant}}
        )

    backend = get_backend("apigatewaymanagementapi")["123456789012"]["us-east-1"]

    class Gone(JsonRESTError):
        code = 410

        def __init__(self):
            super().__init__("GoneException", "the connection is gone")

    post = backend.post_to_connection

    def post_or_gone(data, connection_id):
        if connection_id.endswith("-gone"):
            raise Gone()
        post(data, connection_id)

    monkeypatch.setattr(backend, "post_to_connection", post_or_gone)
    notifier = ApiGatewayNotifier(endpoint=os.environ["AWS_ENDPOINT_URL"], table=table, index_name="by-user")
    acme1, acme2, globex = (
        message(sid=1),
        message("deleted", sid=2),
        message(tenant="globex", key="globex/b.txt", sid=3),
    )
    delivery = notifier.send([acme1, acme2, globex], time.monotonic() + 30)

    assert (delivery.sent, delivery.dropped) == (3, 0)
    data = {c: backend.connections[f"{table}-{c}"].data for c in ("c1", "c2", "c3")}
    assert data["c1"] == data["c2"] == acme1.body() + acme2.body() and data["c3"] == globex.body()
    left = {i["connection_id"]["S"] for i in dynamodb.scan(TableName=table)["Items"]}
    assert left == {f"{table}-c1", f"{table}-c2", f"{table}-c3"}  # the gone connection forgotten


# --- the WebSocket hub ------------------------------------------------------------------------


@contextmanager
def running_hub(**options):
    """The hub on its own event loop in a thread of this process (`options`: notify_hub.run's)."""
    port, ready, loop = free_port(), asyncio.Event(), asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    future = asyncio.run_coroutine_threadsafe(run_hub("127.0.0.1", port, SECRET, ready, **options), loop)
    try:
        wait_for(ready.is_set, "the hub to listen", timeout=10, every=0.05)
        yield f"ws://127.0.0.1:{port}"
    finally:
        future.cancel()  # the server closes its connections on the way out
        wait_for(future.done, "the hub to stop", timeout=10, every=0.05)
        time.sleep(0.2)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)


@pytest.fixture
def hub():
    with running_hub() as url:
        yield url


def subscribe(url: str, tenant, presented):
    from websockets.sync.client import connect

    client = connect(url, open_timeout=5)
    client.send(json.dumps({"subscribe": tenant, "token": presented}))
    return client


def subscribed(client, tenant: str = "acme") -> None:
    assert json.loads(client.recv(timeout=5)) == {"subscribed": tenant}


def refused(client, timeout: float = 5) -> str:
    """The reason the hub gave when it closed `client` (code 1008)."""
    from websockets.exceptions import ConnectionClosed

    with pytest.raises(ConnectionClosed) as closed:
        while True:
            client.recv(timeout=timeout)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    return closed.value.rcvd.reason


def test_the_hub_gives_each_tenant_its_own_messages_and_refuses_others(hub):
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    acme = subscribe(hub, "acme", token("acme"))
    subscribed(acme)
    intruder = subscribe(hub, "globex", token("acme"))  # acme's token, globex's messages
    assert refused(intruder) == "this token is for tenant 'acme', not 'globex'"

    faker = connect(hub, open_timeout=5)
    faker.send(json.dumps({"publish": token("acme")}))  # a watch token cannot publish
    faker.send(json.dumps(message(tenant="acme", key="acme/forged.txt").as_json()))
    with pytest.raises(ConnectionClosed):
        faker.recv(timeout=5)

    sent = [message(sid=1), message(tenant="globex", key="globex/b.txt", sid=2), message("deleted", sid=3)]
    delivery = WebSocketHubNotifier(url=hub, secret=SECRET).send(sent, time.monotonic() + 10)
    assert (delivery.sent, delivery.dropped) == (3, 0)
    got = [json.loads(acme.recv(timeout=5)) for _ in range(2)]
    assert [m["id"] for m in got] == [sent[0].id, sent[2].id]  # not globex's, not the forged one
    with pytest.raises(TimeoutError):
        acme.recv(timeout=0.5)
    acme.close()


@pytest.mark.parametrize(
    "tenant, presented, why",
    [
        ("globex", lambda: token("acme"), "this token is for tenant 'acme', not 'globex'"),
        ("acme", lambda: token(ttl=-1), "token expired at "),
        ("acme", lambda: token(secret="not-the-secret"), "forged token"),
        ("globex", lambda: token("acme").replace(".acme.", ".globex."), "forged token"),
        ("acme", lambda: old_style_token("acme"), "an old-style token"),  # HMAC(secret, tenant): refused
        ("acme", lambda: token(key_id="0"), "token of a retired key id"),
        ("acme", lambda: None, "not a watch token"),
        ("../etc", lambda: token(), "not a valid tenant name"),
        (["acme"], lambda: token(), "not a valid tenant name"),
    ],
)
def test_the_hub_refuses_a_watcher_saying_why(hub, tenant, presented, why):
    assert refused(subscribe(hub, tenant, presented())).startswith(why)


def test_a_revoked_token_is_refused_and_its_subscription_closed_while_others_go_on(tmp_path):
    revoked = tmp_path / "notify-revoked"
    first, second, other = token(ttl=3600), token(ttl=3601), token("globex")
    revoked.write_text(f"# acme's laptop, lost\n{token_id(first)}\n")
    with running_hub(revoked=str(revoked), recheck_seconds=0.1) as url:
        assert refused(subscribe(url, "acme", first)) == "token revoked"
        acme, globex = subscribe(url, "acme", second), subscribe(url, "globex", other)
        subscribed(acme)
        subscribed(globex, "globex")
        revoked.write_text(revoked.read_text() + second + "\n")  # a whole token stands for its id
        assert refused(acme) == "token revoked"  # closed at the next check
        sent = message(tenant="globex", key="globex/b.txt")
        WebSocketHubNotifier(url=url, secret=SECRET).send([sent], time.monotonic() + 10)
        assert json.loads(globex.recv(timeout=5))["id"] == sent.id  # another tenant's watcher goes on
        globex.close()


def test_a_rotated_key_id_refuses_every_older_token():
    with running_hub(key_id="2") as url:
        assert refused(subscribe(url, "acme", token(key_id="1"))) == "token of a retired key id: ask for a new one"
        subscribed(subscribe(url, "acme", token(key_id="2")))


def test_a_subscription_ends_when_its_token_expires(hub):
    client = subscribe(hub, "acme", watch_token(SECRET, "acme", int(time.time()) + 2))
    subscribed(client)
    assert refused(client, timeout=10) == "token expired"


def test_the_relay_drops_malformed_publisher_messages_and_goes_on(hub, caplog):
    from websockets.sync.client import connect

    caplog.set_level("WARNING", logger="rag_assets.frontends.notify_hub")
    acme = subscribe(hub, "acme", token())
    subscribed(acme)
    with connect(hub, open_timeout=5) as publisher:
        publisher.send(json.dumps({"publish": publisher_token(SECRET)}))
        malformed = ["not json", "[1, 2]", '"acme"', '{"no": "tenant"}', '{"tenant": ["acme"]}', '{"tenant": {"a": 1}}',
                     '{"tenant": "../acme"}', b"\xff\xfe", "[" * 100_000]  # fmt: skip
        for raw in malformed:
            publisher.send(raw)
        good = message(sid=7)
        publisher.send(json.dumps(good.as_json()))  # the same connection, still relayed
        assert json.loads(acme.recv(timeout=5))["id"] == good.id
    dropped = [r.getMessage() for r in caplog.records if "dropped a publisher message" in r.getMessage()]
    assert len(dropped) == len(malformed) and dropped[-1].endswith(f"{len(malformed)} dropped since the hub started")
    acme.close()


# --- rag-assets watch and notify-token ----------------------------------------------------------


def watch_env(presented: str | None, **extra) -> dict:
    """A watcher's environment: its token, never the master secret."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAG_NOTIFY_SECRET", "RAG_NOTIFY_TOKEN")}
    return {**env, **({"RAG_NOTIFY_TOKEN": presented} if presented else {}), **extra}


class Watch:
    """`rag-assets watch --json` as a process, backing off 0.1 s to 0.3 s: what it prints on
    stdout (parsed) and on stderr, as it comes."""

    def __init__(self, url: str, presented: str, tenant: str = "acme", **env):
        command = [sys.executable, "-m", "rag_assets.frontends.cli", "watch", "--tenant", tenant, "--url", url,
                   "--json", "--backoff-seconds", "0.1", "--backoff-max-seconds", "0.3"]  # fmt: skip
        self.proc = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=watch_env(presented, **env)
        )
        self.out: queue.Queue = queue.Queue()
        self.err: list[str] = []
        threading.Thread(
            target=lambda: [self.out.put(json.loads(line)) for line in self.proc.stdout], daemon=True
        ).start()
        threading.Thread(target=lambda: [self.err.append(line) for line in self.proc.stderr], daemon=True).start()

    def said(self, text: str) -> bool:
        return text in "".join(self.err)

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)


@contextmanager
def hub_process(port: int, log, *options: str, scheme: str = "ws"):
    """`python -m rag_assets.frontends.notify_hub` on 127.0.0.1:port, until the block ends (SIGTERM)."""
    import socket

    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "rag_assets.frontends.notify_hub", "--url", f"{scheme}://127.0.0.1:{port}",
             *options],
            env={**os.environ, "RAG_NOTIFY_SECRET": SECRET}, stdout=out, stderr=subprocess.STDOUT, cwd=REPO,
        )  # fmt: skip

    def listening() -> bool:
        assert proc.poll() is None, log.read_text()
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    try:
        wait_for(listening, "the hub process to listen", timeout=30, every=0.1)
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)  # an ignored SIGTERM shows here: see signal_dispositions_kept (conftest)
        except subprocess.TimeoutExpired:
            status = Path(f"/proc/{proc.pid}/status").read_text()
            proc.kill()
            proc.wait(timeout=30)
            kept = [line for line in status.splitlines() if line.startswith(("State", "Sig", "Threads"))]
            raise AssertionError(
                f"the hub did not stop within 10 s of SIGTERM: {kept}\n{log.read_text()[-2000:]}"
            ) from None


def test_watch_started_before_the_hub_waits_for_it_and_reconnects_across_a_restart(tmp_path):
    port = free_port()
    url = f"ws://127.0.0.1:{port}"
    watch = Watch(url, token())
    notifier = WebSocketHubNotifier(url=url, secret=SECRET)
    try:
        wait_for(lambda: watch.said("hub not reachable"), "watch to wait for the hub", timeout=30)
        assert re.search(r"hub not reachable \(.*\), retrying in 0\.[123]s", "".join(watch.err))
        with hub_process(port, tmp_path / "hub.log"):
            wait_for(lambda: watch.said("watching tenant 'acme'"), "watch to subscribe", timeout=30)
            first = message("started", sid=1)
            assert notifier.send([first], time.monotonic() + 10).sent == 1
            assert watch.out.get(timeout=10)["id"] == first.id
        wait_for(lambda: watch.said("lost the hub"), "watch to see the hub go", timeout=30)
        with hub_process(port, tmp_path / "hub.log"):
            wait_for(lambda: watch.said("reconnected: watching tenant 'acme'"), "watch to reconnect", timeout=30)
            second = message("ingested", sid=2)
            assert notifier.send([second], time.monotonic() + 10).sent == 1
            assert watch.out.get(timeout=10)["id"] == second.id
        assert watch.proc.poll() is None and watch.said(", reconnecting in 0.1s")
    except AssertionError as e:
        raise AssertionError(f"{e}\nwatch's stderr:\n{''.join(watch.err)}") from None
    finally:
        watch.stop()


def test_watch_prints_a_tenant_s_messages_as_json_lines(hub):
    watch = Watch(hub, token())
    try:
        wait_for(lambda: watch.said("watching tenant 'acme'"), "watch to subscribe", timeout=30)
        sent = [
            message("started", sid=1),
            message(tenant="globex", key="globex/b.txt", sid=2),
            message("ingested", sid=3),
        ]
        WebSocketHubNotifier(url=hub, secret=SECRET).send(sent, time.monotonic() + 5)
        got = [watch.out.get(timeout=10), watch.out.get(timeout=10)]
        assert [m["id"] for m in got] == [sent[0].id, sent[2].id] and got[0]["tenant"] == "acme"
    finally:
        watch.stop()


@pytest.mark.parametrize(
    "tenant, presented, why",
    [
        ("globex", lambda: token("acme"), "this token is for tenant 'acme', not 'globex'"),
        ("acme", lambda: token(ttl=-5), "token expired at "),
        ("acme", lambda: token(secret="not-the-secret"), "forged token"),
    ],
)
def test_watch_exits_saying_why_it_was_refused_and_does_not_retry(hub, tenant, presented, why):
    done = subprocess.run(
        [sys.executable, "-m", "rag_assets.frontends.cli", "watch", "--tenant", tenant, "--url", hub],
        check=False, capture_output=True, text=True, env=watch_env(presented()), timeout=60,
    )  # fmt: skip
    assert done.returncode == 1 and f"rag-assets watch: refused: {why}" in done.stderr, done.stderr
    assert "retrying" not in done.stderr and done.stdout == ""


def test_watch_gives_up_after_retry_for_with_its_own_exit_code(monkeypatch, capsys):
    monkeypatch.setenv("RAG_NOTIFY_TOKEN", token())
    url = f"ws://127.0.0.1:{free_port()}"
    assert cli_main(["watch", "--tenant", "acme", "--url", url, "--retry-for", "1s", "--backoff-seconds", "0.1"]) == 3
    err = capsys.readouterr().err
    assert "hub not reachable" in err and "retrying in 0.1s" in err and "retrying in 0.2s" in err
    assert err.rstrip().endswith("gave up after 1s")


def test_watch_over_wss(tmp_path, monkeypatch):
    if shutil.which("openssl") is None:
        pytest.skip("openssl makes the test's certificate")
    cert, key = tmp_path / "hub.pem", tmp_path / "hub.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # this process (the publisher) and watch trust it
    port = free_port()
    url = f"wss://127.0.0.1:{port}"
    with hub_process(port, tmp_path / "hub.log", "--certfile", str(cert), "--keyfile", str(key), scheme="wss"):
        watch = Watch(url, token())
        try:
            wait_for(lambda: watch.said("watching tenant 'acme' at wss://"), "watch to subscribe over TLS", timeout=30)
            sent = message(sid=1)
            assert WebSocketHubNotifier(url=url, secret=SECRET).send([sent], time.monotonic() + 10).sent == 1
            assert watch.out.get(timeout=10)["id"] == sent.id
        finally:
            watch.stop()


def test_notify_token_prints_a_token_of_one_tenant_and_the_id_that_revokes_it(monkeypatch, capsys):
    monkeypatch.setenv("RAG_NOTIFY_SECRET", SECRET)
    monkeypatch.setenv("RAG_NOTIFY_KEY_ID", "k2")
    assert cli_main(["notify-token", "--tenant", "acme", "--ttl", "12h"]) == 0
    out, err = capsys.readouterr()
    granted = verify_watch_token(SECRET, out.strip(), "acme", time.time(), key_id="k2")
    assert abs(granted.expires - (time.time() + 12 * 3600)) < 5 and f"token id {granted.id}" in err
    assert cli_main(["notify-token", "--tenant", "acme"]) == 0  # the default: 7 days
    assert abs(read_watch_token(capsys.readouterr().out.strip())[0].expires - (time.time() + 7 * 86_400)) < 5


@pytest.mark.parametrize(
    "args, env, why",
    [
        (["notify-token", "--tenant", "acme"], {}, "set RAG_NOTIFY_SECRET"),
        (["notify-token", "--tenant", "../x"], {"RAG_NOTIFY_SECRET": SECRET}, "not a valid tenant name"),
        (["notify-token", "--tenant", "acme", "--ttl", "forever"], {"RAG_NOTIFY_SECRET": SECRET}, "not a duration"),
        (
            ["watch", "--tenant", "acme", "--url", "ws://127.0.0.1:9"],
            {"RAG_NOTIFY_SECRET": SECRET},
            "set RAG_NOTIFY_TOKEN",
        ),
        (
            ["watch", "--tenant", "../x", "--url", "ws://127.0.0.1:9"],
            {"RAG_NOTIFY_TOKEN": "t"},
            "not a valid tenant name",
        ),
        (["watch", "--tenant", "acme", "--url", "http://h:1"], {"RAG_NOTIFY_TOKEN": "t"}, "give --url ws://"),
        (
            ["watch", "--tenant", "acme", "--url", "ws://h:1", "--retry-for", "ever"],
            {"RAG_NOTIFY_TOKEN": "t"},
            "not a duration",
        ),
    ],
)
def test_the_notification_commands_say_what_is_missing(args, env, why, monkeypatch, capsys):
    for name in ("RAG_NOTIFY", "RAG_NOTIFY_SECRET", "RAG_NOTIFY_TOKEN", "RAG_NOTIFY_KEY_ID"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert cli_main(args) == 2
    assert why in capsys.readouterr().err


# --- the sensor over a real instance ---------------------------------------------------------


def notify_tick(instance, sensor, notifier, cursor):
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"notifier": notifier})
    result = sensor(context)
    return result.cursor


def test_the_sensor_tells_each_tenant_its_documents_life(instance, tmp_path, monkeypatch, rag_env, receiver):
    from rag_assets.defs.sync.sensors import build_listing_sensor

    sensor = build_notification_sensor({}, ON)
    notifier = WebhookNotifier(url=receiver.url, secret=SECRET)
    cursor = notify_tick(instance, sensor, notifier, None)  # starts from now
    inbox = local_source(tmp_path, monkeypatch, {"acme/a.txt": "Rocket skates.", "globex/b.txt": "Magnets."})
    listing = Harness(instance, build_listing_sensor(ON))
    listing.tick()
    cursor = notify_tick(instance, sensor, notifier, cursor)
    assert receiver.by_document() == {
        ("acme", "acme/a.txt"): ["started", "ingested"],
        ("globex", "globex/b.txt"): ["started", "ingested"],
    }
    ingested = next(m for m in receiver.messages if m["type"] == "ingested")
    assert ingested["detail"]["chunks"] == ingested["detail"]["vectors"] == 1 and ingested["detail"]["seconds"] > 0

    (inbox / "acme/bad.pdf").write_bytes(b"%PDF-1.4 not really")
    (inbox / "globex/b.txt").unlink()
    listing.tick()  # an ingest run of bad.pdf, a purge of b.txt
    partition = next(p for p in instance.get_dynamic_partitions("documents") if p.startswith("acme|acme/a.txt"))
    build_definitions(rag_env).resolve_job_def("ingest_documents").execute_in_process(
        instance=instance, partition_key=partition
    )
    assert int(notify_tick(instance, sensor, notifier, cursor)) > int(cursor)
    assert receiver.by_document() == {
        ("acme", "acme/a.txt"): ["started", "ingested", "started", "unchanged"],
        ("globex", "globex/b.txt"): ["started", "ingested", "deleted"],
        ("acme", "acme/bad.pdf"): ["started", "failed"],
    }
    failed = next(m for m in receiver.messages if m["type"] == "failed")
    assert failed["detail"]["reason"].startswith("corrupt PDF") and failed["run_id"]
    assert len({m["id"] for m in receiver.messages}) == len(receiver.messages)


def test_a_run_s_error_reaches_a_tenant_only_if_the_run_is_all_its_own(
    instance, tmp_path, monkeypatch, rag_env, receiver
):
    from rag_assets.ingest import discover, ingest
    from rag_assets.resources.object_store import ObjectStore
    from rag_assets.resources.vector_stores import LanceDBStore

    inbox = local_source(tmp_path, monkeypatch, {"acme/merger-plans.txt": "Confidential.", "globex/b.txt": "Magnets."})
    private = str(inbox / "acme/merger-plans.txt")

    def refuse(
        self, model_id, dimension, documents, held=None
    ):  # a store error quoting acme's file: a step error, no document named
        raise RuntimeError(f"cannot write the rows of {private}")

    monkeypatch.setattr(LanceDBStore, "replace_documents", refuse)
    sensor, notifier = build_notification_sensor({}, ON), WebhookNotifier(url=receiver.url, secret=SECRET)
    cursor = notify_tick(instance, sensor, notifier, None)
    refs, _ = discover([str(inbox)], ObjectStore(), None, "segment:0")
    defs = build_definitions(rag_env)
    both = ingest(refs, defs=defs, instance=instance)
    assert (
        len(both.runs) == 1 and len(both.failed) == 2 and private in both.failed[0]["reason"]
    )  # one run, both tenants
    cursor = notify_tick(instance, sensor, notifier, cursor)
    failed = {m["tenant"]: m for m in receiver.messages if m["type"] == "failed"}
    assert set(failed) == {"acme", "globex"}
    for m in failed.values():  # globex never hears of acme's file; acme is told as much as globex
        assert m["detail"]["reason"] == f"its run {both.runs[0]} failed; an operator can see why in Dagster"
    assert all("merger" not in json.dumps(m) for m in receiver.messages if m["tenant"] == "globex")

    alone = ingest({r: v for r, v in refs.items() if r.tenant == "acme"}, defs=defs, instance=instance)
    notify_tick(instance, sensor, notifier, cursor)
    told = [m for m in receiver.messages if m["type"] == "failed" and m["run_id"] == alone.runs[0]]
    assert [m["tenant"] for m in told] == ["acme"]  # a run of acme's documents only: the error itself
    assert told[0]["detail"]["reason"] == f"RuntimeError: cannot write the rows of {private}"


# --- a real daemon ----------------------------------------------------------------------------


@pytest.mark.slow
def test_a_daemon_tells_each_tenant_in_order(instance, tmp_path, monkeypatch, rag_env, receiver):
    inbox = local_source(tmp_path, monkeypatch, {})
    (inbox / "acme").mkdir(parents=True)
    monkeypatch.setenv("RAG_NOTIFY", f"webhook:{receiver.url}")
    monkeypatch.setenv("RAG_NOTIFY_SECRET", SECRET)
    daemon = Daemon(tmp_path / "daemon.log")
    daemon.start()
    try:
        wait_for(
            lambda: sensor_has_ticked(instance, "notifications"), "the notification sensor's first tick", timeout=120
        )
        (inbox / "globex").mkdir()
        (inbox / "acme/a.txt").write_text("The harbour office opens at nine.")
        (inbox / "globex/b.txt").write_text("Magnets attract iron.")
        (inbox / "acme/bad.pdf").write_bytes(b"%PDF-1.4 broken")
        done = lambda key, kind: kind in receiver.by_document().get(key, [])
        wait_for(
            lambda: done(("acme", "acme/a.txt"), "ingested") and done(("acme", "acme/bad.pdf"), "failed"),
            "first messages",
            timeout=180,
        )
        (inbox / "acme/a.txt").write_text("The harbour office now opens at eleven.")
        wait_for(
            lambda: receiver.by_document()[("acme", "acme/a.txt")].count("ingested") == 2,
            "the change's messages",
            timeout=180,
        )
        (inbox / "globex/b.txt").unlink()
        wait_for(lambda: done(("globex", "globex/b.txt"), "deleted"), "the delete's message", timeout=180)
    except AssertionError as e:
        raise AssertionError(
            f"{e}\nmessages: {receiver.by_document()}\ndaemon log:\n{daemon.read_log()[-3000:]}"
        ) from None
    finally:
        daemon.stop()

    life = receiver.by_document()
    assert set(life) == {("acme", "acme/a.txt"), ("acme", "acme/bad.pdf"), ("globex", "globex/b.txt")}
    for document, kinds in life.items():  # each run: queued, started, then its outcome
        assert LIFE.fullmatch(" ".join(kinds) + " "), (document, kinds)
    assert life[("acme", "acme/bad.pdf")][-1] == "failed" and "ingested" not in life[("acme", "acme/bad.pdf")]
    assert life[("acme", "acme/a.txt")].count("ingested") == 2
    assert life[("globex", "globex/b.txt")][-2:] == ["ingested", "deleted"]
    for m in receiver.messages:
        assert m["document_key"].startswith(f"{m['tenant']}/")  # each message only to its tenant
    delays = sorted(arrived - m["at"] for m, arrived in zip(receiver.messages, receiver.arrived, strict=True))
    print(
        f"\nDagster event -> message: median {delays[len(delays) // 2]:.2f} s, max {delays[-1]:.2f} s over "
        f"{len(delays)} messages"
    )


# A document's messages under a daemon: runs queued, started and (unless a batch-mate failed
# it by name: then it is queued again) ended; a delete last.
LIFE = re.compile(r"(queued started ((ingested|unchanged|failed) )?)+(deleted )?")


def test_a_catchup_date_is_told_to_its_tenants(instance, tmp_path, monkeypatch, rag_env, receiver):
    from rag_assets_tests.test_catchup import csv_source, run_date, write_config, write_csv

    write_csv(tmp_path / "exports" / "2025-01-01.csv", [{"id": "p1", "formatted_text": "Rocket skates."}])
    write_csv(
        tmp_path / "tickets" / "2025-01-01.csv",
        [
            {"id": "t1", "tenant": "acme", "formatted_text": "Skates ignite."},
            {"id": "t2", "tenant": "globex", "formatted_text": "Door broken."},
        ],
    )
    sources = {
        "exports": csv_source("exports/{date}.csv"),  # one tenant: acme
        "tickets": {**csv_source("tickets/{date}.csv"), "tenant": None, "tenant_column": "tenant"},
    }
    monkeypatch.setenv("RAG_CATCHUP_CONFIG", str(write_config(tmp_path / "c.yaml", sources)))
    sensor = build_notification_sensor({"exports": "acme", "tickets": None}, ON)
    notifier = WebhookNotifier(url=receiver.url, secret=SECRET)
    cursor = notify_tick(instance, sensor, notifier, None)
    run_date(instance, "exports", "2025-01-01")
    run_date(instance, "tickets", "2025-01-01")
    run_date(instance, "tickets", "2025-01-01")  # again: nothing new
    notify_tick(instance, sensor, notifier, cursor)
    assert receiver.by_document() == {
        ("acme", "exports/2025-01-01"): ["started", "ingested"],
        ("acme", "tickets/2025-01-01"): ["ingested", "unchanged"],  # tenants of a column: known once read
        ("globex", "tickets/2025-01-01"): ["ingested", "unchanged"],
    }
    acme = next(m for m in receiver.messages if m["document_key"] == "tickets/2025-01-01" and m["tenant"] == "acme")
    assert (acme["detail"]["records"], acme["detail"]["written"]) == (1, 1)
