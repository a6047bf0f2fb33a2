"""Shared plumbing for the fake HTTP servers: threading, JSON I/O, recording, faults.

A subclass implements :meth:`FakeJSONServer.route` (and optionally :meth:`check_auth`
and :meth:`error_body`); this base runs a stdlib ``ThreadingHTTPServer`` on
127.0.0.1 in a daemon thread, records every request in :attr:`requests`, and
serves scripted faults queued with :meth:`fail_next`.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

Headers = dict[str, str]


@dataclass
class Request:
    """One parsed incoming request, as handed to :meth:`FakeJSONServer.route`."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: Headers  # lower-cased names
    raw: bytes
    json: Any  # decoded body, or None when the body is empty


@dataclass
class Response:
    """What a route returns: status, JSON payload (None = empty body), extra headers."""

    status: int
    payload: Any = None
    headers: Mapping[str, str] | None = None


@dataclass
class _Fault:
    status: int
    retry_after: float | None
    remaining: int


class FakeJSONServer:
    """Base class: a small JSON-over-HTTP server running in a background thread."""

    def __init__(self, port: int = 0) -> None:
        self.requests: list[dict[str, Any]] = []
        self._faults: deque[_Fault] = deque()
        self._lock = threading.RLock()
        self._stopped = False
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), _make_handler(self))
        self._httpd.daemon_threads = True
        self.port: int = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """Root URL of the server, e.g. ``http://127.0.0.1:53124``."""
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        """Shut the server down (idempotent); kept-alive connections get dropped, not served."""
        self._stopped = True
        if self._thread.is_alive():
            self._httpd.shutdown()
            self._thread.join(timeout=5)
        self._httpd.server_close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def fail_next(self, status: int, retry_after: float | None = None, times: int = 1) -> None:
        """Make the next ``times`` authenticated requests fail with ``status``.

        ``retry_after`` (seconds) is sent as a ``Retry-After`` header. Faults queue up in order.
        """
        with self._lock:
            self._faults.append(_Fault(status, retry_after, times))

    def requests_to(self, path: str) -> list[dict[str, Any]]:
        """Recorded requests whose path equals ``path``."""
        with self._lock:
            return [r for r in self.requests if r["path"] == path]

    # --- hooks for subclasses -------------------------------------------------------------

    def check_auth(self, req: Request) -> Response | None:
        """Return an error response if ``req`` is not authenticated, else None."""
        return None

    def error_body(self, status: int, message: str) -> Any:
        """JSON payload for an error with ``status`` and human-readable ``message``."""
        return {"error": {"message": message}}

    def route(self, req: Request) -> Response:
        """Serve one authenticated, fault-free request."""
        raise NotImplementedError

    def error(
        self, status: int, message: str, headers: Mapping[str, str] | None = None
    ) -> Response:
        """Build an error :class:`Response` in this server's error format."""
        return Response(status, self.error_body(status, message), headers)

    # --- internals --------------------------------------------------------------------------

    def _next_fault(self) -> Response | None:
        with self._lock:
            if not self._faults:
                return None
            fault = self._faults[0]
            fault.remaining -= 1
            if fault.remaining <= 0:
                self._faults.popleft()
        headers = None
        if fault.retry_after is not None:
            headers = {"Retry-After": f"{fault.retry_after:g}"}
        return self.error(fault.status, f"Scripted fault: HTTP {fault.status}", headers)

    def _dispatch(self, req: Request) -> Response:
        if req.raw and req.json is None:
            return self.error(400, "Request body is not valid JSON")
        denied = self.check_auth(req)
        if denied is not None:
            return denied
        fault = self._next_fault()
        if fault is not None:
            return fault
        try:
            return self.route(req)
        except Exception as exc:  # noqa: BLE001 - a bug in the fake: surface it as a 500, keep serving
            return self.error(500, f"Fake server error: {type(exc).__name__}: {exc}")


def _make_handler(server: FakeJSONServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as clients pool connections
        # Headers and body go out in two writes: with Nagle's algorithm on, the second waits for
        # the client's delayed ACK, 40 ms a request on Linux, a cost no real service has.
        disable_nagle_algorithm = True

        def _serve(self) -> None:
            if server._stopped:  # a pooled keep-alive connection outliving stop()
                self.close_connection = True
                return
            started = time.time()
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            parts = urlsplit(self.path)
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = None
            req = Request(
                method=self.command,
                path=parts.path,
                query=parse_qs(parts.query, keep_blank_values=True),
                headers={k.lower(): v for k, v in self.headers.items()},
                raw=raw,
                json=body,
            )
            resp = server._dispatch(req)
            out = b"" if resp.payload is None else json.dumps(resp.payload).encode()
            with server._lock:
                server.requests.append(
                    {
                        "method": req.method,
                        "path": req.path,
                        "query": req.query,
                        "headers": req.headers,
                        "json": req.json,
                        "status": resp.status,
                        "time": started,
                    }
                )
            self.send_response(resp.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            for name, value in (resp.headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(out)

        do_GET = do_POST = do_DELETE = do_PATCH = do_PUT = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output quiet

    return Handler
