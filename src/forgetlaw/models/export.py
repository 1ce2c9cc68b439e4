"""forgetlaw's GPT out as a Hugging Face model: a `save_pretrained` folder of `GPT2LMHeadModel`.

GPT-2 is the same architecture as ours (pre-LayerNorm blocks, learned positions, one fused QKV
projection, biases, a tied or untied head) once its activation is the exact GELU (GPT-2's default is
the tanh approximation) and its LayerNorm eps is torch's 1e-5. The only change is the layout of
the linear layers: GPT-2's `Conv1D` stores weights as [in, out], `nn.Linear` as [out, in].
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from forgetlaw.errors import UserError
from forgetlaw.models.gpt import GPT, non_embedding_params
from forgetlaw.models.pretrained import EXPORT_RECORD


def gpt2_config(model: GPT, eos_token_id: int | None = None):
    from transformers import GPT2Config

    cfg = model.config
    return GPT2Config(
        vocab_size=cfg.vocab_size, n_positions=cfg.seq_len, n_embd=cfg.d_model, n_layer=cfg.n_layer,
        n_head=cfg.n_head, n_inner=cfg.mlp_ratio * cfg.d_model, activation_function="gelu",
        resid_pdrop=cfg.dropout, embd_pdrop=cfg.dropout, attn_pdrop=cfg.dropout, layer_norm_epsilon=1e-5,
        tie_word_embeddings=cfg.tie_embeddings, bos_token_id=eos_token_id, eos_token_id=eos_token_id,
    )


def gpt2_state_dict(model: GPT) -> dict[str, torch.Tensor]:
    """Our parameter names and layouts -> GPT2LMHeadModel's."""
    ours = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    out = {"transformer.wte.weight": ours["tok_emb.weight"], "transformer.wpe.weight": ours["pos_emb.weight"],
           "transformer.ln_f.weight": ours["ln_f.weight"], "transformer.ln_f.bias": ours["ln_f.bias"]}
    renames = {"ln1": "ln_1", "ln2": "ln_2", "attn.qkv": "attn.c_attn", "attn.proj": "attn.c_proj",
               "mlp.fc": "mlp.c_fc", "mlp.proj": "mlp.c_proj"}
    for i in range(model.config.n_layer):
        for mine, theirs in renames.items():
            weight, bias = ours[f"blocks.{i}.{mine}.weight"], ours[f"blocks.{i}.{mine}.bias"]
            conv1d = not mine.startswith("ln")
            out[f"transformer.h.{i}.{theirs}.weight"] = weight.t().contiguous() if conv1d else weight
            out[f"transformer.h.{i}.{theirs}.bias"] = bias
    out["lm_head.weight"] = ours["tok_emb.weight" if model.config.tie_embeddings else "lm_head.weight"]
    return out


def export_gpt(model: GPT, out_dir: Path, tokenizer_dir: Path, record: dict | None = None) -> Path:
    """Write `model` and the tokenizer of its data as a folder that `AutoModelForCausalLM` and
    `AutoTokenizer` load; `record` (how it was pretrained) goes to forgetlaw.json beside them."""
    from transformers import AutoTokenizer, GPT2LMHeadModel

    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise UserError(f"OUT {out_dir} exists and is not empty; give a new folder")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    except (OSError, ValueError) as exc:
        raise UserError(f"--tokenizer {tokenizer_dir} does not load with AutoTokenizer ({exc}); give the "
                        "tokenizer folder of the data the model was trained on") from None
    if len(tokenizer) > model.config.vocab_size:
        raise UserError(f"the tokenizer at {tokenizer_dir} has {len(tokenizer)} tokens, more than the "
                        f"model's vocabulary of {model.config.vocab_size}: it is not this model's tokenizer")
    hf = GPT2LMHeadModel(gpt2_config(model, tokenizer.eos_token_id))
    missing, unexpected = hf.load_state_dict(gpt2_state_dict(model), strict=False)
    # GPT-2 keeps causal-mask buffers in some versions; no parameter may be left out
    if unexpected or [m for m in missing if not m.endswith(".attn.bias") and not m.endswith("masked_bias")]:
        raise RuntimeError(f"export: state dict mismatch (missing {missing}, unexpected {unexpected})")
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    hf.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    record = {"format": "forgetlaw-export-v1", "non_embedding_params": non_embedding_params(model.config),
              **(record or {})}
    (tmp / EXPORT_RECORD).write_text(json.dumps(record, indent=1, default=str))
    if out_dir.exists():
        out_dir.rmdir()
    tmp.rename(out_dir)
    return out_dir
