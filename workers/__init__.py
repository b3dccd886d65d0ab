"""Celery shell around memsvc's lifecycle: thin tasks, the beat schedule, worker entry points."""
