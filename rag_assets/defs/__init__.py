"""The definitions, one folder per area, loaded by rag_assets.definitions with `dg`'s
component tree (docs/architecture.md, Layout): documents, catchup, maintenance, sync,
notifications, and the resources they share."""
