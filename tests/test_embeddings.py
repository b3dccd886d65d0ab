"""The local embedder's two runtimes give the same vectors: queries go through ONNX Runtime, batches
through torch, and stored vectors must stay comparable with query vectors."""

from __future__ import annotations

from pathlib import Path

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


def test_int8_runtime_approximates_queries_only(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """onnx-int8: search queries through int8 weights (close to, not equal to, the exact vector); what
    `embed` returns (and the store keeps) is still the exact vector."""
    exact = SentenceTransformerEmbedder("all-MiniLM-L6-v2", query_runtime="onnx", cache_dir=tmp_path)
    int8 = SentenceTransformerEmbedder("all-MiniLM-L6-v2", query_runtime="onnx-int8", cache_dir=tmp_path)
    assert int8._search_encoder is not int8._query_encoder
    assert "-int8" in int8._search_encoder.path.name
    assert int8._search_encoder.path.stat().st_size < exact._query_encoder.path.stat().st_size / 3
    for text in TEXTS:
        reference = exact.embed([text])[0]
        np.testing.assert_allclose(int8.embed([text])[0], reference, atol=1e-5)  # stored vectors: exact
        np.testing.assert_allclose(exact.embed_query(text), reference, atol=1e-6)  # "onnx": queries exact too
        query = int8.embed_query(text)
        assert query.shape == (384,) and query.dtype == np.float32
        assert abs(float(np.linalg.norm(query)) - 1.0) < 1e-5
        assert 0.98 < float(query @ reference) < 0.99999  # approximate, but close
    # Related and unrelated texts keep their order under the approximation.
    question, answer, other = TEXTS[1], "Caroline went to the LGBTQ support group on 7 May.", "I like pizza."
    a, o = exact.embed([answer])[0], exact.embed([other])[0]
    assert int8.embed_query(question) @ a > int8.embed_query(question) @ o
    before = int8._search_encoder.path.stat().st_mtime_ns
    SentenceTransformerEmbedder("all-MiniLM-L6-v2", query_runtime="onnx-int8", cache_dir=tmp_path)
    assert int8._search_encoder.path.stat().st_mtime_ns == before  # quantized once, then loaded
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_two_threads_exporting_at_once_both_get_a_graph(tmp_path: Path) -> None:
    """The API loads the dense and the SPLADE query graphs on different threads at its first requests; torch's
    exporter keeps global state, and a second export running beside the first failed (and that model's
    queries quietly fell back to torch)."""
    import threading

    import onnxruntime as ort
    import torch

    from memsvc.onnx_encoder import exported

    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "weights.bin").write_bytes(b"0")
    sample = {"input": torch.ones((1, 3), dtype=torch.long)}
    paths: dict[str, Path] = {}
    failures: list[BaseException] = []

    def export(name: str) -> None:
        try:
            paths[name] = exported(torch.nn.Embedding(10, 4), sample, "out", name, str(model_dir), tmp_path)
        except BaseException as exc:  # noqa: BLE001 - the test reports whatever a thread raised
            failures.append(exc)

    threads = [threading.Thread(target=export, args=(f"graph-{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures and len(paths) == 4
    for path in paths.values():
        out = ort.InferenceSession(str(path)).run(None, {"input": np.ones((2, 5), dtype=np.int64)})[0]
        assert out.shape == (2, 5, 4)
