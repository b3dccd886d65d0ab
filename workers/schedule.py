"""The beat schedule: periodic decay, the consolidation safety net, and job recovery."""

from __future__ import annotations

from typing import Any

from memsvc.lifecycle.settings import LifecycleSettings


def beat_schedule(settings: LifecycleSettings) -> dict[str, dict[str, Any]]:
    return {
        # One decay job per tenant per interval (idempotency key per time bucket).
        "decay": {"task": "memsvc.schedule_decay", "schedule": settings.decay_interval_s},
        # Writes already schedule consolidation (debounced); this catches scopes whose trigger was
        # lost (e.g. memories written with no broker configured).
        "consolidate-sweep": {"task": "memsvc.sweep_consolidation",
                              "schedule": settings.consolidate_sweep_interval_s},
        # Jobs whose message was lost or whose worker died.
        "recover-jobs": {"task": "memsvc.recover_jobs", "schedule": settings.recover_interval_s},
    }
