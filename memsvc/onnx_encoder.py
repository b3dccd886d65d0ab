"""The query path of a local sentence-transformers model, run by ONNX Runtime.

A query is one short text, and for that PyTorch's per-operator overhead dominates: all-MiniLM-L6-v2
takes ~22 ms per query on one core of this machine under torch and ~10 ms under ONNX Runtime, with
the same vectors (cosine >= 0.99999 on every text tried, so stored vectors need no re-embedding).
Batches (ingest) stay on torch, which uses every core for them.

`quantized=True` runs a copy of the graph with int8 weights (dynamic quantization, one scale per output
channel), for search queries only: ~1.1 ms instead of ~4 ms a query on a quiet core, at cosine
0.990-0.999 with the exact vector (min 0.9896, mean 0.994 over 500 LoCoMo and bench questions; one scale
per tensor gave 0.95). Stored vectors never come from it: writes use the exact graph or torch.

The graph is exported once from the very weights the torch model loaded (nothing is downloaded) and
cached under the state directory, keyed by the model's files, so later processes start in
milliseconds. Anything this path cannot reproduce exactly (another pooling, a model with extra
modules) is refused at load and the caller keeps torch.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)
_EXPORTING = threading.Lock()  # torch.onnx.export keeps global state: two at once fail ("in_onnx_export")
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class UnsupportedModel(Exception):
    """The model's pipeline is not Transformer -> mean pooling [-> Normalize]."""


class OnnxEncoder:
    """Mean-pooled, unit-normalised embeddings of a few texts, one intra-op thread."""

    def __init__(self, st_model: Any, model_dir: str, cache_dir: Path | None, *, quantized: bool = False) -> None:
        transformer = _checked_transformer(st_model)
        self._tokenizer = transformer.tokenizer
        self._tokenizer_lock = threading.Lock()
        self._max_length = int(transformer.max_seq_length)
        self.path = _exported(transformer.auto_model, self._tokenizer, model_dir, cache_dir)
        if quantized:
            self.path = quantized_copy(self.path)
        self._session = single_thread_session(self.path)
        self._feeds = [i.name for i in self._session.get_inputs()]

    def encode(self, texts: list[str]) -> np.ndarray:
        # A fast tokenizer sets padding/truncation on shared Rust state per call: concurrent calls from
        # the API's worker threads may fail with "Already borrowed" (tokenizers#537). The run needs no lock.
        with self._tokenizer_lock:
            batch = self._tokenizer(texts, padding=True, truncation=True, max_length=self._max_length,
                                    return_tensors="np")
        hidden = self._session.run(None, {k: batch[k].astype(np.int64) for k in self._feeds})[0]
        mask = batch["attention_mask"][..., None].astype(np.float32)
        pooled = (hidden * mask).sum(axis=1) / np.clip(mask.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.where(norms == 0, 1, norms)).astype(np.float32)


def _checked_transformer(st_model: Any) -> Any:
    """The model's Transformer module, once its pipeline is known to be one this path reproduces."""
    modules = list(st_model)
    names = [type(m).__name__ for m in modules]
    if names[:2] != ["Transformer", "Pooling"] or any(n != "Normalize" for n in names[2:]):
        raise UnsupportedModel(f"pipeline {names}")
    config = modules[1].get_config_dict()
    # sentence-transformers 5+ names the mode; older versions set one flag per mode.
    mean = config.get("pooling_mode") == "mean" or (
        config.get("pooling_mode_mean_tokens") is True
        and not any(config.get(f"pooling_mode_{m}") for m in ("cls_token", "max_tokens", "mean_sqrt_len_tokens")))
    if not mean:
        raise UnsupportedModel(f"pooling is not plain mean pooling ({config})")
    return modules[0]


def _fingerprint(model_dir: str) -> str:
    """Names, sizes and modification times of the model's files: a new model version, a new export."""
    digest = hashlib.sha256()
    for path in sorted(Path(model_dir).rglob("*")):
        if path.is_file():
            stat = path.stat()
            digest.update(f"{path.relative_to(model_dir)}:{stat.st_size}:{int(stat.st_mtime)}".encode())
    import torch

    digest.update(torch.__version__.encode())
    return digest.hexdigest()[:16]


def _written_atomically(target: Path, write: Callable[[str], None]) -> Path:
    """`write(tmp)` into a temporary file beside `target`, then renamed: a concurrent process sees the
    whole file or none."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".onnx.tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


class _QuietQuantizer(logging.Filter):
    """onnxruntime's quantizer logs through the root logger: a line per tensor at INFO, and a WARNING
    that advises pre-processing (meant for vision models). Neither tells an operator anything."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR or "onnxruntime" not in record.pathname


def quantized_copy(exact: Path) -> Path:
    """The exact graph with int8 weights (per output channel, 7-bit range), made once beside it."""
    target = exact.with_name(exact.stem + "-int8r.onnx")
    if target.exists():
        return target
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quiet = _QuietQuantizer()
    logging.getLogger().addFilter(quiet)
    try:
        # reduce_range: 7-bit weights. x86 CPUs without VNNI multiply u8 x s8 pairs into 16-bit sums that saturate
        # with full-range weights (ONNX Runtime's advice); on such a CPU (AVX2 EPYC) SPLADE's int8 terms fell to
        # cosine 0.97 with the exact ones.
        _written_atomically(target, lambda tmp: quantize_dynamic(str(exact), tmp, weight_type=QuantType.QInt8,
                                                                 per_channel=True, reduce_range=True))
    finally:
        logging.getLogger().removeFilter(quiet)
    log.info("quantized %s to %s for search queries", exact, target)
    return target


def single_thread_session(path: Path) -> Any:
    """An ONNX Runtime session on one intra-op thread: a query gains nothing from more, and other requests
    share the cores."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def exported(module: Any, sample: dict[str, Any], output: str, name: str, model_dir: str,
             cache_dir: Path | None) -> Path:
    """`module` (called with the keyword inputs of `sample`, torch tensors of (batch, tokens)) traced into
    `<cache>/<name>-<fingerprint of model_dir>.onnx`, once; its one output's first axis is the batch."""
    target = (cache_dir or Path(tempfile.gettempdir()) / "memsvc-onnx") / f"{name}-{_fingerprint(model_dir)}.onnx"
    if target.exists():
        return target
    import torch

    class _Keywords(torch.nn.Module):  # keyword arguments: positional ones clash across transformers versions
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, *inputs: Any) -> Any:
            return self.inner(**dict(zip(sample, inputs, strict=True)))

    dynamic = {**{k: {0: "batch", 1: "tokens"} for k in sample}, output: {0: "batch"}}

    def write(tmp: str) -> None:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer notes on shape branches; equality is tested instead
            # The wrapper in eval mode too: the exporter puts the mode it found back afterwards, recursively, and a
            # wrapper in training mode would leave the caller's model with dropout on for every later batch.
            torch.onnx.export(_Keywords(module).eval(), tuple(sample.values()), tmp, input_names=list(sample),
                              output_names=[output], dynamic_axes=dynamic, opset_version=17, dynamo=False)

    with _EXPORTING:
        if not target.exists():  # another thread may have written it meanwhile
            _written_atomically(target, write)
            log.info("exported %s from %s to %s", name, model_dir, target)
    return target


def _exported(model: Any, tokenizer: Any, model_dir: str, cache_dir: Path | None) -> Path:
    import torch

    class _Hidden(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, **inputs: Any) -> Any:
            return self.inner(**inputs).last_hidden_state

    sample = tokenizer(["a query to trace the graph with"], return_tensors="pt")
    # The inputs this tokenizer makes: BERT's include token_type_ids, MPNet's do not.
    inputs = {k: sample[k] for k in _INPUTS if k in sample}
    return exported(_Hidden(model), inputs, "hidden", "query-encoder", model_dir, cache_dir)
