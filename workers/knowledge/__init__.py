"""The knowledge base inside a worker: embedder, Qdrant store, chunking, versioned ingest."""
