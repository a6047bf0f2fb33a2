"""rag_assets: keep a RAG vector index in step with the documents in S3, as Dagster assets."""
