"""The local embedder's two runtimes give the same vectors: queries go through ONNX Runtime, batches
through torch, and stored vectors must stay comparable with query vectors."""

from __future__ import annotations

import numpy as np
import pytest

from memsvc.embeddings import SentenceTransformerEmbedder
from memsvc.onnx_encoder import OnnxEncoder

TEXTS = [
    "hi",
    "When did Caroline go to the LGBTQ support group?",
    "[1:56 pm on 8 May, 2023] Melanie: I painted a lake sunrise last year, it's special to me.",
    "word " * 400,  # longer than the model's 256-token window: both must truncate alike
]


@pytest.fixture(scope="module")
def onnx_embedder(tmp_path_factory: pytest.TempPathFactory) -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder("all-MiniLM-L6-v2", query_runtime="onnx",
                                       cache_dir=tmp_path_factory.mktemp("onnx"))


def test_queries_use_onnx_and_match_torch(onnx_embedder: SentenceTransformerEmbedder) -> None:
    assert isinstance(onnx_embedder._query_encoder, OnnxEncoder)
    one_by_one = np.vstack([onnx_embedder.embed([t]) for t in TEXTS])
    padded = onnx_embedder.embed(TEXTS)  # 4 texts of different lengths: still the query path
    torch_only = SentenceTransformerEmbedder("all-MiniLM-L6-v2", query_runtime="torch")
    assert torch_only._query_encoder is None
    reference = torch_only.embed(TEXTS)
    for vectors in (one_by_one, padded):
        assert vectors.shape == (len(TEXTS), 384) and vectors.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
        assert float((vectors * reference).sum(axis=1).min()) > 0.99999


def test_export_is_cached_and_reused(onnx_embedder: SentenceTransformerEmbedder) -> None:
    cache = onnx_embedder._query_encoder.path
    assert cache.suffix == ".onnx"
    before = cache.stat().st_mtime_ns
    again = SentenceTransformerEmbedder("all-MiniLM-L6-v2", query_runtime="onnx", cache_dir=cache.parent)
    assert cache.stat().st_mtime_ns == before  # loaded, not exported again
    assert [p.name for p in cache.parent.iterdir()] == [cache.name]  # no temporary file left behind
    np.testing.assert_allclose(again.embed([TEXTS[1]]), onnx_embedder.embed([TEXTS[1]]), atol=1e-6)


def test_concurrent_queries_from_many_threads(onnx_embedder: SentenceTransformerEmbedder) -> None:
    """The API embeds queries from its worker threads at once; every one must get its own vector."""
    from concurrent.futures import ThreadPoolExecutor

    texts = [f"question number {i} about {'the support group' if i % 2 else 'painting a sunrise'}" for i in range(64)]
    expected = np.vstack([onnx_embedder.embed([t]) for t in texts])
    with ThreadPoolExecutor(max_workers=8) as pool:
        got = np.vstack(list(pool.map(lambda t: onnx_embedder.embed([t]), texts)))
    np.testing.assert_allclose(got, expected, atol=1e-6)
