"""The configuration contract (README, Configuration), read from the environment in this one place."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

# The settings of a local Dagster instance (pools, run queue, run monitoring): copied into
# DAGSTER_HOME by the Makefile, the command line and the tests.
INSTANCE_YAML = Path(__file__).with_name("dagster.yaml")


@dataclass(frozen=True)
class Settings:
    source_uri: str = "./data/inbox"
    sqs_queue_url: str | None = None
    index_uri: str = "./.rag/index"
    embedder: str = "local:all-MiniLM-L6-v2"
    tenant_from_key: str = "segment:0"
    # Beyond the contract's table: where intermediates and the embedding cache live, and knobs
    # with sensible defaults. Each is documented in the README.
    work_dir: str = "./.rag"
    csv_text_column: str = "formatted_text"
    batch_size: int = 50
    chunk_tokens: int = 160
    chunk_overlap: int = 32
    reconcile_seconds: float = 3600.0  # with an event queue: how often a full pass compares source and index
    catchup_config: str = "catchup.yaml"  # the catchup sources (docs/catchup.md)
    embed_service_url: str | None = None  # a warm local model (python -m rag_assets.embed_service)
    model_cache: str | None = None  # where local:MODEL+int8 keeps its ONNX export (default ~/.cache/rag_assets/models)
    openai_requests_per_second: float = 20.0  # the account's limits: the catchup pipeline's by default
    openai_tokens_per_minute: float = 1_000_000.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        d = cls()
        return cls(
            source_uri=env.get("RAG_SOURCE_URI") or d.source_uri,
            sqs_queue_url=env.get("RAG_SQS_QUEUE_URL") or None,
            index_uri=env.get("RAG_INDEX_URI") or d.index_uri,
            embedder=env.get("RAG_EMBEDDER") or d.embedder,
            tenant_from_key=env.get("RAG_TENANT_FROM_KEY") or d.tenant_from_key,
            work_dir=env.get("RAG_WORK_DIR") or d.work_dir,
            csv_text_column=env.get("RAG_CSV_TEXT_COLUMN") or d.csv_text_column,
            batch_size=int(env.get("RAG_BATCH_SIZE") or d.batch_size),
            chunk_tokens=int(env.get("RAG_CHUNK_TOKENS") or d.chunk_tokens),
            chunk_overlap=int(env.get("RAG_CHUNK_OVERLAP") or d.chunk_overlap),
            reconcile_seconds=float(env.get("RAG_RECONCILE_SECONDS") or d.reconcile_seconds),
            catchup_config=env.get("RAG_CATCHUP_CONFIG") or d.catchup_config,
            embed_service_url=env.get("RAG_EMBED_SERVICE_URL") or None,
            model_cache=env.get("RAG_MODEL_CACHE") or None,
            openai_requests_per_second=float(env.get("RAG_OPENAI_REQUESTS_PER_SECOND") or d.openai_requests_per_second),
            openai_tokens_per_minute=float(env.get("RAG_OPENAI_TOKENS_PER_MINUTE") or d.openai_tokens_per_minute),
        )
