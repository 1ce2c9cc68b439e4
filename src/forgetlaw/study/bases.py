"""The base run of a pretrained model, in a worker: load it, count N, measure L0, keep a fast copy.

A ladder of pretrained models has no pretraining stage; its "pretrain" runs do what the finetuning
runs and the report need from a base instead:
- N (non-embedding parameters) and the total, counted from the loaded module (`models.params`);
- L0 on the pretraining stand-in's validation windows, and the loss of every other corpus of the
  study on its own (so the report can show how far each corpus is from what the model knows);
- the loss of the same architecture at initialisation (for the share of progress lost);
- a local `save_pretrained` copy in the study folder when the model came as a GGUF file (whose
  dequantization takes ~30 s per load) or from the hub (so finetuning runs do not download it).
"""

from __future__ import annotations

import contextlib
import shutil
import time
from pathlib import Path
from typing import Any

from forgetlaw.study.tasks import Task, base_dir

COPY_NAME = "model"
_COMPLETE = ".complete"  # written last: a copy without it was interrupted


def _source(task: Task):
    from forgetlaw.models.pretrained import ModelSource

    return ModelSource(**task.model_source)


def _keep_local_copy(module, tokenizer, folder: Path) -> None:
    if (folder / _COMPLETE).is_file():
        return
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    module.model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    (tmp / _COMPLETE).write_text("")
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)


def _corpus_losses(module, task: Task, seq_len: int, eval_tokens: int, device) -> dict[str, float]:
    from forgetlaw.data.mixture import validation_windows
    from forgetlaw.errors import UserError
    from forgetlaw.training.common import check_finite, evaluate

    losses = {}
    for corpus in dict.fromkeys((task.data.pretrain_corpus, *task.data.corpora)):
        windows = validation_windows(task.data.tokens(corpus, "val"), seq_len, eval_tokens)
        if int(windows.max()) >= module.vocab_size:
            raise UserError(f"corpus '{corpus}' holds token id {int(windows.max())} but the model's vocabulary "
                            f"has {module.vocab_size} entries; tokenize the data with the model's tokenizer")
        losses[corpus] = evaluate(module, windows, device)
        check_finite(losses[corpus], f"the validation loss of '{corpus}'", 0)
    return losses


def _init_loss(config, task: Task, seq_len: int, eval_tokens: int, seed: int, device, trust: bool) -> float:
    """The stand-in's loss of the same architecture freshly initialised (seeded)."""
    import torch
    from transformers import AutoModelForCausalLM

    from forgetlaw.data.mixture import validation_windows
    from forgetlaw.models.hf import HFCausalLM
    from forgetlaw.training.common import evaluate

    torch.manual_seed(seed)
    fresh = HFCausalLM(AutoModelForCausalLM.from_config(config, trust_remote_code=trust)).to(device)
    windows = validation_windows(task.data.tokens(task.data.pretrain_corpus, "val"), seq_len, eval_tokens)
    return evaluate(fresh, windows, device)


def measure_pretrained(task: Task, key: str, config: dict[str, Any]) -> tuple[dict, list, dict]:
    from forgetlaw.models.hf import load_hf_causal_lm
    from forgetlaw.models.params import count_parameters
    from forgetlaw.training.common import resolve_device

    started = time.perf_counter()
    source, ev = _source(task), config["evaluate"]
    module, tokenizer = load_hf_causal_lm(**source.load_kwargs())
    count = count_parameters(module.model)
    where = Path(source.path).expanduser() if source.path else None
    if source.gguf_file is not None or source.hub is not None:
        where = base_dir(task.study_dir, config["model"]["name"], key) / COPY_NAME
        _keep_local_copy(module, tokenizer, where)
    device = resolve_device(ev["device"])
    module = module.to(device)
    losses = _corpus_losses(module, task, ev["seq_len"], ev["eval_tokens"], device)
    model_config = module.model.config
    del module
    init = _init_loss(model_config, task, ev["seq_len"], ev["eval_tokens"], ev["seed"], device,
                      source.trust_remote_code)
    summary = {
        "pretrain_loss_before": losses[task.data.pretrain_corpus], "pretrain_loss_init": init,
        "model_size": count.non_embedding, "model_size_total": count.total, "tokens_seen": None,
        "corpus_losses": losses, "pretrain_corpus": task.data.pretrain_corpus,
        "wall_s": time.perf_counter() - started,
    }
    checkpoint = where.resolve()
    # Relative to the study folder where it lies inside it, so that the folder can be moved.
    with contextlib.suppress(ValueError):
        checkpoint = checkpoint.relative_to(Path(task.study_dir).resolve())
    return summary, [], {"checkpoint": str(checkpoint), "threads": task.threads, "source": source.label}


def load_pretrained_base(task: Task):
    """The base of a finetuning run: the model from its local folder (the study's copy, or the
    user's save_pretrained folder), handed to the run to train (no second copy)."""
    from forgetlaw.models.hf import load_hf_causal_lm
    from forgetlaw.training.finetune import Base

    source = _source(task)
    # GGUF and hub models were copied into the study by their base run: always a plain folder here.
    module, _ = load_hf_causal_lm(path=Path(task.base_checkpoint), trust_remote_code=source.trust_remote_code)
    return Base(module, pretrain_lr=None, meta={"source": source.label})
