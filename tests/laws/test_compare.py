"""Comparing laws: the Huber likelihood behind AIC/BIC, the verdict on held-out F, bad input."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from forgetlaw.cli import main
from forgetlaw.errors import UserError
from forgetlaw.laws.compare import (
    FORGETTING_LAWS,
    best_forgetting_law,
    compare_laws,
    huber_neg_log_likelihood,
    information_criteria,
)
from forgetlaw.laws.fit import huber
from forgetlaw.laws.synthetic import synthetic_runs

POWER = dict(A=5.0, B=60.0, alpha=0.3, beta=0.2)


def test_huber_likelihood_is_gaussian_and_laplace_at_its_limits():
    r = np.random.default_rng(0).normal(0.0, 0.01, 300)
    n = r.size
    # delta far above every residual: Huber is r^2 / 2, the profiled Gaussian likelihood.
    gauss = 0.5 * n * (np.log(2 * np.pi * np.mean(r**2)) + 1)
    assert huber_neg_log_likelihood(huber(r, 10.0).sum(), n, 10.0) == pytest.approx(gauss, rel=1e-9)
    # delta far below: Huber is delta (|r| - delta / 2), the profiled Laplace likelihood.
    laplace = n * (np.log(2 * np.mean(np.abs(r))) + 1)
    assert huber_neg_log_likelihood(huber(r, 1e-8).sum(), n, 1e-8) == pytest.approx(laplace, rel=1e-6)
    aic, bic = information_criteria(huber(r, 10.0).sum(), n, 4, 10.0)
    assert aic == pytest.approx(2 * 5 + 2 * gauss) and bic == pytest.approx(5 * np.log(n) + 2 * gauss)


def power_table() -> pd.DataFrame:
    # Strong curvature in p, which exp(-B p) cannot follow: the paper's form is the true one.
    return synthetic_runs("forgetting", POWER, 150, noise=0.002, seed=4, injections=(0.0, 0.01, 0.05, 0.2, 0.5, 0.8))


def test_true_form_wins_on_held_out_f_and_aic():
    verdicts, comparison = best_forgetting_law(power_table(), by=None, holdout="kfold:4",
                                               laws=("forgetting", "forgetting-exp"))
    (v,) = verdicts
    assert v.best == "forgetting" and v.runner_up == "forgetting-exp"
    assert v.margin == pytest.approx(v.runner_up_error - v.best_error) and v.margin > 0
    assert v.ratio > 1.5
    scores = {s.law: s for s in comparison.scores}
    assert scores["forgetting"].aic < scores["forgetting-exp"].aic
    assert scores["forgetting"].bic < scores["forgetting-exp"].bic
    assert set(v.errors) == {"forgetting", "forgetting-exp"}


def test_compare_defaults_to_every_forgetting_form():
    assert set(FORGETTING_LAWS) == {"forgetting", "forgetting-multiplicative", "forgetting-floor", "forgetting-exp"}
    df = power_table().head(60)
    result = compare_laws(df, holdout="largest-model")
    assert [s.law for s in result.scores] == list(FORGETTING_LAWS)
    assert all(s.holdout_mre_forgetting is not None for s in result.scores)


def test_unknown_or_repeated_law_is_a_user_error():
    with pytest.raises(UserError, match="unknown law 'forgeting'"):
        compare_laws(power_table(), "forgetting,forgeting")
    with pytest.raises(UserError, match="twice"):
        compare_laws(power_table(), "forgetting,forgetting")


def test_compare_cli_json_and_bad_law(tmp_path, capsys):
    path = tmp_path / "runs.csv"
    df = pd.concat([synthetic_runs("forgetting", POWER, 40, noise=0.003, seed=i, domain=d)
                    for i, d in enumerate(["code", "math"])], ignore_index=True)
    df.to_csv(path, index=False)
    code = main(["compare", str(path), "--laws", "forgetting,forgetting-exp", "--by", "domain",
                 "--holdout", "largest-model", "--json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    obj = json.loads(out.out)
    assert set(obj) == {"laws", "settings", "scores"} and obj["laws"] == ["forgetting", "forgetting-exp"]
    assert len(obj["scores"]) == 4
    assert set(obj["scores"][0]) == {"law", "role", "group", "params", "ci", "mre", "holdout_mre", "mre_forgetting",
                                     "holdout_mre_forgetting", "aic", "bic", "objective", "n", "warnings"}
    code = main(["compare", str(path), "--laws", "forgetting,nope"])
    out = capsys.readouterr()
    assert code == 2 and out.out == ""
    assert len(out.err.strip().splitlines()) == 1 and "unknown law 'nope'" in out.err
    assert main(["compare", str(path), "--laws", "forgetting,forgetting-exp", "--by", "domain"]) == 0
    text = capsys.readouterr().out
    assert "AIC" in text and "holdout_mre_F" in text
