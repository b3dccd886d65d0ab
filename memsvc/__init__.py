"""memsvc: long-term memory service for AI agents (the domain core; no FastAPI, no Celery here)."""

__version__ = "0.1.0"
