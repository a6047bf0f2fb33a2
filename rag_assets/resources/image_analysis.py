"""Image analyzers (RAG_IMAGE_ANALYZER) and where analyses are kept (RAG_ANALYSES_URI).

An analyzer turns an image into an `Analysis` (category, summary, tags, the text seen). The
store keeps every item's analyses, versioned, and a cache by image content: the same bytes
under the same analyzer are analyzed once, ever (docs/architecture.md, Images).
"""

from __future__ import annotations

import base64
import json
import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import dagster as dg
from pydantic import PrivateAttr

from rag_assets.lib.errors import describe_error
from rag_assets.lib.images import (
    VISION_PROMPT,
    Analysis,
    AnalyzerIdentity,
    ImageReading,
    analyzer_identity,
    offline_analysis,
    parse_vision_answer,
)
from rag_assets.lib.parsing import BadDocument
from rag_assets.lib.sqlite import open_sqlite


class ImageAnalyzer(dg.ConfigurableResource, ABC):
    """Turns what was read of an image (lib.images.ImageReading: its facts, and the text OCR
    read in it or a JPEG of it, as `reads_text` asks) into an Analysis. Raises
    BadDocument(transient=True) when it cannot: a later run tries again."""

    @property
    @abstractmethod
    def identity(self) -> AnalyzerIdentity: ...

    @property
    def reads_text(self) -> bool:
        """True: it wants the image's text (OCR, in the bounded reader process); False: the image as a JPEG."""
        return False

    @abstractmethod
    def analyze(self, name: str, reading: ImageReading) -> Analysis: ...


class OfflineImageAnalyzer(ImageAnalyzer):
    """The text in the image (RapidOCR, its bundled models) and what the file says of itself
    (format, size, EXIF date and camera). Nothing leaves the machine; it does not say what a
    photo shows."""

    @property
    def identity(self) -> AnalyzerIdentity:
        return analyzer_identity("offline")

    @property
    def reads_text(self) -> bool:
        return True

    def analyze(self, name: str, reading: ImageReading) -> Analysis:
        return offline_analysis(reading.facts, reading.seen_text or "")


class OpenAIImageAnalyzer(ImageAnalyzer):
    """A vision model through the official openai client: the image inline (JPEG), a JSON
    answer validated (lib.images.parse_vision_answer). A malformed answer is asked again
    `answer_attempts` times in all; HTTP errors are the client's own retries.
    OPENAI_API_KEY and OPENAI_BASE_URL are read when not given here."""

    model: str = "gpt-4o-mini"
    api_key: str | None = None
    base_url: str | None = None
    answer_attempts: int = 3
    max_retries: int = 4  # the client's retries of 429, 5xx and connection errors, with its backoff
    timeout_seconds: float = 120.0

    _client = PrivateAttr(default=None)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @property
    def identity(self) -> AnalyzerIdentity:
        return analyzer_identity(f"openai:{self.model}")

    def _get_client(self):
        with self._lock:
            if self._client is None:
                import openai

                self._client = openai.OpenAI(
                    # None: the client reads OPENAI_API_KEY and OPENAI_BASE_URL itself, in this process
                    api_key=self.api_key,
                    base_url=self.base_url,
                    max_retries=self.max_retries,
                    timeout=self.timeout_seconds,
                )
        return self._client

    def analyze(self, name: str, reading: ImageReading) -> Analysis:
        import openai
        from tenacity import RetryError, Retrying, retry_if_exception_type, stop_after_attempt, wait_fixed

        url = "data:image/jpeg;base64," + base64.b64encode(reading.jpeg or b"").decode("ascii")
        messages = [
            {"role": "system", "content": VISION_PROMPT},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": f"What the file says of itself: {reading.facts.describe()}"},
                    {"type": "image_url", "image_url": {"url": url}},
                ],
            },
        ]
        client = self._get_client()
        try:
            for attempt in Retrying(
                stop=stop_after_attempt(self.answer_attempts),
                wait=wait_fixed(0.5),
                retry=retry_if_exception_type(ValueError),
            ):
                with attempt:
                    response = client.chat.completions.create(
                        model=self.model, messages=messages, response_format={"type": "json_object"}, temperature=0
                    )
                    return parse_vision_answer(response.choices[0].message.content if response.choices else None)
        except RetryError as e:
            reason = e.last_attempt.exception()
            raise BadDocument(
                name,
                f"openai:{self.model} gave a malformed analysis {self.answer_attempts} times (last: {reason})",
                transient=True,
            ) from None
        except openai.OpenAIError as e:
            raise BadDocument(
                name, f"image analysis by openai:{self.model} failed: {describe_error(e)}", transient=True
            ) from None
        raise AssertionError("unreachable")


def image_analyzer_from_spec(spec: str) -> ImageAnalyzer:
    """RAG_IMAGE_ANALYZER: `offline` or `openai:MODEL`."""
    identity = analyzer_identity(spec)  # raises for anything else
    if identity.analyzer == "openai":
        return OpenAIImageAnalyzer(model=identity.model)
    return OfflineImageAnalyzer()


@dataclass(frozen=True)
class AnalysisRecord:
    """One version of one item's analysis (a row of the analyses table, docs/architecture.md, plus how it was made)."""

    item: str  # the document id: tenant + object URI
    user_id: str  # the tenant
    item_key: str
    version: int
    image_sha256: str
    identity: AnalyzerIdentity
    thumbnail_key: str
    analysis: Analysis

    def row(self) -> tuple:
        a, i = self.analysis, self.identity
        return (
            self.item, self.user_id, self.item_key, self.version, self.image_sha256, i.fingerprint, i.analyzer, i.model,
            i.prompt_hash, a.category, a.summary, ", ".join(a.tags), a.text, json.dumps(a.as_json()),
            self.thumbnail_key,
        )  # fmt: skip


_COLUMNS = (
    "item, user_id, item_key, version, image_sha256, analyzer, provider, model, prompt_hash, "
    "category, summary, tags, text_seen, raw_response, thumbnail_key"
)


@dataclass(frozen=True)
class LatestAnalysis:
    version: int
    image_sha256: str
    analyzer: str  # AnalyzerIdentity.fingerprint
    analysis: Analysis


class AnalysisStore(dg.ConfigurableResource, ABC):
    """Every item's analyses by version, and analyses by (image content, analyzer)."""

    @abstractmethod
    def cached(self, image_sha256: str, analyzer: str) -> Analysis | None: ...

    @abstractmethod
    def remember(self, image_sha256: str, analyzer: str, analysis: Analysis) -> None: ...

    @abstractmethod
    def latest(self, item: str) -> LatestAnalysis | None: ...

    @abstractmethod
    def add(self, record: AnalysisRecord) -> None:
        """Keep a new version (a version already kept, by a concurrent run, is left as is)."""

    @abstractmethod
    def delete_items(self, items: Sequence[str]) -> int:
        """Forget these items' analyses (their images were deleted); the cache stays."""


class SqliteAnalysisStore(AnalysisStore):
    """Analyses in a SQLite file (RAG_WORK_DIR/analyses.sqlite): one machine's."""

    path: str

    def _connect(self) -> sqlite3.Connection:
        return open_sqlite(
            self.path,
            [
                (
                    "CREATE TABLE IF NOT EXISTS analysis_cache (image_sha256 TEXT, analyzer TEXT, analysis TEXT NOT "
                    "NULL, "
                    "created_at TEXT DEFAULT CURRENT_TIMESTAMP, PRIMARY KEY (image_sha256, analyzer))"
                ),
                (
                    "CREATE TABLE IF NOT EXISTS analyses (item TEXT, user_id TEXT NOT NULL, item_key TEXT NOT NULL, "
                    "version INTEGER, "
                    "image_sha256 TEXT NOT NULL, analyzer TEXT NOT NULL, provider TEXT, model TEXT, prompt_hash TEXT, "
                    "category TEXT, "
                    "summary TEXT, tags TEXT, text_seen TEXT, raw_response TEXT, thumbnail_key TEXT, "
                    "created_at TEXT DEFAULT CURRENT_TIMESTAMP, PRIMARY KEY (item, version))"
                ),
            ],
        )

    def cached(self, image_sha256: str, analyzer: str) -> Analysis | None:
        with self._connect() as conn:
            row = conn.execute(
                "SELECT analysis FROM analysis_cache WHERE image_sha256 = ? AND analyzer = ?", (image_sha256, analyzer)
            ).fetchone()
        return Analysis.from_json(json.loads(row[0])) if row else None

    def remember(self, image_sha256: str, analyzer: str, analysis: Analysis) -> None:
        with self._connect() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO analysis_cache (image_sha256, analyzer, analysis) VALUES (?, ?, ?)",
                (image_sha256, analyzer, json.dumps(analysis.as_json())),
            )

    def latest(self, item: str) -> LatestAnalysis | None:
        with self._connect() as conn:
            row = conn.execute(
                (
                    "SELECT version, image_sha256, analyzer, raw_response FROM analyses WHERE item = ? ORDER BY "
                    "version "
                    "DESC LIMIT 1"
                ),
                (item,),
            ).fetchone()
        return LatestAnalysis(row[0], row[1], row[2], Analysis.from_json(json.loads(row[3]))) if row else None

    def add(self, record: AnalysisRecord) -> None:
        with self._connect() as conn:
            conn.execute(f"INSERT OR IGNORE INTO analyses ({_COLUMNS}) VALUES ({', '.join('?' * 15)})", record.row())

    def delete_items(self, items: Sequence[str]) -> int:
        with self._connect() as conn:
            return sum(conn.execute("DELETE FROM analyses WHERE item = ?", (i,)).rowcount for i in items)


class PostgresAnalysisStore(AnalysisStore):
    """Analyses in PostgreSQL beside the vectors: `rag_image_analyses` (with a full-text
    search column, `search_vector`) and `rag_image_analysis_cache`."""

    dsn: str

    def _connect(self):
        import psycopg

        conn = psycopg.connect(self.dsn, autocommit=True)
        conn.execute(
            "CREATE TABLE IF NOT EXISTS rag_image_analysis_cache (image_sha256 text, analyzer text, analysis jsonb "
            "NOT NULL, "
            "created_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (image_sha256, analyzer))"
        )
        conn.execute(
            "CREATE TABLE IF NOT EXISTS rag_image_analyses (item text, user_id text NOT NULL, item_key text NOT NULL, "
            "version integer, image_sha256 text NOT NULL, analyzer text NOT NULL, provider text, model text, "
            "prompt_hash text, "
            "category text, summary text, tags text, text_seen text, raw_response jsonb, thumbnail_key text, "
            "created_at timestamptz NOT NULL DEFAULT now(), "
            "search_vector tsvector GENERATED ALWAYS AS (to_tsvector('english', coalesce(category, '') || ' ' || "
            "coalesce(summary, '') || ' ' || coalesce(tags, '') || ' ' || coalesce(text_seen, ''))) STORED, "
            "PRIMARY KEY (item, version))"
        )
        conn.execute(
            "CREATE INDEX IF NOT EXISTS rag_image_analyses_search ON rag_image_analyses USING gin (search_vector)"
        )
        conn.execute("CREATE INDEX IF NOT EXISTS rag_image_analyses_user ON rag_image_analyses (user_id)")
        return conn

    def cached(self, image_sha256: str, analyzer: str) -> Analysis | None:
        with self._connect() as conn:
            row = conn.execute(
                "SELECT analysis FROM rag_image_analysis_cache WHERE image_sha256 = %s AND analyzer = %s",
                (image_sha256, analyzer),
            ).fetchone()
        return Analysis.from_json(row[0]) if row else None

    def remember(self, image_sha256: str, analyzer: str, analysis: Analysis) -> None:
        with self._connect() as conn:
            conn.execute(
                (
                    "INSERT INTO rag_image_analysis_cache (image_sha256, analyzer, analysis) VALUES (%s, %s, %s) ON "
                    "CONFLICT DO NOTHING"
                ),
                (image_sha256, analyzer, json.dumps(analysis.as_json())),
            )

    def latest(self, item: str) -> LatestAnalysis | None:
        with self._connect() as conn:
            row = conn.execute(
                (
                    "SELECT version, image_sha256, analyzer, raw_response FROM rag_image_analyses WHERE item = %s "
                    "ORDER "
                    "BY version DESC LIMIT 1"
                ),
                (item,),
            ).fetchone()
        return LatestAnalysis(row[0], row[1], row[2], Analysis.from_json(row[3])) if row else None

    def add(self, record: AnalysisRecord) -> None:
        with self._connect() as conn:
            conn.execute(
                f"INSERT INTO rag_image_analyses ({_COLUMNS}) VALUES ({', '.join(['%s'] * 15)}) ON CONFLICT DO NOTHING",
                record.row(),
            )

    def delete_items(self, items: Sequence[str]) -> int:
        with self._connect() as conn:
            return conn.execute("DELETE FROM rag_image_analyses WHERE item = ANY(%s)", (list(items),)).rowcount


def analysis_store_from_uri(uri: str) -> AnalysisStore:
    """RAG_ANALYSES_URI: `postgresql://...` or a SQLite file."""
    if uri.startswith(("postgresql://", "postgres://")):
        return PostgresAnalysisStore(dsn=uri)
    return SqliteAnalysisStore(path=uri)
