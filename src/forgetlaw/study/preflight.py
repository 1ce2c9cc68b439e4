"""Checks that run before anything is trained, so a study that cannot succeed says why at once.

- `check_pretrained_ladder`: every model of a `ladder.models` loads (tokenizer and config, not the
  weights), all share one tokenizer, each context holds `seq_len`, and each has a finetuning LR.
  Returns the ladder's tokenizer, saved into the cache, for the data build to use.
- `check_memory`: the estimate of `forgetlaw.training.memory` for every pretraining and finetuning
  shape of the study against the device, naming `micro_batch_size` when it does not fit.
- `check_unique_tokens`: every D against what each domain holds, and the stand-in's size.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from forgetlaw.errors import UserError
from forgetlaw.models.pretrained import ModelSource
from forgetlaw.study.spec import PretrainedModelSpec, StudySpec

# The LR measured on SmolLM2-135M (docs/pretrained.md): the suggestion when none is given.
SUGGESTED_PRETRAINED_LR = 2e-5


def model_source(entry: PretrainedModelSpec) -> ModelSource:
    return ModelSource(name=entry.name, path=None if entry.path is None else str(entry.path),
                       gguf_file=entry.gguf_file, hub=entry.hub, revision=entry.revision,
                       trust_remote_code=entry.trust_remote_code, lr=entry.lr)


@dataclass(frozen=True)
class LadderCheck:
    tokenizer_dir: Path  # the shared tokenizer, saved for the data build
    contexts: dict[str, int | None]  # model name -> context length
    shapes: dict[str, object]  # model name -> forgetlaw.training.memory.Shape


def pretrained_shape(config, trust_remote_code: bool):
    """The memory Shape of a model config, its parameters counted on the meta device (no memory)."""
    import torch
    from transformers import AutoModelForCausalLM

    from forgetlaw.training.memory import hf_shape

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    params = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    return hf_shape(config, params)


def check_pretrained_ladder(spec: StudySpec, entries: list[PretrainedModelSpec]) -> LadderCheck:
    from forgetlaw.models.hf import context_length, load_hf_config, load_hf_tokenizer
    from forgetlaw.models.pretrained import finetune_lr, save_tokenizer, tokenizer_signature

    if spec.data.tokenizer is not None:
        raise UserError("data.tokenizer: a ladder of pretrained models tokenizes the corpora with its models' "
                        "own tokenizer; remove data.tokenizer")
    first_signature, first_name, first_tokenizer = None, None, None
    contexts: dict[str, int | None] = {}
    shapes: dict[str, object] = {}
    for entry in entries:
        source = model_source(entry)
        where = f"ladder.models '{entry.name}'"
        tokenizer = _prefixed(where, load_hf_tokenizer, **source.load_kwargs())
        config = _prefixed(where, load_hf_config, **source.load_kwargs())
        if tokenizer.eos_token_id is None:
            raise UserError(f"{where}: its tokenizer has no eos_token to separate documents; set eos_token in "
                            "its tokenizer_config.json")
        signature = tokenizer_signature(tokenizer)
        if first_signature is None:
            first_signature, first_name, first_tokenizer = signature, entry.name, tokenizer
        elif signature != first_signature:
            raise UserError(f"{where} has another tokenizer than '{first_name}'; all models of one ladder must "
                            "share a tokenizer (make one study per tokenizer)")
        contexts[entry.name] = context_length(config)
        shapes[entry.name] = pretrained_shape(config, entry.trust_remote_code)
        if contexts[entry.name] is not None and spec.seq_len > contexts[entry.name]:
            raise UserError(f"seq_len {spec.seq_len} is longer than the context of {entry.name} "
                            f"({contexts[entry.name]} tokens); lower seq_len to at most {contexts[entry.name]}")
        if finetune_lr(source, spec.finetune.lr) is None and not _overrides_give_lr(spec):
            raise UserError(f"finetune.lr: no finetuning LR is known for {entry.name} (a pretrained model does "
                            f"not record the LR its pretraining ended at); set finetune.lr, e.g. "
                            f"{SUGGESTED_PRETRAINED_LR:g} (docs/pretrained.md), or lr: in its ladder.models entry")
    return LadderCheck(save_tokenizer(first_tokenizer), contexts, shapes)


def _overrides_give_lr(spec: StudySpec) -> bool:
    # An override that sets lr for every run (no filters) counts; partial ones are checked per run.
    return any(o.finetune.get("lr") is not None and all(getattr(o, f) is None for f in
               ("sizes", "domains", "unique_tokens", "injection", "seeds")) for o in spec.overrides)


def _prefixed(where: str, fn, **kwargs):
    try:
        return fn(**kwargs)
    except UserError as exc:
        raise UserError(f"{where}: {exc}") from None


def check_unique_tokens(spec: StudySpec, train_tokens: dict[str, int], pretrain_corpus: str) -> None:
    """Every D must fit its domain, before any base is pretrained."""
    for domain in spec.domains:
        available = train_tokens[domain]
        too_large = [d for d in spec.unique_tokens if d > available]
        if too_large:
            raise UserError(f"unique_tokens: {too_large[0]:,} is more than domain '{domain}' holds "
                            f"({available:,} train tokens); use D <= {available:,} or give the domain more text")
    if any(p > 0 for p in spec.injection) and train_tokens[pretrain_corpus] <= spec.seq_len:
        raise UserError(f"data.pretrain_corpus '{pretrain_corpus}' holds {train_tokens[pretrain_corpus]} train "
                        "tokens, fewer than one sequence to inject; give it more text")


def check_memory(spec: StudySpec, shapes: dict[str, tuple[object, bool]], device) -> None:
    """`shapes`: model name -> (memory.Shape, is_pretrained). Pretraining (forgetlaw's own models)
    and finetuning are both estimated; the first that does not fit is refused."""
    from forgetlaw.training.common import bf16_supported
    from forgetlaw.training.memory import GIB, device_memory, estimate

    available = device_memory(device)
    if available is None:
        return
    bf16 = bf16_supported(device)
    ft, pt = spec.finetune, spec.pretrain
    for name, (shape, pretrained) in shapes.items():
        stages = [("finetune", ft.batch_size, ft.micro_batch_size, ft.activation_checkpointing, True)]
        if not pretrained:
            stages.insert(0, ("pretrain", pt.batch_size, pt.micro_batch_size, pt.activation_checkpointing, False))
        for stage, batch, micro, recompute, keeps_best in stages:
            weight_bytes = 2 if stage == "finetune" and ft.weights_dtype == "bfloat16" else 4
            need = estimate(shape, micro or batch, spec.seq_len, bf16=bf16, weight_bytes=weight_bytes,
                            activation_checkpointing=recompute, keeps_best_copy=keeps_best)
            if need.weights + GIB > available:
                raise UserError(
                    f"{stage} of {name}: its weights, gradients and optimizer alone need ~{need.weights / GIB:.1f} "
                    f"GiB but the {device.type} has {available / GIB:.1f} GiB: it does not fit at any "
                    "micro_batch_size; use a larger device or a smaller model")
            if need.total > available:
                raise UserError(
                    f"{stage}.micro_batch_size: {stage} of {name} at {micro or batch} sequences of {spec.seq_len} "
                    f"tokens needs {need.describe()} but the {device.type} has {available / GIB:.1f} GiB; set "
                    f"{stage}.micro_batch_size lower (gradient accumulation keeps the batch of {batch}) or "
                    f"{stage}.activation_checkpointing: true")
