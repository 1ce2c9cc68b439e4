"""One model, a few cheap runs: the design, its bad input, and the one-model validation."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from forgetlaw.cli import main
from forgetlaw.errors import UserError
from forgetlaw.laws import fit, get_law, plan_injection
from forgetlaw.laws.design import DesignOptions, design_runs
from forgetlaw.laws.onemodel import measured_p, validate_one_model
from forgetlaw.laws.synthetic import base_loss

TRUTH = dict(A=5.0, B=30.0, alpha=0.4, beta=0.25)
D = 16384.0


def test_design_identifies_the_law_on_one_model():
    design = design_runs(D, 4)
    runs = pd.DataFrame(design.runs)
    assert len(runs) == 4 and runs.unique_tokens.nunique() >= 2 and runs.injection.nunique() >= 3
    assert (runs.unique_tokens < D).all()  # subsets of the user's D
    np.testing.assert_allclose(runs.cost, runs.fraction / (1 - runs.injection))
    assert design.total_cost == pytest.approx(runs.cost.sum())
    assert design.total_cost >= design.cheapest_identifying_cost
    # More runs: the predicted error at the full D can only fall.
    se4 = design.predicted_se[0]["relative_se_forgetting"]
    se8 = design_runs(D, 8).predicted_se[0]["relative_se_forgetting"]
    assert se8 < se4
    # Every candidate asked for: every candidate returned.
    options = DesignOptions(fractions=(0.5, 0.25), injections=(0.0, 0.05, 0.2))
    assert len(design_runs(D, 6, options=options).runs) == 6


def test_design_runs_recover_the_plan_at_the_full_d():
    """Runs at the designed (D', p), drawn from a known law, predict the full-D plan of that law."""
    n, l0 = 1e6, float(base_loss(1e6))
    law = get_law("forgetting")
    design = design_runs(D, 8)
    rows = pd.DataFrame(design.runs)
    rows = pd.concat([rows] * 3, ignore_index=True)  # three seeds
    rows["model_size"], rows["pretrain_loss_before"] = n, l0
    rng = np.random.default_rng(0)
    cols = {c: rows[c].to_numpy(dtype=float) for c in law.columns}
    rows["pretrain_loss"] = law.predict(TRUTH, cols) * np.exp(rng.normal(0, 0.001, len(rows)))
    report = fit(rows, law)
    truth = plan_injection(fit(rows.assign(pretrain_loss=law.predict(TRUTH, cols)), law), n, D,
                           forgetting_fraction=0.5)
    plan = plan_injection(report, n, D, forgetting_fraction=0.5)
    assert plan.injection == pytest.approx((2 ** (1 / TRUTH["alpha"]) - 1) / TRUTH["B"], rel=0.2)
    assert truth.injection == pytest.approx((2 ** (1 / TRUTH["alpha"]) - 1) / TRUTH["B"], rel=1e-3)


def test_design_bad_input_is_one_line_exit_2(capsys):
    with pytest.raises(UserError, match="at least 4 runs"):
        design_runs(D, 3)
    with pytest.raises(UserError, match="at least 3 runs"):
        design_runs(D, 2, "forgetting-exp")  # one model: alpha merges into A, 3 parameters left
    with pytest.raises(UserError, match="identify"):
        design_runs(D, 4, options=DesignOptions(injections=(0.0, 0.2)))
    for argv in (["design", "--unique-tokens", "16384", "--runs", "3"],
                 ["design", "--unique-tokens", "16384", "--runs", "40"],
                 ["design", "--unique-tokens", "16384", "--runs", "4", "--law", "finetuning"],
                 ["design", "--unique-tokens", "16384", "--runs", "4", "--injections", "0,x"]):
        assert main(argv) == 2, argv
        out = capsys.readouterr()
        assert out.out == "" and len(out.err.strip().splitlines()) == 1, out.err
    assert main(["design", "--unique-tokens", "16384", "--runs", "5", "--json"]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert set(obj) == {"law", "unique_tokens", "runs_requested", "runs", "total_cost", "cheapest_identifying_cost",
                        "predicted_se", "prior", "noise", "candidates", "identifying_subsets", "warnings"}
    assert len(obj["runs"]) == 5


def test_measured_p_interpolates_the_measured_forgetting():
    p = np.array([0.0, 0.0, 0.05, 0.2])
    f = np.array([0.5, 0.7, 0.4, 0.2])  # F(0) = 0.6, mean of two seeds
    assert measured_p(p, f, 0.3) == pytest.approx(0.05 + (0.4 - 0.3) / (0.4 - 0.2) * 0.15)
    assert measured_p(p, f, 0.5) == pytest.approx(0.05 * (0.6 - 0.5) / (0.6 - 0.4))
    assert measured_p(p, f, 0.7) == 0.0
    assert measured_p(p, f, 0.1) is None


def study_table(noise: float) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    grid = [(n, d, p, s) for n in (3e5, 1e6) for d in (4096.0, 8192.0, 16384.0)
            for p in (0.0, 0.01, 0.05, 0.2) for s in (0, 1)]
    df = pd.DataFrame(grid, columns=["model_size", "unique_tokens", "injection", "seed"])
    df["domain"] = "code"
    df["pretrain_loss_before"] = base_loss(df.model_size)
    cols = {c: df[c].to_numpy(dtype=float) for c in get_law("forgetting").columns}
    df["pretrain_loss"] = get_law("forgetting").predict(TRUTH, cols) * np.exp(rng.normal(0, noise, len(df)))
    df["best_step"], df["stop_reason"] = 10, "patience"
    return df


def test_one_model_validation_on_a_known_law():
    df = study_table(noise=0.001)
    df.loc[0, "stop_reason"] = "max_epochs"  # a capped run (smallest model), left out and counted
    df.loc[df.index[-1], "best_step"] = 0  # an unimproved run (largest model), left out and counted
    (check,) = validate_one_model(df)
    assert check.model_size == 1e6 and check.heldout_unique_tokens == 16384.0
    assert check.train_unique_tokens == [4096.0, 8192.0]
    assert check.left_out == {"unimproved": 1, "capped": 1}
    assert check.train_rows == 16 and check.heldout_rows == 7
    assert check.heldout_mre_forgetting < 0.06  # 0.1% noise on L_pt, extrapolated 2x in D
    half, absolute = check.budgets
    assert half.kind == "fraction" and absolute.kind == "absolute"
    for b in check.budgets:
        assert b.p_measured is not None and abs(b.p_error) < 0.03
    # Without noise the law is recovered exactly; what is left of the p error is the measured side's
    # linear interpolation between p = 0.05 and 0.2 on a convex F(p) (it overestimates p).
    (exact,) = validate_one_model(study_table(noise=0.0))
    assert exact.heldout_mre_forgetting < 1e-3
    p_half = (2 ** (1 / TRUTH["alpha"]) - 1) / TRUTH["B"]
    assert exact.budgets[0].p_predicted == pytest.approx(p_half, rel=1e-2)
    assert 0 < exact.budgets[0].p_measured - p_half < 0.03
    # The measured p comes from the held-out runs alone: recomputed by hand.
    held = df[(df.model_size == 1e6) & (df.unique_tokens == 16384.0) & (df.best_step > 0)]
    f = (held.pretrain_loss - held.pretrain_loss_before).to_numpy()
    assert half.p_measured == pytest.approx(measured_p(held.injection.to_numpy(), f, half.budget_measured))
    assert any("one model_size" in w for w in check.warnings)
