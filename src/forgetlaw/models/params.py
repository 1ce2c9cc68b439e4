"""N of the laws for any torch module: parameters outside the embeddings and the output head.

The same rule as `gpt.non_embedding_params`, read off a loaded module instead of a config, so that a
Hugging Face checkpoint (GPT-2, Llama, GPT-NeoX, ...) gets the N a forgetlaw GPT of its shape gets:
- every parameter is counted once (a tied head shares the input embedding's tensor);
- left out: the weights of every `nn.Embedding` submodule (token embeddings, learned position
  embeddings, token-type embeddings; rotary position encodings have no parameters), and the
  parameters of the output head (`get_output_embeddings()`, or an `lm_head` submodule), whether tied
  or not;
- everything else (attention, MLP, norms, their biases) is N.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn as nn


@dataclass(frozen=True)
class ParameterCount:
    non_embedding: int  # N, the `model_size` of the laws
    total: int  # every parameter once (`model_size_total`)


def _output_head(module: nn.Module) -> nn.Module | None:
    for candidate in (module, getattr(module, "model", None)):
        getter = getattr(candidate, "get_output_embeddings", None)
        if callable(getter) and getter() is not None:
            return getter()
    return getattr(module, "lm_head", None)


def count_parameters(module: nn.Module) -> ParameterCount:
    unique = {id(p): p for p in module.parameters()}
    excluded: set[int] = set()
    for sub in module.modules():
        if isinstance(sub, nn.Embedding):
            excluded.update(id(p) for p in sub.parameters())
    head = _output_head(module)
    if head is not None:
        excluded.update(id(p) for p in head.parameters())
    total = sum(p.numel() for p in unique.values())
    embedding = sum(p.numel() for key, p in unique.items() if key in excluded)
    return ParameterCount(non_embedding=total - embedding, total=total)
