"""The configuration contract (docs/configuration.md), read from the environment in this one place."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, fields
from pathlib import Path
from typing import get_origin, get_type_hints

from rag_assets.lib.chunking import CHUNK_OVERLAP, CHUNK_TOKENS
from rag_assets.lib.images import DEFAULT_MAX_IMAGE_PIXELS

# The settings of a local Dagster instance (pools, run queue, run monitoring), at the root of
# the checkout: copied into DAGSTER_HOME by the Makefile, the command line and the tests. The
# deployment's instance is deploy/dagster.yaml, in its image's DAGSTER_HOME.
INSTANCE_YAML = Path(__file__).resolve().parent.parent / "dagster.yaml"


@dataclass(frozen=True)
class Settings:
    source_uri: str = "./data/inbox"
    sqs_queue_url: str | None = None
    index_uri: str = "./.rag/index"
    embedder: str = "local:all-MiniLM-L6-v2"
    tenant_from_key: str = "segment:0"
    # Beyond the contract's table: where intermediates and the embedding cache live, and knobs
    # with sensible defaults. Each is documented in docs/configuration.md.
    work_dir: str = "./.rag"
    work_uri: str | None = None  # intermediates: a folder or s3://bucket/prefix (default WORK_DIR/work)
    embedding_cache_uri: str | None = (
        None  # a SQLite file or postgresql://... (default WORK_DIR/cache/embeddings.sqlite)
    )
    embed_on: str = "process"  # where the embeddings step embeds: process, lambda:FUNCTION, ecs:TASK_DEFINITION
    embed_texts_per_call: int = 256  # texts per remote invocation (lambda:/ecs:)
    embed_parallel_calls: int = 4  # remote invocations at a time
    executor: str = "in_process"  # in_process, or ecs (each step its own ECS task: dagster-aws ecs_executor)
    ecs_cluster: str | None = None  # RAG_EMBED_ON=ecs:...: where its tasks run (Fargate subnets, security groups)
    ecs_subnets: tuple[str, ...] = ()
    ecs_security_groups: tuple[str, ...] = ()
    csv_text_column: str = "formatted_text"  # the text of each record: a CSV or XLSX column, a JSON field
    max_unpacked_mb: int = 256  # an Office file (a zip) may unpack to this much (zip bombs are refused)
    max_ocr_pages: int = 100  # pages without a text layer a PDF may have OCRed
    max_pdf_pages: int = 2_000  # pages a PDF may have
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS  # pixels an image may have (checked before it is decoded)
    max_document_mb: int = 512  # bytes a document may have, checked before it is read (0: no limit)
    max_seconds_per_document: float = 600.0  # reading one document (0: no limit; both 0: read in the run's process)
    max_memory_mb: int = 2048  # the address space of the process that reads documents (0: no limit)
    image_analyzer: str = "offline"  # offline (OCR + EXIF) or openai:MODEL (a vision model)
    analyses_uri: str | None = (
        None  # image analyses: a SQLite file or postgresql://... (default: see analyses_location)
    )
    batch_size: int = 50
    chunk_tokens: int = CHUNK_TOKENS  # lib/chunking: the one place the defaults are written
    chunk_overlap: int = CHUNK_OVERLAP
    reconcile_seconds: float = 3600.0  # with an event queue: how often a full pass compares source and index
    purge_guard_fraction: float = 0.5  # more of a source's documents gone at once is held until confirmed (1: no guard)
    purge_guard_min_documents: int = 10  # ...once the index holds this many under the source
    catchup_config: str = "catchup.yaml"  # the catchup sources (docs/catchup.md)
    embed_service_url: str | None = None  # a warm local model (python -m rag_assets.frontends.embed_service)
    model_cache: str | None = (
        None  # the +int8 ONNX export and the bf16 probe's verdict (default ~/.cache/rag_assets/models)
    )
    notify: str | None = None  # progress notifications: none, webhook:URL, apigateway:ENDPOINT?table=T, ws://HOST:PORT
    notify_secret: str | None = None  # signs webhooks and the hub's watch tokens (rag-assets notify-token)
    notify_key_id: str = "1"  # the hub accepts watch tokens of this key id only: change it to refuse all older ones
    notify_revoked: str | None = None  # a file of revoked watch token ids, one a line (the hub re-reads it)
    golden_sets: str | None = None  # a folder of TENANT.jsonl golden sets, evaluated after each index write
    golden_floors: str | None = None  # recall@5=0.8,mrr=0.6,ndcg@10=0.7: below one is a warning
    golden_tolerance: float = 0.01  # a metric lower than the previous evaluation's by more is a warning
    openai_requests_per_second: float = 20.0  # the OpenAI account's limits (docs/configuration.md)
    openai_tokens_per_minute: float = 1_000_000.0

    @property
    def work_location(self) -> str:
        return self.work_uri or str(Path(self.work_dir) / "work")

    @property
    def state_dir(self) -> str:
        """What the sensors and checks remember between ticks (resources.state)."""
        return str(Path(self.work_dir) / "state")

    @property
    def embedding_cache_location(self) -> str:
        return self.embedding_cache_uri or str(Path(self.work_dir) / "cache" / "embeddings.sqlite")

    @property
    def analyses_location(self) -> str:
        """Beside the vectors when they are in PostgreSQL, else a SQLite file in the work folder."""
        if self.analyses_uri:
            return self.analyses_uri
        if self.index_uri.startswith(("postgresql://", "postgres://")):
            return self.index_uri
        return str(Path(self.work_dir) / "analyses.sqlite")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """The settings of `env` (default: the process's environment): each field from
        RAG_<FIELD NAME>, parsed by its type; unset or empty keeps the default."""
        env = os.environ if env is None else env
        types = get_type_hints(cls)
        values = {}
        for f in fields(cls):
            name = env_name(f.name)
            raw = env.get(name)
            if raw:
                values[f.name] = parse_setting(name, raw, types[f.name])
        return cls(**values)


class BadSetting(ValueError):
    """An environment variable whose value its setting cannot take; the message names both."""


def env_name(field_name: str) -> str:
    """The environment variable of a setting (docs/configuration.md)."""
    return f"RAG_{field_name.upper()}"


def parse_setting(name: str, raw: str, kind: object) -> str | int | float | tuple[str, ...]:
    """`raw` as a setting of type `kind`: text, a whole number, a number, or a comma-separated
    list (tuple[str, ...])."""
    if get_origin(kind) is tuple:
        return tuple(n.strip() for n in raw.split(",") if n.strip())
    if kind not in (int, float):
        return raw
    try:
        return kind(raw.strip())
    except ValueError:
        raise BadSetting(f"{name}={raw!r}: must be {'a whole number' if kind is int else 'a number'}") from None


# The settings the defs folder is being loaded with (rag_assets.definitions.build_definitions):
# read from the environment once per load, or given by a test.
_LOADING: ContextVar[Settings | None] = ContextVar("rag_assets_settings", default=None)


@contextmanager
def loading_with(settings: Settings) -> Iterator[Settings]:
    """The scope in which rag_assets.defs builds its definitions with `settings`."""
    token = _LOADING.set(settings)
    try:
        yield settings
    finally:
        _LOADING.reset(token)


def loading_settings() -> Settings:
    """The settings of the definitions being loaded. Outside a load it is an error, not a second
    read of the environment: one load, one reading (docs/configuration.md)."""
    settings = _LOADING.get()
    if settings is None:
        raise RuntimeError(
            "rag_assets.defs is loaded by rag_assets.definitions.build_definitions "
            "(dagster -m rag_assets.definitions, dg check defs), which reads the settings once"
        )
    return settings
