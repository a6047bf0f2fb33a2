"""MetabaseClient against the fake Metabase over real HTTP: records per date, the parameter's shape,
retries (503, 429 + Retry-After, timeouts, refused connections), failures that must not retry, bad
answers and missing configuration."""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from rag_assets.resources.metabase import MetabaseClient, MetabaseError
from rag_assets_tests.fakes.metabase_server import FakeMetabaseServer

KEY = "mb-secret-key-0123456789"
CARD = 232
PATH = f"/api/card/{CARD}/query/json"
ROWS = {
    "2025-01-01": [{"id": 1, "formatted_text": "first order"}, {"id": 2, "formatted_text": "second order"}],
    "2025-01-02": [{"id": 3, "formatted_text": "third order", "amount": 12.5, "note": None}],
}


@pytest.fixture(autouse=True)
def no_metabase_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("METABASE_URL", raising=False)
    monkeypatch.delenv("METABASE_API_KEY", raising=False)


@pytest.fixture
def server() -> Iterator[FakeMetabaseServer]:
    with FakeMetabaseServer({CARD: {"template_tag": "start_date", "rows": ROWS}}, api_key=KEY) as srv:
        yield srv


@pytest.fixture
def client(server: FakeMetabaseServer) -> MetabaseClient:
    return MetabaseClient(url=server.url, api_key=KEY, timeout_seconds=5, max_retries=3)


def query(client: MetabaseClient, day: str = "2025-01-01", card: int = CARD) -> list[dict]:
    return client.query_records(card, {"start_date": day}, source="orders")


def statuses(server: FakeMetabaseServer, path: str = PATH) -> list[int]:
    return [r["status"] for r in server.requests_to(path)]


def test_records_of_a_date(client: MetabaseClient) -> None:
    assert query(client, "2025-01-01") == ROWS["2025-01-01"]
    assert query(client, "2025-01-02") == ROWS["2025-01-02"]
    assert query(client, "2025-01-03") == []


def test_the_parameter_is_sent_in_metabases_shape(client: MetabaseClient, server: FakeMetabaseServer) -> None:
    query(client, "2025-01-02")
    (request,) = server.requests
    assert (request["method"], request["path"]) == ("POST", PATH)
    assert request["headers"]["x-api-key"] == KEY
    assert request["headers"]["content-type"] == "application/json"
    assert request["json"] == {
        "parameters": [
            {"type": "date/single", "target": ["variable", ["template-tag", "start_date"]], "value": "2025-01-02"}
        ],
        "format_rows": False,
    }


def test_a_503_is_retried(client: MetabaseClient, server: FakeMetabaseServer) -> None:
    server.fail_next(503)  # no Retry-After: exponential backoff with jitter (under a second for the first)
    assert query(client) == ROWS["2025-01-01"]
    assert statuses(server) == [503, 200]


def test_a_429_waits_for_retry_after(client: MetabaseClient, server: FakeMetabaseServer) -> None:
    server.fail_next(429, retry_after=0.3)
    assert query(client) == ROWS["2025-01-01"]
    first, second = server.requests_to(PATH)
    assert [first["status"], second["status"]] == [429, 200]
    assert second["time"] - first["time"] >= 0.25


def test_retries_give_up_after_max_retries(server: FakeMetabaseServer) -> None:
    server.fail_next(502, retry_after=0, times=10)
    client = MetabaseClient(url=server.url, api_key=KEY, max_retries=2)
    with pytest.raises(MetabaseError) as err:
        query(client)
    assert statuses(server) == [502, 502, 502]
    message = str(err.value)
    assert "catchup source 'orders'" in message and f"question {CARD}" in message
    assert "502 Bad Gateway" in message and "gave up after 3 attempts" in message


@pytest.mark.parametrize(
    ("status", "phrase"), [(401, "401 Unauthorized"), (403, "403 Forbidden"), (404, "404 Not Found")]
)
def test_auth_and_missing_question_fail_at_once(server: FakeMetabaseServer, status: int, phrase: str) -> None:
    card, key = CARD, KEY
    if status == 401:
        key = "not-the-key"
    elif status == 403:
        server.fail_next(403)
    else:
        card = 999
    client = MetabaseClient(url=server.url, api_key=key, max_retries=3)
    started = time.monotonic()
    with pytest.raises(MetabaseError) as err:
        query(client, card=card)
    assert time.monotonic() - started < 1.0
    assert statuses(server, f"/api/card/{card}/query/json") == [status]  # no retry
    message = str(err.value)
    assert message.startswith(f"catchup source 'orders': Metabase question {card} answered {phrase}: {{")
    assert '"message"' in message
    assert key not in message


def test_a_wrong_template_tag_is_a_400_and_not_retried(server: FakeMetabaseServer, client: MetabaseClient) -> None:
    with pytest.raises(MetabaseError, match=r"question 232 answered 400 Bad Request: .*no template tag named 'day'"):
        client.query_records(CARD, {"day": "2025-01-01"}, source="orders")
    with pytest.raises(MetabaseError, match=r"answered 400 Bad Request: .*Missing required parameter"):
        client.query_records(CARD, {}, source="orders")
    assert statuses(server) == [400, 400]


@pytest.mark.parametrize(
    ("result", "said"),
    [
        ({"status": "failed", "error": "Column not found"}, r"got a JSON object: \{\"status\": \"failed\""),
        ([[1, "first order"]], r"got a JSON array whose item 0 is a JSON array: \[1, \"first order\"\]"),
        ([{"id": 1}, "oops"], r"got a JSON array whose item 1 is a JSON string: \"oops\""),
        (None, r"got a JSON null: null"),
        (b"<html><body>Sign in</body></html>", r"got a body that is not JSON \(text/html.*\): <html><body>Sign in"),
    ],
)
def test_a_malformed_result_fails_clearly(
    client: MetabaseClient, server: FakeMetabaseServer, result: object, said: str
) -> None:
    server.malformed_next(result)
    with pytest.raises(MetabaseError, match=r"question 232 answered 200 but not a JSON list of records: " + said):
        query(client)
    assert statuses(server) == [200]  # not retried
    assert query(client) == ROWS["2025-01-01"]  # once only


def test_a_missing_url_or_key_says_what_to_set(server: FakeMetabaseServer) -> None:
    with pytest.raises(MetabaseError, match=r"catchup source 'orders': .*set METABASE_URL"):
        query(MetabaseClient(api_key=KEY))
    with pytest.raises(MetabaseError, match=r"catchup source 'orders': .*set METABASE_API_KEY"):
        query(MetabaseClient(url=server.url))
    with pytest.raises(MetabaseError, match=r"METABASE_URL must start with http:// or https://"):
        query(MetabaseClient(url="metabase.example.com", api_key=KEY))
    assert server.requests == []


def test_url_and_key_come_from_the_environment(server: FakeMetabaseServer, monkeypatch: pytest.MonkeyPatch) -> None:
    client = MetabaseClient()
    monkeypatch.setenv("METABASE_URL", server.url + "/")
    monkeypatch.setenv("METABASE_API_KEY", KEY)
    assert query(client) == ROWS["2025-01-01"]
    assert server.requests[0]["headers"]["x-api-key"] == KEY
    assert client.api_key is None and KEY not in repr(client)  # read at call time, never in the config


def test_refused_connections_are_retried_then_fail(caplog: pytest.LogCaptureFixture) -> None:
    with FakeMetabaseServer(api_key=KEY) as gone:
        url = gone.url
    client = MetabaseClient(url=url, api_key=KEY, max_retries=1)
    with caplog.at_level(logging.DEBUG), pytest.raises(MetabaseError) as err:
        query(client)
    assert "could not be reached" in str(err.value) and "ConnectError" in str(err.value)
    assert "gave up after 2 attempts" in str(err.value)
    assert "retry 1/1" in caplog.text


def test_timeouts_are_retried_then_fail() -> None:
    with socket.socket() as silent:  # accepts connections (the kernel's backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        client = MetabaseClient(url=f"http://127.0.0.1:{port}", api_key=KEY, timeout_seconds=0.2, max_retries=1)
        with pytest.raises(MetabaseError, match=r"did not answer within 0.2s \(ReadTimeout\)") as err:
            query(client)
    assert "gave up after 2 attempts" in str(err.value)


def test_the_key_is_never_logged(
    client: MetabaseClient, server: FakeMetabaseServer, caplog: pytest.LogCaptureFixture
) -> None:
    server.fail_next(503, retry_after=0)
    with caplog.at_level(logging.DEBUG):
        query(client)
        server.fail_next(403)
        with pytest.raises(MetabaseError):
            query(client)
    assert "retry 1/3" in caplog.text and "records" in caplog.text
    assert KEY not in caplog.text


def test_the_fake_takes_form_encoded_parameters(server: FakeMetabaseServer) -> None:
    """Older Metabase versions take the export endpoint's parameters as a form field holding JSON."""
    target = ["variable", ["template-tag", "start_date"]]
    parameters = [{"type": "date/single", "target": target, "value": "2025-01-02"}]
    form = {"parameters": json.dumps(parameters), "format_rows": "false"}
    answer = httpx.post(server.url + PATH, data=form, headers={"X-API-KEY": KEY})
    assert answer.status_code == 200 and answer.json() == ROWS["2025-01-02"]
    assert server.requests[-1]["json"] == {"parameters": parameters, "format_rows": "false"}
    bad = httpx.post(server.url + PATH, data={"parameters": "not json"}, headers={"X-API-KEY": KEY})
    assert bad.status_code == 400 and "parameters must be a JSON array" in bad.json()["message"]
    other = httpx.post(server.url + f"/api/card/{CARD}/query/csv", json={}, headers={"X-API-KEY": KEY})
    assert other.status_code == 404 and "message" in other.json()
