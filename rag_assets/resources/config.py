"""Pipeline knobs that are not resources of their own."""

import dagster as dg


class RagConfig(dg.ConfigurableResource):
    """How documents are read and cut (see Settings for the environment variables)."""

    csv_text_column: str = "formatted_text"
    chunk_tokens: int = 160
    chunk_overlap: int = 32


class SyncConfig(dg.ConfigurableResource):
    """How sensors follow the source (RAG_SOURCE_URI) into the index."""

    source_uri: str = "./data/inbox"
    tenant_rule: str = "segment:0"
    batch_size: int = 50
    # A sensor evaluation must end within the daemon's 60 s: each tick is bounded.
    max_messages_per_tick: int = 2_000  # SQS messages (a HEAD each): ~5 s at 400 HEAD/s
    receive_budget_seconds: float = 15.0
    max_changes_per_tick: int = 10_000  # new/changed objects the listing sensor takes a tick
    list_budget_seconds: float = 30.0
    state_dir: str = "./.rag/state"
    max_attempts: int = 4  # runs of a batch that failed for a reason other than its documents
    retry_base_seconds: float = 30.0
