"""Pieces shared by pretraining and finetuning: device and precision, the loss, batched evaluation,
the optimizer and the learning-rate schedules."""

from __future__ import annotations

import contextlib
import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from forgetlaw.errors import UserError


class TrainingDiverged(RuntimeError):
    """The loss became NaN or inf; the study records the run as failed."""


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device='{device}' but no CUDA device is available; use device='cpu' or 'auto'")
    return torch.device(device)


def bf16_supported(device: torch.device) -> bool:
    return device.type == "cuda" and torch.cuda.is_bf16_supported()


def autocast_context(device: torch.device, precision: str):
    """bf16 autocast on a CUDA device that supports it; float32 on CPU (bf16 autocast measured
    8-14x slower on this CPU) and on older GPUs."""
    if precision not in ("auto", "fp32", "bf16"):
        raise UserError(f"precision must be 'auto', 'fp32' or 'bf16'; got '{precision}'")
    use_bf16 = precision == "bf16" or (precision == "auto" and bf16_supported(device))
    if use_bf16:
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy in nats; logits in float32 for a stable log-softmax."""
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1))


def to_inputs(windows: np.ndarray, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, T + 1] token windows -> (inputs [B, T], targets [B, T]) as long tensors on the device."""
    tensor = torch.from_numpy(windows).to(device, non_blocking=True)
    return tensor[:, :-1], tensor[:, 1:]


@torch.inference_mode()  # no autograd bookkeeping at all (cheaper than no_grad for many small ops)
def evaluate(
    model: nn.Module, windows: np.ndarray, device: torch.device, precision: str = "auto",
    batch_size: int = 64,
) -> float:
    """Mean loss over fixed windows, batched; restores the model's train/eval mode.

    The per-batch loss sums stay on the device and are read once at the end: one host sync per
    evaluation instead of one per batch (it matters on a GPU)."""
    was_training = model.training
    model.eval()
    total = torch.zeros((), dtype=torch.float64, device=device)
    count = 0
    with autocast_context(device, precision):
        for first in range(0, len(windows), batch_size):
            x, y = to_inputs(windows[first : first + batch_size], device)
            logits = model(x)
            total += F.cross_entropy(
                logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum"
            )
            count += y.numel()
    model.train(was_training)
    return total.item() / count


def accumulate_gradients(forward: nn.Module, windows: np.ndarray, device: torch.device, ctx,
                         micro_batch_size: int) -> torch.Tensor:
    """Backward over the batch in micro-batches of `micro_batch_size` windows: each adds its summed
    token losses / the batch's token count, so the gradient is the full batch's mean-loss gradient
    (up to float rounding) at the activation memory of one micro-batch. Returns the batch's mean loss."""
    n_tokens = windows.shape[0] * (windows.shape[1] - 1)
    total = torch.zeros((), device=device)
    for first in range(0, len(windows), micro_batch_size):
        x, y = to_inputs(windows[first : first + micro_batch_size], device)
        with ctx:
            logits = forward(x)
            loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1),
                                   reduction="sum") / n_tokens
        loss.backward()
        total += loss.detach()
    return total


def train_step(
    forward: nn.Module,
    parameters: list[nn.Parameter],
    optimizer: torch.optim.Optimizer,
    windows: np.ndarray,
    device: torch.device,
    ctx,
    lr: float,
    grad_clip: float,
    micro_batch_size: int | None = None,
) -> torch.Tensor:
    """One optimizer step on a batch of token windows; returns the (detached) batch loss.

    `forward` may be a compiled wrapper of the module that owns `parameters`. With a
    `micro_batch_size` below the batch, gradients are accumulated over micro-batches.
    """
    for group in optimizer.param_groups:
        group["lr"] = lr
    if micro_batch_size is not None and micro_batch_size < len(windows):
        loss = accumulate_gradients(forward, windows, device, ctx, micro_batch_size)
    else:
        x, y = to_inputs(windows, device)
        with ctx:
            loss = lm_loss(forward(x), y)
        loss.backward()
    torch.nn.utils.clip_grad_norm_(parameters, grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.detach()


def set_activation_checkpointing(model: nn.Module, enabled: bool) -> None:
    """Recompute activations in the backward pass (less memory, ~1/3 more compute)."""
    setter = getattr(model, "set_activation_checkpointing", None)
    if setter is None:
        if enabled:
            raise UserError(f"activation_checkpointing: {type(model).__name__} does not support it; "
                            "use forgetlaw's GPT or a Hugging Face model, or turn it off")
        return
    setter(enabled)


def check_finite(value: float, what: str, step: int) -> None:
    if not math.isfinite(value):
        raise TrainingDiverged(f"{what} is {value} at step {step}; lower the learning rate")


def decay_mask(name: str, param: torch.Tensor) -> bool:
    """Weight decay on matrices (weights and embeddings, as nanoGPT), not on biases or LayerNorms."""
    return param.ndim >= 2


def make_adamw(
    model: nn.Module, lr: float, weight_decay: float, device: torch.device,
    betas: tuple[float, float] = (0.9, 0.95),
) -> torch.optim.AdamW:
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (decay if decay_mask(name, param) else no_decay).append(param)
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    # The fused kernel exists for CPU and CUDA in recent PyTorch; fall back to foreach elsewhere.
    try:
        return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(groups, lr=lr, betas=betas, foreach=device.type != "cpu")


def warmup_cosine(step: int, total_steps: int, warmup_steps: int, peak: float, min_frac: float) -> float:
    """Linear warmup to the peak, then cosine decay to min_frac * peak at the last step."""
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return peak * (min_frac + (1.0 - min_frac) * 0.5 * (1.0 + math.cos(math.pi * progress)))


def finetune_lr(
    step: int, schedule: str, peak: float, warmup_steps: int, planned_steps: int, min_frac: float
) -> float:
    """Finetuning LR: linear warmup, then constant (default), cosine or linear decay over the planned
    steps (the max_epochs budget)."""
    if step < warmup_steps or schedule == "cosine":
        return warmup_cosine(step, planned_steps, warmup_steps, peak, min_frac)
    if schedule == "constant":
        return peak
    progress = min(1.0, (step - warmup_steps) / max(1, planned_steps - warmup_steps))
    if schedule == "linear":
        return peak * (1.0 - (1.0 - min_frac) * progress)
    raise UserError(f"schedule must be 'constant', 'cosine' or 'linear'; got '{schedule}'")
