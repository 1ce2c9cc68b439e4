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


@pytest.mark.parametrize("name", ["forgetting", "forgetting-multiplicative", "forgetting-floor"])
def test_closed_form_matches_brute_force(name):
    law = get_law(name)
    rng = np.random.default_rng(7)
    feasible = infeasible = 0
    for _ in range(40):
        params = {"A": float(np.exp(rng.uniform(0, 4))), "B": float(np.exp(rng.uniform(0, 5))),
                  "alpha": float(rng.uniform(-0.5, 1.0)), "beta": float(rng.uniform(-0.3, 0.6))}
        if name == "forgetting-floor":
            params["C"] = float(rng.uniform(-0.1, 0.2))
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
