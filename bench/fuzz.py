"""schemathesis against memsvc's own OpenAPI document, every check on, in this process (the ASGI app, a real
Postgres): every operation, its documented responses and their bodies, negative data, auth, state.

    python bench/fuzz.py --max-examples 60 --max-batch-items 50 --max-time 2100   # docs/fuzzing.md: ~98k cases

tests/test_fuzz_openapi.py runs the same `fuzz` with a small bound on every test run; this is the long run.
The chat route's model is litellm's mock_response (no model is called; fuzzing is about the server)."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
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
    keyed: int = 0  # cases whose request carried the run's key
    keyed_unauthorized: int = 0  # ... and were answered 401 (the key had stopped working)
    protected: int = 0  # DELETEs of the run's own key, sent for a key that does not exist instead
    key_valid_at_end: bool | None = None
    interrupted: str | None = None  # the signal that stopped the run early

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)

    def summary(self) -> str:
        lines = [f"{self.cases} cases over {len(self.operations)} operations in {self.seconds:.0f} s; "
                 f"5xx responses: {self.server_errors}; distinct failures: {sum(self.failures.values())}",
                 "statuses: " + ", ".join(f"{s} x{n}" for s, n in sorted(self.statuses.items())),
                 f"cases with the run's key: {self.keyed} (answered 401: {self.keyed_unauthorized}); its own "
                 f"revocation redirected {self.protected} times; key valid at the end: {self.key_valid_at_end}"]
        if self.interrupted:
            lines.insert(0, f"INTERRUPTED by {self.interrupted}: the report so far")
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
    "invalid_value": "OpenAI's parameters are passed to the model as sent; which values it takes is the provider's; "
                     "and which content parts a message's role may have (a refusal is an assistant's) is a "
                     "relation between two fields",
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


# The one operation that can make the run's key stop working (none changes a key's scopes or removes a tenant).
REVOKE_KEY = ("DELETE", "/v1/admin/keys/{key_id}")
# What a DELETE of the run's own key is sent as instead: a well-formed id of no key (a 404).
NO_KEY = str(uuid.UUID(int=0))


def fuzz(app: Any, key: str, *, max_examples: int, seed: int = 16, workers: int = 1,
         max_time: int | None = None, stateful_steps: int = 10, coverage: bool = True,
         progress_every: float | None = None) -> FuzzReport:
    """Every phase (examples, coverage unless coverage=False, fuzzing, stateful) with every check, `max_examples`
    per operation and phase, derandomized by `seed`; requests carry `key` as a bearer token.

    The key stays valid for the whole run: a DELETE of its own id (the stateful phase lists the tenant's keys
    and revokes one it listed) is sent as a DELETE of an id of no key. SIGTERM, SIGHUP or Ctrl-C stop the
    engine after the case in flight and return the report so far (a second one raises KeyboardInterrupt)."""
    import schemathesis
    from schemathesis.engine import events, from_schema
    from schemathesis.hooks import GLOBAL_HOOK_DISPATCHER

    from memsvc import tenancy

    with app.state.sessions() as session:
        key_id = str(tenancy.authenticate(session, key).key_id)

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

    # Why a hook on the call rather than re-minting the key on a 401: the cases stay as generated and every
    # one of them runs with a valid key (a re-mint would count the 401 that revealed the revocation, and
    # every request would need the new key), and the run's key is simply outside what the fuzzer may touch,
    # as an operator's own key would be. before_call sees every case of every phase, the stateful phase's
    # link-derived ids included; path-parameter filters apply only to generated values. The hook is global
    # in schemathesis, so it is removed when the run ends.
    def keep_the_run_key(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
        operation = case.operation
        if (operation.method.upper(), operation.path) == REVOKE_KEY and \
                str((case.path_parameters or {}).get("key_id", "")).strip().lower() == key_id:
            case.path_parameters = {**case.path_parameters, "key_id": NO_KEY}
            report.protected += 1

    GLOBAL_HOOK_DISPATCHER.register_hook_with_name(keep_the_run_key, "before_call")
    seen: set[tuple[str, str]] = set()
    started = last_progress = time.monotonic()
    stream = from_schema(schema).execute()
    done = threading.Event()
    crashed: list[BaseException] = []

    def consume() -> None:
        nonlocal last_progress
        try:
            for event in stream:
                if isinstance(event, events.ScenarioFinished):
                    _record(report, event, key, seen)
                    if progress_every and time.monotonic() - last_progress >= progress_every:
                        last_progress = time.monotonic()
                        print(f"[{last_progress - started:.0f} s] {report.cases} cases, keyed {report.keyed} "
                              f"(401: {report.keyed_unauthorized}), 5xx {report.server_errors}, "
                              f"failures {sum(report.failures.values())}", file=sys.stderr, flush=True)
                elif isinstance(event, events.NonFatalError):
                    report.errors.append(f"{event.label}: {event.info.message}"[:500])
                elif isinstance(event, events.FatalError):
                    report.errors.append(f"fatal: {event.exception!r}"[:500])
                elif isinstance(event, events.EngineFinished):
                    for failure in event.failures or []:
                        report.failures["after_run"] += 1
                        report.examples.append(f"[after_run] {failure.title}")
        except BaseException as exc:  # handed to the caller's thread
            crashed.append(exc)
        finally:
            done.set()

    # The engine's events are read in a thread of their own so that a signal is acted on at once: schemathesis'
    # workers look at its stop flag only between cases, and the coverage phase can generate one operation's
    # cases for minutes; a KeyboardInterrupt raised in the reading thread made schemathesis join its workers,
    # so SIGTERM did not stop the run. Now the first signal asks the engine to stop; if it has not within
    # STOP_GRACE seconds (or on a second signal), the run is left (its threads are daemons) with the report
    # so far, and the caller's cleanup (the embedded Postgres) runs.
    engine_thread = threading.Thread(target=consume, name="fuzz-engine", daemon=True)
    try:
        with without_local_constants(), _stop_on_signals(stream, report) as abandon:
            engine_thread.start()
            while not done.wait(0.5) and not abandon.is_set():
                pass
    finally:
        GLOBAL_HOOK_DISPATCHER.unregister(keep_the_run_key)
        report.seconds = time.monotonic() - started
    if crashed:
        raise crashed[0]
    with app.state.sessions() as session:
        try:
            tenancy.authenticate(session, key)
            report.key_valid_at_end = True
        except Exception:
            report.key_valid_at_end = False
    return report


def _record(report: FuzzReport, event: Any, key: str, seen: set[tuple[str, str]]) -> None:
    recorder = event.recorder
    report.cases += len(recorder.cases)
    report.seconds_by_operation[recorder.label] += event.elapsed_time
    bearer = f"Bearer {key}"
    for case_id, node in recorder.cases.items():
        report.operations.add(node.value.operation.label)
        interaction = recorder.interactions.get(case_id)
        if interaction is not None and interaction.response is not None:
            status = interaction.response.status_code
            report.statuses[status] += 1
            report.slow_cases.append((interaction.response.elapsed, _exchange(node.value, interaction)))
            if _header(interaction.request.headers, "authorization") == bearer:
                report.keyed += 1
                report.keyed_unauthorized += status == 401
        for check in recorder.checks.get(case_id, []):
            if check.failure_info is None:
                continue
            failure = check.failure_info.failure
            identity = (check.name, f"{node.value.operation.label}: {failure.title}")
            if identity not in seen:
                seen.add(identity)
                report.failures[check.name] += 1
                report.examples.append(f"[{check.name}] {identity[1]}: {_exchange(node.value, interaction)}")


def _header(headers: Any, name: str) -> str | None:
    for k, v in (headers or {}).items():
        if k.lower() == name:
            return v[0] if isinstance(v, list) and v else v  # type: ignore[no-any-return]
    return None


@contextmanager
def without_local_constants() -> Iterator[None]:
    """Hypothesis (6.131 on) mixes into what it draws constants it reads from the source of every imported
    module outside site-packages: this repository's, the test modules a pytest session has loaded, untracked
    files. So the cases depended on the working tree and on what else had been imported, not on the seed
    alone (database=None does not cover it: nothing is stored). Within this block it draws from its own
    constants only. Hypothesis has no setting for this; its private hook is replaced, when it exists."""
    from hypothesis.internal.conjecture import providers

    original = getattr(providers, "_get_local_constants", None)
    if original is None:
        yield
        return
    none = providers.Constants()
    providers._get_local_constants = lambda: none
    providers.CONSTANTS_CACHE.cache.clear()  # the allowed constants per type, computed with the local ones
    try:
        yield
    finally:
        providers._get_local_constants = original
        providers.CONSTANTS_CACHE.cache.clear()


STOP_GRACE = 10.0  # seconds the engine has to stop after a signal before the run is left as it is


@contextmanager
def _stop_on_signals(stream: Any, report: FuzzReport) -> Iterator[threading.Event]:
    """The first SIGINT/SIGTERM/SIGHUP asks the engine to stop (it finishes the case in flight, then the run);
    the event it yields is set STOP_GRACE seconds later, or at a second signal: time to leave the run."""
    abandon = threading.Event()
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield abandon
        return

    def stop(signum: int, frame: FrameType | None) -> None:
        if report.interrupted:
            abandon.set()
            return
        report.interrupted = signal.Signals(signum).name
        print(f"{report.interrupted}: stopping (within {STOP_GRACE:.0f} s; again to stop now)", file=sys.stderr,
              flush=True)
        stream.stop()
        timer = threading.Timer(STOP_GRACE, abandon.set)
        timer.daemon = True
        timer.start()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        yield abandon
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


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
    parser.add_argument("--no-coverage", action="store_true",
                        help="leave out the coverage phase (it can spend many minutes generating one case)")
    parser.add_argument("--progress", type=float, default=60, help="a progress line on stderr every this many s")
    args = parser.parse_args()

    import tempfile

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
                          max_time=args.max_time, progress_every=args.progress, coverage=not args.no_coverage)
        engine.dispose()
    print(report.summary())
    for elapsed, case in sorted(report.slow_cases, key=lambda c: c[0], reverse=True)[:5]:
        print(f"slow: {elapsed:.2f} s {case[:400]}")
    if report.interrupted:
        sys.exit(128 + signal.Signals[report.interrupted].value)


if __name__ == "__main__":
    main()
