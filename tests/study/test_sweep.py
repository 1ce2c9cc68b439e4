"""Sweeps with real (tiny) training: every run recorded once, failures isolated, resume after kill -9."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pandas as pd
import pytest
from study_helpers import tiny_spec_dict, write_spec

from forgetlaw.cli import main
from forgetlaw.study import (
    RESULT_COLUMNS,
    ResultsStore,
    load_curves,
    load_results,
    run_study,
    spec_from_dict,
)


def _spec(**changes):
    return spec_from_dict({**tiny_spec_dict(data={"vocab_size": 256}), **changes})


def test_two_workers_record_every_run_once(tmp_path, tiny_arrays):
    out = tmp_path / "study"
    outcome = run_study(_spec(), out, workers=2, data=tiny_arrays, progress=False)
    assert (outcome.total, outcome.done, outcome.failed) == (5, 5, 0)
    store = ResultsStore.open_existing(out)
    runs = store.runs()
    assert all(r["status"] == "done" and r["attempts"] == 1 for r in runs)
    assert all(r["code_version"] and r["data_manifest_hash"] for r in runs)
    n_curve = store.conn.execute("SELECT COUNT(*) FROM curves").fetchone()[0]
    n_summary = store.conn.execute("SELECT COUNT(*) FROM summaries").fetchone()[0]
    base = store.runs(kind="pretrain")[0]
    assert (out / base["result"]["checkpoint"]).is_file()
    finished = {r["key"]: r["finished_at"] for r in runs}
    store.close()
    table = load_results(out)
    assert list(table.columns) == list(RESULT_COLUMNS) and len(table) == 4
    assert table["model_size"].eq(3312).all()  # 1 * (12 * 16^2 + 13 * 16) + 2 * 16
    assert (table["pretrain_loss_before"] < table["pretrain_loss_init"]).all()
    assert (table["finetune_loss"] <= table["finetune_loss_before"]).all()
    curves = load_curves(out)
    assert len(curves) == n_curve and n_summary == 5 and set(curves["run_key"]) == set(table["run_key"])
    # Running it again redoes nothing.
    again = run_study(_spec(), out, workers=2, data=tiny_arrays, progress=False)
    assert again.done == 5
    store = ResultsStore.open_existing(out)
    assert {r["key"]: r["finished_at"] for r in store.runs()} == finished
    assert all(r["attempts"] == 1 for r in store.runs())
    store.close()


def test_divergence_is_recorded_skipped_and_retried(tmp_path, tiny_arrays):
    spec = _spec(unique_tokens=[1024], overrides=[{"injection": [0.2], "finetune": {"lr": 1.0e4, "warmup_steps": 0}}])
    out = tmp_path / "study"
    outcome = run_study(spec, out, workers=1, threads=1, data=tiny_arrays, progress=False)
    assert (outcome.done, outcome.failed) == (2, 1)
    store = ResultsStore.open_existing(out)
    (failed,) = store.runs(status="failed")
    assert failed["injection"] == 0.2 and "TrainingDiverged" in failed["error"]
    store.close()
    with pytest.warns(UserWarning, match="1 failed run"):
        table = load_results(out)
    assert list(table["injection"]) == [0.0]
    # Without --retry-failed a rerun leaves it failed; with it, it runs again (and diverges again).
    assert run_study(spec, out, workers=1, threads=1, data=tiny_arrays, progress=False).failed == 1
    assert ResultsStore.open_existing(out).get_run(failed["key"])["attempts"] == 1
    run_study(spec, out, workers=1, threads=1, data=tiny_arrays, progress=False, retry_failed=True)
    assert ResultsStore.open_existing(out).get_run(failed["key"])["attempts"] == 2


def test_export_round_trips(tmp_path, tiny_arrays, capsys):
    out = tmp_path / "study"
    run_study(_spec(), out, workers=1, threads=1, data=tiny_arrays, progress=False)
    csv, parquet = tmp_path / "r.csv", tmp_path / "r.parquet"
    assert main(["results", "export", str(out), "--csv", str(csv), "--parquet", str(parquet)]) == 0
    table = load_results(out)
    from_csv = pd.read_csv(csv)
    assert list(from_csv.columns) == list(RESULT_COLUMNS)
    pd.testing.assert_frame_equal(from_csv, table, check_dtype=False)
    pd.testing.assert_frame_equal(pd.read_parquet(parquet), table)
    assert main(["results", "status", str(out)]) == 0
    assert "finetune  pending 0  running 0  done 4  failed 0" in capsys.readouterr().out
    # `forgetlaw fit` reads the export as it is (4 rows, the 4 parameters of the finetuning law).
    assert main(["fit", str(csv), "--law", "finetuning", "--json"]) == 0
    assert '"n": 4' in capsys.readouterr().out
    assert main(["results", "export", str(tmp_path / "nothing"), "--csv", str(csv)]) == 2


def _finished_runs(db: Path) -> dict[str, float]:
    if not db.exists():
        return {}
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return dict(conn.execute("SELECT key, finished_at FROM runs WHERE status='done' AND kind='finetune'"))
    except sqlite3.OperationalError:  # tables not created yet
        return {}
    finally:
        conn.close()


@pytest.mark.slow  # about 35 s on an idle 2-core machine; 100 s with the machine shared
def test_resume_after_kill_9_equals_an_uninterrupted_study(tmp_path, tiny_files):
    spec = write_spec(tmp_path / "spec.yaml", tiny_spec_dict(
        tiny_files, unique_tokens=[1024, 2048], injection=[0.0, 0.1, 0.2], seeds=[0, 1]))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    def sweep(out: Path, **kwargs) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "forgetlaw", "sweep", str(spec), "--out", str(out),
                                 "--workers", "2"], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True, **kwargs)

    def export(out: Path) -> str:
        csv = out / "export.csv"
        assert main(["results", "export", str(out), "--csv", str(csv)]) == 0
        return csv.read_text()

    # The reference: one uninterrupted study.
    reference = tmp_path / "reference"
    started = time.monotonic()
    proc = sweep(reference)
    assert proc.wait(timeout=240) == 0, proc.stderr.read()
    uninterrupted_s = time.monotonic() - started

    # The same study, killed with SIGKILL once a few finetuning runs are recorded.
    resumed = tmp_path / "resumed"
    proc = sweep(resumed)
    deadline = time.monotonic() + 240
    while len(_finished_runs(resumed / "results.sqlite")) < 3 and proc.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    before = _finished_runs(resumed / "results.sqlite")
    assert 3 <= len(before) < 12, "the kill came too late to test anything"
    time.sleep(0.5)  # the orphaned workers die with their parent (PR_SET_PDEATHSIG)

    started = time.monotonic()
    proc = sweep(resumed)
    assert proc.wait(timeout=240) == 0, proc.stderr.read()
    resume_s = time.monotonic() - started
    after = _finished_runs(resumed / "results.sqlite")
    assert len(after) == 12
    assert all(after[key] == when for key, when in before.items())  # nothing done twice
    store = ResultsStore.open_existing(resumed)
    assert all(r["status"] == "done" for r in store.runs())
    assert store.conn.execute("SELECT COUNT(DISTINCT run_key) FROM summaries").fetchone()[0] == 13
    store.close()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no failed runs either
        assert export(resumed) == export(reference)
    print(f"uninterrupted {uninterrupted_s:.1f}s; killed after {len(before)}/12 finetuning runs; "
          f"resume {resume_s:.1f}s")


def test_vectorized_groups_record_every_run(tmp_path, tiny_arrays):
    spec = _spec(unique_tokens=[1024], execution={"device": "cpu", "vectorize": True, "progress_every_s": 60})
    out = tmp_path / "vectorized"
    assert run_study(spec, out, workers=1, threads=1, data=tiny_arrays, progress=False).done == 3
    store = ResultsStore.open_existing(out)
    finetunes = store.runs(kind="finetune")
    assert [r["result"]["vectorized"] for r in finetunes] == [2, 2]  # both p values in one group
    store.close()
    serial = tmp_path / "serial"
    run_study(_spec(unique_tokens=[1024]), serial, workers=1, threads=1, data=tiny_arrays, progress=False)
    columns = ["injection", "finetune_loss", "pretrain_loss", "best_step"]
    pd.testing.assert_frame_equal(load_results(out)[columns], load_results(serial)[columns], rtol=1e-3)
