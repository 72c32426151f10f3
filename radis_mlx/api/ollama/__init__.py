"""Ollama's native API on the same pool and port: chat.py (/api/chat, /api/generate), embed.py
(/api/embed, /api/embeddings), models.py (tags, show, ps, version, pull, delete, HEAD /), run.py (names,
NDJSON, a generation's lease and timing). Errors take Ollama's `{"error": "..."}` (api/errors.py)."""
