"""Fake Metabase API for tests, served over real HTTP: saved questions (cards) answered per date.

Connect the real client with::

    cards = {232: {"template_tag": "start_date", "rows": {"2025-01-01": [{"id": 1, "text": "..."}]}}}
    with FakeMetabaseServer(cards, api_key="mb-test-key") as server:
        MetabaseClient(url=server.url, api_key="mb-test-key").query_records(
            232, {"start_date": "2025-01-01"}, source="orders"
        )

Only ``POST /api/card/{id}/query/json`` is served (other paths: 404). The request must carry the
key in ``X-API-KEY`` (else 401) and exactly one parameter, the card's template tag, in the shape
``{"type": "date/single", "target": ["variable", ["template-tag", TAG]], "value": "YYYY-MM-DD"}``
(else 400), in a JSON body or a form-encoded ``parameters=<json string>`` body as older Metabase
versions take (recorded in ``requests`` as the parsed fields). An unknown card answers 404; a date
without rows answers ``[]``. Errors are JSON ``{"message": ...}`` (real Metabase sometimes answers plain text).

Faults: ``server.fail_next(503, retry_after=0.2, times=2)`` as for every fake (after the key check);
``server.malformed_next({"status": "failed"})`` makes the next valid query answer 200 with that JSON
value instead of its rows, or with the bytes as they are when given bytes (not JSON at all).
``server.requests`` records every request (path, headers, json, status, time).
"""

from __future__ import annotations

import json
import re
import threading
from collections import deque
from collections.abc import Mapping
from datetime import date
from typing import Any
from urllib.parse import parse_qs

from ._base import FakeJSONServer, Request, Response

_CARD_PATH = re.compile(r"/api/card/(\d+)/query/json")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_ROWS = object()  # no malformed result queued: answer the rows


class FakeMetabaseServer(FakeJSONServer):
    """Local stand-in for a Metabase instance's card-query API (JSON export of native questions)."""

    def __init__(
        self, cards: Mapping[int, Mapping[str, Any]] | None = None, api_key: str = "mb-test-key", port: int = 0
    ) -> None:
        """``cards``: card id -> ``{"template_tag": NAME, "rows": {"YYYY-MM-DD": [record, ...]}}`` (mutable)."""
        self.cards: dict[int, Mapping[str, Any]] = dict(cards or {})
        self.api_key = api_key
        self._malformed: deque[Any] = deque()
        self._raw = threading.local()  # bytes the current request's handler sends instead of JSON
        super().__init__(port)
        self._httpd.RequestHandlerClass = _raw_capable(self._httpd.RequestHandlerClass, self._raw)

    def malformed_next(self, result: Any, times: int = 1) -> None:
        """Answer the next ``times`` valid queries 200 with ``result`` (JSON, or bytes sent as they are)."""
        with self._lock:
            self._malformed.extend([result] * times)

    def error_body(self, status: int, message: str) -> Any:
        return {"message": message}

    def check_auth(self, req: Request) -> Response | None:
        if req.headers.get("x-api-key") != self.api_key:
            return self.error(401, "Unauthenticated")
        return None

    def _dispatch(self, req: Request) -> Response:
        content_type = req.headers.get("content-type", "")
        if req.raw and req.json is None and content_type.startswith("application/x-www-form-urlencoded"):
            req.json = _form_fields(req.raw)
        return super()._dispatch(req)

    def route(self, req: Request) -> Response:
        match = _CARD_PATH.fullmatch(req.path)
        if req.method != "POST" or match is None:
            return self.error(404, f"API endpoint does not exist: {req.method} {req.path}")
        card = self.cards.get(int(match.group(1)))
        if card is None:
            return self.error(404, "Not found.")
        body = req.json if req.json is not None else {}
        if not isinstance(body, dict):
            return self.error(400, "The body must be a JSON object.")
        day = _date_parameter(body.get("parameters", []), card["template_tag"])
        if not isinstance(day, date):
            return self.error(400, day)
        with self._lock:
            malformed = self._malformed.popleft() if self._malformed else _ROWS
        if isinstance(malformed, bytes):
            self._raw.body = malformed
            return Response(200)
        if malformed is _ROWS:
            return Response(200, list(card["rows"].get(day.isoformat(), [])))
        if malformed is None:
            self._raw.body = b"null"  # Response(200, None) would be an empty body
            return Response(200)
        return Response(200, malformed)


def _form_fields(raw: bytes) -> dict[str, Any]:
    """A form-encoded body as fields, ``parameters`` decoded from its JSON string when it is JSON."""
    fields: dict[str, Any] = {k: v[-1] for k, v in parse_qs(raw.decode(errors="replace")).items()}
    if isinstance(fields.get("parameters"), str):
        try:
            fields["parameters"] = json.loads(fields["parameters"])
        except ValueError:
            pass  # left a string: answered 400 below
    return fields


def _date_parameter(parameters: Any, tag: str) -> date | str:
    """The date the parameters give the card's template tag ``tag``, or why they do not."""
    if not isinstance(parameters, list):
        return f"parameters must be a JSON array, got {json.dumps(parameters)[:100]}"
    found: date | None = None
    for p in parameters:
        match p:
            case {"target": ["variable", ["template-tag", str() as name]]}:
                value = p.get("value")
            case _:
                return f"Invalid parameter: {json.dumps(p)[:200]}"
        if name != tag:
            return f"The question has no template tag named {name!r} (it has {tag!r})"
        if found is not None:
            return f"Template tag {tag!r} is given twice"
        if p.get("type") != "date/single":
            return f"Template tag {tag!r} is a date: parameter type must be 'date/single', got {p.get('type')!r}"
        if not (isinstance(value, str) and _ISO_DATE.fullmatch(value)):
            return f"Template tag {tag!r}: {value!r} is not a date (YYYY-MM-DD)"
        try:
            found = date.fromisoformat(value)
        except ValueError:
            return f"Template tag {tag!r}: {value!r} is not a date (YYYY-MM-DD)"
    if found is None:
        return f"Missing required parameter: template tag {tag!r}"
    return found


def _raw_capable(handler: type, raw: threading.local) -> type:
    """The base handler, made to send ``raw.body`` (set by ``route``) in place of the empty JSON body."""

    class Handler(handler):
        def _serve(self) -> None:
            raw.body = None
            try:
                super()._serve()
                if raw.body is not None:
                    self.wfile.write(raw.body)
            finally:
                raw.body = None

        def send_header(self, keyword: str, value: str) -> None:
            if raw.body is not None and keyword == "Content-Length":
                value = str(len(raw.body))
            elif raw.body is not None and keyword == "Content-Type":
                value = "text/html; charset=utf-8"
            super().send_header(keyword, value)

        do_GET = do_POST = do_DELETE = do_PATCH = do_PUT = _serve

    return Handler
