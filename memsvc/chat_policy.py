"""Which chat models a caller may make this server call (`POST /v1/chat/completions`).

The caller names the model (and may name an `api_base`), but the server makes the call, with the memory
context in the prompt and the server's provider credentials. So the model must match the configured
allow-list, and a call that would reach a local or private address (an Ollama on localhost, a service on
the internal network) is refused unless the operator said so (`chat_allow_local`, or the base listed in
`chat_api_bases`). Models the server runs itself (`in_process`, e.g. `local/smollm2`) make no network call
and are always allowed.

`refusal` is the rule, over plain values; `resolve` gathers those values (provider, base URLs) from
litellm and the environment.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any
from urllib.parse import urlsplit

from memsvc.config import HOSTED_MODELS, Settings

# litellm providers that, with no base configured, call a server on this machine or run the model here.
LOCAL_PROVIDERS = frozenset({
    "ollama", "ollama_chat", "lm_studio", "llamafile", "xinference", "vllm", "hosted_vllm", "docker_model_runner",
    "lemonade", "langflow", "langgraph", "oobabooga", "petals", "triton", "openai_like", "custom_openai",
})

_LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
_LOCAL_SUFFIXES = (".localhost", ".local", ".internal", ".lan", ".home.arpa")


@dataclass(frozen=True)
class ChatPolicy:
    models: tuple[str, ...] = HOSTED_MODELS  # glob patterns (fnmatch, case-sensitive)
    allow_local: bool = False
    api_bases: tuple[str, ...] = ()  # bases callers may name, and that may be local


def from_settings(settings: Settings) -> ChatPolicy:
    return ChatPolicy(tuple(settings.chat_models), settings.chat_allow_local, tuple(settings.chat_api_bases))


@dataclass(frozen=True)
class Target:
    """Where a chat call would go: the model, litellm's provider for it (None: unknown), the api_base the
    request names, and the bases the provider would otherwise use (litellm's default and the environment)."""

    model: str
    provider: str | None = None
    api_base: str | None = None
    default_bases: tuple[str, ...] = ()


@dataclass(frozen=True)
class Refusal:
    code: str
    message: str
    param: str


def normalize_base(url: str) -> str:
    return url.strip().rstrip("/").lower()


def is_local_host(host: str) -> bool:
    """Whether a host names this machine or a private network: loopback, RFC 1918, link-local, CGNAT,
    unique-local, unspecified and reserved addresses (IPv4-mapped and the legacy IPv4 spellings such as
    2130706433 or 0x7f.1 included), localhost names, mDNS/internal suffixes and single-label names (which
    only resolve on a private network, e.g. a compose service)."""
    host = host.strip().strip("[]").rstrip(".").lower()
    if not host:
        return True
    if host in _LOCAL_NAMES or host.endswith(_LOCAL_SUFFIXES):
        return True
    try:
        address: Any = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        try:  # what the C resolver accepts as IPv4 (inet_aton): 127.1, 0x7f000001, 2130706433, 0177.0.0.1
            address = ipaddress.ip_address(socket.inet_aton(host))
        except OSError:
            return "." not in host
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is not None:
            address = embedded
    # not is_global: loopback, private, link-local, shared (100.64/10), reserved, unspecified, documentation...
    return bool(not address.is_global or address.is_multicast)


def base_host(url: str) -> str:
    """The host of a base URL (a bare host:port counts as one)."""
    parts = urlsplit(url.strip() if "//" in url else f"//{url.strip()}")
    try:
        return parts.hostname or ""
    except ValueError:
        return ""


def refusal(target: Target, policy: ChatPolicy, in_process: Iterable[str] = ()) -> Refusal | None:
    """Why this server must not make this chat call, or None. `in_process`: the models memsvc runs itself
    (no network; the lead's local backend), always allowed."""
    if target.model in frozenset(in_process):
        return None
    if not any(fnmatchcase(target.model, pattern) for pattern in policy.models):
        return Refusal("model_not_allowed", f"The model `{target.model}` is not allowed on this server (allowed: "
                       f"{', '.join(policy.models) or 'none'}; the operator sets MEMSVC_CHAT_MODELS).", "model")
    allowed_bases = {normalize_base(b) for b in policy.api_bases}
    if target.api_base is not None:
        if normalize_base(target.api_base) not in allowed_bases:
            return Refusal("api_base_not_allowed", f"The api_base `{target.api_base}` is not allowed: this server "
                           "only calls the bases its operator lists in MEMSVC_CHAT_API_BASES.", "api_base")
        return None
    local = [b for b in target.default_bases if is_local_host(base_host(b)) and normalize_base(b) not in allowed_bases]
    if policy.allow_local or not (local or (not target.default_bases and target.provider in LOCAL_PROVIDERS)):
        return None
    where = f" ({local[0]})" if local else ""
    return Refusal("model_not_allowed", f"The model `{target.model}` would make this server call a local or private "
                   f"address{where}; that is off unless the operator sets MEMSVC_CHAT_ALLOW_LOCAL=true or lists "
                   "the base in MEMSVC_CHAT_API_BASES.", "model")


def _env_bases(provider: str) -> list[str]:
    name = provider.upper()
    return [v for v in (os.environ.get(f"{name}_API_BASE"), os.environ.get(f"{name}_BASE_URL")) if v]


def resolve(model: str, api_base: str | None = None) -> Target:
    """The target of a chat call as litellm would make it: its provider, and every base it could use when the
    request names none (litellm's resolved default, litellm.api_base, <PROVIDER>_API_BASE / _BASE_URL)."""
    from memsvc.llm.gateway import _import_litellm

    litellm = _import_litellm()
    provider: str | None = None
    bases: list[str] = []
    try:
        _, provider, _, resolved = litellm.get_llm_provider(model=model)
        if resolved:
            bases.append(str(resolved))
    except Exception:  # unknown to litellm: the call fails there, with its own message
        provider = None
    if provider:
        bases += _env_bases(provider)
    if getattr(litellm, "api_base", None):
        bases.append(str(litellm.api_base))
    return Target(model=model, provider=provider, api_base=api_base, default_bases=tuple(dict.fromkeys(bases)))
