"""Each law's analytic gradient, its reductions to simpler laws, and the registry."""

from __future__ import annotations

import numpy as np
import pytest

from forgetlaw.errors import UserError
from forgetlaw.laws import LAWS, get_law


def _features(law, rng, n=7):
    cols = {
        "model_size": rng.uniform(1e4, 1e8, n),
        "tokens": rng.uniform(1e5, 1e9, n),
        "unique_tokens": rng.uniform(1e4, 1e7, n),
        "injection": rng.uniform(0, 0.9, n),
        "pretrain_loss_before": rng.uniform(1.5, 4.0, n),
    }
    feats = law.features({c: cols[c] for c in law.columns})
    return {k: v[None, :] for k, v in feats.items()}


@pytest.mark.parametrize("name", sorted(LAWS))
def test_gradient_matches_finite_differences(name):
    law = get_law(name)
    rng = np.random.default_rng(1)
    feats = _features(law, rng)
    # Points inside the bounds, some exponents negative: the gradient must hold for any sign.
    theta = np.stack([rng.uniform(max(p.lower, -2), min(p.upper, 3)) * (0.3 if not p.log else 1)
                      for p in law.params for _ in range(3)]).reshape(len(law.params), 3).T
    log_pred, grads = law.log_predict(theta, feats)
    eps = 1e-6
    for j in range(len(law.params)):
        step = np.zeros_like(theta)
        step[:, j] = eps
        up, _ = law.log_predict(theta + step, feats)
        down, _ = law.log_predict(theta - step, feats)
        numeric = (up - down) / (2 * eps)
        np.testing.assert_allclose(np.broadcast_to(grads[j], log_pred.shape), numeric, rtol=1e-5, atol=1e-8,
                                   err_msg=f"{name}: d/d{law.params[j].internal_name}")


def test_floor_law_is_the_paper_law_at_c_zero():
    rng = np.random.default_rng(2)
    cols = {"model_size": rng.uniform(1e5, 1e7, 20), "unique_tokens": rng.uniform(1e4, 1e6, 20),
            "injection": rng.uniform(0, 0.5, 20), "pretrain_loss_before": rng.uniform(2, 3, 20)}
    paper = dict(A=30.0, B=10.0, alpha=0.3, beta=0.2)
    np.testing.assert_allclose(get_law("forgetting-floor").predict({**paper, "C": 0.0}, cols),
                               get_law("forgetting").predict(paper, cols), rtol=1e-12)
    # A positive C lowers the floor by C * L0 exactly.
    diff = get_law("forgetting").predict(paper, cols) - get_law("forgetting-floor").predict({**paper, "C": 0.1}, cols)
    np.testing.assert_allclose(diff, 0.1 * cols["pretrain_loss_before"], rtol=1e-9)


def test_finetuning_injection_is_finetuning_at_gamma_zero():
    rng = np.random.default_rng(3)
    cols = {"model_size": rng.uniform(1e5, 1e7, 20), "unique_tokens": rng.uniform(1e4, 1e6, 20),
            "injection": rng.uniform(0, 0.5, 20)}
    base = dict(E=1.5, A=100.0, alpha=0.3, beta=0.2)
    np.testing.assert_allclose(get_law("finetuning-injection").predict({**base, "gamma": 0.0}, cols),
                               get_law("finetuning").predict(base, cols), rtol=1e-12)


def test_forgetting_formula_by_hand():
    law = get_law("forgetting")
    n, d, p, l0 = 1e6, 1e5, 0.05, 2.5
    params = dict(A=40.0, B=20.0, alpha=0.4, beta=0.3)
    expected = l0 + 40.0 * d**0.3 / ((1 + 20.0 * p) * n) ** 0.4
    got = law.predict(params, {"model_size": n, "unique_tokens": d, "injection": p, "pretrain_loss_before": l0})
    assert got[0] == pytest.approx(expected, rel=1e-12)
    mult = get_law("forgetting-multiplicative").predict(
        params, {"model_size": n, "unique_tokens": d, "injection": p, "pretrain_loss_before": l0})
    assert mult[0] == pytest.approx(l0 * (1 + (expected - l0)), rel=1e-12)


def test_bounds_do_not_fix_exponent_signs():
    for law in LAWS.values():
        for p in law.params:
            if p.name in ("alpha", "beta", "gamma"):
                assert p.lower < 0 < p.upper, (law.name, p.name)


def test_unknown_law_is_a_user_error():
    with pytest.raises(UserError, match="unknown law 'nope'.*forgetting"):
        get_law("nope")


def test_laws_import_no_torch_and_no_other_stage():
    import subprocess
    import sys

    code = ("import sys, forgetlaw.laws, forgetlaw.cli.laws; "
            "bad = [m for m in sys.modules if m == 'torch' or m.split('.')[:2] in "
            "[['forgetlaw', s] for s in ('data', 'models', 'training', 'study', 'report')]]; "
            "print(bad); sys.exit(1 if bad else 0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
