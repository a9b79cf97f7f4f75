"""The REST API: routes and schemas (FastAPI)."""
