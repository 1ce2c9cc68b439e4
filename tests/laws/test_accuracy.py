"""The error on the forgetting F, per-row points, holdout folds, warnings, and one-model fits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from forgetlaw.laws import fit, load_fit, save_fit
from forgetlaw.laws.diagnostics import fit_warnings
from forgetlaw.laws.synthetic import synthetic_runs

TRUTH = dict(A=50.0, B=20.0, alpha=0.4, beta=0.2)


def by_hand(params: dict, rows: pd.DataFrame) -> np.ndarray:
    """The paper's forgetting term A D^beta / ((1 + B p) N)^alpha, written out."""
    return (params["A"] * rows.unique_tokens ** params["beta"]
            / ((1 + params["B"] * rows.injection) * rows.model_size) ** params["alpha"]).to_numpy()


def small_table() -> pd.DataFrame:
    # A small forgetting term (F ~ 10% of L0), as in real studies, so that L0 dominates L_pt.
    df = synthetic_runs("forgetting", {**TRUTH, "A": 5.0}, 24, noise=0.01, seed=3, model_sizes=(1e5, 1e6, 1e7))
    # A run whose forgetting is within noise of 0 (F = -0.004, as in the cpu demo).
    df.loc[5, "pretrain_loss"] = df.loc[5, "pretrain_loss_before"] - 0.004
    return df


def hand_error(f_hat: np.ndarray, f: np.ndarray, floor: float) -> tuple[float, int]:
    keep = np.abs(f) > floor
    return float(np.mean(np.abs(f_hat[keep] - f[keep]) / np.abs(f[keep]))), int((~keep).sum())


def test_error_on_forgetting_by_hand_in_sample_and_held_out():
    df = small_table()
    (g,) = fit(df, "forgetting", holdout="largest-model").fits
    f = (df.pretrain_loss - df.pretrain_loss_before).to_numpy()
    value, left = hand_error(by_hand(g.params, df), f, 0.01)
    assert g.mre_forgetting == pytest.approx(value, rel=1e-9)
    assert g.diagnostics["forgetting_error"]["left_out"] == left >= 1  # the F = -0.004 run
    assert g.diagnostics["forgetting_error"]["rows"] == len(df) - left
    held = (df.model_size == df.model_size.max()).to_numpy()
    (fold,) = g.holdout_folds
    assert fold.held_out == list(np.flatnonzero(held))
    value, left = hand_error(by_hand(fold.params, df[held]), f[held], 0.01)
    assert g.holdout_mre_forgetting == pytest.approx(value, rel=1e-9)
    assert g.diagnostics["forgetting_error"]["holdout_left_out"] == left
    # The error on F is far larger than the error on L_pt, which L0 dominates.
    assert g.mre_forgetting > 5 * g.mre


def test_floor_is_an_option_and_is_recorded():
    df = small_table()
    loose = fit(df, "forgetting", forgetting_floor=0.0)
    strict = fit(df, "forgetting", forgetting_floor=0.5)
    assert loose.settings["forgetting_floor"] == 0.0
    assert loose.fits[0].diagnostics["forgetting_error"]["left_out"] == 0
    f = (df.pretrain_loss - df.pretrain_loss_before).abs()
    assert strict.fits[0].diagnostics["forgetting_error"]["left_out"] == int((f <= 0.5).sum())
    # The F = -0.004 run alone is a relative error of hundreds of percent: the floor is what keeps it out.
    assert loose.fits[0].mre_forgetting > fit(df, "forgetting").fits[0].mre_forgetting


def test_points_map_back_to_the_rows_and_folds_predict_what_they_held_out():
    parts = [synthetic_runs("forgetting", TRUTH, 40, noise=0.01, seed=i, domain=d) for i, d in enumerate("ab")]
    df = pd.concat(parts, ignore_index=True).sample(frac=1.0, random_state=0).reset_index(drop=True)
    report = fit(df, "forgetting", by="domain", holdout="kfold:4")
    for g in report.fits:
        pts = g.points
        rows = df.iloc[pts["row"].to_numpy()]
        assert (rows.domain == g.group["domain"]).all()
        np.testing.assert_allclose(pts["observed"], rows.pretrain_loss)
        np.testing.assert_allclose(pts["forgetting_observed"], rows.pretrain_loss - rows.pretrain_loss_before)
        np.testing.assert_allclose(pts["forgetting_predicted"], by_hand(g.params, rows), rtol=1e-9)
        assert pts["heldout"].all()  # k-fold: every row is predicted exactly once
        held = sorted(i for fold in g.holdout_folds for i in fold.held_out)
        assert held == list(range(g.n))
        for fold in g.holdout_folds:
            got = pts["forgetting_holdout_predicted"].to_numpy()[fold.held_out]
            np.testing.assert_allclose(got, by_hand(fold.params, rows.iloc[fold.held_out]), rtol=1e-9)
        assert g.ranges["model_size"] == [rows.model_size.min(), rows.model_size.max()]


def test_saved_file_keeps_the_new_fields(tmp_path):
    report = fit(small_table(), "forgetting", holdout="largest-model", bootstrap=20)
    save_fit(report, tmp_path / "fit.json")
    (back,) = load_fit(tmp_path / "fit.json").forgetting.fits
    (orig,) = report.fits
    assert back.mre_forgetting == orig.mre_forgetting
    assert back.holdout_mre_forgetting == orig.holdout_mre_forgetting
    assert back.warnings == orig.warnings and back.ranges == orig.ranges
    assert back.holdout_folds == orig.holdout_folds
    pd.testing.assert_frame_equal(back.points, orig.points, check_dtype=False)


def test_a_parameter_at_its_bound_is_a_warning():
    # No constant term in the data: E runs to its lower bound (exp(-10)).
    df = synthetic_runs("finetuning", dict(E=1.0, A=300.0, alpha=0.3, beta=0.2), 60, noise=0.002, seed=1)
    df["finetune_loss"] = 300.0 / (df.model_size**0.3 * df.unique_tokens**0.2)
    (g,) = fit(df, "finetuning").fits
    assert "E" in g.diagnostics["at_bound"]
    assert any(w.startswith("E = ") and "lower bound" in w for w in g.warnings), g.warnings


def test_wide_ci_few_rows_and_convergence_warnings():
    from forgetlaw.laws import get_law

    law = get_law("forgetting")
    part = synthetic_runs("forgetting", TRUTH, 10, seed=2)
    theta = law.to_internal(TRUTH)
    diagnostics = {"best_start_converged": False,
                   "bootstrap": {"resamples": 100, "converged": 50, "ci_level": 0.95}}
    ci = {"A": [14.8, 1.0e9], "B": [10.0, 30.0], "alpha": [0.1, 0.5], "beta": [0.1, 0.3]}
    warnings = fit_warnings(law, part, theta, ci, diagnostics)
    text = " | ".join(warnings)
    assert "CI of A [14.8, 1e+09] spans 7.8 decades" in text
    assert "CI of B" not in text  # 0.5 decades
    assert "10 rows for 4 parameters" in text
    assert "iteration cap" in text and "50 of 100 bootstrap refits" in text
    quiet = fit_warnings(law, synthetic_runs("forgetting", TRUTH, 40, seed=2), theta, None,
                         {"best_start_converged": True})
    assert quiet == []


def test_one_model_fit_is_identified_through_p_and_says_so():
    df = synthetic_runs("forgetting", TRUTH, 60, noise=0.003, seed=8, model_sizes=(1e6,),
                        injections=(0.0, 0.01, 0.05, 0.2, 0.5))
    (g,) = fit(df, "forgetting", bootstrap=50).fits
    assert g.params["alpha"] == pytest.approx(0.4, abs=0.05)
    assert g.params["beta"] == pytest.approx(0.2, abs=0.02)
    assert g.params["B"] == pytest.approx(20.0, rel=0.25)
    # A and alpha are one constant at this N, and that constant is recovered.
    assert g.params["A"] * 1e6 ** -g.params["alpha"] == pytest.approx(50.0 * 1e6**-0.4, rel=0.05)
    confound = [w for w in g.warnings if "one model_size" in w]
    assert len(confound) == 1 and "alpha is still identified through injection, which takes 5 values" in confound[0]
    assert not any("decades" in w for w in g.warnings)  # A's wide CI is the confound, said once
    # With p at two values, alpha is not identified through it, and the warning says that instead.
    two_p = df[df.injection.isin([0.0, 0.2])]
    (g2,) = fit(two_p, "forgetting").fits
    assert any("fewer than the 3 that identify alpha" in w for w in g2.warnings)


def test_one_d_leaves_beta_confounded():
    df = synthetic_runs("forgetting", TRUTH, 40, noise=0.003, seed=9, unique_tokens=(1e6,))
    (g,) = fit(df, "forgetting").fits
    assert any("one unique_tokens (1e+06): A and beta are confounded" in w for w in g.warnings)


def test_largest_model_holdout_on_one_model_says_what_to_use_instead():
    from forgetlaw.errors import UserError

    df = synthetic_runs("forgetting", TRUTH, 40, noise=0.003, seed=9, model_sizes=(1e6,))
    with pytest.raises(UserError, match="one model_size, so nothing is left to fit on.*kfold"):
        fit(df, "forgetting", holdout="largest-model")
    (g,) = fit(df, "forgetting", holdout="largest-tokens").fits
    assert g.holdout_mre_forgetting is not None
