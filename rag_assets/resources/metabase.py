"""Metabase client: the records of a saved question (card) for one date, for the catchup sources.

One call is `POST {url}/api/card/{id}/query/json` with the date as a native question's template tag
(`{"type": "date/single", "target": ["variable", ["template-tag", NAME]], "value": "2025-01-01"}`,
Metabase's API docs for /api/card/{card-id}/query/{export-format}), authenticated by an API key in
`X-API-KEY`. 429, 5xx, timeouts and connection errors are retried with exponential backoff and jitter,
or after the server's `Retry-After`; every other failure raises `MetabaseError` at once, naming the
source, the question, the status and the start of the answer. The API key is never logged.
"""

from __future__ import annotations

import json
import logging
import os
import time
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from typing import Any

import dagster as dg
import httpx
import tenacity

log = logging.getLogger(__name__)

URL_ENV = "METABASE_URL"
API_KEY_ENV = "METABASE_API_KEY"
BACKOFF_MAX_SECONDS = 30.0  # the longest wait between two tries without a Retry-After
RETRY_AFTER_MAX_SECONDS = 300.0  # a Retry-After longer than this is cut to it: a run should not sleep for hours
SNIPPET_CHARS = 200  # how much of an answer an error message quotes
_RETRYABLE_TRANSPORT = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


class MetabaseError(Exception):
    """A Metabase question could not be read: configuration, HTTP status, transport or result shape."""


class _Retryable(Exception):
    """One try that failed in a way worth another (429, 5xx, timeout, connection); `retry_after` in seconds."""

    def __init__(self, description: str, retry_after: float | None = None) -> None:
        super().__init__(description)
        self.description = description
        self.retry_after = retry_after


class MetabaseClient(dg.ConfigurableResource):
    """Reads the records of a Metabase question for given template-tag values, with retries.

    `url` defaults to METABASE_URL and `api_key` to METABASE_API_KEY, both read at call time, so a key
    taken from the environment never appears in the resource's config (or the UI); to give it in config,
    give `dg.EnvVar("...")`, which Dagster does not show either.
    """

    url: str | None = None
    api_key: str | None = None
    timeout_seconds: float = 120.0
    max_retries: int = 5

    def query_records(self, question_id: int, parameters: dict[str, str], *, source: str) -> list[dict]:
        """The records of question `question_id`, each template tag NAME in `parameters` set to its date value."""
        where = f"catchup source {source!r}: Metabase question {question_id}"
        base_url = (self.url or os.environ.get(URL_ENV) or "").strip().rstrip("/")
        api_key = self.api_key or os.environ.get(API_KEY_ENV) or ""
        if not base_url:
            raise MetabaseError(f"{where}: no Metabase URL: set {URL_ENV} (e.g. https://metabase.example.com)")
        if not base_url.startswith(("http://", "https://")):
            raise MetabaseError(f"{where}: {URL_ENV} must start with http:// or https://, got {base_url!r}")
        if not api_key:
            raise MetabaseError(f"{where}: no Metabase API key: set {API_KEY_ENV}")
        endpoint = f"{base_url}/api/card/{int(question_id)}/query/json"
        body = {
            "parameters": [
                {"type": "date/single", "target": ["variable", ["template-tag", name]], "value": value}
                for name, value in parameters.items()
            ],
            "format_rows": False,
        }
        headers = {"X-API-KEY": api_key, "Accept": "application/json"}

        def attempt(client: httpx.Client) -> list[dict]:
            try:
                response = client.post(endpoint, json=body, headers=headers)
            except httpx.TimeoutException as exc:
                late = f"{where} did not answer within {self.timeout_seconds:g}s ({type(exc).__name__})"
                raise _Retryable(late) from exc
            except _RETRYABLE_TRANSPORT as exc:
                raise _Retryable(f"{where} could not be reached at {base_url}: {type(exc).__name__}: {exc}") from exc
            except (httpx.HTTPError, httpx.InvalidURL) as exc:
                refused = f"{where}: cannot send the request to {base_url}: {type(exc).__name__}: {exc}"
                raise MetabaseError(refused) from exc
            status = response.status_code
            if status == 429 or status >= 500:
                raise _Retryable(_answered(where, response, api_key), _retry_after(response.headers))
            if not 200 <= status < 300:
                raise MetabaseError(_answered(where, response, api_key))
            return _records(where, response, api_key)

        def before_sleep(state: tenacity.RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            wait = state.next_action.sleep if state.next_action else 0.0
            log.warning("%s; retry %d/%d in %.1fs", exc, state.attempt_number, self.max_retries, wait)

        tries = max(0, self.max_retries) + 1
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(_Retryable),
            stop=tenacity.stop_after_attempt(tries),
            wait=_wait,
            before_sleep=before_sleep,
            reraise=True,
        )
        started = time.monotonic()
        with httpx.Client(timeout=self.timeout_seconds) as client:
            try:
                records = retrying(attempt, client)
            except _Retryable as exc:  # only raised once the tries are used up
                raise MetabaseError(f"{exc.description} (gave up after {tries} attempts)") from None
        log.info("%s: %d records for %s in %.1fs", where, len(records), dict(parameters), time.monotonic() - started)
        return records


_backoff = tenacity.wait_random_exponential(multiplier=1.0, max=BACKOFF_MAX_SECONDS)  # "full jitter"


def _wait(state: tenacity.RetryCallState) -> float:
    """The server's Retry-After when it sent one, else exponential backoff with jitter."""
    exc = state.outcome.exception() if state.outcome else None
    if isinstance(exc, _Retryable) and exc.retry_after is not None:
        return exc.retry_after
    return _backoff(state)


def _retry_after(headers: httpx.Headers) -> float | None:
    """`Retry-After` in seconds (a number, or an HTTP date), capped; None when absent or unreadable."""
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return min(RETRY_AFTER_MAX_SECONDS, max(0.0, seconds))


def _answered(where: str, response: httpx.Response, api_key: str) -> str:
    """`<where> answered 401 Unauthorized: <start of the body>`."""
    status = response.status_code
    phrase = response.reason_phrase
    if not phrase:
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = ""
    text = f"{where} answered {status} {phrase}".rstrip()
    body = _snippet(response.text, api_key)
    return f"{text}: {body}" if body else text


def _records(where: str, response: httpx.Response, api_key: str) -> list[dict]:
    """The body as a list of JSON objects, or a MetabaseError saying what it was instead."""
    expected = f"{where} answered {response.status_code} but not a JSON list of records"
    try:
        data = response.json()
    except ValueError:
        kind = response.headers.get("content-type", "no content type")
        shown = _snippet(response.text, api_key) or "an empty body"
        raise MetabaseError(f"{expected}: got a body that is not JSON ({kind}): {shown}") from None
    if not isinstance(data, list):
        raise MetabaseError(f"{expected}: got a JSON {_json_type(data)}: {_snippet(response.text, api_key)}")
    for i, item in enumerate(data):
        if not isinstance(item, dict):
            shown = _snippet(json.dumps(item), api_key)
            raise MetabaseError(f"{expected}: got a JSON array whose item {i} is a JSON {_json_type(item)}: {shown}")
    return data


def _json_type(value: Any) -> str:
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return "null" if value is None else type(value).__name__


def _snippet(text: str, api_key: str) -> str:
    """The start of `text` on one line, with the API key blanked should a server ever echo it."""
    if api_key:
        text = text.replace(api_key, "***")
    text = " ".join(text.split())
    return text if len(text) <= SNIPPET_CHARS else text[:SNIPPET_CHARS] + "..."
