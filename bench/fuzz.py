"""schemathesis against memsvc's own OpenAPI document, every check on, in this process (the ASGI app, a real
Postgres): every operation, its documented responses and their bodies, negative data, auth, state.

    python bench/fuzz.py --max-examples 60 --max-batch-items 50 --max-time 2100   # docs/fuzzing.md: ~98k cases

tests/test_fuzz_openapi.py runs the same `fuzz` with a small bound on every test run; this is the long run.
The chat route's model is litellm's mock_response (no model is called; fuzzing is about the server)."""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # harness, when run as a script


@dataclass
class FuzzReport:
    cases: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)  # distinct failures, by check
    examples: list[str] = field(default_factory=list)  # one line per distinct failure
    operations: set[str] = field(default_factory=set)  # operations that got at least one case
    errors: list[str] = field(default_factory=list)  # the engine's own errors (a schema it cannot use...)
    seconds: float = 0.0
    seconds_by_operation: Counter[str] = field(default_factory=Counter)
    slow_cases: list[tuple[float, str]] = field(default_factory=list)

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)

    def summary(self) -> str:
        lines = [f"{self.cases} cases over {len(self.operations)} operations in {self.seconds:.0f} s; "
                 f"5xx responses: {self.server_errors}; distinct failures: {sum(self.failures.values())}",
                 "statuses: " + ", ".join(f"{s} x{n}" for s, n in sorted(self.statuses.items()))]
        lines += [f"  {check}: {n}" for check, n in sorted(self.failures.items())]
        lines += [f"  - {e}" for e in self.examples]
        lines += [f"  engine error: {e}" for e in self.errors]
        slowest = ", ".join(f"{op} {t:.0f} s" for op, t in self.seconds_by_operation.most_common(5))
        lines.append(f"slowest: {slowest}")
        return "\n".join(lines)


# Refusals of schema-valid requests that are right, each for a reason a JSON Schema cannot state: a relation
# between two fields, or a fact of the server's state rather than of the request. positive_data_acceptance
# failures whose error (code, or message start) is one of these are dropped; any other is kept.
ACCEPTED_REFUSALS: dict[str, str] = {
    "valid_to must be after valid_from": "a relation between two fields",
    "occurred_after must be before occurred_before": "a relation between two fields",
    "invalid lifecycle policy: thresholds must satisfy summary > gist > archive": "a relation between three fields",
    "unknown language": "the text-search configurations are the database's (pg_ts_config), read per request",
    "invalid_cursor": "a cursor is an opaque token a previous page gave: no schema says which strings are ones",
    "no_token_set": "whether a memory has trained memory tokens is its state, not the request's",
    "not_qualified": "whether a memory qualifies for memory tokens is its state (kind, length) under the policy",
    # OpenAI's parameters go to the provider as sent; which models and values a provider takes is litellm's.
    "model_not_found": "whether litellm knows the provider of a model name is litellm's",
    "invalid_value": "OpenAI's parameters are passed to the model as sent; which values it takes is the provider's",
    "missing_required_parameter": "a chat message's content is required unless it is an assistant's (a tool "
                                  "call): a relation between two fields",
}


def _accepted_refusal(failure: Any, response: Any) -> bool:
    if type(failure).__name__ != "RejectedPositiveData":
        return False
    try:
        error = response.json()["error"]
    except Exception:
        return False
    message = str(error.get("message", ""))
    return any(error.get("code") == known or known in message for known in ACCEPTED_REFUSALS)


# Per-operation check settings, each with its reason.
OPERATIONS: list[dict[str, Any]] = [
    # PATCH/GET/DELETE /v1/memories/batch reach /v1/memories/{memory_id} (a malformed id is the route's own
    # 422 naming it, not a bare 404), so an undeclared method there answers 422, not 405.
    {"include-path": "/v1/memories/batch", "checks": {"unsupported_method": {"enabled": False}}},
]


def fuzz(app: Any, key: str, *, max_examples: int, seed: int = 16, workers: int = 1,
         max_time: int | None = None, stateful_steps: int = 10, coverage: bool = True) -> FuzzReport:
    """Every phase (examples, coverage unless coverage=False, fuzzing, stateful) with every check, `max_examples`
    per operation and phase, derandomized by `seed`; requests carry `key` as a bearer token."""
    import schemathesis
    from schemathesis.engine import events, from_schema

    config: dict[str, Any] = {
        "seed": seed, "workers": workers, "headers": {"Authorization": f"Bearer {key}"},
        "continue-on-failure": True,
        "generation": {"mode": "all", "max-examples": max_examples, "deterministic": True, "no-shrink": True,
                       "database": "none"},
        # Every check; 413 (a text over its limit) is a rejection too.
        "checks": {"enabled": True, "negative_data_rejection": {
            "expected-statuses": [400, 401, 403, 404, 405, 406, 409, 413, 415, 422, 428, 429, "5xx"]}},
        "operations": OPERATIONS,
        "phases": {"stateful": {"max-steps": stateful_steps}, "coverage": {"enabled": coverage}},
        "warnings": False,
        **({"max-time": max_time} if max_time else {}),
    }
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=schemathesis.Config.from_dict(config))

    @schema.hook
    def filter_failure(context: Any, failure: Any, case: Any, response: Any) -> bool:
        return not _accepted_refusal(failure, response)

    report = FuzzReport()
    seen: set[tuple[str, str]] = set()
    started = time.monotonic()
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            recorder = event.recorder
            report.cases += len(recorder.cases)
            report.seconds_by_operation[recorder.label] += event.elapsed_time
            for case_id, node in recorder.cases.items():
                report.operations.add(node.value.operation.label)
                interaction = recorder.interactions.get(case_id)
                if interaction is not None and interaction.response is not None:
                    report.statuses[interaction.response.status_code] += 1
                    report.slow_cases.append((interaction.response.elapsed, _exchange(node.value, interaction)))
                for check in recorder.checks.get(case_id, []):
                    if check.failure_info is None:
                        continue
                    failure = check.failure_info.failure
                    identity = (check.name, f"{node.value.operation.label}: {failure.title}")
                    if identity not in seen:
                        seen.add(identity)
                        report.failures[check.name] += 1
                        report.examples.append(f"[{check.name}] {identity[1]}: {_exchange(node.value, interaction)}")
        elif isinstance(event, events.NonFatalError):
            report.errors.append(f"{event.label}: {event.info.message}"[:500])
        elif isinstance(event, events.FatalError):
            report.errors.append(f"fatal: {event.exception!r}"[:500])
        elif isinstance(event, events.EngineFinished):
            for failure in event.failures:
                report.failures["after_run"] += 1
                report.examples.append(f"[after_run] {failure.title}")
    report.seconds = time.monotonic() - started
    return report


def _exchange(case: Any, interaction: Any) -> str:
    """What was sent and what came back, in one line (enough to reproduce and fix a finding)."""
    sent = {k: v for k, v in (("path", case.path_parameters), ("query", case.query), ("body", case.body))
            if v not in (None, {}, [])}
    if case.headers:
        sent["headers"] = {k: v for k, v in case.headers.items() if k.lower() != "authorization"} or None
    response = interaction.response if interaction is not None else None
    got = f"{response.status_code} {response.content[:300]!r}" if response is not None else "no response"
    return f"{case.method} {repr(sent)[:1000]} -> {got}"


class MockModel:
    """The chat route's model: litellm.completion answering with its own mock_response."""

    def __call__(self, **kwargs: Any) -> Any:
        import litellm

        return litellm.completion(**kwargs, mock_response="A fuzzed answer.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-examples", type=int, default=100, help="cases per operation and phase")
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--max-time", type=int, default=None, help="stop after this many seconds")
    parser.add_argument("--max-batch-items", type=int, default=None,
                        help="the deployment's MEMSVC_MAX_BATCH_ITEMS (default 1000: a full batch embeds for ~45 s)")
    args = parser.parse_args()

    import tempfile
    import uuid

    from fastapi.testclient import TestClient
    from harness import bench_database_url

    from api.app import create_app
    from memsvc import migrate, tenancy
    from memsvc.config import Settings
    from memsvc.db import get_engine, session_scope

    root = "msk_fuzz_" + uuid.uuid4().hex
    with tempfile.TemporaryDirectory(prefix="memsvc-fuzz-") as tmp, bench_database_url(tmp) as url:
        migrate.upgrade(url)
        batch = {"max_batch_items": args.max_batch_items} if args.max_batch_items else {}
        settings = Settings(database_url=url, state_dir=Path(tmp), admin_key=root, **batch)  # type: ignore[arg-type]
        engine = get_engine(url)
        with session_scope(engine) as session:
            tenancy.bootstrap(session, root)
        app = create_app(settings, engine)
        app.state.chat_backend = MockModel()
        with TestClient(app) as client:  # the app's lifespan (model warm-up) runs as in a server
            auth = {"Authorization": f"Bearer {root}"}
            tenant = client.post("/v1/admin/tenants", json={"name": "fuzz"}, headers=auth).json()
            key = client.post("/v1/admin/keys", headers=auth, json={
                "scopes": ["read", "write", "admin", "root"], "tenant_id": tenant["id"]}).json()["key"]
            report = fuzz(app, key, max_examples=args.max_examples, seed=args.seed, workers=args.workers,
                          max_time=args.max_time)
        engine.dispose()
    print(report.summary())
    for elapsed, case in sorted(report.slow_cases, key=lambda c: c[0], reverse=True)[:5]:
        print(f"slow: {elapsed:.2f} s {case[:400]}")


if __name__ == "__main__":
    main()
