"""A warm local model for the runs the daemon launches: the local embedder's model loaded once,
serving the OpenAI embeddings API on a local port (`make dev` starts it; runs find it through
RAG_EMBED_SERVICE_URL). A run of a few documents otherwise spends most of its time loading
the model (docs/architecture.md, A warm model).

    python -m rag_assets.frontends.embed_service [--host 127.0.0.1] [--port 8766]
        [--model all-MiniLM-L6-v2[+float32|+bf16|+int8]]

POST /v1/embeddings {"input": [texts], "model": MODEL_ID, "encoding_format": "base64"} answers
{"object": "list", "model": MODEL_ID, "data": [{"index": i, "embedding": BASE64 float32}],
"usage": {...}, "runtime": "torch-float32", "bf16_probe_cosine_min": null} (the last two are
ours: what computed the vectors, for the runs' lineage); GET /health answers {"model":
MODEL_ID, "dimension": N, "served": texts}.
The vectors are those of `LocalEmbedder.embed` in the run's own process: the same code.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from rag_assets.resources.embedders import Embedder, EmbedStats, embedder_from_spec, encode_vectors
from rag_assets.settings import Settings

log = logging.getLogger("rag_assets.frontends.embed_service")
MAX_TEXTS = 2048  # a request, as OpenAI's API


class EmbedService(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], embedder: Embedder):
        self.embedder, self.served, self.lock = embedder, 0, threading.Lock()
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: EmbedService

    def log_message(self, format: str, *args) -> None:  # requests are not worth a line each
        pass

    def _reply(self, status: int, body: dict) -> None:
        out = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def do_GET(self) -> None:
        if self.path != "/health":
            return self._reply(404, {"error": {"message": f"no such path {self.path}"}})
        embedder = self.server.embedder
        self._reply(200, {"model": embedder.model_id, "dimension": embedder.dimension, "served": self.server.served})

    def do_POST(self) -> None:
        if self.path != "/v1/embeddings":
            return self._reply(404, {"error": {"message": f"no such path {self.path}"}})
        try:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
            texts = body.get("input")
            if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts) or len(texts) > MAX_TEXTS:
                raise ValueError(f"input: a list of at most {MAX_TEXTS} strings")
        except ValueError as exc:  # JSONDecodeError is one
            return self._reply(400, {"error": {"message": str(exc)}})
        embedder = self.server.embedder
        if body.get("model") not in (None, embedder.model_id):
            return self._reply(
                400, {"error": {"message": f"this service embeds with {embedder.model_id}, not {body['model']}"}}
            )
        stats = EmbedStats()
        with self.server.lock:  # the model uses every core already
            vectors = embedder.embed(texts, stats)
            self.server.served += len(texts)
        data = [{"object": "embedding", "index": i, "embedding": e} for i, e in enumerate(encode_vectors(vectors))]
        self._reply(
            200,
            {
                "object": "list",
                "model": embedder.model_id,
                "data": data,
                "usage": {"prompt_tokens": 0, "total_tokens": 0},
                "runtime": ", ".join(sorted(stats.runtimes)) or None,
                "bf16_probe_cosine_min": stats.bf16_probe_cosine_min,
            },
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve the local embedding model, loaded once, on a local port.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8766)
    # RAG_EMBEDDER's local model, RAG_MODEL_CACHE; never RAG_EMBED_SERVICE_URL: this is the service.
    settings = dataclasses.replace(Settings.from_env(), embed_service_url=None)
    default = settings.embedder.removeprefix("local:") if settings.embedder.startswith("local:") else "all-MiniLM-L6-v2"
    parser.add_argument("--model", default=default, help="as in RAG_EMBEDDER=local:MODEL (default: RAG_EMBEDDER's)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s embed_service %(message)s")
    embedder = embedder_from_spec(f"local:{args.model}", settings)
    loaded = EmbedStats()
    embedder.embed(["load the model now, not at the first request"], loaded)
    with EmbedService((args.host, args.port), embedder) as server:
        runtime = ", ".join(sorted(loaded.runtimes))
        log.info("%s (%s) ready on http://%s:%d", embedder.model_id, runtime, args.host, server.server_address[1])
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
