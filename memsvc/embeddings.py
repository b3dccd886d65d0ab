"""Embedders behind one small protocol, chosen by `MEMSVC_EMBEDDING_MODEL`.

- `sentence-transformers:<name or path>`: local model; `all-MiniLM-L6-v2` (the default) and `all-mpnet-base-v2`
  resolve to copies shipped inside PyPI wheels (memsvc.shipped_models), so neither downloads anything.
- `litellm:<model>`: any hosted embedding model litellm supports.

A local model embeds a few texts through ONNX Runtime by default (`MEMSVC_EMBEDDING_QUERY_RUNTIME`,
memsvc.onnx_encoder): the same vectors at about half the latency of torch for one short text. Search
queries go through `embed_query`, which `onnx-int8` answers with int8 weights: a vector that is only
compared, never stored, can be approximate (cosine ~0.99 with the exact one) if it is ~4x cheaper.
"""

from __future__ import annotations

import logging
import os
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from memsvc import metrics
from memsvc.errors import InvalidInput
from memsvc.model_loading import model_load_lock
from memsvc.shipped_models import model_path

log = logging.getLogger(__name__)


class Embedder(Protocol):
    name: str
    dim: int

    def embed(self, texts: list[str]) -> np.ndarray:
        """Unit-normalised float32 vectors, one row per text: what is stored."""
        ...

    def embed_query(self, text: str) -> np.ndarray:
        """A search query's vector (unit-normalised float32), compared with stored ones and never stored."""
        ...


class SentenceTransformerEmbedder:
    def __init__(self, model: str, batch_size: int = 64, query_runtime: str = "torch",
                 cache_dir: Path | None = None, models_dir: Path | None = None) -> None:
        # Never reach for a hub: the default path must work offline.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        with model_load_lock:
            path = model_path(model, models_dir)
            from sentence_transformers import SentenceTransformer

            self._model = SentenceTransformer(path, device="cpu")
        self.name = f"sentence-transformers:{model}"
        self.dim = int(self._model.get_embedding_dimension())
        self.batch_size = batch_size
        self.single_thread_max = 4
        # torch already uses every core for one batch; serialising calls avoids thrashing.
        self._lock = threading.Lock()
        onnx = query_runtime in ("onnx", "onnx-int8")
        self._query_encoder = _query_encoder(self._model, path, cache_dir) if onnx else None
        self._search_encoder = (_int8_encoder(self._model, path, cache_dir, self._query_encoder)
                                if query_runtime == "onnx-int8" else None) or self._query_encoder

    def embed_query(self, text: str) -> np.ndarray:
        with metrics.timed_embedding("query", 1):
            if self._search_encoder is not None:
                return self._search_encoder.encode([text])[0]  # type: ignore[no-any-return]
            return self._embed([text])[0]

    def embed(self, texts: list[str]) -> np.ndarray:
        with metrics.timed_embedding("store", len(texts)):
            return self._embed(texts)

    def _embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self._query_encoder is not None and len(texts) <= self.single_thread_max:
            return self._query_encoder.encode(texts)
        import torch

        with self._lock:
            # A query of a few texts gains nothing from intra-op threads and, with other requests on
            # the same cores, loses a lot to them (measured 460 ms vs 49 ms under load); batches keep them.
            threads = torch.get_num_threads()
            if len(texts) <= self.single_thread_max:
                torch.set_num_threads(1)
            try:
                vectors = self._model.encode(  # no progress bar: a server's stderr is its log
                    texts, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True,
                    show_progress_bar=False,
                )
            finally:
                torch.set_num_threads(threads)
        return vectors.astype(np.float32, copy=False)


def _query_encoder(st_model: Any, model_dir: str, cache_dir: Path | None, *, quantized: bool = False) -> Any:
    """The ONNX Runtime query path (memsvc.onnx_encoder), or None (and torch) where it cannot run."""
    try:
        from memsvc.onnx_encoder import OnnxEncoder

        return OnnxEncoder(st_model, model_dir, cache_dir, quantized=quantized)
    except Exception as exc:  # a missing onnxruntime, an unsupported model, a failed export: torch still works
        log.warning("the %s ONNX query path is unavailable (%s); queries use %s", "int8" if quantized else "exact",
                    exc, "the exact one" if quantized else "torch")
        return None


# Texts an int8 graph must embed like the exact one before it answers queries: a question, another language,
# a tool line. Some models do not survive int8 weights (all-mpnet-base-v2: cosine 0.03 with its exact vectors).
_INT8_PROBES = ["What is Bob planning for his trip?", "Wo hat Anna ihren Hund gefunden?",
                "error: connection refused (port 5432)"]
_INT8_MIN_COSINE = 0.97


def _int8_encoder(st_model: Any, model_dir: str, cache_dir: Path | None, exact: Any) -> Any:
    """The int8 query path when it agrees with the exact one on the probes, else None (queries use the exact)."""
    int8 = _query_encoder(st_model, model_dir, cache_dir, quantized=True) if exact is not None else None
    if int8 is None:
        return None
    agreement = float((int8.encode(_INT8_PROBES) * exact.encode(_INT8_PROBES)).sum(axis=1).min())
    if agreement < _INT8_MIN_COSINE:
        log.warning("int8 weights change this model's vectors (cosine %.2f with the exact ones); search queries "
                    "use the exact ONNX graph", agreement)
        return None
    return int8


class LiteLLMEmbedder:
    def __init__(self, model: str, dim: int) -> None:
        self.name = f"litellm:{model}"
        self._model = model
        self.dim = dim

    def embed(self, texts: list[str]) -> np.ndarray:
        with metrics.timed_embedding("store", len(texts)):
            return self._embed(texts)

    def embed_query(self, text: str) -> np.ndarray:
        with metrics.timed_embedding("query", 1):
            return self._embed([text])[0]

    def _embed(self, texts: list[str]) -> np.ndarray:
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no price-map fetch at import
        import litellm

        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        response = litellm.embedding(model=self._model, input=texts)
        vectors = np.array([item["embedding"] for item in response.data], dtype=np.float32)
        if vectors.shape[1] != self.dim:
            raise InvalidInput(
                f"embedding model {self._model} returns {vectors.shape[1]} dimensions but the database "
                f"column has {self.dim}; set MEMSVC_EMBEDDING_DIM and run `memsvc reembed`",
                code="embedding_dimension_mismatch",
            )
        return normalize(vectors)


def normalize(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1, norms)


@lru_cache(maxsize=4)
def load_embedder(spec: str, dim: int, batch_size: int = 64, query_runtime: str = "torch",
                  cache_dir: Path | None = None, models_dir: Path | None = None) -> Embedder:
    backend, _, model = spec.partition(":")
    if not model:
        backend, model = "sentence-transformers", spec
    if backend == "sentence-transformers":
        return SentenceTransformerEmbedder(model, batch_size, query_runtime, cache_dir, models_dir)
    if backend == "litellm":
        return LiteLLMEmbedder(model, dim)
    raise ValueError(f"unknown embedding backend {backend!r} in {spec!r}; use sentence-transformers: or litellm:")


def get_embedder() -> Embedder:
    from memsvc.config import get_settings

    s = get_settings()
    return load_embedder(s.embedding_model, s.embedding_dim, s.embedding_batch_size, s.embedding_query_runtime,
                         s.state_path / "cache" / "onnx", s.state_path / "cache" / "models")
