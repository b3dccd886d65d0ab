"""Celery tasks: thin calls into memsvc (filled in by the lifecycle work)."""
