"""Memory settings change memory, not math: gradient accumulation over micro-batches and activation
checkpointing give the full batch's gradients; a run with them equals a run without."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from forgetlaw.models import GPT
from forgetlaw.training import FinetuneConfig, finetune
from forgetlaw.training.common import accumulate_gradients, autocast_context, lm_loss, to_inputs

from .conftest import MODEL, SEQ


def _grads(model: GPT) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in model.named_parameters()}


def test_accumulated_gradient_equals_the_full_batch(corpora):
    torch.manual_seed(0)
    model = GPT(MODEL)
    windows = np.stack([corpora["pretrain_train"][i * 40: i * 40 + SEQ + 1] for i in range(8)]).astype(np.int64)
    device, ctx = torch.device("cpu"), autocast_context(torch.device("cpu"), "fp32")
    x, y = to_inputs(windows, device)
    full = lm_loss(model(x), y)
    full.backward()
    expected = _grads(model)
    model.zero_grad(set_to_none=True)
    for micro in (1, 3, 4):  # 3 leaves an uneven last micro-batch
        model.set_activation_checkpointing(micro == 4)  # the last round also recomputes activations
        loss = accumulate_gradients(model, windows, device, ctx, micro)
        assert loss.item() == pytest.approx(full.item(), rel=1e-6)
        for name, grad in _grads(model).items():
            torch.testing.assert_close(grad, expected[name], rtol=1e-5, atol=1e-7)
        model.zero_grad(set_to_none=True)


def test_a_run_with_micro_batches_and_checkpointing_matches_one_without(base, corpora):
    settings = dict(unique_tokens=4096, injection_fraction=0.1, batch_size=8, seq_len=SEQ, eval_tokens=512,
                    pretrain_eval_tokens=512, min_eval_interval_steps=4, patience=2, max_epochs=2, device="cpu")
    plain = finetune(FinetuneConfig(**settings), base.checkpoint, corpora["domain_train"],
                     corpora["domain_val"], corpora["pretrain_train"], corpora["pretrain_val"])
    saving = finetune(FinetuneConfig(**settings, micro_batch_size=2, activation_checkpointing=True),
                      base.checkpoint, corpora["domain_train"], corpora["domain_val"],
                      corpora["pretrain_train"], corpora["pretrain_val"])
    assert saving.summary["best_step"] == plain.summary["best_step"]
    for key in ("finetune_loss", "pretrain_loss", "final_pretrain_loss"):
        assert saving.summary[key] == pytest.approx(plain.summary[key], abs=1e-4)
