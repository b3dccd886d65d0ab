"""OpenAI's request parameters that the chat endpoint passes to the model, with OpenAI's types.

A value of the wrong type is refused here with a 400 naming the parameter, as OpenAI answers, instead of
failing somewhere inside litellm (which raised TypeErrors and APIConnectionErrors for them: 502s); the OpenAPI
document states the same types (api/routes/chat.py). What a provider then does with a well-typed value (a
model without tools, say) is the provider's answer.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from memsvc.schemas import json_numbers


class _Strict(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class FunctionDef(_Strict):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    description: str | None = None
    parameters: dict[str, Any] | None = None


class Tool(_Strict):
    type: Literal["function"]
    function: FunctionDef


class NamedFunction(_Strict):
    name: str = Field(min_length=1, max_length=64)


class ToolChoice(_Strict):
    type: Literal["function"]
    function: NamedFunction


class JsonSchemaFormat(_Strict):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class ResponseFormat(_Strict):
    model_config = ConfigDict(extra="forbid", strict=True)
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


class StreamOptions(_Strict):
    model_config = ConfigDict(extra="forbid", strict=True)
    include_usage: bool | None = None


class Prediction(_Strict):
    model_config = ConfigDict(extra="forbid", strict=True)
    type: Literal["content"]
    content: str | list[dict[str, Any]]


class OpenAIParams(BaseModel):
    """The parameters of OpenAI's chat completions request that go to the model as sent."""

    model_config = ConfigDict(extra="forbid", strict=True)

    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    n: int | None = Field(default=None, ge=1, le=128)
    stop: str | list[str] | None = Field(default=None, max_length=4)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    logit_bias: dict[str, float] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    user: str | None = None
    seed: int | None = None
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    stream_options: StreamOptions | None = None
    metadata: dict[str, str] | None = None
    reasoning_effort: Literal["minimal", "low", "medium", "high"] | None = None
    modalities: list[Literal["text", "audio"]] | None = None
    prediction: Prediction | None = None
    service_tier: Literal["auto", "default", "flex", "priority"] | None = None
    store: bool | None = None
    functions: list[FunctionDef] | None = None
    function_call: Literal["none", "auto"] | NamedFunction | None = None


PASSTHROUGH = frozenset(OpenAIParams.model_fields)
# The kinds of part a message's content may be a list of (OpenAI's); a text part's text is a string, and a
# refusal part (its refusal a string) is an assistant's only.
PART_TYPES = ("text", "image_url", "input_audio", "file", "refusal")


def part_problem(content: Any, role: str | None = None) -> str | None:
    """What is wrong with a message content given as a list of parts, else None (litellm failed on parts of
    no OpenAI shape, which the server answered 502: a refusal part in a user's message, for one)."""
    if not isinstance(content, list):
        return None
    for i, part in enumerate(content):
        if part.get("type") not in PART_TYPES:
            return f"part {i} must have a type, one of {', '.join(PART_TYPES)}"
        if part["type"] == "text" and not isinstance(part.get("text"), str):
            return f"part {i} is a text part without a text string"
        if part["type"] == "refusal" and role != "assistant":
            return f"part {i} is a refusal, which only an assistant's message may have"
        if part["type"] == "refusal" and not isinstance(part.get("refusal"), str):
            return f"part {i} is a refusal part without a refusal string"
    return None


def as_sent(params: dict[str, Any]) -> dict[str, Any]:
    """The request's parameters with JSON's integral numbers of integer parameters as ints (`"n": 1.0` is 1):
    validated so, they must go to the model so too (litellm failed on 1.0 where it counts: a 502)."""
    return json_numbers(OpenAIParams, params)  # type: ignore[no-any-return]


def problem(params: dict[str, Any]) -> tuple[str, str] | None:
    """(parameter, what is wrong) for the first passthrough parameter of the wrong type, else None. `params` is
    as_sent()'s result: what is checked is what will be sent, normalised once."""
    try:
        OpenAIParams.model_validate({k: v for k, v in params.items() if k in PASSTHROUGH})
    except ValidationError as exc:
        error = exc.errors()[0]
        loc = error.get("loc", ())
        return (str(loc[0]) if loc else "request"), error.get("msg", "invalid value")
    return None
