"""Pipeline knobs that are not resources of their own: typed resources whose fields are the
settings of the same names (rag_assets.settings), with their defaults."""

from __future__ import annotations

import dagster as dg

from rag_assets.lib.identity import image_pipeline, pipeline_fingerprint
from rag_assets.lib.images import analyzer_identity, is_image
from rag_assets.lib.reconcile import Backoff, PurgeGuard
from rag_assets.settings import Settings

# The defaults are Settings' own: written once, there.
DEFAULTS = Settings()


class RagConfig(dg.ConfigurableResource):
    """How documents are read and cut: RAG_CSV_TEXT_COLUMN, RAG_CHUNK_*, RAG_MAX_* and
    RAG_IMAGE_ANALYZER (docs/configuration.md)."""

    csv_text_column: str = DEFAULTS.csv_text_column
    chunk_tokens: int = DEFAULTS.chunk_tokens
    chunk_overlap: int = DEFAULTS.chunk_overlap
    max_unpacked_mb: int = DEFAULTS.max_unpacked_mb  # an Office file (a zip) may unpack to this much
    max_ocr_pages: int = DEFAULTS.max_ocr_pages  # pages without a text layer OCRed per PDF
    max_pdf_pages: int = DEFAULTS.max_pdf_pages
    max_image_pixels: int = DEFAULTS.max_image_pixels  # checked before an image is decoded
    max_document_mb: int = DEFAULTS.max_document_mb  # checked before a document is read; 0: no limit
    image_analyzer: str = DEFAULTS.image_analyzer  # part of an image's pipeline
    max_seconds_per_document: float = DEFAULTS.max_seconds_per_document  # parse_sandbox; 0: no limit
    max_memory_mb: int = DEFAULTS.max_memory_mb  # the reader process's address space; 0: no limit

    @classmethod
    def from_settings(cls, settings: Settings) -> RagConfig:
        """The settings of the same names."""
        return cls(**{name: getattr(settings, name) for name in cls.model_fields})

    @property
    def parse_limits(self) -> dict[str, int]:
        """The limits lib.parsing.parse_document takes."""
        return {
            "max_unpacked_bytes": self.max_unpacked_mb << 20,
            "max_ocr_pages": self.max_ocr_pages,
            "max_pdf_pages": self.max_pdf_pages,
        }

    @property
    def pipeline(self) -> str:
        """The fingerprint every row carries: a change re-makes every document's chunks."""
        return pipeline_fingerprint(self.chunk_tokens, self.chunk_overlap, self.csv_text_column)

    @property
    def image_pipeline(self) -> str:
        """An image's pipeline: with its analyzer, model and prompt, so changing them
        re-analyzes and re-embeds images, and only images."""
        return image_pipeline(self.pipeline, analyzer_identity(self.image_analyzer).fingerprint)

    def pipeline_for(self, key: str) -> str:
        """The pipeline of the document at `key`."""
        return self.image_pipeline if is_image(key) else self.pipeline


class SyncConfig(dg.ConfigurableResource):
    """How sensors follow the source (RAG_SOURCE_URI) into the index (RAG_INDEX_URI)."""

    source_uri: str = DEFAULTS.source_uri
    index_uri: str = DEFAULTS.index_uri  # with the model and the pipeline: the index identity
    tenant_rule: str = DEFAULTS.tenant_from_key
    batch_size: int = DEFAULTS.batch_size
    # 0: the listing sensor lists the source pass after pass (no event queue). Otherwise the
    # events drive the index and a full pass compares source and index this often.
    reconcile_interval_seconds: float = 0.0
    # A sensor evaluation must end within the daemon's 60 s: each tick is bounded.
    max_messages_per_tick: int = 2_000  # SQS messages (a HEAD each): ~5 s at 400 HEAD/s
    receive_budget_seconds: float = 15.0
    max_objects_per_tick: int = 10_000  # objects the listing sensor lists (and plans) a tick
    list_budget_seconds: float = 30.0
    state_dir: str = DEFAULTS.state_dir
    # A document still out of date after a request waits retry_base_seconds * 2**attempt
    # (at most retry_cap_seconds) before the next one: a failed run, a lost write.
    retry_base_seconds: float = 30.0
    retry_cap_seconds: float = 3600.0
    # The deletion guard (lib.reconcile.PurgeGuard): more than this fraction of the documents
    # under the source gone at once (a pass, or the deletes of the window) is held until a
    # person confirms it (`rag-assets purge --confirm ROOT`), once the index holds at least
    # purge_guard_min_documents there. 1: no guard.
    purge_guard_fraction: float = DEFAULTS.purge_guard_fraction
    purge_guard_min_documents: int = DEFAULTS.purge_guard_min_documents
    purge_guard_window_seconds: float = 3600.0

    @classmethod
    def from_settings(cls, settings: Settings) -> SyncConfig:
        """RAG_SOURCE_URI, RAG_INDEX_URI, RAG_TENANT_FROM_KEY, RAG_BATCH_SIZE, RAG_PURGE_GUARD_*;
        with an event queue (RAG_SQS_QUEUE_URL) a full pass every RAG_RECONCILE_SECONDS; the
        state in RAG_WORK_DIR/state."""
        return cls(
            source_uri=settings.source_uri,
            index_uri=settings.index_uri,
            tenant_rule=settings.tenant_from_key,
            batch_size=settings.batch_size,
            reconcile_interval_seconds=settings.reconcile_seconds if settings.sqs_queue_url else 0.0,
            state_dir=settings.state_dir,
            purge_guard_fraction=settings.purge_guard_fraction,
            purge_guard_min_documents=settings.purge_guard_min_documents,
        )

    @property
    def backoff(self) -> Backoff:
        return Backoff(self.retry_base_seconds, self.retry_cap_seconds)

    @property
    def purge_guard(self) -> PurgeGuard:
        return PurgeGuard(self.purge_guard_fraction, self.purge_guard_min_documents, self.purge_guard_window_seconds)


class GoldenConfig(dg.ConfigurableResource):
    """Each tenant's golden set (RAG_GOLDEN_SETS: a folder of TENANT.jsonl eval files) and how
    the golden_sets check judges an evaluation (components.golden_sets)."""

    folder: str
    floors: str = ""  # RAG_GOLDEN_FLOORS: recall@5=0.8,mrr=0.6,ndcg@10=0.7 (lib.retrieval_eval.parse_floors)
    tolerance: float = DEFAULTS.golden_tolerance  # RAG_GOLDEN_TOLERANCE
    state_dir: str = DEFAULTS.state_dir  # where the previous evaluation of each tenant is kept

    @classmethod
    def from_settings(cls, settings: Settings) -> GoldenConfig | None:
        """RAG_GOLDEN_SETS, RAG_GOLDEN_FLOORS, RAG_GOLDEN_TOLERANCE; None without a folder."""
        if not settings.golden_sets:
            return None
        return cls(
            folder=settings.golden_sets,
            floors=settings.golden_floors or "",
            tolerance=settings.golden_tolerance,
            state_dir=settings.state_dir,
        )
