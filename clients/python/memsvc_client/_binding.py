"""How a call defined once becomes a method of both clients, with the right static types.

A call is a function `(client, *args) -> Call[T]` decorated with `@endpoint`: it validates its input
and describes the request. Read from a `MemsvcClient`, it is a method returning `T`; read from an
`AsyncMemsvcClient`, one returning an awaitable of `T` (the overloads of `__get__` say so to type
checkers). `@paginated` does the same for cursor listings: `Iterator[T]` vs `AsyncIterator[T]`.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Concatenate, Generic, ParamSpec, TypeVar, overload

import httpx
from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from memsvc_client._protocol import Call
from memsvc_client.errors import InvalidInputError, invalid

if TYPE_CHECKING:
    from memsvc_client.client import AsyncMemsvcClient, MemsvcClient

P = ParamSpec("P")
T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)


class endpoint(Generic[P, T]):  # noqa: N801  (used as a decorator, like property)
    """One API call, defined once; executed by whichever client it is read from."""

    def __init__(self, build: Callable[Concatenate[Any, P], Call[T]]) -> None:
        self.build = build
        functools.update_wrapper(self, build)  # type: ignore[arg-type]

    @overload
    def __get__(self, client: None, owner: type | None = None) -> endpoint[P, T]: ...
    @overload
    def __get__(self, client: AsyncMemsvcClient, owner: type | None = None
                ) -> Callable[P, Coroutine[Any, Any, T]]: ...
    @overload
    def __get__(self, client: MemsvcClient, owner: type | None = None) -> Callable[P, T]: ...

    def __get__(self, client: Any, owner: type | None = None) -> Any:
        if client is None:
            return self
        build = self.build

        @functools.wraps(build)
        def method(*args: Any, **kwargs: Any) -> Any:
            return client._call(build(client, *args, **kwargs))

        return method


@dataclass(frozen=True)
class Pages(Generic[M]):
    """A cursor-paginated listing: where it is, which filters it takes, what a page looks like."""

    path: str
    page: type[M]
    filters: frozenset[str]
    max_limit: int = 200

    def call(self, filters: Mapping[str, Any], limit: int, cursor: str | None) -> Call[M]:
        unknown = sorted(set(filters) - self.filters)
        if unknown:
            raise invalid(f"unknown filter(s) {', '.join(unknown)}; use {', '.join(sorted(self.filters))}")
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= self.max_limit:
            raise invalid(f"limit must be an integer from 1 to {self.max_limit}; got {limit!r}", "limit")
        return Call("GET", self.path, parse_model(self.page), params={**filters, "limit": limit, "cursor": cursor})


@dataclass(frozen=True)
class PageWalk(Generic[T]):
    """Every item of a listing with these filters: page calls, each after the previous page's cursor."""

    pages: Pages[Any]
    filters: Mapping[str, Any]
    page_size: int

    def first(self) -> Call[Any]:
        return self.pages.call(self.filters, self.page_size, None)

    def after(self, page: Any) -> Call[Any] | None:
        cursor = page.next_cursor
        return self.pages.call(self.filters, self.page_size, cursor) if cursor else None


class paginated(Generic[P, T]):  # noqa: N801
    """A listing walked page after page: `for` on the sync client, `async for` on the async one."""

    def __init__(self, build: Callable[Concatenate[Any, P], PageWalk[T]]) -> None:
        self.build = build
        functools.update_wrapper(self, build)  # type: ignore[arg-type]

    @overload
    def __get__(self, client: None, owner: type | None = None) -> paginated[P, T]: ...
    @overload
    def __get__(self, client: AsyncMemsvcClient, owner: type | None = None) -> Callable[P, AsyncIterator[T]]: ...
    @overload
    def __get__(self, client: MemsvcClient, owner: type | None = None) -> Callable[P, Iterator[T]]: ...

    def __get__(self, client: Any, owner: type | None = None) -> Any:
        if client is None:
            return self
        build = self.build

        @functools.wraps(build)
        def method(*args: Any, **kwargs: Any) -> Any:
            walk = build(client, *args, **kwargs)
            walk.first()  # validate the filters now, not at the first next()
            return client._walk(walk)

        return method


# ---- helpers the definitions share --------------------------------------------------------------
def validated(model: type[M], data: Mapping[str, Any]) -> M:
    """Build a request model; a local mistake raises InvalidInputError before anything is sent."""
    try:
        return model.model_validate(dict(data))
    except PydanticValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or model.__name__
        message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
        raise InvalidInputError(
            f"{where}: {message}",
            details=[{"loc": [str(p) for p in e.get("loc", ())], "msg": e.get("msg", "")} for e in exc.errors()],
        ) from None


def as_uuid(value: str | uuid.UUID, what: str = "memory id") -> str:
    if isinstance(value, uuid.UUID):
        return str(value)
    try:
        return str(uuid.UUID(str(value)))
    except (ValueError, AttributeError, TypeError):
        raise invalid(f"{value!r} is not a valid {what} (expected a UUID)", what.replace(" ", "_")) from None


def parse_model(model: type[M]) -> Callable[[httpx.Response], M]:
    return lambda response: model.model_validate(response.json())


def parse_list(model: type[M]) -> Callable[[httpx.Response], list[M]]:
    return lambda response: [model.model_validate(item) for item in response.json()]


def write(method: str, path: str, parse: Callable[[httpx.Response], T], body: Any = None,
          idempotency_key: str | None = None) -> Call[T]:
    """A write the server deduplicates: one Idempotency-Key for all the retries of this call."""
    return Call(method, path, parse, json=body, idempotency_key=idempotency_key or f"sdk-{uuid.uuid4()}")
