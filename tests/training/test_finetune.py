"""Finetuning with injection: the curve, the U-curve reading, injection at the trainer, errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from forgetlaw.errors import UserError
from forgetlaw.training import CURVE_KEYS, FinetuneConfig, TrainingDiverged, finetune
from forgetlaw.training.checkpoint import load_model

from .conftest import SEQ


def ft_config(**overrides) -> FinetuneConfig:
    settings = dict(unique_tokens=2_000, injection_fraction=0.0, batch_size=8, seq_len=SEQ,
                    eval_tokens=1024, pretrain_eval_tokens=1024, min_eval_interval_steps=4,
                    patience=4, max_epochs=25,
                    device="cpu")
    return FinetuneConfig(**{**settings, **overrides})


def run(config, base, corpora, domain_val="domain_val"):
    return finetune(config, base, corpora["domain_train"], corpora[domain_val],
                    corpora["pretrain_train"], corpora["pretrain_val"])


def test_curve_and_u_curve_reading(base, corpora):
    result = run(ft_config(unique_tokens=1_000), base.checkpoint, corpora, domain_val="mixed_val")
    curve, summary = result.curve, result.summary
    assert all(set(row) == set(CURVE_KEYS) for row in curve)
    assert curve[0]["step"] == 0 and math.isnan(curve[0]["train_loss"])
    steps = [row["step"] for row in curve]
    assert steps == sorted(steps) and len(curve) >= 4
    # the reading is at the minimum of the target validation loss
    target = [row["finetune_val_loss"] for row in curve]
    best = int(np.argmin(target))
    assert summary["finetune_loss"] == target[best] and summary["best_step"] == curve[best]["step"]
    assert summary["pretrain_loss"] == curve[best]["pretrain_val_loss"]  # L_pt read at that step
    assert summary["best_epoch"] == curve[best]["epoch"]
    # the base was evaluated before training, on the same windows
    assert summary["finetune_loss_before"] == target[0]
    assert summary["pretrain_loss_before"] == pytest.approx(base.pretrain_loss_before, abs=0.2)
    # it learned the domain, and forgot some of the pretraining text
    assert summary["finetune_loss"] < summary["finetune_loss_before"] - 0.5
    assert summary["final_pretrain_loss"] > summary["pretrain_loss_before"] + 0.5
    # the U-curve's bottom was passed, and patience stopped the run
    assert summary["stop_reason"] == "patience"
    assert all(t >= summary["finetune_loss"] for t in target[best + 1 :])
    assert len(curve) - 1 - best == ft_config().patience
    assert summary["final_finetune_loss"] == target[-1] and not math.isnan(curve[-1]["pretrain_val_loss"])
    assert 0 < summary["eval_s"] < summary["wall_s"]


def test_max_epochs_stop_and_determinism(base, corpora):
    config = ft_config(max_epochs=3, patience=50)
    first, second = run(config, base.checkpoint, corpora), run(config, base.checkpoint, corpora)
    assert first.summary["stop_reason"] == "max_epochs"
    assert 3.0 <= first.summary["epochs"] < 3.0 + 1.0
    assert json.dumps(first.curve) == json.dumps(second.curve)  # NaN-safe equality


class RecordingModel(nn.Module):
    """The real GPT, noting every input batch the trainer feeds it while training."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner
        self.config = inner.config
        self.train_inputs: list[torch.Tensor] = []

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.train_inputs.append(idx.detach().clone())
        return self.inner(idx)


@pytest.mark.parametrize("p", [0.0, 0.05, 0.2])
def test_injection_reaches_the_trainer_at_the_requested_fraction(base, corpora, p):
    model, _ = load_model(base.checkpoint)
    recorder = RecordingModel(model)
    config = ft_config(injection_fraction=p, max_epochs=4, patience=100, lr=3e-3)
    # finetune deep-copies a module base; read what the copy saw through the summary and a hook
    seen: list[torch.Tensor] = []
    recorder.register_forward_pre_hook(lambda mod, args: seen.append(args[0].clone()) if mod.training else None)
    result = run(config, recorder, corpora)
    fed = torch.cat([batch for batch in seen])  # hooks are copied along with the module
    # pretraining words use ids 1..31, domain words 32..63; a window is all one or the other (+ 0)
    from_pretrain = (fed.clamp(max=63) < 32).all(dim=1) & (fed > 0).any(dim=1)
    injected = torch.cumsum(from_pretrain.int(), 0).numpy()
    k = np.arange(1, len(injected) + 1)
    assert np.all(np.abs(injected - p * k) < 1.0)
    assert result.summary["injected_sequences"] == injected[-1]
    assert result.summary["target_sequences"] == len(k) - injected[-1]


def test_injection_lowers_forgetting(base, corpora):
    plain = run(ft_config(max_epochs=6, patience=100), base.checkpoint, corpora).summary
    injected = run(ft_config(max_epochs=6, patience=100, injection_fraction=0.25), base.checkpoint, corpora).summary
    assert injected["final_pretrain_loss"] < plain["final_pretrain_loss"]


def test_diverged_run_raises(base, corpora):
    model, _ = load_model(base.checkpoint)
    with torch.no_grad():
        model.blocks[0].mlp.fc.weight.fill_(float("nan"))
    with pytest.raises(TrainingDiverged):
        run(ft_config(lr=1e-3), model, corpora)


def test_bad_requests(base, corpora):
    with pytest.raises(UserError, match="unique_tokens=30,000.*20,000"):
        run(ft_config(unique_tokens=30_000), base.checkpoint, corpora)
    with pytest.raises(UserError, match="seq_len"):
        run(ft_config(seq_len=64), base.checkpoint, corpora)
    wrong_tokenizer = {**corpora, "domain_train": corpora["domain_train"] + 64}
    with pytest.raises(UserError, match="vocabulary"):
        run(ft_config(), base.checkpoint, wrong_tokenizer)
    model, _ = load_model(base.checkpoint)
    with pytest.raises(UserError, match="lr"):
        run(ft_config(), model, corpora)  # a bare module has no pretraining LR to default to
    with pytest.raises(UserError, match="injection_fraction"):
        ft_config(injection_fraction=1.0)
    with pytest.raises(UserError, match="schedule"):
        ft_config(schedule="step")


def _pretrain_rows(curve) -> set[int]:
    return {i for i, row in enumerate(curve) if not math.isnan(row["pretrain_val_loss"])}


def test_deferred_pretrain_reading_is_exact(base, corpora):
    """L_pt is evaluated every k-th evaluation, at the start and at the end; at the best target
    step it is read from a copy of the weights kept there, giving what evaluating it then gave."""
    settings = dict(unique_tokens=1_000, max_epochs=25)
    every = run(ft_config(**settings, pretrain_eval_every=1), base.checkpoint, corpora, domain_val="mixed_val")
    sparse = run(ft_config(**settings, pretrain_eval_every=1000), base.checkpoint, corpora, domain_val="mixed_val")
    default = run(ft_config(**settings), base.checkpoint, corpora, domain_val="mixed_val")
    # evaluation does not change training: the same target curve in all three
    target = [row["finetune_val_loss"] for row in every.curve]
    assert [row["finetune_val_loss"] for row in sparse.curve] == target
    assert [row["finetune_val_loss"] for row in default.curve] == target
    best, last = int(np.argmin(target)), len(target) - 1
    assert 0 < best < last and best % 2 == 1  # a deferred reading: neither a k-th nor the last evaluation
    assert _pretrain_rows(every.curve) == set(range(len(target)))
    assert _pretrain_rows(sparse.curve) == {0, best, last}
    assert _pretrain_rows(default.curve) == {i for i in range(len(target)) if i % 2 == 0} | {best, last}
    for result in (sparse, default):
        assert result.summary["pretrain_loss"] == every.summary["pretrain_loss"]
        assert result.summary["pretrain_loss"] == result.curve[best]["pretrain_val_loss"]
        assert result.summary["final_pretrain_loss"] == every.summary["final_pretrain_loss"]
        assert result.summary["pretrain_loss_before"] == every.summary["pretrain_loss_before"]
