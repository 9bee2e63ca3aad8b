"""Ollama through its native API: /api/chat (NDJSON), /api/tags, /api/embed."""
