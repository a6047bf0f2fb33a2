"""Local HTTP fakes of external services (OpenAI embeddings, Pinecone) for tests."""
