"""Building blocks the defs folder uses: the index pipeline every family shares
(index_pipeline, with its metadata and golden-set check) and the component of the catchup
families (catchup.CatchupSources, docs/catchup.md)."""

from rag_assets.components.catchup import CatchupSources

__all__ = ["CatchupSources"]
