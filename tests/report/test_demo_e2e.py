"""A reduced demo end to end: real data build (local stdlib texts, no network), real pretraining and
finetuning of tiny GPTs, the SQLite store, both laws fitted, the report; then consistency checks
of the report and fit file against the stored results."""

from __future__ import annotations

import json
import sysconfig
from pathlib import Path

import numpy as np
import pytest

STDLIB = Path(sysconfig.get_paths()["stdlib"])


def help_topics(folder: Path) -> Path:
    """The stdlib's English help topics (pydoc_data), one text file per topic: the generic corpus."""
    from pydoc_data.topics import topics

    folder.mkdir(parents=True, exist_ok=True)
    for name, text in sorted(topics.items()):
        (folder / f"{name}.txt").write_text(text)
    return folder


def reduced_spec(root: Path):
    from forgetlaw.study import spec_from_dict

    return spec_from_dict({
        "name": "reduced-demo",
        "seq_len": 32,
        "ladder": {"shapes": [
            {"name": "t8", "n_layer": 1, "d_model": 8, "n_head": 1},
            {"name": "t16", "n_layer": 1, "d_model": 16, "n_head": 1},
            {"name": "t24", "n_layer": 1, "d_model": 24, "n_head": 1},
        ]},
        "data": {
            "vocab_size": 300, "pretrain_max_mb": 0.3, "domain_max_mb": 0.1, "cache_dir": str(root / "cache"),
            # generic: the stdlib's English help topics; two far domains: stdlib packages' sources
            "source_dirs": {"generic": str(help_topics(root / "topics")),
                            "jsoncode": str(STDLIB / "json"), "tomlcode": str(STDLIB / "tomllib")},
        },
        "domains": ["jsoncode", "tomlcode"],
        "unique_tokens": [512, 1024],
        "injection": [0.0, 0.2],
        "seeds": [0],
        "replicates": {"seeds": [1, 2], "sizes": ["t16"], "domains": ["jsoncode"], "unique_tokens": [512],
                       "injection": [0.0]},
        "pretrain": {"tokens_per_param": 10, "batch_size": 8, "eval_tokens": 512, "lr": 3e-3},
        "finetune": {"batch_size": 4, "eval_tokens": 256, "min_eval_interval_steps": 2, "patience": 2,
                     "max_epochs": 3, "warmup_steps": 2},
        "execution": {"device": "cpu", "progress_every_s": 60},
    })


@pytest.mark.slow
@pytest.mark.timeout(480)
def test_reduced_demo_end_to_end(tmp_path):
    if not (STDLIB / "pydoc_data").is_dir() or not (STDLIB / "tomllib").is_dir():
        pytest.skip("this Python lacks the stdlib texts the reduced demo uses")
    from forgetlaw.laws import load_fit, plan_injection
    from forgetlaw.report.demo import run_demo
    from forgetlaw.study import load_results

    lines: list[str] = []
    summary = run_demo(reduced_spec(tmp_path / "inputs"), tmp_path / "study", workers=2, bootstrap=10,
                       progress=lines.append)
    report_dir = tmp_path / "study" / "report"
    assert summary.report == report_dir / "report.html" and summary.report.is_file()
    data = json.loads((report_dir / "report.json").read_text())
    results = load_results(tmp_path / "study")
    assert len(results) == summary.runs == 3 * 2 * 2 * 2 + 2

    # the report describes exactly the stored runs, and its headline numbers recompute from them
    # runs that never improved the target (best step 0) are left out of the analysis, and counted
    kept = results[results["best_step"] > 0]
    assert data["grid"]["runs"] == len(kept) and data["grid"]["runs_left_out"] == len(results) - len(kept)
    assert data["grid"]["model_sizes"] == sorted(int(n) for n in kept["model_size"].unique())
    results = kept
    forgetting = results["pretrain_loss"] - results["pretrain_loss_before"]
    for row in data["headline_forgetting"]:
        at = (results["model_size"] == row["model_size"]) & (results["injection"] == 0.0)
        assert row["forgetting_p0"] == pytest.approx(forgetting[at].mean())
    assert data["noise"]["replicate_cells"] <= 1
    # provenance: the data manifest hash the runs were trained on
    assert data["provenance"]["data_manifest_hash"] == ", ".join(sorted(set(results_hashes(tmp_path / "study"))))

    # both laws fitted per domain, with the largest model held out; the fit file is the engine's
    assert {(f["law"], f["group"]["domain"]) for f in data["fits"]} == {
        (law, d) for law in ("forgetting", "finetuning") for d in ("jsoncode", "tomlcode")}
    for f in data["fits"]:
        assert np.isfinite(f["mre"]) and f["holdout_mre"] is not None
    saved = load_fit(report_dir / data["fit_file"])
    assert {f.group["domain"] for f in saved.forgetting.fits} == {"jsoncode", "tomlcode"}
    for rec in data["recommendations"]:
        plan = plan_injection(saved, rec["model_size"], rec["unique_tokens"], 0.05, relative=True,
                              domain=rec["domain"])
        assert plan.feasible == rec["feasible"]
    for name in data["figures"].values():
        assert (report_dir / name).stat().st_size > 10_000
    assert any(line.startswith("report: ") for line in lines)

    # `forgetlaw report` rebuilds a report from the study folder alone
    from forgetlaw.cli import main

    assert main(["report", str(tmp_path / "study"), "--out", str(tmp_path / "again"), "--bootstrap", "0"]) == 0
    rebuilt = json.loads((tmp_path / "again" / "report.json").read_text())
    assert rebuilt["headline_forgetting"] == data["headline_forgetting"]

    # running the demo again resumes: nothing is retrained and the numbers are unchanged
    again = run_demo(reduced_spec(tmp_path / "inputs"), tmp_path / "study", workers=2, bootstrap=10,
                     progress=lines.append)
    assert json.loads((report_dir / "report.json").read_text())["claims"] == data["claims"]
    assert again.wall_s < summary.wall_s


def results_hashes(study_dir: Path) -> list[str]:
    from forgetlaw.study import ResultsStore

    store = ResultsStore.open_existing(study_dir)
    try:
        return [r["data_manifest_hash"] for r in store.runs(status="done")]
    finally:
        store.close()
