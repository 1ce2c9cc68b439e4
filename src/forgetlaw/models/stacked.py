"""K copies of one GPT architecture evaluated in one pass: parameters stacked along a leading run
dimension [K, ...], inputs [K, B, T]. Batched matmuls (baddbmm) and one SDPA call over [K*B, ...]
instead of K small forwards; the math is GPT.forward's, run by run.

`torch.func.vmap` over `functional_call` does the same job generically, but PyTorch has no vmap
rule for the CPU flash-attention kernel and falls back to a Python loop over runs; this explicit
form avoids that.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from forgetlaw.models.gpt import GPT, GPTConfig


def stack_parameters(model: GPT, copies: int) -> dict[str, torch.Tensor]:
    """{name: [copies, ...]} leaf tensors (requires_grad) from one model; a tied head is listed once."""
    return {
        name: p.detach().unsqueeze(0).repeat(copies, *([1] * p.ndim)).clone().requires_grad_(True)
        for name, p in model.named_parameters()
    }


def _linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    # x [K, N, in], weight [K, out, in], bias [K, out] -> [K, N, out]
    if bias is None:
        return torch.bmm(x, weight.transpose(1, 2))
    return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))


def _layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    x = F.layer_norm(x, x.shape[-1:])
    return torch.addcmul(bias.unsqueeze(1), x, weight.unsqueeze(1))


def stacked_forward(params: dict[str, torch.Tensor], cfg: GPTConfig, idx: torch.Tensor) -> torch.Tensor:
    """idx [K, B, T] -> logits [K, B, T, V] for the K stacked parameter sets (dropout off)."""
    K, B, T = idx.shape
    d, H = cfg.d_model, cfg.n_head
    runs = torch.arange(K, device=idx.device).view(K, 1, 1)
    x = params["tok_emb.weight"][runs, idx] + params["pos_emb.weight"][:, :T].unsqueeze(1)
    x = x.reshape(K, B * T, d)
    for i in range(cfg.n_layer):
        p = f"blocks.{i}."
        h = _layer_norm(x, params[p + "ln1.weight"], params[p + "ln1.bias"])
        qkv = _linear(h, params[p + "attn.qkv.weight"], params[p + "attn.qkv.bias"])
        # [K, B*T, 3d] -> three of [K*B, H, T, d/H]
        q, k, v = qkv.view(K * B, T, 3, H, d // H).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        y = y.transpose(1, 2).reshape(K, B * T, d)
        x = x + _linear(y, params[p + "attn.proj.weight"], params[p + "attn.proj.bias"])
        h = _layer_norm(x, params[p + "ln2.weight"], params[p + "ln2.bias"])
        h = F.gelu(_linear(h, params[p + "mlp.fc.weight"], params[p + "mlp.fc.bias"]))
        x = x + _linear(h, params[p + "mlp.proj.weight"], params[p + "mlp.proj.bias"])
    x = _layer_norm(x, params["ln_f.weight"], params["ln_f.bias"])
    head = params["tok_emb.weight"] if cfg.tie_embeddings else params["lm_head.weight"]
    return _linear(x, head, None).view(K, B, T, -1)
