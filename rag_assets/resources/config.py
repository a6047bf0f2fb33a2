"""Pipeline knobs that are not resources of their own."""

import dagster as dg


class RagConfig(dg.ConfigurableResource):
    """How documents are read and cut (see Settings for the environment variables)."""

    csv_text_column: str = "formatted_text"
    chunk_tokens: int = 160
    chunk_overlap: int = 32
