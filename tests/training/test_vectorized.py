"""Many runs at once give the same curves as one by one, each with its own stopping."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from forgetlaw.errors import UserError
from forgetlaw.training import finetune_many

from .test_finetune import ft_config


def _many(configs, base, corpora, vectorized):
    return finetune_many(configs, base.checkpoint, corpora["domain_train"], corpora["mixed_val"],
                         corpora["pretrain_train"], corpora["pretrain_val"], vectorized=vectorized)


def test_vectorized_equals_sequential(base, corpora):
    first = ft_config(unique_tokens=1_000, max_epochs=8, pretrain_eval_every=3)
    configs = [
        first,
        dataclasses.replace(first, injection_fraction=0.2),
        dataclasses.replace(first, unique_tokens=2_500, seed=3),
        dataclasses.replace(first, unique_tokens=600, injection_fraction=0.05, seed=1),
    ]
    sequential = _many(configs, base, corpora, vectorized=False)
    together = _many(configs, base, corpora, vectorized=True)
    # the runs really differ, and stop at different steps (finished runs drop out of the stack)
    assert len({r.summary["steps"] for r in sequential}) > 1
    # some run's best step had its L_pt deferred (evaluated on the weights kept there at the end)
    assert any(best % one.config.pretrain_eval_every and best != len(one.curve) - 1
               for one in sequential for best in [int(np.argmin([r["finetune_val_loss"] for r in one.curve]))])
    for one, many in zip(sequential, together, strict=True):
        assert many.config == one.config
        assert [r["step"] for r in many.curve] == [r["step"] for r in one.curve]
        assert many.summary["stop_reason"] == one.summary["stop_reason"]
        assert many.summary["best_step"] == one.summary["best_step"]
        for key in ("train_loss", "finetune_val_loss", "pretrain_val_loss", "epoch"):
            np.testing.assert_allclose([r[key] for r in many.curve], [r[key] for r in one.curve],
                                       rtol=2e-4, atol=2e-4, err_msg=key)
        assert many.summary["injected_sequences"] == one.summary["injected_sequences"]
        # the same rows carry L_pt (assert_allclose above also fails on NaN in different places)
        assert many.summary["pretrain_loss"] == pytest.approx(one.summary["pretrain_loss"], abs=2e-4)
        best_row = next(r for r in many.curve if r["step"] == many.summary["best_step"])
        assert many.summary["pretrain_loss"] == best_row["pretrain_val_loss"]


def test_runs_may_differ_only_in_p_d_seed(base, corpora):
    configs = [ft_config(), ft_config(lr=1e-3)]
    with pytest.raises(UserError, match="lr"):
        _many(configs, base, corpora, vectorized=True)
    assert _many([], base, corpora, vectorized=True) == []
