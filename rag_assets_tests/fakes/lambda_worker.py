"""One warm execution environment of the local Lambda (lambda_server.py): imports the
handler once, then runs one event at a time, sending back its result or its error and the
tail of what it printed."""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import sys
import time
import traceback
from multiprocessing.connection import Client


def main(host: str, port: str, handler: str) -> None:
    conn = Client((host, int(port)), authkey=bytes.fromhex(os.environ.pop("RAG_FAKE_LAMBDA_AUTHKEY")))
    module, _, name = handler.rpartition(".")
    function = getattr(importlib.import_module(module), name)
    while True:
        try:
            event = conn.recv()
        except EOFError:
            return
        started, log = time.perf_counter(), io.StringIO()
        reply: dict = {}
        with contextlib.redirect_stdout(log):
            try:
                reply["result"] = function(event, None)
            except Exception as e:  # noqa: BLE001 - Lambda reports the handler's exception to the caller
                traceback.print_exc(file=log)
                reply["error"] = {
                    "errorType": type(e).__name__,
                    "errorMessage": str(e),
                    "stackTrace": traceback.format_tb(e.__traceback__),
                }
        reply.update(seconds=time.perf_counter() - started, log_tail=log.getvalue()[-4096:])
        sys.stderr.write(log.getvalue())
        conn.send(reply)


if __name__ == "__main__":
    main(*sys.argv[1:4])
