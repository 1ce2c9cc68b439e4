"""Your own model: any Hugging Face causal LM goes through the same finetuning loop.

The loop needs only a module mapping token ids [B, T] to logits [B, T, V]; `HFCausalLM` adapts an
`AutoModelForCausalLM` to that. A model comes from a local `save_pretrained` folder, a GGUF file
(dequantized by transformers), or the hub (`hub=`, needs the network or a filled HF cache). The same
function loads all three, so the hub path runs the code the local tests cover. Remote code is never
run unless the caller asks (`trust_remote_code=True`).
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
        self.max_seq_len = context_length(model.config)
        self.vocab_size = int(model.config.vocab_size)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=idx, use_cache=False).logits

    def set_activation_checkpointing(self, enabled: bool) -> None:
        # transformers 5 renamed gradient_checkpointing_* to activation_checkpointing_*; 4.x has the old names
        new = hasattr(self.model, "activation_checkpointing_enable")
        if enabled:
            # non-reentrant: the recommended form, and it works with inputs that need no grad
            kwargs = {"use_reentrant": False}
            if new:
                self.model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
            else:
                self.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
        elif getattr(self.model, "is_activation_checkpointing" if new else "is_gradient_checkpointing", False):
            (self.model.activation_checkpointing_disable if new else self.model.gradient_checkpointing_disable)()


def context_length(config) -> int | None:
    """The longest sequence a model config was trained for (None when the config does not say)."""
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _where(path: str | Path | None, gguf_file: str | None, hub: str | None,
           revision: str | None, trust_remote_code: bool) -> tuple[str, dict]:
    """(what from_pretrained loads, its keyword arguments), after checking that local files exist."""
    kwargs: dict = {"trust_remote_code": bool(trust_remote_code)}
    if hub is not None:
        if path is not None:
            raise UserError(f"model: give either path or hub, not both (path {path}, hub {hub})")
        if revision is not None:
            kwargs["revision"] = revision
        return hub, kwargs
    if path is None:
        raise UserError("model: give a path (a save_pretrained folder or the folder of a GGUF file) or hub")
    folder = Path(path).expanduser()
    if not folder.exists():
        raise UserError(f"model path {folder} does not exist; pass a local folder made by save_pretrained")
    kwargs["local_files_only"] = True
    if gguf_file is not None:
        if not (folder / gguf_file).is_file():
            raise UserError(f"gguf_file {gguf_file} not found in {folder}; pass the file's name inside the folder")
        kwargs["gguf_file"] = gguf_file
    elif not (folder / "config.json").is_file():
        raise UserError(f"model path {folder} holds no config.json: not a save_pretrained folder; pass the "
                        "folder written by save_pretrained, or set gguf_file for a GGUF file in it")
    return str(folder), kwargs


def load_hf_tokenizer(path=None, gguf_file=None, *, hub=None, revision=None, trust_remote_code=False):
    """The model's tokenizer alone (cheap: no weights), for checks before anything runs."""
    from transformers import AutoTokenizer

    where, kwargs = _where(path, gguf_file, hub, revision, trust_remote_code)
    try:
        return AutoTokenizer.from_pretrained(where, **kwargs)
    except Exception as exc:  # OSError, ValueError, gguf parse errors: the user's files
        raise UserError(f"cannot load a tokenizer from {where}: {_first_line(exc)}") from None


def load_hf_config(path=None, gguf_file=None, *, hub=None, revision=None, trust_remote_code=False):
    """The model's config alone (no weights): context length, vocabulary, shape."""
    from transformers import AutoConfig

    where, kwargs = _where(path, gguf_file, hub, revision, trust_remote_code)
    try:
        return AutoConfig.from_pretrained(where, **kwargs)
    except Exception as exc:
        raise UserError(f"cannot read a model config from {where}: {_first_line(exc)}") from None


def load_hf_causal_lm(
    path: str | Path | None = None, gguf_file: str | None = None, dtype: torch.dtype = torch.float32, *,
    hub: str | None = None, revision: str | None = None, trust_remote_code: bool = False,
) -> tuple[HFCausalLM, object]:
    """(module mapping idx -> logits, tokenizer) from a local folder, a GGUF file inside it, or the hub.

    float32 by default: the master weights AdamW updates (bf16 autocast on CUDA does the compute).
    """
    from transformers import AutoModelForCausalLM

    where, kwargs = _where(path, gguf_file, hub, revision, trust_remote_code)
    tokenizer = load_hf_tokenizer(path, gguf_file, hub=hub, revision=revision, trust_remote_code=trust_remote_code)
    try:
        model = AutoModelForCausalLM.from_pretrained(where, dtype=dtype, **kwargs)
    except Exception as exc:
        raise UserError(f"cannot load a causal LM from {where}: {_first_line(exc)}; give a folder written "
                        "by save_pretrained (config.json + weights) or a GGUF file that transformers reads") from None
    if gguf_file is not None:
        model = _without_gguf_quantizer(model, dtype)
    return HFCausalLM(model), tokenizer


def _without_gguf_quantizer(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """A GGUF file's weights arrive dequantized, but transformers keeps its GGUF quantizer on the
    model, which then refuses `save_pretrained` and `Trainer`: rebuild it as a plain model of the
    same config with the same (already float) weights."""
    from transformers import AutoModelForCausalLM

    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=dtype)
    plain.load_state_dict(model.state_dict())
    plain.eval()
    return plain
