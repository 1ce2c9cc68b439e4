"""`forgetlaw fit` and `forgetlaw plan` from the command line: JSON schemas, saving, bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from forgetlaw.cli import main
from forgetlaw.laws import load_fit
from forgetlaw.laws.synthetic import synthetic_runs

FORGET = dict(A=50.0, B=20.0, alpha=0.4, beta=0.2)
FIT_KEYS = {"group", "params", "ci", "mre", "holdout_mre", "mre_forgetting", "holdout_mre_forgetting",
            "forgetting_error", "n", "ranges", "warnings"}


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tables")
    df = pd.concat([synthetic_runs("forgetting", FORGET, 80, noise=0.005, seed=i, domain=d)
                    for i, d in enumerate(["code", "math"])], ignore_index=True)
    df["finetune_loss"] = 1.5 + 300.0 / (df.model_size**0.3 * df.unique_tokens**0.2)
    path = folder / "runs.csv"
    df.to_csv(path, index=False)
    return path


def run(argv, capsys):
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_fit_json_schema_and_save_then_plan(table, tmp_path, capsys):
    fit_path = tmp_path / "fit.json"
    code, out, err = run(["fit", table, "--law", "forgetting", "--by", "domain", "--bootstrap", "50",
                          "--holdout", "largest-model", "--json", "--save", fit_path], capsys)
    assert code == 0, err
    obj = json.loads(out)  # exactly one JSON object on stdout
    assert set(obj) == {"law", "settings", "fits"} and obj["law"] == "forgetting"
    assert obj["settings"]["forgetting_floor"] == 0.01
    assert len(obj["fits"]) == 2
    for f in obj["fits"]:
        assert set(f) == FIT_KEYS
        assert isinstance(f["mre_forgetting"], float) and isinstance(f["holdout_mre_forgetting"], float)
        assert f["forgetting_error"]["rows"] + f["forgetting_error"]["left_out"] == f["n"]
        assert isinstance(f["warnings"], list)
        assert set(f["params"]) == {"A", "B", "alpha", "beta"}
        assert all(len(v) == 2 and v[0] <= f["params"][k] <= v[1] for k, v in f["ci"].items())
        assert isinstance(f["mre"], float) and isinstance(f["holdout_mre"], float) and f["n"] == 80
    assert obj["fits"][0]["group"] == {"domain": "code"}

    # A finetuning fit saved into the same file joins the forgetting fit.
    code, out, err = run(["fit", table, "--law", "finetuning", "--by", "domain", "--bootstrap", "0",
                          "--save", fit_path], capsys)
    assert code == 0, err
    assert "finetuning" in out and "saved" in out
    default_boot = json.loads(run(["fit", table, "--law", "finetuning", "--by", "domain", "--json"], capsys)[1])
    assert all(f["ci"] is not None for f in default_boot["fits"])  # 1,000 resamples unless told otherwise
    saved = load_fit(fit_path)
    assert saved.forgetting.law.name == "forgetting" and saved.finetuning.law.name == "finetuning"
    assert saved.forgetting.fits[0].bootstrap_params.shape == (50, 4)

    code, out, err = run(["plan", fit_path, "--model-size", 1e7, "--unique-tokens", 1e5,
                          "--max-forgetting", 0.3, "--domain", "code", "--json"], capsys)
    assert code == 0, err
    plan = json.loads(out)
    assert plan["feasible"] is True and 0 < plan["injection"] < 1
    assert plan["ci"][0] <= plan["injection"] <= plan["ci"][1]
    assert plan["predicted_pretrain_loss"] == pytest.approx(plan["pretrain_loss_before"] + 0.3, rel=1e-6)
    expected_ft = 1.5 + 300.0 / (1e7**0.3 * 1e5**0.2)
    assert plan["predicted_finetune_loss"] == pytest.approx(expected_ft, rel=0.01)
    assert plan["finetune_law"] == "finetuning"
    assert all(row["finetune_loss"] is not None for row in plan["grid"])

    # Infeasible: null injection, the least forgetting reachable, never p >= 1.
    code, out, err = run(["plan", fit_path, "--model-size", 1e5, "--unique-tokens", 1e7,
                          "--max-forgetting", 1e-4, "--domain", "math", "--json"], capsys)
    plan = json.loads(out)
    assert code == 0 and plan["injection"] is None and plan["feasible"] is False
    assert plan["least_forgetting"] > 1e-4

    # The readable output says the same.
    code, out, err = run(["plan", fit_path, "--model-size", 1e7, "--unique-tokens", 1e5,
                          "--max-forgetting", 0.1, "--relative", "--domain", "code"], capsys)
    assert code == 0 and "minimum injection p =" in out


def test_readable_fit_table_and_renames(table, tmp_path, capsys):
    df = pd.read_csv(table).rename(columns={"model_size": "params", "pretrain_loss": "val_loss_generic"})
    path = tmp_path / "renamed.parquet"
    df.to_parquet(path)
    code, out, err = run(["fit", path, "--law", "forgetting", "--bootstrap", 0, "--column", "model_size=params",
                          "--column", "pretrain_loss=val_loss_generic", "--holdout", "largest-tokens"], capsys)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("law forgetting:")
    assert "[" not in lines[2]  # no CIs without a bootstrap
    assert lines[1].split()[:5] == ["group", "A", "B", "alpha", "beta"]
    assert lines[2].split()[0] == "all"


def _bad_tables(base: pd.DataFrame) -> dict[str, tuple[pd.DataFrame, list[str], str]]:
    """name -> (table, extra args, a word the one-line error must contain)."""
    text = base.astype({"model_size": object})
    text.loc[3, "model_size"] = "big"
    nan = base.copy()
    nan.loc[5, "pretrain_loss"] = np.nan
    p_out = base.copy()
    p_out.loc[2, "injection"] = 5.0
    n_zero = base.copy()
    n_zero.loc[1, "model_size"] = 0
    d_neg = base.copy()
    d_neg.loc[1, "unique_tokens"] = -10
    return {
        "missing column": (base.drop(columns=["unique_tokens"]), [], "unique_tokens"),
        "non-numeric": (text, [], "model_size"),
        "NaN row": (nan, [], "NaN"),
        "p outside [0, 1)": (p_out, [], "injection"),
        "N not positive": (n_zero, [], "model_size"),
        "D not positive": (d_neg, [], "unique_tokens"),
        "fewer points than parameters": (base.head(3), [], "parameters"),
        "a group too small": (base.assign(domain=["tiny"] + ["big"] * (len(base) - 1)), ["--by", "domain"], "tiny"),
        "an empty group key": (base.assign(domain=[None] + ["big"] * (len(base) - 1)), ["--by", "domain"], "domain"),
        "empty table": (base.head(0), [], "no rows"),
        "unknown law": (base, ["--law", "forgeting"], "unknown law"),
        "unknown holdout": (base, ["--holdout", "smallest"], "--holdout"),
        "bad rename": (base, ["--column", "model_size"], "NEW=OLD"),
        "rename of a missing column": (base, ["--column", "model_size=nope"], "nope"),
    }


def _bad_case(case, tmp_path):
    base = synthetic_runs("forgetting", FORGET, 20, seed=1)
    df, extra, word = _bad_tables(base)[case]
    path = tmp_path / "bad.csv"
    df.to_csv(path, index=False)
    save = tmp_path / "fit.json"
    args = ["fit", str(path), "--law", "forgetting", "--json", "--save", str(save)]
    if "--law" in extra:
        args = args[:2] + args[4:]
    return [*args, *extra], word, save


@pytest.mark.parametrize("case", list(_bad_tables(synthetic_runs("forgetting", FORGET, 20, seed=1))))
def test_bad_input_is_one_line_exit_2_and_writes_nothing(case, tmp_path, capsys):
    argv, word, save = _bad_case(case, tmp_path)
    code, out, err = run(argv, capsys)  # in-process: an unexpected exception would fail the test
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("forgetlaw: error:")
    assert word in lines[0]
    assert out == ""
    assert not save.exists()


def test_bad_input_in_a_real_process_has_no_traceback(tmp_path):
    argv, word, save = _bad_case("NaN row", tmp_path)
    out = subprocess.run([sys.executable, "-m", "forgetlaw", *argv], capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr and word in out.stderr
    assert out.stdout == "" and not save.exists()


def test_plan_bad_input(table, tmp_path, capsys):
    fit_path = tmp_path / "fit.json"
    assert run(["fit", table, "--law", "forgetting", "--by", "domain", "--bootstrap", 0, "--save", fit_path],
               capsys)[0] == 0
    not_a_fit = tmp_path / "other.json"
    not_a_fit.write_text('{"a": 1}')
    cases = [
        (["plan", tmp_path / "missing.json", "--model-size", 1e7, "--unique-tokens", 1e5, "--max-forgetting", 0.1],
         "does not exist"),
        (["plan", not_a_fit, "--model-size", 1e7, "--unique-tokens", 1e5, "--max-forgetting", 0.1], "not a forgetlaw fit"),
        (["plan", fit_path, "--model-size", 1e7, "--unique-tokens", 1e5, "--max-forgetting", 0.1], "--domain"),
        (["plan", fit_path, "--model-size", 1e7, "--unique-tokens", 1e5, "--max-forgetting", 0.1, "--domain", "law"],
         "'law'"),
        (["plan", fit_path, "--model-size", -1, "--unique-tokens", 1e5, "--max-forgetting", 0.1, "--domain", "code"],
         "--model-size"),
        (["plan", fit_path, "--model-size", 1e7, "--unique-tokens", 0, "--max-forgetting", 0.1, "--domain", "code"],
         "--unique-tokens"),
        (["plan", fit_path, "--model-size", 1e7, "--unique-tokens", 1e5, "--max-forgetting", 0, "--domain", "code"],
         "--max-forgetting"),
        (["plan", fit_path, "--model-size", 123, "--unique-tokens", 1e5, "--max-forgetting", 0.1, "--domain", "code"],
         "--pretrain-loss-before"),
        (["plan", fit_path, "--model-size", 1e7, "--unique-tokens", 1e5, "--max-forgetting", 0.1, "--domain", "code",
          "--grid", "0,1.5"], "--grid"),
    ]
    for argv, word in cases:
        code, out, err = run(argv, capsys)
        assert code == 2, (argv, err)
        assert len(err.strip().splitlines()) == 1 and word in err, (argv, err)
        assert out == ""
    # A --save target that is not a fit file is refused before fitting, and left untouched.
    code, out, err = run(["fit", table, "--law", "forgetting", "--save", not_a_fit], capsys)
    assert code == 2 and "not a forgetlaw fit file" in err
    assert not_a_fit.read_text() == '{"a": 1}'


def test_renaming_onto_an_existing_column_is_one_line_exit_2(tmp_path, capsys):
    table = tmp_path / "dup.csv"
    pd.DataFrame({"model_size": [1e5, 2e5], "params": [1e5, 2e5], "unique_tokens": [1e3, 2e3],
                  "injection": [0.0, 0.0], "pretrain_loss_before": [3.0, 2.9],
                  "pretrain_loss": [3.5, 3.3]}).to_csv(table, index=False)
    assert main(["fit", str(table), "--law", "forgetting", "--column", "model_size=params"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already has a column 'model_size'" in err[0]


PLAN_KEYS = {"injection", "feasible", "ci", "predicted_pretrain_loss", "predicted_forgetting",
             "predicted_finetune_loss", "least_forgetting", "max_forgetting", "relative", "budget",
             "pretrain_loss_before", "model_size", "unique_tokens", "law", "finetune_law", "group",
             "ci_infeasible_fraction", "grid", "forgetting_fraction", "forgetting_at_zero", "prob_over_budget",
             "finetune_loss_change", "compute_factor", "extrapolated", "fitted_ranges", "warnings"}


def test_fit_prints_error_on_f_warnings_and_progress_only_off_json(tmp_path, capsys):
    one_n = tmp_path / "one_model.csv"
    synthetic_runs("forgetting", FORGET, 30, noise=0.005, seed=2, model_sizes=(1e6,)).to_csv(one_n, index=False)
    code, out, err = run(["fit", one_n, "--law", "forgetting", "--bootstrap", 20, "--forgetting-floor", 0.02], capsys)
    assert code == 0, err
    header = out.splitlines()[1].split()
    assert header[5:10] == ["mre", "holdout_mre", "mre_F", "holdout_mre_F", "left"]
    assert "warning (all): the table has one model_size (1e+06)" in out
    assert "|F| > 0.02" in out
    assert "bootstrap forgetting: 20/20 fits" in err  # plain progress lines when stderr is not a terminal
    code, out, err = run(["fit", one_n, "--law", "forgetting", "--bootstrap", 20, "--json", "--points"], capsys)
    assert code == 0 and err == ""
    (f,) = json.loads(out)["fits"]
    assert any("one model_size" in w for w in f["warnings"])
    assert len(f["points"]["forgetting_observed"]) == 30 and f["points"]["holdout_predicted"][0] is None


def test_plan_json_keys_fraction_budget_and_warnings(table, tmp_path, capsys):
    fit_path = tmp_path / "fit.json"
    assert run(["fit", table, "--law", "forgetting", "--by", "domain", "--bootstrap", 30, "--save", fit_path],
               capsys)[0] == 0
    code, out, err = run(["plan", fit_path, "--model-size", 1e9, "--unique-tokens", 1e5, "--forgetting-fraction", 0.5,
                          "--domain", "code", "--pretrain-loss-before", 2.0, "--json"], capsys)
    assert code == 0, err
    plan = json.loads(out)
    assert set(plan) == PLAN_KEYS
    assert plan["forgetting_fraction"] == 0.5 and plan["max_forgetting"] is None
    assert plan["predicted_forgetting"] == pytest.approx(0.5 * plan["forgetting_at_zero"], rel=1e-6)
    assert plan["extrapolated"]["model_size"] is True and len(plan["warnings"]) == 1
    assert 0 <= plan["prob_over_budget"] <= 1
    code, out, err = run(["plan", fit_path, "--model-size", 1e9, "--unique-tokens", 1e5, "--forgetting-fraction", 0.5,
                          "--domain", "code", "--pretrain-loss-before", 2.0], capsys)
    assert "0.5 x F(p=0)" in out and "warning (plan): the N = 1e+09 lies outside" in out
    assert "probability the budget is exceeded" in out and "x1." in out
    for extra, word in ((["--max-forgetting", 0.1, "--forgetting-fraction", 0.5], "not allowed with"),
                        (["--forgetting-fraction", 0.5, "--relative"], "--relative"),
                        (["--forgetting-fraction", 2], "--forgetting-fraction")):
        code, out, err = run(["plan", fit_path, "--model-size", 1e7, "--unique-tokens", 1e5, "--domain", "code",
                              *extra], capsys)
        assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and word in err, err
