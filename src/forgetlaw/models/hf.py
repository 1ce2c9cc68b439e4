"""Your own model: any local Hugging Face causal LM goes through the same finetuning loop.

The loop needs only a module mapping token ids [B, T] to logits [B, T, V]; `HFCausalLM` adapts an
`AutoModelForCausalLM` to that. Everything is loaded from local files: nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from forgetlaw.errors import UserError


class HFCausalLM(nn.Module):
    """Wraps a transformers causal LM: forward(idx) -> logits. Keeps the wrapped model's config."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        # The context the model was trained for; the finetuning loop checks its seq_len against it.
        self.max_seq_len = getattr(model.config, "max_position_embeddings", None) or getattr(
            model.config, "n_positions", None
        )
        self.vocab_size = int(model.config.vocab_size)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=idx, use_cache=False).logits


def load_hf_causal_lm(
    path: str | Path, gguf_file: str | None = None, dtype: torch.dtype = torch.float32
) -> tuple[HFCausalLM, object]:
    """(module mapping idx -> logits, tokenizer) from a local folder (or a GGUF file inside it).

    float32 by default: on CPU that is the fast precision, and finetuning needs it for stable AdamW.
    """
    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:  # pragma: no cover - transformers is a dependency
        raise UserError("loading a Hugging Face model needs transformers: pip install transformers") from exc
    path = Path(path).expanduser()
    if not path.exists():
        raise UserError(f"model path {path} does not exist; pass a local folder made by save_pretrained")
    kwargs: dict = {"local_files_only": True}
    if gguf_file is not None:
        if not (path / gguf_file).exists():
            raise UserError(f"gguf_file {gguf_file} not found in {path}; pass the file's name inside the folder")
        kwargs["gguf_file"] = gguf_file
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path), **kwargs)
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype, **kwargs)
    except (OSError, ValueError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"cannot load a causal LM from {path}: {first_line}") from exc
    return HFCausalLM(model), tokenizer
