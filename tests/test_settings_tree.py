"""One settings tree: the lifecycle is a section of Settings, set by its flat or its nested names, and what the
composition root builds (the Celery app, the API's write hooks) reads that section."""

from __future__ import annotations

import pytest

from memsvc.config import Settings
from memsvc.lifecycle.settings import LifecycleSettings


def test_lifecycle_section_from_flat_and_nested_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMSVC_CONSOLIDATE_DEBOUNCE_S", "7")  # the flat name, as before
    monkeypatch.setenv("MEMSVC_LIFECYCLE__JOB_MAX_ATTEMPTS", "9")  # the nested one
    monkeypatch.setenv("MEMSVC_PORT", "9999")
    settings = Settings()
    assert settings.port == 9999
    assert settings.lifecycle.consolidate_debounce_s == 7.0
    assert settings.lifecycle.job_max_attempts == 9
    assert settings.lifecycle.decay_interval_s == LifecycleSettings.model_fields["decay_interval_s"].default
    monkeypatch.setenv("MEMSVC_LIFECYCLE__JOB_MAX_ATTEMPTS", "0")  # validated like any setting
    with pytest.raises(ValueError, match="job_max_attempts"):
        Settings()


def test_the_celery_app_and_queue_read_the_lifecycle_section() -> None:
    from workers.config import make_celery

    settings = Settings(lifecycle=LifecycleSettings(celery_queue="q-from-the-tree", broker_visibility_timeout_s=77,
                                                    decay_interval_s=5))
    app = make_celery(settings, broker_url="redis://127.0.0.1:1/0")
    assert app.conf.task_default_queue == "q-from-the-tree"
    assert app.conf.broker_transport_options["visibility_timeout"] == 77
    assert app.conf.beat_schedule["decay"]["schedule"] == 5


def test_the_api_write_hooks_use_the_apps_settings(settings, engine) -> None:  # type: ignore[no-untyped-def]
    from starlette.requests import Request

    from api.app import create_app
    from api.lifecycle_deps import get_lifecycle_hooks
    from memsvc.queue import RecordingQueue

    queue = RecordingQueue()
    tuned = settings.model_copy(update={"lifecycle": LifecycleSettings(consolidate_debounce_s=0)})
    app = create_app(tuned, engine, queue=queue)
    hooks = get_lifecycle_hooks(Request({"type": "http", "app": app}))
    assert hooks.queue is queue
    assert hooks.settings.consolidate_debounce_s == 0
