"""The knowledge base: load articles, chunk them, ingest incrementally, retrieve."""
