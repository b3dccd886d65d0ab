"""schemathesis against the app's own OpenAPI document, every check on, on the real app (Postgres, Redis when
configured): every operation gets cases from every phase (examples, coverage, fuzzing, stateful), each
response is checked against what the document says (status, content type, headers, body schema), schema-valid
requests must be accepted and schema-violating ones refused, no 5xx, auth required where declared.

Bounded (a few cases per operation and phase, one seed, no coverage phase) to stay within ~2-3 minutes on 2 cores;
bench/fuzz.py is the same run unbounded (docs/fuzzing.md has its figures). Refusals a JSON Schema cannot
state are listed, each with its reason, in bench/fuzz.py (ACCEPTED_REFUSALS, OPERATIONS)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from fuzz import MockModel, fuzz, without_local_constants  # noqa: E402

pytest.importorskip("schemathesis")


@pytest.fixture(scope="module")
def fuzz_app(settings, engine) -> Iterator[Any]:  # type: ignore[no-untyped-def]
    from api.app import create_app

    # Batches of at most 20 (the document says so): a full batch of 1,000 embeds for ~45 s on 2 cores.
    app = create_app(settings.model_copy(update={"max_batch_items": 20}), engine)
    app.state.chat_backend = MockModel()  # the chat route's model answers through litellm's mock_response
    with TestClient(app):  # lifespan: model warm-up, and the usage recorder stopped afterwards
        yield app


def test_every_route_documents_its_errors_and_key(fuzz_app) -> None:  # type: ignore[no-untyped-def]
    spec = fuzz_app.openapi()
    assert spec["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            public = path in ("/healthz", "/readyz")
            assert ("security" in operation) != public, (method, path)
            assert public or {"401", "403", "429", "503"} <= set(responses), (method, path, sorted(responses))
            body = "#/components/schemas/" + ("OpenAIErrorBody" if path.startswith("/v1/chat/") else "ErrorBody")
            for status, response in responses.items():
                if status.startswith(("4", "5")) and path != "/readyz":
                    assert response["content"]["application/json"]["schema"] == {"$ref": body}, (path, status)
    assert "HTTPValidationError" not in spec["components"]["schemas"]  # FastAPI's 422 body: never sent here


def test_schemathesis_with_every_check_finds_nothing(fuzz_app, make_tenant) -> None:  # type: ignore[no-untyped-def]
    key = make_tenant(("read", "write", "admin", "root"))  # root: the tenant routes answer 2xx too
    # The coverage phase (~2,000 cases: every boundary of every field, ~8 minutes here) is the long run's
    # (bench/fuzz.py); here examples, fuzzing and stateful sequences, a few cases per operation.
    report = fuzz(fuzz_app, key, max_examples=8, seed=16, stateful_steps=5, coverage=False)
    print(report.summary())
    documented = {f"{m.upper()} {p}" for p, item in fuzz_app.openapi()["paths"].items() for m in item}
    assert documented <= report.operations, f"operations without a case: {sorted(documented - report.operations)}"
    assert report.cases >= 5 * len(documented), report.summary()
    assert not report.errors, report.summary()
    assert report.server_errors == 0, report.summary()
    assert not report.failures, report.summary()
    # The stateful phase lists the tenant's keys and revokes one it listed: never the run's own.
    assert report.keyed_unauthorized == 0 and report.key_valid_at_end, report.summary()


def test_the_cases_are_the_seeds_alone(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Hypothesis draws constants from the source of the local modules imported so far; under fuzz()'s
    without_local_constants a local module imported between two derandomized runs (an edited or untracked file
    of a working tree, another test module) changes nothing. Without it the two runs differ."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    def draws() -> list[str]:
        seen: list[str] = []

        @settings(derandomize=True, database=None, max_examples=300)
        @given(st.text())
        def draw(text: str) -> None:
            seen.append(text)

        draw()
        return seen

    (tmp_path / "fuzz_local_constants.py").write_text('ONE = "a local constant"\nTWO = 123456789\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "fuzz_local_constants", raising=False)
    with without_local_constants():
        before = draws()
        importlib.import_module("fuzz_local_constants")
        after = draws()
    sys.modules.pop("fuzz_local_constants", None)
    assert before == after
