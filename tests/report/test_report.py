"""The report from synthetic tables drawn from a known model: files, claims, numbers, figures."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import numpy as np
import pytest

from forgetlaw.errors import UserError
from forgetlaw.report import GroupFit, StudyFits, build_report
from forgetlaw.report.claims import check_claims
from forgetlaw.report.derive import cell_means, prepare_results, seed_noise

from .synthetic import World, make_study

PAPER_WORLD = World()                                       # alpha, beta > 0; 1% removes most forgetting
PILOT_WORLD = World(alpha=-0.3, beta=-0.2, A=0.05, B=10.0, gamma=0.3)  # F grows with N, falls with D; 1% weak
PROVENANCE = {"code_version": "test", "seed": 0, "data_manifest_hash": "abc123", "config": {"preset": "synthetic"}}


def _claims(world, seed=0):
    results, _ = make_study(world, seed)
    table = prepare_results(results)
    return {c.key: c for c in check_claims(cell_means(table), seed_noise(table))}, table


def test_report_files_are_self_contained(tmp_path):
    results, curves = make_study(PAPER_WORLD)
    path = build_report(results, curves, tmp_path, PROVENANCE)
    text = path.read_text()
    pngs = sorted(p.name for p in tmp_path.glob("*.png"))
    assert pngs == ["fig_curves.png", "fig_forgetting_vs_d.png", "fig_share_lost.png"]
    # every saved figure is inlined, and nothing is fetched from elsewhere
    assert text.count('src="data:image/png;base64,') == len(pngs)
    assert not re.search(r'(src|href)="(http|file|/)', text)
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["provenance"]["data_manifest_hash"] == "abc123"
    assert "abc123" in text and "No fits were given" in text


def test_claims_follow_the_paper_world():
    claims, _ = _claims(PAPER_WORLD)
    assert {k: c.verdict for k, c in claims.items()} == {
        "shield": "held", "grows_with_d": "held", "shrinks_with_n": "held", "target_unharmed": "held"}


def test_claims_follow_the_pilot_world():
    claims, _ = _claims(PILOT_WORLD)
    assert claims["shield"].verdict == "not held"
    assert claims["grows_with_d"].verdict == "not held"
    assert claims["shrinks_with_n"].verdict == "not held"
    assert "the opposite of the paper" in claims["shrinks_with_n"].evidence
    assert claims["target_unharmed"].verdict == "held"


def test_injection_that_hurts_the_target_is_caught():
    claims, _ = _claims(replace(PAPER_WORLD, hurt=0.5))   # +0.1 nats at p = 20%, sigma 0.02
    assert claims["target_unharmed"].verdict == "not held"
    worst = max(claims["target_unharmed"].numbers["by_injection"], key=lambda r: r["injection"])
    assert worst["change"] == pytest.approx(0.5 * 0.2, abs=0.03)


def test_claim_numbers_match_a_recomputation_from_the_table():
    claims, table = _claims(PILOT_WORLD, seed=3)
    seed_mean = table.groupby(["domain", "model_size", "unique_tokens", "injection"])["forgetting"].mean()
    at = seed_mean.unstack("injection")
    shield = claims["shield"].numbers
    assert shield["forgetting_p0"] == pytest.approx(at[0.0].mean())
    assert shield["forgetting_p1"] == pytest.approx(at[0.01].mean())
    assert shield["share_removed"] == pytest.approx((at[0.0] - at[0.01]).mean() / at[0.0].mean())
    by_n = seed_mean.xs(0.0, level="injection").unstack("model_size")
    assert claims["shrinks_with_n"].numbers["change"] == pytest.approx((by_n[400_000] - by_n[50_000]).mean())
    # the share of progress lost is F / (L_init - L0)
    expected = (table["pretrain_loss"] - table["pretrain_loss_before"]) / (np.log(512) - table["pretrain_loss_before"])
    np.testing.assert_allclose(table["share_lost"], expected)


def test_seed_noise_recovers_the_known_sd():
    _, table = _claims(replace(PAPER_WORLD, sigma=0.05, replicate_seeds=tuple(range(1, 12))))
    noise = seed_noise(table)
    assert noise.replicate_cells == 2 * 3 * 2  # domains x D x {0, 1%} at the second size
    assert noise.forgetting_sd == pytest.approx(0.05, rel=0.2)
    assert noise.finetune_sd == pytest.approx(0.05, rel=0.2)


def test_without_replicates_the_verdict_says_noise_is_unmeasured():
    claims, _ = _claims(replace(PAPER_WORLD, replicate_seeds=()))
    assert all("not measured" in c.evidence for c in claims.values())


def _truth_fits(world, results):
    """Fits whose predictions are the known model: MREs must then match a recomputation."""
    fits = []
    largest = results["model_size"].max()
    for domain, sub in results.groupby("domain"):
        held = (sub["model_size"] == largest).to_numpy()
        obs = sub["pretrain_loss"].to_numpy()
        pred = world.l0(sub["model_size"]) + world.forgetting(sub["model_size"], sub["unique_tokens"], sub["injection"])
        pred = pred.to_numpy()
        rel = np.abs(pred - obs) / obs
        fits.append(GroupFit("forgetting", "pretrain_loss", {"domain": domain},
                             {"A": world.A, "alpha": world.alpha, "beta": world.beta, "B": world.B},
                             {"A": (1.5, 2.5)}, float(rel[~held].mean()), float(rel[held].mean()),
                             int((~held).sum()), obs, pred, held))

    def planner(domain, n, d, max_forgetting, relative):
        budget = max_forgetting * world.l0(n) if relative else max_forgetting
        # F(p) = budget  <=>  (1 + B p)^alpha = A D^beta N^-alpha / budget  (paper world: gamma = alpha)
        p = ((world.A * d**world.beta / n**world.alpha / budget) ** (1 / world.alpha) - 1) / world.B
        p = max(p, 0.0)
        return (p, True, None) if p < 1 else (None, False, None)

    return StudyFits(fits, planner=planner)


def test_fits_and_recommendations_reach_the_report(tmp_path):
    results, curves = make_study(PAPER_WORLD)
    fits = _truth_fits(PAPER_WORLD, results)
    path = build_report(results, curves, tmp_path, PROVENANCE, fits=fits)
    text = path.read_text()
    assert (tmp_path / "fig_predicted_vs_observed.png").exists()
    data = json.loads((tmp_path / "report.json").read_text())
    for f, summary in zip(fits.fits, data["fits"], strict=True):
        assert summary["holdout_mre"] == pytest.approx(f.holdout_mre)
        assert f"{100 * f.holdout_mre:.2f}%" in text
    recs = data["recommendations"]
    assert len(recs) == 2 * 4 * 3
    checked = 0
    for rec in recs:
        if rec["feasible"] and rec["min_injection"] > 0:
            n, d = rec["model_size"], rec["unique_tokens"]
            assert PAPER_WORLD.forgetting(n, d, rec["min_injection"]) == pytest.approx(0.05 * PAPER_WORLD.l0(n))
            checked += 1
    assert checked >= 1  # the world is built so that some cells need injection


def test_missing_column_is_a_user_error(tmp_path):
    results, curves = make_study(PAPER_WORLD)
    with pytest.raises(UserError, match="pretrain_loss_init"):
        build_report(results.drop(columns="pretrain_loss_init"), curves, tmp_path, PROVENANCE)
    with pytest.raises(UserError, match="empty"):
        build_report(results.iloc[:0], curves, tmp_path, PROVENANCE)


def test_report_fits_with_the_law_engine(tmp_path):
    pytest.importorskip("forgetlaw.laws")
    from forgetlaw.report import fit_study

    results, curves = make_study(replace(PAPER_WORLD, sigma=0.005))
    fits = fit_study(results, bootstrap=20)
    assert {f.law for f in fits.fits} == {"forgetting", "finetuning"}
    for f in fits.fits:
        # the figure's held-out points reproduce the engine's held-out MRE, and the in-sample ones its MRE
        rel = np.abs(f.predicted - f.observed) / f.observed
        # (a separate fit of the same rows: equal up to the optimizer's tolerance)
        assert rel[f.heldout].mean() == pytest.approx(f.holdout_mre, rel=0.05)
        part = results[results["domain"] == f.group["domain"]]
        assert f.heldout.sum() == (part["model_size"] == part["model_size"].max()).sum() > 0
        if f.law == "forgetting":   # the synthetic world is the paper's law: its exponents come back
            assert f.params["alpha"] == pytest.approx(PAPER_WORLD.alpha, abs=0.05)
            assert f.params["beta"] == pytest.approx(PAPER_WORLD.beta, abs=0.05)
            assert f.ci["alpha"][0] <= f.params["alpha"] <= f.ci["alpha"][1]
    build_report(results, curves, tmp_path, PROVENANCE, fits=fits)
    data = json.loads((tmp_path / "report.json").read_text())
    assert [f["mre"] for f in data["fits"]] == pytest.approx([f.mre for f in fits.fits])
    # the saved fit file is the law engine's: it loads, and plans what the report's table says
    from forgetlaw.laws import load_fit, plan_injection

    saved = load_fit(tmp_path / data["fit_file"])
    rec = next(r for r in data["recommendations"] if r["feasible"])
    plan = plan_injection(saved, rec["model_size"], rec["unique_tokens"], 0.05, relative=True, domain=rec["domain"])
    assert plan.injection == pytest.approx(rec["min_injection"])


def test_cli_report_on_a_missing_folder_is_one_line_exit_2(tmp_path, capsys):
    from forgetlaw.cli import main

    assert main(["report", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "STUDY_DIR" in err[0]
    # the budget is checked before the folder is read: the error names the flag, not the folder
    assert main(["report", str(tmp_path), "--max-forgetting", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--max-forgetting" in err[0]


def test_runs_that_never_improved_the_target_are_left_out_and_listed(tmp_path):
    results, curves = make_study(PAPER_WORLD)
    stuck = (results["domain"] == "code") & (results["model_size"] == 400_000) & (results["injection"] == 0.0)
    results.loc[stuck, "best_step"] = 0
    results.loc[stuck, "pretrain_loss"] = results.loc[stuck, "pretrain_loss_before"]  # F = 0 by construction
    build_report(results, curves, tmp_path, PROVENANCE)
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["grid"]["runs_left_out"] == stuck.sum() == 3
    assert data["grid"]["runs"] == len(results) - 3
    assert "Runs left out" in (tmp_path / "report.html").read_text()
    # the claims are computed without them: identical to a table that never had them
    other = tmp_path / "other"
    build_report(results[~stuck], curves, other, PROVENANCE)
    assert json.loads((other / "report.json").read_text())["claims"] == data["claims"]
    with pytest.raises(UserError, match="best target step"):
        build_report(results.assign(best_step=0), curves, tmp_path / "none", PROVENANCE)
