"""Training memory tokens: k input vectors per memory, the model frozen, so that greedy decoding from the
vectors alone reproduces the memory's text (and then the end-of-turn token) exactly.

Many memories train at once, each in its own row: [<start>, v_1 .. v_k, t_1 .. t_n] right-padded (causal
attention never looks right, so padding needs no mask), cross-entropy on t_1 .. t_n, <end>. The fixed start
token (the model's BOS) takes position 0: there the model keeps its attention sink, whose output hardly
depends on the input, and a vector in that place could not predict the first token. Rows are slots: a memory
leaves its row as soon as it is verified (or runs out of steps) and the next waiting memory takes the row,
so the batch stays full and short memories do not wait for long ones. Adam is written out per row (own
moments, own step count, own schedule) for that reason.

A memory is verified only by a real greedy decode of its float16-rounded vectors in the inference precision
(`decode.greedy`), run when the training pass already finds every target token the argmax by at least
`margin` logits; the margin keeps the set exact under other float rounding (another device, a batch of
another size, bf16 training passes on CUDA).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from memsvc.memtokens.decode import decode_tokens, greedy
from memsvc.memtokens.model import LocalModel, require_torch

__all__ = ["TrainResult", "TrainSettings", "decode_tokens", "train_memory_tokens"]


@dataclass
class TrainSettings:
    k: int = 2  # vectors per memory, unless train_memory_tokens is given per-memory ks
    max_steps: int = 1000
    check_every: int = 10  # steps between verification decodes of the rows that look exact
    lr: float = 0.05
    beta1: float = 0.9
    beta2: float = 0.999
    warmup: int = 10  # linear warm-up steps, then cosine down to lr * final_lr over max_steps
    final_lr: float = 0.1
    batch_size: int = 32  # memories training at once (rows)
    max_tokens: int = 256  # longer memories are refused
    margin: float = 1.0  # logits by which each target must win before a verification decode
    init: str = "mean"  # "mean": the vocabulary's mean embedding; "text": mean embedding of the memory's own tokens
    # (chunk j for vector j). On the H200 sweep "mean" verified 21/64 memories of 32 tokens with 1 vector in 600
    # steps at lr 0.05, "text" 8/64 (11/64 at lr 0.1, 20/64 at lr 0.2).
    noise: float = 0.0  # std of Gaussian noise added at init, relative to the embeddings' element std
    autocast: bool = True  # bf16 training passes on CUDA (verification is always float32)
    max_seconds: float = 0.0  # wall-time budget of one call (0: none); rows still training then end unverified
    seed: int = 0


@dataclass
class TrainResult:
    n_tokens: int
    k: int
    vectors: np.ndarray  # float16, (k, hidden_size); empty (0, hidden_size) when refused
    verified: bool  # greedy decode of these float16 vectors, in the inference precision, == text exactly
    steps: int
    seconds: float  # this memory's share of the batch's wall time (amortised)
    decoded: str  # what the greedy decode produced
    reason: str | None  # why not verified / refused


@dataclass
class _Row:
    index: int  # into texts
    ids: list[int]
    k: int
    steps: int = 0
    seconds: float = 0.0


def _lr(settings: TrainSettings, step: Any) -> Any:
    """Per-row learning rates for per-row step counts (a tensor)."""
    torch = require_torch()
    warm = torch.clamp((step + 1) / max(1, settings.warmup), max=1.0)
    progress = torch.clamp((step - settings.warmup) / max(1, settings.max_steps - settings.warmup), 0.0, 1.0)
    cosine = settings.final_lr + (1 - settings.final_lr) * 0.5 * (1 + torch.cos(math.pi * progress))
    return settings.lr * warm * cosine


class _Batch:
    """The rows training now and their tensors; rebuilt whenever a row leaves or joins."""

    def __init__(self, model: LocalModel, settings: TrainSettings) -> None:
        self.model, self.settings = model, settings
        self.torch = require_torch()
        self.rows: list[_Row] = []
        emb = model.model.get_input_embeddings().weight
        self.emb_mean = emb.mean(0).detach()
        self.emb_std = float(emb.std())
        self.gen = self.torch.Generator(device="cpu").manual_seed(settings.seed)
        self.vectors = self.m = self.v = self.step = None

    def _init_vectors(self, row: _Row) -> Any:
        torch, h = self.torch, self.model.hidden_size
        if self.settings.init == "text":
            ids = torch.tensor(row.ids)
            chunks = torch.tensor_split(ids, row.k) if len(row.ids) >= row.k else [ids] * row.k
            start = torch.stack([self.model.embed(c).mean(0) for c in chunks]).float()
        else:
            start = self.emb_mean.float().expand(row.k, h).clone()
        noise = torch.randn(row.k, h, generator=self.gen) * self.emb_std * self.settings.noise
        return start + noise.to(start.device)

    def set_rows(self, keep: list[int], new: list[_Row]) -> None:
        """Keep the rows at positions `keep` (with their vectors and Adam state), append `new` rows."""
        torch, dev, h = self.torch, self.model.device, self.model.hidden_size
        old = self.rows
        self.rows = [old[i] for i in keep] + new
        if not self.rows:
            return
        kmax = max(r.k for r in self.rows)
        length = 1 + max(r.k + len(r.ids) for r in self.rows)
        b = len(self.rows)
        vectors = torch.zeros(b, kmax, h, device=dev)
        m, v, step = torch.zeros_like(vectors), torch.zeros_like(vectors), torch.zeros(b, device=dev)
        if keep:
            idx = torch.tensor(keep, device=dev)
            ko = min(kmax, self.vectors.shape[1])
            vectors[: len(keep), :ko] = self.vectors[idx, :ko]
            m[: len(keep), :ko], v[: len(keep), :ko] = self.m[idx, :ko], self.v[idx, :ko]
            step[: len(keep)] = self.step[idx]
        for j, row in enumerate(new, start=len(keep)):
            vectors[j, : row.k] = self._init_vectors(row)
        self.vectors, self.m, self.v, self.step = vectors, m, v, step
        end = self.model.end_id
        ids = torch.full((b, length), end, dtype=torch.long)
        targets = torch.full((b, length), -100, dtype=torch.long)
        slot = torch.zeros(b, kmax, dtype=torch.bool)
        ids[:, 0] = self.model.start_id
        for j, row in enumerate(self.rows):
            n, k = len(row.ids), row.k
            ids[j, 1 + k: 1 + k + n] = torch.tensor(row.ids)
            targets[j, k: k + n] = torch.tensor(row.ids)
            targets[j, k + n] = end
            slot[j, :k] = True
        self.token_embeds = self.model.embed(ids).detach()
        self.targets, self.slot = targets.to(dev), slot.to(dev)[:, :, None]
        self.target_mask = self.targets != -100
        self.target_row = self.torch.nonzero(self.target_mask)[:, 0]
        self.n_targets = self.target_mask.sum(1)

    def train_step(self) -> Any:
        """One Adam step on every row; returns a bool tensor: rows whose every target wins by the margin."""
        torch, s = self.torch, self.settings
        vec = self.vectors.detach().requires_grad_(True)
        kmax = vec.shape[1]
        head = torch.where(self.slot, vec, self.token_embeds[:, 1: 1 + kmax])
        x = torch.cat([self.token_embeds[:, :1], head, self.token_embeds[:, 1 + kmax:]], dim=1)
        use_bf16 = s.autocast and x.device.type == "cuda"
        with torch.autocast(device_type=x.device.type, dtype=torch.bfloat16, enabled=use_bf16):
            hidden = self.model.model.model(inputs_embeds=x).last_hidden_state
            logits = self.model.model.lm_head(hidden[self.target_mask]).float()
        gold = self.targets[self.target_mask]
        loss_tok = torch.nn.functional.cross_entropy(logits, gold, reduction="none")
        per_row = torch.zeros(len(self.rows), device=x.device).index_add_(0, self.target_row, loss_tok)
        (per_row / self.n_targets).sum().backward()
        with torch.no_grad():
            top2 = logits.topk(2, dim=-1)
            gold_logit = logits.gather(1, gold[:, None])[:, 0]
            other = torch.where(top2.indices[:, 0] == gold, top2.values[:, 1], top2.values[:, 0])
            bad = (gold_logit - other < s.margin).float()
            ok = torch.zeros(len(self.rows), device=x.device).index_add_(0, self.target_row, bad) == 0
            self._adam(vec.grad)
        return ok

    def _adam(self, grad: Any, eps: float = 1e-8) -> None:
        b1, b2 = self.settings.beta1, self.settings.beta2
        self.step += 1
        self.m.mul_(b1).add_(grad, alpha=1 - b1)
        self.v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
        t = self.step[:, None, None]
        lr = _lr(self.settings, self.step - 1)[:, None, None]
        update = (self.m / (1 - b1**t)) / ((self.v / (1 - b2**t)).sqrt() + eps)
        self.vectors.sub_(lr * update * self.slot)

    def vectors_f16(self, j: int) -> np.ndarray:
        return self.vectors[j, : self.rows[j].k].detach().to("cpu", self.torch.float16).numpy()


def train_memory_tokens(model: LocalModel, texts: Sequence[str], settings: TrainSettings,
                        progress: Callable[[int, int], None] | None = None,
                        ks: Sequence[int] | None = None) -> list[TrainResult]:
    """Train every text's vectors (k each, or ks[i]); one result per text, in order.

    Texts that are empty, longer than settings.max_tokens or that do not survive encode/decode unchanged
    are refused (reason set, no training). `progress(done, total)` is called as memories finish.
    """
    require_torch()
    if ks is not None and len(ks) != len(texts):
        raise ValueError(f"ks has {len(ks)} entries for {len(texts)} texts")
    empty = np.zeros((0, model.hidden_size), dtype=np.float16)
    results: list[TrainResult | None] = [None] * len(texts)
    waiting: list[_Row] = []
    for i, text in enumerate(texts):
        k = ks[i] if ks is not None else settings.k
        ids = model.encode(text)
        reason = None
        if not ids:
            reason = "empty text"
        elif len(ids) > settings.max_tokens:
            reason = f"too long: {len(ids)} tokens > {settings.max_tokens}"
        elif model.decode(ids) != text:
            reason = "the text does not survive the tokenizer unchanged (bytes it drops)"
        elif k < 1:
            reason = f"k must be at least 1, not {k}"
        if reason:
            results[i] = TrainResult(len(ids), k, empty, False, 0, 0.0, "", reason)
        else:
            waiting.append(_Row(i, ids, k))
    waiting.sort(key=lambda r: (r.k, len(r.ids)), reverse=True)  # similar rows together: less padding
    total, done = len(texts), sum(r is not None for r in results)
    if progress and done:
        progress(done, total)
    batch = _Batch(model, settings)
    model.model.eval()
    batch.set_rows([], [waiting.pop() for _ in range(min(settings.batch_size, len(waiting)))])
    deadline = time.monotonic() + settings.max_seconds if settings.max_seconds > 0 else math.inf
    while batch.rows:
        t0 = time.perf_counter()
        out_of_time = time.monotonic() > deadline
        ok = batch.train_step().tolist()
        for row in batch.rows:
            row.steps += 1
        finished: dict[int, TrainResult] = {}
        check = [j for j, row in enumerate(batch.rows) if ok[j] and row.steps % settings.check_every == 0]
        out_of_steps = [j for j, row in enumerate(batch.rows) if row.steps >= settings.max_steps or out_of_time]
        to_decode = sorted(set(check) | set(out_of_steps))
        decoded = _verify(model, batch, to_decode) if to_decode else {}
        for j, (exact, text) in decoded.items():
            row = batch.rows[j]
            if exact or row.steps >= settings.max_steps or out_of_time:
                reason = None if exact else f"not exact after {row.steps} steps" + " (out of time)" * out_of_time
                finished[j] = TrainResult(len(row.ids), row.k, batch.vectors_f16(j), exact, row.steps, 0.0,
                                          text, reason)
        dt = time.perf_counter() - t0
        for row in batch.rows:
            row.seconds += dt / len(batch.rows)
        for j, result in finished.items():
            result.seconds = batch.rows[j].seconds
            results[batch.rows[j].index] = result
        if finished:
            done += len(finished)
            keep = [j for j in range(len(batch.rows)) if j not in finished]
            joining = 0 if out_of_time else min(len(finished), len(waiting))
            batch.set_rows(keep, [waiting.pop() for _ in range(joining)])
            if progress:
                progress(done, total)
    for row in waiting:  # only left when the time budget ran out
        results[row.index] = TrainResult(len(row.ids), row.k, empty, False, 0, 0.0, "",
                                         f"not started: the {settings.max_seconds:g} s budget ran out")
    return [r for r in results if r is not None]


def _verify(model: LocalModel, batch: _Batch, rows: list[int]) -> dict[int, tuple[bool, str]]:
    """Greedy-decode the float16 vectors of `rows`; {row: (exactly the text then the end token, decoded text)}.
    A row that is not exact and out of steps is decoded again to its end (the text reported for it)."""
    out: dict[int, tuple[bool, str]] = {}
    by_k: dict[int, list[int]] = {}
    for j in rows:
        by_k.setdefault(batch.rows[j].k, []).append(j)
    for group in by_k.values():
        vectors = [batch.vectors_f16(j) for j in group]
        targets = [batch.rows[j].ids + [model.end_id] for j in group]
        generated = greedy(model, vectors, max(len(t) for t in targets), targets=targets)
        for j, gen, want, vec in zip(group, generated, targets, vectors, strict=True):
            exact = gen == want
            if exact:
                text = model.decode(gen[:-1])
            elif batch.rows[j].steps >= batch.settings.max_steps:
                text = decode_tokens(model, vec, len(want) + 8)
            else:
                text = ""
            out[j] = (exact, text)
    return out
