"""Will a run fit the device? An estimate of its peak memory, checked before the run starts.

Peak of one training step (bytes), for P parameters, L layers of width d and MLP width f, a
vocabulary V and a micro-batch of b sequences of T tokens (docs/training.md has the derivation):
- weights, gradients and AdamW's two moments: 4 P x (bytes per weight), plus a bf16 copy of the
  weights under bf16 autocast (2 P), plus the copy of the best weights a finetuning run keeps;
- activations kept for the backward pass, per token and layer: 9 d + 2 f values (gated MLPs: + f),
  in the compute dtype (2 bytes under bf16, else 4); with activation checkpointing only each
  block's input (d) plus one block recomputed at a time;
- the logits: b T V values in the compute dtype, their float32 copy and its gradient (4 + 4 bytes);
- 10 % and 1 GiB on top for the allocator and the CUDA context.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

GIB = 1 << 30


@dataclass(frozen=True)
class Shape:
    """What the estimate needs to know of a model."""

    params: int  # all parameters
    n_layer: int
    d_model: int
    ffn: int  # MLP hidden width
    vocab: int
    gated_mlp: bool = False


@dataclass(frozen=True)
class MemoryEstimate:
    weights: int  # weights, gradients, optimizer moments, copies
    activations: int
    logits: int
    total: int

    def describe(self) -> str:
        return (f"~{self.total / GIB:.1f} GiB (weights+optimizer {self.weights / GIB:.1f}, "
                f"activations {self.activations / GIB:.1f}, logits {self.logits / GIB:.1f})")


def estimate(shape: Shape, micro_batch: int, seq_len: int, *, bf16: bool, weight_bytes: int = 4,
             activation_checkpointing: bool = False, keeps_best_copy: bool = False) -> MemoryEstimate:
    compute_bytes = 2 if bf16 else 4
    copies = 4 + (1 if keeps_best_copy else 0)  # weights, grads, 2 moments, the best-step copy
    weights = shape.params * (copies * weight_bytes + (2 if bf16 else 0))
    tokens = micro_batch * seq_len
    per_layer = 9 * shape.d_model + (3 if shape.gated_mlp else 2) * shape.ffn
    if activation_checkpointing:
        saved = tokens * (shape.n_layer * shape.d_model + per_layer)
    else:
        saved = tokens * shape.n_layer * per_layer
    activations = saved * compute_bytes
    logits = tokens * shape.vocab * (compute_bytes + 8)
    total = int(1.1 * (weights + activations + logits)) + GIB
    return MemoryEstimate(weights, activations, logits, total)


def device_memory(device) -> int | None:
    """Bytes the run may use: the GPU's total memory, or the host's available memory on CPU."""
    import torch

    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device.index or 0).total_memory)
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def gpt_shape(config) -> Shape:
    """The Shape of a forgetlaw GPTConfig."""
    from forgetlaw.models.gpt import total_params

    return Shape(params=total_params(config), n_layer=config.n_layer, d_model=config.d_model,
                 ffn=config.mlp_ratio * config.d_model, vocab=config.vocab_size)


def hf_shape(config, params: int) -> Shape:
    """The Shape of a Hugging Face model config (GPT-2, Llama, GPT-NeoX, ... field names)."""
    d = _first(config, "hidden_size", "n_embd", "d_model")
    ffn = _first(config, "intermediate_size", "n_inner", "ffn_dim") or 4 * d
    layers = _first(config, "num_hidden_layers", "n_layer", "num_layers")
    gated = getattr(config, "hidden_act", getattr(config, "activation_function", "")) in ("silu", "swiglu")
    return Shape(params=params, n_layer=layers, d_model=d, ffn=ffn, vocab=int(config.vocab_size), gated_mlp=gated)


def _first(config, *names: str) -> int | None:
    for name in names:
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None
