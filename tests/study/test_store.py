"""The SQLite store: WAL, idempotent planning, all-or-nothing results, resume bookkeeping."""

from __future__ import annotations

import math
import sqlite3

import pytest

from forgetlaw.study.store import ResultsStore


def _run(key: str, kind: str = "finetune") -> dict:
    return {"key": key, "kind": kind, "config": {"k": key}, "seed": 0, "domain": "code",
            "model_name": "t16", "unique_tokens": 1024, "injection": 0.05}


def test_wal_and_idempotent_add(tmp_path):
    store = ResultsStore(tmp_path / "r.sqlite")
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.add_runs([_run("a"), _run("b")]) == 2
    store.mark_running(["a"], "v1")
    assert store.add_runs([_run("a"), _run("b"), _run("c")]) == 1  # a keeps its status
    assert store.get_run("a")["status"] == "running" and store.get_run("c")["status"] == "pending"
    assert store.counts()["finetune"] == {"pending": 2, "running": 1, "done": 0, "failed": 0}


def test_result_commits_all_or_nothing(tmp_path):
    store = ResultsStore(tmp_path / "r.sqlite")
    store.add_runs([_run("a")])
    store.mark_running(["a"], "v1")
    curve = [{"step": 0, "finetune_val_loss": 3.0, "pretrain_val_loss": 2.0},
             {"step": 8, "finetune_val_loss": object()}]  # SQLite cannot store this: the insert fails
    with pytest.raises(sqlite3.Error):
        store.record_done("a", {"finetune_loss": 3.0}, curve)
    assert store.get_run("a")["status"] == "running"
    assert store.conn.execute("SELECT COUNT(*) FROM curves").fetchone()[0] == 0
    assert store.summary("a") is None
    good = [{"step": 0, "finetune_val_loss": 3.0, "pretrain_val_loss": math.nan},
            {"step": 8, "finetune_val_loss": 2.5, "pretrain_val_loss": 2.1}]
    store.record_done("a", {"finetune_loss": 2.5, "best_step": 8, "pretrain_loss": math.nan}, good, wall_s=1.5)
    assert store.get_run("a")["status"] == "done"
    assert [p["step"] for p in store.curve("a")] == [0, 8]
    assert store.curve("a")[0]["pretrain_val_loss"] is None  # NaN (not evaluated) is stored as NULL
    assert store.summary("a")["best_step"] == 8
    with pytest.raises(RuntimeError, match="already done"):
        store.record_done("a", {"finetune_loss": 1.0}, good)
    # a second connection (another process) sees the committed result
    other = ResultsStore(tmp_path / "r.sqlite")
    assert other.summary("a")["finetune_loss"] == 2.5


def test_interrupted_and_failed_runs_go_back_to_pending(tmp_path):
    store = ResultsStore(tmp_path / "r.sqlite")
    store.add_runs([_run("a"), _run("b"), _run("c")])
    store.mark_running(["a", "b", "c"], "v1")
    store.record_done("a", {"finetune_loss": 1.0})
    store.record_failed("b", "TrainingDiverged: loss is nan")
    assert store.reset_interrupted() == 1  # c was running when the sweep died
    assert store.get_run("c")["status"] == "pending"
    store.record_failed("a", "late failure")  # a done run is never overwritten
    assert store.get_run("a")["status"] == "done"
    assert store.get_run("b")["error"].startswith("TrainingDiverged")
    assert store.reset_failed() == 1
    store.mark_running(["b"], "v1")
    assert store.get_run("b")["attempts"] == 2 and store.get_run("b")["error"] is None


def test_an_infinite_summary_value_is_recorded_not_a_crash(tmp_path):
    store = ResultsStore(tmp_path / "r.sqlite")
    store.add_runs([_run("a")])
    store.mark_running(["a"], "v1")
    store.record_done("a", {"finetune_loss": math.inf, "pretrain_loss": 3.0}, [])
    assert store.get_run("a")["status"] == "done"
    assert store.summary("a")["pretrain_loss"] == 3.0
