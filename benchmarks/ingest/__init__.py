"""Ingest benchmark: POST /v1/posts through the whole gateway path vs a bare aiohttp endpoint."""
