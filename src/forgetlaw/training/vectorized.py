"""Many finetuning runs of one architecture trained together: parameters stacked along a leading
"run" dimension, one batched forward/backward for all of them (`forgetlaw.models.stacked`), and a
stacked AdamW.

Runs differ only in p, D or seed; each keeps its own data stream, evaluation schedule and early
stopping (the same `RunTracker` as the sequential loop), and a finished run drops out of the stack.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from forgetlaw.errors import UserError
from forgetlaw.models.gpt import GPT
from forgetlaw.models.stacked import stack_parameters, stacked_forward
from forgetlaw.training.common import autocast_context, decay_mask, resolve_device
from forgetlaw.training.finetune import (
    FinetuneConfig,
    FinetuneResult,
    RunTracker,
    _check_seq_len,
    _check_vocab,
    _peak_lr,
    finetune,
    load_base,
)

# Fields in which the runs of one vectorized pass may differ.
VARYING = {"unique_tokens", "injection_fraction", "seed"}


class StackedAdamW:
    """AdamW over stacked parameters [K, ...] with a per-run learning rate; the same update as
    torch.optim.AdamW applied to each run on its own."""

    def __init__(self, params: dict[str, torch.Tensor], decay: dict[str, bool], weight_decay: float,
                 betas: tuple[float, float] = (0.9, 0.95), eps: float = 1e-8):
        self.params = params
        self.decay = decay
        self.weight_decay = weight_decay
        self.beta1, self.beta2 = betas
        self.eps = eps
        self.steps = 0
        self.exp_avg = {n: torch.zeros_like(p) for n, p in params.items()}
        self.exp_avg_sq = {n: torch.zeros_like(p) for n, p in params.items()}

    @torch.no_grad()
    def step(self, lr: torch.Tensor) -> None:
        self.steps += 1
        bias1 = 1 - self.beta1**self.steps
        bias2_sqrt = (1 - self.beta2**self.steps) ** 0.5
        for name, param in self.params.items():
            grad = param.grad
            run_lr = lr.view(-1, *([1] * (param.ndim - 1)))
            if self.decay[name]:
                param.mul_(1 - run_lr * self.weight_decay)
            m, v = self.exp_avg[name], self.exp_avg_sq[name]
            m.lerp_(grad, 1 - self.beta1)
            v.mul_(self.beta2).addcmul_(grad, grad, value=1 - self.beta2)
            denom = (v.sqrt() / bias2_sqrt).add_(self.eps)
            param.sub_(run_lr / bias1 * m / denom)

    def keep(self, index: torch.Tensor) -> None:
        """Keep only the runs at `index` (the others finished)."""
        for store in (self.params, self.exp_avg, self.exp_avg_sq):
            for name in list(store):
                kept = store[name].detach()[index].clone()
                store[name] = kept.requires_grad_(store is self.params)


def _clip_per_run(params: dict[str, torch.Tensor], max_norm: float) -> None:
    """Clip each run's gradient to max_norm on its own (as clip_grad_norm_ on each model)."""
    squares = sum(p.grad.pow(2).flatten(1).sum(1) for p in params.values())
    scale = (max_norm / (squares.sqrt() + 1e-6)).clamp(max=1.0)
    for p in params.values():
        p.grad.mul_(scale.view(-1, *([1] * (p.ndim - 1))))


def _check_same_architecture_run(configs: list[FinetuneConfig]) -> None:
    first = dataclasses.asdict(configs[0])
    for i, config in enumerate(configs[1:], start=1):
        other = dataclasses.asdict(config)
        differing = sorted(k for k in first if first[k] != other[k] and k not in VARYING)
        if differing:
            raise UserError(
                f"finetune_many: config {i} differs from config 0 in {', '.join(differing)}; runs trained "
                f"together may differ only in {', '.join(sorted(VARYING))}"
            )


def finetune_many(
    configs: list[FinetuneConfig],
    base_checkpoint: Path | str | nn.Module,
    domain_train: np.ndarray,
    domain_val: np.ndarray,
    pretrain_train: np.ndarray,
    pretrain_val: np.ndarray,
    progress: Callable[[str], None] | None = None,
    *,
    vectorized: bool = True,
    eval_batch_size: int = 64,
) -> list[FinetuneResult]:
    """Finetune K runs from one base; vectorized=True trains them in one stacked pass (same curves
    as one by one, within floating-point tolerance). Results are in the order of `configs`."""
    if not configs:
        return []
    _check_same_architecture_run(configs)
    base = load_base(base_checkpoint)
    memory_settings = configs[0].micro_batch_size or configs[0].activation_checkpointing
    if (not vectorized or not isinstance(base.model, GPT) or base.model.config.dropout > 0
            or memory_settings or configs[0].weights_dtype != "float32"):
        # Sequential fallback: the stacked forward is written for our GPT in float32 (tiny models,
        # which need no micro-batches), and dropout would draw other masks than the runs one by one.
        return [finetune(c, base.model if not isinstance(base_checkpoint, (str, Path)) else base_checkpoint,
                         domain_train, domain_val, pretrain_train, pretrain_val, progress) for c in configs]

    first = configs[0]
    device = resolve_device(first.device)
    autocast = autocast_context(device, first.precision)
    model = base.model.to(device)
    _check_seq_len(first, model)
    peak = _peak_lr(first, base)
    trackers = [RunTracker(c, domain_train, domain_val, pretrain_train, pretrain_val, peak) for c in configs]
    for tracker in trackers:
        _check_vocab(tracker, model, tracker.d_limited)
    K = len(configs)

    names = [n for n, _ in model.named_parameters()]
    decay = {n: decay_mask(n, p) for n, p in model.named_parameters()}
    optimizer = StackedAdamW(stack_parameters(model, K), decay, first.weight_decay)
    cfg = model.config

    def run_losses(params: dict, tokens: torch.Tensor, reduction: str) -> torch.Tensor:
        """Per-run loss [K'] of tokens [K', B, T + 1]."""
        logits = stacked_forward(params, cfg, tokens[..., :-1]).float()
        losses = F.cross_entropy(
            logits.flatten(0, 2), tokens[..., 1:].flatten(), reduction="none"
        ).view(tokens.shape[0], -1)
        return losses.sum(1) if reduction == "sum" else losses.mean(1)

    @torch.no_grad()
    def evaluate_stacked(params: dict[str, torch.Tensor], windows: np.ndarray) -> tuple[list[float], float]:
        """Mean loss of each run in the stacked params [K', ...] on shared windows."""
        started = time.perf_counter()
        runs = next(iter(params.values())).shape[0]
        total = torch.zeros(runs, device=device, dtype=torch.float64)
        count = 0
        with autocast:
            for start in range(0, len(windows), eval_batch_size):
                chunk = torch.from_numpy(windows[start : start + eval_batch_size]).to(device)
                shared = chunk.unsqueeze(0).expand(runs, *chunk.shape)
                total += run_losses(params, shared, "sum").double()
                count += chunk[:, 1:].numel()
        values = (total / count).tolist()
        elapsed = time.perf_counter() - started
        return values, elapsed

    def evaluate_runs(active_rows: list[int], windows: np.ndarray) -> tuple[list[float], float]:
        """Mean loss of the runs at active_rows (positions in the stack) on shared windows."""
        index = torch.tensor(active_rows, device=device)
        return evaluate_stacked({n: optimizer.params[n].detach()[index] for n in names}, windows)

    active = list(range(K))  # tracker index of each row of the stack
    best_weights: dict[int, dict[str, torch.Tensor]] = {}  # tracker index -> a copy at its best step

    def evaluate_and_record(rows: list[int]) -> None:
        """Evaluate the target loss of the runs at these stack rows, then L_pt where a run needs it:
        on the current weights, or (once a run stops) on the copy kept at its best target step."""
        target_windows = trackers[active[rows[0]]].target_windows  # shared: same domain_val and config
        pretrain_windows = trackers[active[rows[0]]].pretrain_windows
        values, elapsed = evaluate_runs(rows, target_windows)
        needed: list[int] = []
        for row, value in zip(rows, values, strict=True):
            tracker = trackers[active[row]]
            tracker.eval_s += elapsed / len(rows)
            if tracker.record_target(value):
                needed.append(row)
        if needed:
            pt_values, pt_elapsed = evaluate_runs(needed, pretrain_windows)
            for row, value in zip(needed, pt_values, strict=True):
                tracker = trackers[active[row]]
                tracker.eval_s += pt_elapsed / len(needed)
                tracker.record_pretrain(value)
        for row in rows:
            tracker = trackers[active[row]]
            if tracker.keep_best_weights:
                started = time.perf_counter()
                best_weights[active[row]] = {n: optimizer.params[n].detach()[row].clone() for n in names}
                tracker.eval_s += time.perf_counter() - started
        pending = [active[row] for row in rows if trackers[active[row]].best_pretrain_pending]
        if pending:
            kept = {n: torch.stack([best_weights[i][n] for i in pending]) for n in names}
            best_values, best_elapsed = evaluate_stacked(kept, pretrain_windows)
            for i, value in zip(pending, best_values, strict=True):
                trackers[i].eval_s += best_elapsed / len(pending)
                trackers[i].record_best_pretrain(value)
        for row in rows:
            if trackers[active[row]].done:
                best_weights.pop(active[row], None)

    evaluate_and_record(list(range(K)))
    while active:
        params = optimizer.params
        lr = torch.tensor([trackers[i].lr() for i in active], device=device, dtype=torch.float32)
        batch = np.stack([trackers[i].next_batch() for i in active])
        tokens = torch.from_numpy(batch).to(device)
        with autocast:
            losses = run_losses(params, tokens, "mean")
        losses.sum().backward()
        _clip_per_run(params, first.grad_clip)
        optimizer.step(lr)
        for p in params.values():
            p.grad = None
        # Each run's loss stays on the device until its next evaluation: no host sync per step.
        step_losses = losses.detach().unbind()
        due = [row for row, loss in enumerate(step_losses) if trackers[active[row]].after_step(loss)]
        if due:
            evaluate_and_record(due)
        finished = [row for row in range(len(active)) if trackers[active[row]].done]
        if finished:
            keep_rows = [row for row in range(len(active)) if row not in finished]
            if progress:
                for row in finished:
                    s = trackers[active[row]].summary()
                    progress(f"finetune_many: run {active[row]} stopped ({s['stop_reason']}) at step {s['steps']}")
            active = [active[row] for row in keep_rows]
            if active:
                optimizer.keep(torch.tensor(keep_rows, device=device))
    return [tracker.result() for tracker in trackers]
