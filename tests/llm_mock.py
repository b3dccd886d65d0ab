"""A hosted model's answers, in order, from litellm's own mock_response: the only stand-in for a model here.

A fixed answer needs none of this: `LiteLLMGateway(model, mock_response=...)` hands litellm's parameter
through like any completion keyword. A script (answer i for call i: retries, one extraction per job) wraps
litellm.completion for one test, so the gateway runs its whole path (arguments, parsing, retries, usage)
and production code knows nothing of mocks.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import pytest


def empty_answer() -> Any:
    """An answer with empty content (litellm takes a falsy mock_response for none and calls the model)."""
    import litellm

    return litellm.ModelResponse(choices=[{"message": {"role": "assistant", "content": ""}}])


def script_litellm(monkeypatch: pytest.MonkeyPatch, answers: Sequence[Any]) -> list[dict[str, Any]]:
    """From now on in this test, litellm.completion answers call i with answers[i]; a call past the script
    fails the test. Returns the arguments of each call, as the gateway sent them."""
    import litellm

    real = litellm.completion
    script, calls, lock = list(answers), [], threading.Lock()

    def completion(**kwargs: Any) -> Any:
        with lock:
            if not script:
                raise AssertionError(f"litellm called {len(calls) + 1} times; the script has {len(answers)} answers")
            answer = script.pop(0)
            calls.append(kwargs)
        return real(**{**kwargs, "mock_response": answer if answer != "" else empty_answer()})

    monkeypatch.setattr(litellm, "completion", completion)
    return calls
