"""The closed-form planner against brute force, infeasible budgets, CIs, relative budgets."""

from __future__ import annotations

import numpy as np
import pytest

from forgetlaw.errors import UserError
from forgetlaw.laws import fit, get_law, min_injection, plan_injection
from forgetlaw.laws.synthetic import synthetic_runs

P_DENSE = np.linspace(0.0, 1.0, 50_001)[:-1]  # step 2e-5, p < 1


def brute_force(law, params, n, d, l0, budget):
    cols = {"model_size": np.full(P_DENSE.size, n), "unique_tokens": np.full(P_DENSE.size, d),
            "injection": P_DENSE, "pretrain_loss_before": np.full(P_DENSE.size, l0)}
    forgetting = law.predict(params, cols) - l0
    ok = np.flatnonzero(forgetting <= budget)
    return (P_DENSE[ok[0]] if ok.size else None), forgetting.min()


@pytest.mark.parametrize("name", ["forgetting", "forgetting-multiplicative", "forgetting-floor", "forgetting-exp"])
def test_closed_form_matches_brute_force(name):
    law = get_law(name)
    rng = np.random.default_rng(7)
    feasible = infeasible = 0
    for _ in range(40):
        params = {"A": float(np.exp(rng.uniform(0, 4))), "B": float(np.exp(rng.uniform(0, 5))),
                  "alpha": float(rng.uniform(-0.5, 1.0)), "beta": float(rng.uniform(-0.3, 0.6))}
        if name == "forgetting-floor":
            params["C"] = float(rng.uniform(-0.1, 0.2))
        if name == "forgetting-exp":
            params["B"] = float(rng.uniform(-2.0, 8.0))  # either sign: B < 0 means p adds forgetting
        n, d, l0 = float(np.exp(rng.uniform(10, 16))), float(np.exp(rng.uniform(9, 15))), float(rng.uniform(2, 4))
        budget = float(np.exp(rng.uniform(-4, 1)))
        p, least = min_injection({k: np.asarray(v) for k, v in params.items()}, law, n, d, l0, budget)
        p_brute, least_brute = brute_force(law, params, n, d, l0, budget)
        assert float(least) == pytest.approx(least_brute, rel=1e-3, abs=1e-6)
        if p_brute is None:
            assert np.isnan(p)
            infeasible += 1
        else:
            assert p_brute - 2e-5 < float(p) <= p_brute + 1e-9
            feasible += 1
    assert feasible >= 10 and infeasible >= 5  # both branches were exercised


def _report(bootstrap=100):
    truth = dict(A=50.0, B=20.0, alpha=0.4, beta=0.2)
    df = synthetic_runs("forgetting", truth, 150, noise=0.005, seed=3)
    return fit(df, "forgetting", bootstrap=bootstrap), truth


def test_plan_meets_budget_with_ci():
    report, truth = _report()
    n, d = 1e7, 1e5
    plan = plan_injection(report, n, d, max_forgetting=0.3)
    assert plan.feasible and 0 < plan.injection < 1
    assert plan.predicted_forgetting == pytest.approx(0.3, rel=1e-6)  # the minimum p sits on the budget
    lo, hi = plan.ci
    assert lo <= plan.injection <= hi
    # The truth's own answer lies in the CI.
    p_true, _ = min_injection({k: np.asarray(v) for k, v in truth.items()}, get_law("forgetting"), n, d,
                              plan.pretrain_loss_before, 0.3)
    assert lo <= float(p_true) <= hi
    # Grid rows are predictions at those p; forgetting falls with p (alpha > 0).
    forgetting = [row["forgetting"] for row in plan.grid]
    assert forgetting == sorted(forgetting, reverse=True)
    assert plan.predicted_finetune_loss is None and plan.grid[0]["finetune_loss"] is None


def test_relative_budget_is_a_fraction_of_l0():
    report, _ = _report(bootstrap=0)
    absolute = plan_injection(report, 1e7, 1e5, max_forgetting=0.25)
    l0 = absolute.pretrain_loss_before
    relative = plan_injection(report, 1e7, 1e5, max_forgetting=0.25 / l0, relative=True)
    assert relative.injection == pytest.approx(absolute.injection, rel=1e-9)
    assert relative.ci is None


def test_infeasible_budget_reports_least_forgetting_not_p_ge_1():
    report, _ = _report(bootstrap=0)
    plan = plan_injection(report, 1e5, 1e7, max_forgetting=1e-4)
    assert plan.injection is None and plan.feasible is False
    p = report.fits[0].params
    l0 = plan.pretrain_loss_before
    expected = p["A"] * 1e7 ** p["beta"] / ((1 + p["B"]) * 1e5) ** p["alpha"]
    assert plan.least_forgetting == pytest.approx(expected, rel=1e-9)
    assert plan.predicted_pretrain_loss == pytest.approx(l0 + expected, rel=1e-9)


def test_unknown_model_size_needs_l0():
    report, _ = _report(bootstrap=0)
    with pytest.raises(UserError, match="--pretrain-loss-before"):
        plan_injection(report, 5e8, 1e6, max_forgetting=0.1)
    plan = plan_injection(report, 5e8, 1e6, max_forgetting=0.1, pretrain_loss_before=2.1)
    assert plan.pretrain_loss_before == 2.1


def test_halving_budget_is_the_closed_form_of_the_p_shape():
    report, _ = _report()
    plan = plan_injection(report, 1e6, 1e6, forgetting_fraction=0.5)
    p = report.fits[0].params
    # For the paper's law, the p that halves F solves (1 + B p)^-alpha = 1/2, whatever N and D.
    assert plan.injection == pytest.approx((2 ** (1 / p["alpha"]) - 1) / p["B"], rel=1e-9)
    assert plan.predicted_forgetting == pytest.approx(0.5 * plan.forgetting_at_zero, rel=1e-9)
    assert plan.budget == pytest.approx(0.5 * plan.forgetting_at_zero)
    assert plan.compute_factor == pytest.approx(1 / (1 - plan.injection))
    with pytest.raises(UserError, match="exactly one budget"):
        plan_injection(report, 1e6, 1e6, max_forgetting=0.1, forgetting_fraction=0.5)
    with pytest.raises(UserError, match="--forgetting-fraction"):
        plan_injection(report, 1e6, 1e6, forgetting_fraction=1.5)


def test_probability_over_budget_from_the_bootstrap_fits():
    report, _ = _report()
    plan = plan_injection(report, 1e7, 1e5, max_forgetting=0.3)
    law = get_law("forgetting")
    boot = report.fits[0].bootstrap_params
    cols = {"model_size": 1e7, "unique_tokens": 1e5, "injection": plan.injection,
            "pretrain_loss_before": plan.pretrain_loss_before}
    over = np.mean([law.predict(dict(zip(law.param_names, row, strict=True)), cols)[0] - plan.pretrain_loss_before
                    > 0.3 for row in boot])
    assert plan.prob_over_budget == pytest.approx(over)
    assert 0.2 < plan.prob_over_budget < 0.8  # the minimum p sits on the budget: a coin flip
    # A generous budget is met at p = 0 by nearly every draw.
    assert plan_injection(report, 1e7, 1e5, max_forgetting=10.0).prob_over_budget == 0.0


def test_target_loss_change_needs_a_finetuning_law_with_injection():
    from forgetlaw.laws import SavedFit

    report, truth = _report(bootstrap=0)
    df = synthetic_runs("forgetting", truth, 150, noise=0.005, seed=3)
    ft_truth = dict(E=1.5, A=300.0, alpha=0.3, beta=0.2, gamma=0.5)
    df["finetune_loss"] = get_law("finetuning-injection").predict(ft_truth, {c: df[c].to_numpy() for c in
                                                                             ("model_size", "unique_tokens", "injection")})
    with_p = SavedFit(forgetting=report, finetuning=fit(df, "finetuning-injection"))
    without_p = SavedFit(forgetting=report, finetuning=fit(df, "finetuning"))
    plan = plan_injection(with_p, 1e7, 1e5, max_forgetting=0.3)
    cols = {"model_size": 1e7, "unique_tokens": 1e5}
    ft = with_p.finetuning.fits[0].params
    law = get_law("finetuning-injection")
    expected = (law.predict(ft, {**cols, "injection": plan.injection})[0] - law.predict(ft, {**cols, "injection": 0.0})[0])
    assert plan.finetune_loss_change == pytest.approx(expected, rel=1e-9) and plan.finetune_loss_change > 0
    assert plan_injection(without_p, 1e7, 1e5, max_forgetting=0.3).finetune_loss_change is None


def test_extrapolation_is_flagged_with_the_fitted_range():
    report, _ = _report(bootstrap=0)
    inside = plan_injection(report, 1e6, 1e6, max_forgetting=0.3)
    assert inside.warnings == [] and not any(inside.extrapolated.values())
    assert inside.fitted_ranges["model_size"] == [1e5, 3e7]
    far = plan_injection(report, 1e9, 1e8, max_forgetting=0.3, pretrain_loss_before=2.0)
    assert far.extrapolated["model_size"] and far.extrapolated["unique_tokens"]
    assert any("N = 1e+09 lies outside the fitted model_size range [1e+05, 3e+07]" in w for w in far.warnings)
    # Cutting F to 30% needs p = (0.3^(-1/alpha) - 1) / B ~ 0.96, above the table's largest p (0.5).
    high_p = plan_injection(report, 1e6, 1e6, forgetting_fraction=0.3)
    assert high_p.injection > 0.5 and high_p.extrapolated == {"model_size": False, "unique_tokens": False,
                                                               "injection": True}
    assert any("recommended p" in w and "[0, 0.5]" in w for w in high_p.warnings)
