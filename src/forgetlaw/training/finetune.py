"""Finetuning with pretraining-data injection, evaluated along the way and read at the bottom of the
target loss's U-curve (the paper's protocol).

The loop takes any module mapping token ids [B, T] to logits [B, T, V]: our GPT from a checkpoint,
or a Hugging Face model through `forgetlaw.models.hf`.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from forgetlaw.data.mixture import InjectionStream, limit_unique_tokens, validation_windows
from forgetlaw.errors import UserError
from forgetlaw.provenance import IF_SET, KEY, NEVER
from forgetlaw.training.checkpoint import load_model
from forgetlaw.training.common import (
    autocast_context,
    check_finite,
    evaluate,
    finetune_lr,
    make_adamw,
    resolve_device,
    set_activation_checkpointing,
    train_step,
)

WEIGHT_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}

CURVE_KEYS = ("step", "tokens_seen", "epoch", "train_loss", "finetune_val_loss", "pretrain_val_loss")


@dataclass
class FinetuneConfig:
    unique_tokens: int  # D
    injection_fraction: float = 0.0  # p
    lr: float | None = None  # None: the LR the base's pretraining ended at (peak x min_lr_frac)
    warmup_steps: int = 5
    schedule: str = "constant"  # "constant" | "cosine" | "linear" (decay over the max_epochs budget)
    min_lr_frac: float = 0.1  # floor of the decaying schedules
    batch_size: int = 8
    seq_len: int = 128
    eval_tokens: int = 8192  # target validation set
    pretrain_eval_tokens: int = 4096  # pretraining validation set (evaluated less often; see docs)
    eval_every_epochs: float = 1.0
    min_eval_interval_steps: int = 8  # evaluate no more often than this
    max_eval_interval_steps: int = 500  # ...and at least this often
    # L_pt on the curve every k-th evaluation (and at the start and the end); at the best target
    # step it is always read, from a copy of the weights kept at that step (see docs)
    pretrain_eval_every: int = 2
    patience: int = 5  # evaluations without improvement of the target loss
    max_epochs: float = 20.0
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    domain: str = ""  # only for messages
    # Memory, not math (so not in the run key): gradient accumulation over micro-batches of this many
    # sequences (None: the whole batch at once), and recomputing activations in the backward pass.
    micro_batch_size: int | None = field(default=None, metadata={KEY: NEVER})
    activation_checkpointing: bool = field(default=False, metadata={KEY: NEVER})
    # The dtype of the weights AdamW updates: float32 master weights (bf16 autocast does the compute on
    # CUDA), or bfloat16 to halve their memory (small updates then round away: docs/training.md).
    weights_dtype: str = field(default="float32", metadata={KEY: IF_SET})

    def __post_init__(self) -> None:
        if not 0.0 <= self.injection_fraction < 1.0:
            raise UserError(
                f"FinetuneConfig.injection_fraction must be in [0, 1); got {self.injection_fraction}"
            )
        for name in ("unique_tokens", "batch_size", "seq_len", "eval_tokens", "pretrain_eval_tokens",
                     "eval_every_epochs",
                     "min_eval_interval_steps", "max_eval_interval_steps", "pretrain_eval_every",
                     "patience", "max_epochs"):
            if not getattr(self, name) > 0:
                raise UserError(f"FinetuneConfig.{name} must be positive; got {getattr(self, name)}")
        if self.lr is not None and not self.lr > 0:
            raise UserError(f"FinetuneConfig.lr must be positive (or None for the final pretraining LR); got {self.lr}")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise UserError(f"FinetuneConfig.precision must be auto, fp32 or bf16; got '{self.precision}'")
        if self.schedule not in ("constant", "cosine", "linear"):
            raise UserError(f"FinetuneConfig.schedule must be constant, cosine or linear; got '{self.schedule}'")
        if self.min_eval_interval_steps > self.max_eval_interval_steps:
            raise UserError("FinetuneConfig.min_eval_interval_steps must not exceed max_eval_interval_steps")
        if self.micro_batch_size is not None and not self.micro_batch_size > 0:
            raise UserError(f"FinetuneConfig.micro_batch_size must be positive (or None); got {self.micro_batch_size}")
        if self.weights_dtype not in WEIGHT_DTYPES:
            raise UserError(f"FinetuneConfig.weights_dtype must be one of {', '.join(WEIGHT_DTYPES)}; "
                            f"got '{self.weights_dtype}'")


@dataclass
class FinetuneResult:
    curve: list[dict]
    summary: dict
    config: FinetuneConfig | None = None

    def to_dict(self) -> dict:
        return {"curve": self.curve, "summary": self.summary,
                "config": dataclasses.asdict(self.config) if self.config else None}


@dataclass
class Base:
    """The model to finetune and what is known about how it was pretrained."""

    model: nn.Module
    pretrain_lr: float | None  # the LR its pretraining ended at; the default finetuning LR
    meta: dict = field(default_factory=dict)


def load_base(base: Path | str | nn.Module | Base) -> Base:
    """A GPT checkpoint path, any module mapping idx -> logits (deep-copied: the caller's stays), or
    a `Base` (used as it is: the caller hands it over, e.g. a model loaded for this run alone)."""
    if isinstance(base, Base):
        return base
    if isinstance(base, nn.Module):
        return Base(copy.deepcopy(base), pretrain_lr=None)
    model, meta = load_model(Path(base))
    pretrain_config = meta.get("pretrain_config", {})
    peak = pretrain_config.get("lr")
    # Finetuning continues at the LR pretraining ended at: at the peak, BPE-token models overfit
    # within one epoch (docs/training.md).
    final = None if peak is None else peak * pretrain_config.get("min_lr_frac", 1.0)
    return Base(model, pretrain_lr=final, meta=meta)


def _peak_lr(config: FinetuneConfig, base: Base) -> float:
    if config.lr is not None:
        return config.lr
    if base.pretrain_lr is None:
        raise UserError("FinetuneConfig.lr is needed for a model without a forgetlaw checkpoint; set e.g. lr=1e-4")
    return float(base.pretrain_lr)


def _check_vocab(tracker: RunTracker, model: nn.Module, d_limited: np.ndarray) -> None:
    """Token ids beyond the model's vocabulary: a tokenizer mismatch, said plainly (checked on the
    D tokens and the validation windows; the pretraining train split may be too large to scan)."""
    vocab = getattr(getattr(model, "config", None), "vocab_size", None) or getattr(model, "vocab_size", None)
    tracker.vocab_size = vocab
    if vocab is None:
        return
    for name, tokens in (("the domain's D tokens", d_limited), ("the domain val windows", tracker.target_windows),
                         ("the pretraining val windows", tracker.pretrain_windows)):
        largest = int(tokens.max())
        if largest >= vocab:
            raise UserError(
                f"{name} hold token id {largest} but the model's vocabulary has {vocab} entries; "
                "tokenize the data with the model's tokenizer"
            )


def _check_seq_len(config: FinetuneConfig, model: nn.Module) -> None:
    limit = getattr(getattr(model, "config", None), "seq_len", None) or getattr(model, "max_seq_len", None)
    if limit is not None and config.seq_len > limit:
        raise UserError(f"FinetuneConfig.seq_len={config.seq_len} exceeds the model's context of {limit}")


class RunTracker:
    """One finetuning run's data, evaluation schedule, early stopping and curve.

    Shared by the sequential loop and the vectorized one, so both decide identically.
    """

    def __init__(self, config: FinetuneConfig, domain_train, domain_val, pretrain_train, pretrain_val,
                 peak_lr: float):
        self.config = config
        self.vocab_size: int | None = None  # set by _check_vocab once the model is known
        d_limited = limit_unique_tokens(domain_train, config.unique_tokens, config.domain)
        self.d_limited = d_limited
        self.stream = InjectionStream(
            d_limited, pretrain_train, config.injection_fraction, config.seq_len, config.batch_size, config.seed
        )
        self.target_windows = validation_windows(domain_val, config.seq_len, config.eval_tokens)
        self.pretrain_windows = validation_windows(pretrain_val, config.seq_len, config.pretrain_eval_tokens)
        steps_per_epoch = self.stream.steps_per_epoch
        self.eval_interval = int(min(config.max_eval_interval_steps, max(
            config.min_eval_interval_steps, round(config.eval_every_epochs * steps_per_epoch))))
        self.planned_steps = max(1, math.ceil(config.max_epochs * steps_per_epoch))
        self.peak_lr = peak_lr
        self.curve: list[dict] = []
        self.step = 0
        self.evals = 0
        self.since_best = 0
        self.best: dict | None = None
        self.stop_reason: str | None = None
        # True right after an evaluation improved the target loss without evaluating L_pt: the
        # caller then keeps a copy of the weights, and evaluates L_pt on it once the run stops.
        self.keep_best_weights = False
        self.loss_sum = 0.0
        self.loss_count = 0
        self.eval_s = 0.0
        self.started = time.perf_counter()

    def lr(self) -> float:
        c = self.config
        return finetune_lr(self.step, c.schedule, self.peak_lr, c.warmup_steps, self.planned_steps, c.min_lr_frac)

    def next_batch(self) -> np.ndarray:
        tokens = self.stream.next_batch().tokens
        # The pretraining train split is too large to scan up front: each batch is checked (cheap).
        if self.vocab_size is not None and tokens.max() >= self.vocab_size:
            raise UserError(
                f"the training batch holds token id {int(tokens.max())} but the model's vocabulary has "
                f"{self.vocab_size} entries; tokenize the pretraining data with the model's tokenizer")
        return tokens

    def after_step(self, loss: float | torch.Tensor) -> bool:
        """Account one optimizer step; True when an evaluation is due now.

        `loss` may be a 0-dim tensor still on the device: summed there in float64 (the same sum as
        Python floats) and read at the next evaluation, so a GPU step needs no host sync."""
        self.step += 1
        self.loss_sum = self.loss_sum + (loss.detach().double() if isinstance(loss, torch.Tensor) else loss)
        self.loss_count += 1
        return self.step % self.eval_interval == 0 or self.stream.epochs >= self.config.max_epochs

    def record_target(self, finetune_val: float) -> bool:
        """Record an evaluation of the target loss; True when L_pt must be evaluated here too
        (then pass it to record_pretrain)."""
        check_finite(finetune_val, "target validation loss", self.step)
        train_loss = float(self.loss_sum) / self.loss_count if self.loss_count else float("nan")
        if self.loss_count:
            check_finite(train_loss, "training loss", self.step)
        self.loss_sum, self.loss_count = 0.0, 0
        initial = self.best is None
        improved = initial or finetune_val < self.best["finetune_val_loss"]
        self.since_best = 0 if improved else self.since_best + 1
        if not initial:
            self.evals += 1
            if self.stream.epochs >= self.config.max_epochs:
                self.stop_reason = "max_epochs"
            elif self.since_best >= self.config.patience:
                self.stop_reason = "patience"
        row = {
            "step": self.step,
            "tokens_seen": self.step * self.config.batch_size * self.config.seq_len,
            "epoch": self.stream.epochs,
            "train_loss": train_loss,
            "finetune_val_loss": finetune_val,
            "pretrain_val_loss": float("nan"),
        }
        self.curve.append(row)
        if improved:
            self.best = row
        # L_pt before training (pretrain_loss_before), at the end (final_pretrain_loss), and every
        # k-th evaluation for the curve. At an improvement it is deferred: most improvements are
        # overtaken by the next, so evaluating L_pt at each (as before) was mostly wasted.
        pretrain_now = initial or self.stop_reason is not None or self.evals % self.config.pretrain_eval_every == 0
        self.keep_best_weights = improved and not pretrain_now
        return pretrain_now

    def record_pretrain(self, pretrain_val: float) -> None:
        check_finite(pretrain_val, "pretraining validation loss", self.step)
        self.curve[-1]["pretrain_val_loss"] = pretrain_val

    @property
    def best_pretrain_pending(self) -> bool:
        """The run has stopped and its best step's L_pt is still to be evaluated, on the weights
        kept at that step (then pass it to record_best_pretrain)."""
        return self.done and math.isnan(self.best["pretrain_val_loss"])

    def record_best_pretrain(self, pretrain_val: float) -> None:
        """L_pt of the weights kept at the best target step: the reading's `pretrain_loss`, and the
        value that row of the curve would have had if evaluated then (the same weights and windows)."""
        check_finite(pretrain_val, "pretraining validation loss", self.best["step"])
        self.best["pretrain_val_loss"] = pretrain_val

    @property
    def done(self) -> bool:
        return self.stop_reason is not None

    def summary(self) -> dict:
        first, best, last = self.curve[0], self.best, self.curve[-1]
        last_pt = next(r["pretrain_val_loss"] for r in reversed(self.curve) if not math.isnan(r["pretrain_val_loss"]))
        return {
            "pretrain_loss_before": first["pretrain_val_loss"],
            "finetune_loss_before": first["finetune_val_loss"],
            "finetune_loss": best["finetune_val_loss"],
            "pretrain_loss": best["pretrain_val_loss"],
            "best_step": best["step"],
            "best_epoch": best["epoch"],
            "best_tokens": best["tokens_seen"],
            "final_finetune_loss": last["finetune_val_loss"],
            "final_pretrain_loss": last_pt,
            "steps": self.step,
            "epochs": self.stream.epochs,
            "stop_reason": self.stop_reason,
            "wall_s": time.perf_counter() - self.started,
            "eval_s": self.eval_s,
            "eval_interval_steps": self.eval_interval,
            "injected_sequences": self.stream.n_pretrain,
            "target_sequences": self.stream.n_target,
        }

    def result(self) -> FinetuneResult:
        return FinetuneResult(curve=self.curve, summary=self.summary(), config=self.config)


def finetune(
    config: FinetuneConfig,
    base_checkpoint: Path | str | nn.Module,
    domain_train: np.ndarray,
    domain_val: np.ndarray,
    pretrain_train: np.ndarray,
    pretrain_val: np.ndarray,
    progress: Callable[[str], None] | None = None,
) -> FinetuneResult:
    """One finetuning run: fresh AdamW from the base, injection at p, stop on patience or max_epochs."""
    base = load_base(base_checkpoint)
    device = resolve_device(config.device)
    model = base.model.to(device=device, dtype=WEIGHT_DTYPES[config.weights_dtype])
    set_activation_checkpointing(model, config.activation_checkpointing)
    _check_seq_len(config, model)
    tracker = RunTracker(config, domain_train, domain_val, pretrain_train, pretrain_val, _peak_lr(config, base))
    _check_vocab(tracker, model, tracker.d_limited)
    torch.manual_seed(config.seed)  # dropout, if any
    optimizer = make_adamw(model, tracker.peak_lr, config.weight_decay, device)
    ctx = autocast_context(device, config.precision)

    def run_eval(windows: np.ndarray) -> float:
        started = time.perf_counter()
        value = evaluate(model, windows, device, config.precision)
        tracker.eval_s += time.perf_counter() - started
        return value

    best_weights: dict[str, torch.Tensor] = {}  # a copy at the best target step, on the device

    def record() -> None:
        if tracker.record_target(run_eval(tracker.target_windows)):
            tracker.record_pretrain(run_eval(tracker.pretrain_windows))
        if tracker.keep_best_weights:
            started = time.perf_counter()
            best_weights.clear()
            best_weights.update({k: v.detach().clone() for k, v in model.state_dict().items()})
            tracker.eval_s += time.perf_counter() - started
        if tracker.best_pretrain_pending:
            model.load_state_dict(best_weights)  # the run is over: its weights are not needed
            tracker.record_best_pretrain(run_eval(tracker.pretrain_windows))

    record()
    model.train()
    parameters = list(model.parameters())
    while not tracker.done:
        loss = train_step(model, parameters, optimizer, tracker.next_batch(), device, ctx,
                          tracker.lr(), config.grad_clip, config.micro_batch_size)
        if tracker.after_step(loss):
            record()
            if progress:
                row = tracker.curve[-1]
                progress(f"finetune: step {row['step']} epoch {row['epoch']:.2f} "
                         f"target {row['finetune_val_loss']:.4f} pretrain {row['pretrain_val_loss']:.4f}")
    return tracker.result()
