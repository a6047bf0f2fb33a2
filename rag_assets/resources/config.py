"""Pipeline knobs that are not resources of their own."""

import dagster as dg

from rag_assets.lib.chunking import CHUNK_OVERLAP, CHUNK_TOKENS
from rag_assets.lib.identity import image_pipeline, pipeline_fingerprint
from rag_assets.lib.images import DEFAULT_MAX_IMAGE_PIXELS, analyzer_identity, is_image
from rag_assets.lib.reconcile import Backoff, PurgeGuard


class RagConfig(dg.ConfigurableResource):
    """How documents are read and cut (see Settings for the environment variables)."""

    csv_text_column: str = "formatted_text"
    chunk_tokens: int = CHUNK_TOKENS  # lib/chunking: the one place the defaults are written
    chunk_overlap: int = CHUNK_OVERLAP
    max_unpacked_mb: int = 256  # an Office file (a zip) may unpack to this much; more is refused
    max_ocr_pages: int = 100  # pages without a text layer OCRed per PDF; more is refused
    max_pdf_pages: int = 2_000  # a PDF with more pages is refused
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS  # an image with more is refused before it is decoded
    max_document_mb: int = 512  # a document of more bytes is refused before it is read; 0: no limit
    image_analyzer: str = "offline"  # RAG_IMAGE_ANALYZER: part of an image's pipeline
    max_seconds_per_document: float = 600.0  # reading one document (parse_sandbox); 0: no limit
    max_memory_mb: int = 2048  # the reader process's address space; 0: no limit

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

    source_uri: str = "./data/inbox"
    index_uri: str = "./.rag/index"  # with the model and the pipeline: the index identity
    tenant_rule: str = "segment:0"
    batch_size: int = 50
    # 0: the listing sensor lists the source pass after pass (no event queue). Otherwise the
    # events drive the index and a full pass compares source and index this often.
    reconcile_interval_seconds: float = 0.0
    # A sensor evaluation must end within the daemon's 60 s: each tick is bounded.
    max_messages_per_tick: int = 2_000  # SQS messages (a HEAD each): ~5 s at 400 HEAD/s
    receive_budget_seconds: float = 15.0
    max_objects_per_tick: int = 10_000  # objects the listing sensor lists (and plans) a tick
    list_budget_seconds: float = 30.0
    state_dir: str = "./.rag/state"
    # A document still out of date after a request waits retry_base_seconds * 2**attempt
    # (at most retry_cap_seconds) before the next one: a failed run, a lost write.
    retry_base_seconds: float = 30.0
    retry_cap_seconds: float = 3600.0
    # The deletion guard (lib.reconcile.PurgeGuard): more than this fraction of the documents
    # under the source gone at once (a pass, or the deletes of the window) is held until a
    # person confirms it (`rag-assets purge --confirm ROOT`), once the index holds at least
    # purge_guard_min_documents there. 1: no guard.
    purge_guard_fraction: float = 0.5
    purge_guard_min_documents: int = 10
    purge_guard_window_seconds: float = 3600.0

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
    tolerance: float = 0.01  # RAG_GOLDEN_TOLERANCE
    state_dir: str = "./.rag/state"  # where the previous evaluation of each tenant is kept
