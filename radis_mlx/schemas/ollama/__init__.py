"""Ollama's native API (/api/chat, /api/generate, /api/tags, ...), named and shaped as Ollama's api/types.go.

common.py: options, keep_alive, format, think and the wire's times; chat.py: /api/chat and /api/generate;
models.py: the model routes (tags, show, ps, version, pull, delete) and embeddings.
"""
