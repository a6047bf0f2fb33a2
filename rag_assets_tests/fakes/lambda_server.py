"""A local AWS Lambda: the Invoke API (`POST /2015-03-31/functions/NAME/invocations`, as
boto3 and dagster-aws's PipesLambdaClient call it) in front of warm worker processes that
run a function's handler, one invocation at a time each, as Lambda's execution
environments do. The handler runs in a separate Python process with the function's own
environment; a handler that raises gives `X-Amz-Function-Error: Unhandled`, as Lambda does.

Only synchronous (RequestResponse) invocations are served; more than `max_concurrency` at
once get Lambda's 429 TooManyRequestsException.
"""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, Listener

from rag_assets_tests.fakes._base import FakeJSONServer, Request, Response

INVOKE_PREFIX = "/2015-03-31/functions/"


@dataclass
class Function:
    handler: str  # module.function
    environment: dict[str, str]
    max_concurrency: int = 10
    idle: list = field(default_factory=list)  # (process, connection) of warm workers
    busy: int = 0
    started: int = 0  # workers started: cold starts


class FakeLambdaServer(FakeJSONServer):
    def __init__(self) -> None:
        self.functions: dict[str, Function] = {}
        self._authkey = secrets.token_bytes(16)
        self._listener = Listener(("127.0.0.1", 0), authkey=self._authkey)
        self._accept_lock = threading.Lock()
        self.invocations: list[dict] = []  # name, seconds, error
        super().__init__()

    def add_function(self, name: str, handler: str, environment: Mapping[str, str], max_concurrency: int = 10) -> None:
        self.functions[name] = Function(handler, dict(environment), max_concurrency)

    def stop(self) -> None:
        super().stop()
        for function in self.functions.values():
            for process, conn in function.idle:
                conn.close()
                process.terminate()
                process.wait(timeout=10)
        self._listener.close()

    def error_body(self, status: int, message: str):
        return {"Type": "User", "message": message}

    def route(self, req: Request) -> Response:
        if req.method != "POST" or not (req.path.startswith(INVOKE_PREFIX) and req.path.endswith("/invocations")):
            return self.error(404, f"not served by the local Lambda: {req.method} {req.path}")
        name = req.path[len(INVOKE_PREFIX) : -len("/invocations")].rsplit(":function:", 1)[-1]
        function = self.functions.get(name)
        if function is None:
            return Response(
                404,
                {"Type": "User", "message": f"Function not found: {name}"},
                {"x-amzn-ErrorType": "ResourceNotFoundException"},
            )
        if req.headers.get("x-amz-invocation-type", "RequestResponse") != "RequestResponse":
            return self.error(400, "the local Lambda serves RequestResponse invocations only")
        worker = self._take_worker(function)
        if worker is None:
            return Response(
                429, {"Type": "User", "message": "Rate Exceeded."}, {"x-amzn-ErrorType": "TooManyRequestsException"}
            )
        process, conn = worker
        try:
            conn.send(req.json)
            reply = conn.recv()
        except (EOFError, OSError):
            with self._lock:
                function.busy -= 1
            process.kill()
            return Response(
                200,
                {"errorType": "Runtime.ExitError", "errorMessage": "the worker process died"},
                {"X-Amz-Function-Error": "Unhandled"},
            )
        with self._lock:
            function.busy -= 1
            function.idle.append(worker)
            self.invocations.append({"name": name, "seconds": reply["seconds"], "error": reply.get("error")})
        headers = {"X-Amz-Executed-Version": "$LATEST"}
        if req.headers.get("x-amz-log-type") == "Tail":
            headers["X-Amz-Log-Result"] = base64.b64encode(reply["log_tail"].encode()[-4096:]).decode()
        if "error" in reply:
            return Response(200, reply["error"], {**headers, "X-Amz-Function-Error": "Unhandled"})
        return Response(200, reply["result"], headers)

    def _take_worker(self, function: Function):
        with self._lock:
            if function.idle:
                function.busy += 1
                return function.idle.pop()
            if function.busy >= function.max_concurrency:
                return None
            function.busy += 1
            function.started += 1
        # A cold start: a new process, which connects back to the listener.
        env = {**os.environ, **function.environment, "RAG_FAKE_LAMBDA_AUTHKEY": self._authkey.hex()}
        host, port = self._listener.address
        with self._accept_lock:  # one cold start at a time: the connection accepted is this process's
            process = subprocess.Popen(
                [sys.executable, "-m", "rag_assets_tests.fakes.lambda_worker", host, str(port), function.handler],
                env=env,
            )
            conn: Connection = self._listener.accept()  # the worker connects before importing the handler
        return process, conn
