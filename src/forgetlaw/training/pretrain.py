"""Pretraining a GPT on a token array: AdamW, warmup + cosine decay, clipping, resumable checkpoints.

The batch at step s is a pure function of (seed, s) (`PretrainStream`), so a checkpoint needs only
the model, the optimizer, the RNG states and the step: resuming gives bit-identical weights.
A checkpoint is written every `checkpoint_every` steps and at least every `checkpoint_every_s`
seconds of training, so frequent interruptions (preemptible nodes) lose at most that much work.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from forgetlaw.data.mixture import PretrainStream, validation_windows
from forgetlaw.errors import UserError
from forgetlaw.models.gpt import GPT, GPTConfig, non_embedding_params, total_params
from forgetlaw.provenance import KEY, NEVER, keyed_fields, provenance
from forgetlaw.training.checkpoint import read_checkpoint, save_checkpoint, write_text_atomic
from forgetlaw.training.common import (
    autocast_context,
    check_finite,
    evaluate,
    make_adamw,
    resolve_device,
    train_step,
    warmup_cosine,
)

CHECKPOINT_NAME = "checkpoint.pt"


@dataclass
class PretrainConfig:
    tokens_per_param: float = 20.0  # per non-embedding parameter; 100 for the paper ladder
    batch_size: int = 32
    seq_len: int = 128
    lr: float = 3e-3
    warmup_frac: float = 0.05
    min_warmup_steps: int = 10
    min_lr_frac: float = 0.1
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    eval_tokens: int = 8192
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"  # auto: bf16 autocast on CUDA, float32 on CPU
    compile: bool = False  # torch.compile, CUDA only
    checkpoint_every: int = 500  # steps
    betas: tuple[float, float] = (0.9, 0.95)
    # Seconds of training between checkpoints, whatever the step count: how a run is executed, not
    # what it computes (a resume gives the same weights), so it is not part of a run's key.
    checkpoint_every_s: float = field(default=60.0, metadata={KEY: NEVER})
    # Memory, not math (not in the run key either): see FinetuneConfig.
    micro_batch_size: int | None = field(default=None, metadata={KEY: NEVER})
    activation_checkpointing: bool = field(default=False, metadata={KEY: NEVER})

    def __post_init__(self) -> None:
        positive = ("tokens_per_param", "batch_size", "seq_len", "lr", "eval_tokens", "checkpoint_every",
                    "checkpoint_every_s")
        for name in positive:
            if not getattr(self, name) > 0:
                raise UserError(f"PretrainConfig.{name} must be positive; got {getattr(self, name)}")
        if not 0 <= self.warmup_frac < 1:
            raise UserError(f"PretrainConfig.warmup_frac must be in [0, 1); got {self.warmup_frac}")
        if not 0 <= self.min_lr_frac <= 1:
            raise UserError(f"PretrainConfig.min_lr_frac must be in [0, 1]; got {self.min_lr_frac}")
        self.betas = tuple(self.betas)
        if self.micro_batch_size is not None and not self.micro_batch_size > 0:
            raise UserError(f"PretrainConfig.micro_batch_size must be positive (or None); got {self.micro_batch_size}")

    def total_steps(self, model_config: GPTConfig) -> int:
        tokens = self.tokens_per_param * non_embedding_params(model_config)
        return max(1, math.ceil(tokens / (self.batch_size * self.seq_len)))


@dataclass
class PretrainResult:
    checkpoint: Path
    pretrain_loss_before: float  # L0 on the fixed validation windows
    init_loss: float  # the same windows at initialisation
    non_embedding_params: int
    total_params: int
    tokens_seen: int
    wall_s: float
    steps: int = 0
    completed: bool = True  # False when stopped early by max_steps (run again to resume)

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "checkpoint": str(self.checkpoint)}


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def pretrain(
    config: PretrainConfig,
    model_config: GPTConfig,
    train_tokens: np.ndarray,
    val_tokens: np.ndarray,
    out_dir: Path,
    progress: Callable[[str], None] | None = None,
    *,
    max_steps: int | None = None,
    data_manifest_hash: str | None = None,
) -> PretrainResult:
    """Train from scratch, or resume from out_dir/checkpoint.pt; a finished run is returned as is.

    max_steps stops (after saving a checkpoint) at that step: for time-boxing and resume tests.
    """
    out_dir = Path(out_dir)
    path = out_dir / CHECKPOINT_NAME
    if config.seq_len > model_config.seq_len:
        raise UserError(
            f"PretrainConfig.seq_len={config.seq_len} exceeds the model's seq_len={model_config.seq_len}"
        )
    if out_dir.exists() and not out_dir.is_dir():  # found now, not at the final save after training
        raise UserError(f"out_dir {out_dir} is a file; give a folder for the run")
    device = resolve_device(config.device)
    total_steps = config.total_steps(model_config)
    warmup = min(total_steps, max(config.min_warmup_steps, round(config.warmup_frac * total_steps)))
    tokens_per_step = config.batch_size * config.seq_len
    largest = max(int(np.max(train_tokens)), int(np.max(val_tokens)))
    if largest >= model_config.vocab_size:
        raise UserError(f"the pretraining data hold token id {largest} but the model's vocab_size is "
                        f"{model_config.vocab_size}; raise vocab_size or tokenize with the model's tokenizer")
    run_identity = {
        "pretrain_config": keyed_fields(config), "model_config": dataclasses.asdict(model_config),
        "data": {"manifest_hash": data_manifest_hash, "train_tokens": len(train_tokens),
                 "val_tokens": len(val_tokens)},
    }

    # Everything random happens after this seed, in the same order on a fresh start and a resume.
    torch.manual_seed(config.seed)
    model = GPT(model_config).to(device)
    model.set_activation_checkpointing(config.activation_checkpointing)
    optimizer = make_adamw(model, config.lr, config.weight_decay, device, config.betas)
    val_windows = validation_windows(val_tokens, config.seq_len, config.eval_tokens)
    stream = PretrainStream(train_tokens, config.seq_len, config.batch_size, config.seed)

    start_step, wall_before = 0, 0.0
    # Training losses are summed on the device (float64) and read at each progress line: no host
    # sync per step, and a NaN at any step is caught at the next line.
    loss_sum, loss_count = torch.zeros((), dtype=torch.float64, device=device), 0
    if path.exists():
        saved = read_checkpoint(path)
        if not _same_run(saved, run_identity):
            raise UserError(
                f"{out_dir} holds a pretraining run with another config; use a fresh out_dir or delete it"
            )
        model.load_state_dict(saved["model"])
        if saved.get("done"):
            return _result(path, saved, model_config)
        optimizer.load_state_dict(saved["optimizer"])
        _set_rng_state(saved["rng"])
        start_step, wall_before = saved["step"], saved["wall_s"]
        init_loss = saved["init_loss"]
        # the training-loss sum since the last progress line, so a resumed run logs the same means
        loss_sum, loss_count = saved.get("loss_sum", loss_sum).to(device), saved.get("loss_count", 0)
        if progress:
            progress(f"pretrain: resuming at step {start_step}/{total_steps}")
    else:
        init_loss = evaluate(model, val_windows, device, config.precision)

    trained = torch.compile(model) if (config.compile and device.type == "cuda") else model
    parameters = list(model.parameters())
    ctx = autocast_context(device, config.precision)
    started = time.perf_counter()
    last_save = time.monotonic()
    log_every = max(1, total_steps // 20)

    def save(step: int, done: bool, extra: dict | None = None) -> None:
        save_checkpoint(path, {
            **run_identity, "model": model.state_dict(),
            "optimizer": None if done else optimizer.state_dict(),
            "rng": _rng_state(), "step": step, "done": done, "init_loss": init_loss,
            "loss_sum": loss_sum.cpu(), "loss_count": loss_count,
            "wall_s": wall_before + time.perf_counter() - started, "tokens_seen": step * tokens_per_step,
            "provenance": provenance(run_identity, config.seed, data_manifest_hash), **(extra or {}),
        })

    model.train()
    step = start_step
    while step < total_steps:
        lr = warmup_cosine(step, total_steps, warmup, config.lr, config.min_lr_frac)
        loss = train_step(trained, parameters, optimizer, stream.batch(step), device, ctx, lr,
                          config.grad_clip, config.micro_batch_size)
        step += 1
        loss_sum += loss
        loss_count += 1
        if step % log_every == 0 or step == total_steps:
            value = loss_sum.item() / loss_count  # mean training loss since the last line
            loss_sum.zero_()
            loss_count = 0
            check_finite(value, "pretraining loss", step)
            if progress:
                progress(f"pretrain: step {step}/{total_steps} loss {value:.4f} lr {lr:.2e}")
        due = step % config.checkpoint_every == 0 or time.monotonic() - last_save >= config.checkpoint_every_s
        if step < total_steps and (due or step == max_steps):
            save(step, done=False)
            last_save = time.monotonic()
        if max_steps is not None and step >= max_steps and step < total_steps:
            saved = read_checkpoint(path)
            return _result(path, {**saved, "pretrain_loss_before": float("nan")}, model_config, completed=False)

    l0 = evaluate(model, val_windows, device, config.precision)
    check_finite(l0, "pretraining validation loss", step)
    save(step, done=True, extra={"pretrain_loss_before": l0, "lr": config.lr})
    result = _result(path, read_checkpoint(path), model_config)
    write_text_atomic(out_dir / "result.json", json.dumps(
        {**result.to_dict(), "provenance": provenance(run_identity, config.seed, data_manifest_hash)},
        indent=2, default=str,
    ))
    if progress:
        progress(f"pretrain: done, L0 = {l0:.4f} (init {init_loss:.4f})")
    return result


def _result(path: Path, saved: dict, model_config: GPTConfig, completed: bool = True) -> PretrainResult:
    return PretrainResult(
        checkpoint=path, pretrain_loss_before=float(saved.get("pretrain_loss_before", float("nan"))),
        init_loss=float(saved["init_loss"]), non_embedding_params=non_embedding_params(model_config),
        total_params=total_params(model_config), tokens_seen=int(saved["tokens_seen"]),
        wall_s=float(saved["wall_s"]), steps=int(saved["step"]), completed=completed,
    )


# How a run is executed, not what it computes: a resume may change these (they predate the
# `key: never` field metadata, and stay in the study's run keys so that old keys do not move).
_EXECUTION_FIELDS = ("device", "compile", "checkpoint_every")


def _identity_key(identity: dict) -> dict:
    config = {k: v for k, v in identity["pretrain_config"].items() if k not in _EXECUTION_FIELDS}
    config["betas"] = tuple(config["betas"])
    return {"pretrain_config": config, "model_config": identity["model_config"],
            "data": identity.get("data")}


def _same_run(saved: dict, current: dict) -> bool:
    """Whether a checkpoint belongs to this run: same config and model, and the same data where the
    checkpoint recorded it (checkpoints written before the data was recorded have none)."""
    stored, wanted = _identity_key(saved), _identity_key(current)
    if stored["data"] is None:
        wanted["data"] = None
    return stored == wanted
