"""A local webhook endpoint for notification tests and benchmarks, over real HTTP.

    receiver = WebhookReceiver(secret)      # listening on 127.0.0.1, a free port
    ... RAG_NOTIFY=webhook:{receiver.url} ...
    receiver.messages, receiver.arrived     # what came, signed right, and when (time.time())

It verifies as docs/notifications.md tells a receiver to (lib.notifications.verify_webhook): a request
whose `X-Rag-Signature` does not sign its body, or whose timestamp is more than `tolerance`
seconds from the receiver's clock (a replay), is answered 401 and counted in `rejected` (why
in `refusals`); what it accepts is kept with its headers in `requests`. `fail_next = n`
answers the next n requests 500.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from rag_assets.lib.notifications import SIGNATURE_HEADER, WEBHOOK_TOLERANCE_SECONDS, WebhookRefused, verify_webhook


class WebhookReceiver:
    def __init__(self, secret: str, tolerance: float = WEBHOOK_TOLERANCE_SECONDS):
        self.messages: list[dict] = []
        self.arrived: list[float] = []
        self.requests: list[tuple[dict[str, str], bytes]] = []  # (headers, body) of what was accepted
        self.rejected = 0
        self.refusals: list[str] = []
        self.fail_next = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if receiver.fail_next:
                    receiver.fail_next -= 1
                    self.send_response(500)
                else:
                    try:
                        verify_webhook(secret, self.headers.get(SIGNATURE_HEADER), body, time.time(), tolerance)
                    except WebhookRefused as e:
                        receiver.rejected += 1
                        receiver.refusals.append(str(e))
                        self.send_response(401)
                    else:
                        receiver.messages.append(json.loads(body))
                        receiver.arrived.append(time.time())
                        receiver.requests.append((dict(self.headers), body))
                        self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def by_document(self) -> dict[tuple[str, str], list[str]]:
        """(tenant, document key) -> the types of its messages, in arrival order."""
        out = defaultdict(list)
        for m in self.messages:
            out[(m["tenant"], m["document_key"])].append(m["type"])
        return dict(out)

    def stop(self) -> None:
        self.server.shutdown()
