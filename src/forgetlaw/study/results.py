"""The canonical results table and the curves, read from a study's store (docs/interfaces.md).

Only finished finetuning runs of the study's current plan are in the table; failed runs are left out
with a warning (their errors are in the store: `forgetlaw results status DIR`).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pandas as pd

from forgetlaw.errors import UserError
from forgetlaw.study.store import CURVE_COLUMNS, ResultsStore

RESULT_COLUMNS = (
    "domain", "model_size", "model_size_total", "model_name", "unique_tokens", "injection", "seed",
    "tokens", "pretrain_loss_before", "pretrain_loss_init", "finetune_loss_before", "pretrain_loss",
    "finetune_loss", "loss", "best_step", "best_epoch", "stop_reason", "run_key",
)
CURVE_LABELS = ("domain", "model_name", "model_size", "unique_tokens", "injection", "seed")
_SORT = ["domain", "model_size", "unique_tokens", "injection", "seed", "run_key"]


def _finetune_rows(store: ResultsStore, all_runs: bool) -> tuple[list[dict], int]:
    plan = None if all_runs else store.get_meta("plan")
    rows = store.conn.execute(
        "SELECT r.key, r.status, r.model_name, r.domain, r.unique_tokens, r.injection, r.seed, r.base_key, "
        "s.extra AS summary, b.extra AS base_summary FROM runs r "
        "LEFT JOIN summaries s ON s.run_key = r.key LEFT JOIN summaries b ON b.run_key = r.base_key "
        "WHERE r.kind = 'finetune'"
    ).fetchall()
    if plan is not None:
        keep = set(plan)
        rows = [r for r in rows if r["key"] in keep]
    failed = sum(r["status"] == "failed" for r in rows)
    return [dict(r) for r in rows if r["status"] == "done"], failed


def load_results(study_dir: str | Path, all_runs: bool = False) -> pd.DataFrame:
    """The canonical results table of a study (one row per finished finetuning run), sorted by
    domain, N, D, p, seed. `all_runs` also keeps runs of earlier versions of the spec."""
    store = ResultsStore.open_existing(study_dir)
    try:
        rows, failed = _finetune_rows(store, all_runs)
    finally:
        store.close()
    if failed:
        warnings.warn(f"{failed} failed run(s) left out of the results of {study_dir}; see "
                      "'forgetlaw results status' and rerun the sweep with --retry-failed", stacklevel=2)
    records = []
    for row in rows:
        summary = json.loads(row["summary"])
        base = json.loads(row["base_summary"]) if row["base_summary"] else {}
        records.append({
            "domain": row["domain"],
            "model_size": base.get("model_size"),
            "model_size_total": base.get("model_size_total"),
            "model_name": row["model_name"],
            "unique_tokens": row["unique_tokens"],
            "injection": row["injection"],
            "seed": row["seed"],
            "tokens": summary.get("best_tokens"),
            # L0 as the finetuning run measured it, on the same windows as its pretrain_loss.
            "pretrain_loss_before": summary.get("pretrain_loss_before", base.get("pretrain_loss_before")),
            "pretrain_loss_init": base.get("pretrain_loss_init"),
            "finetune_loss_before": summary.get("finetune_loss_before"),
            "pretrain_loss": summary.get("pretrain_loss"),
            "finetune_loss": summary.get("finetune_loss"),
            "loss": summary.get("finetune_loss"),
            "best_step": summary.get("best_step"),
            "best_epoch": summary.get("best_epoch"),
            "stop_reason": summary.get("stop_reason"),
            "run_key": row["key"],
        })
    frame = pd.DataFrame.from_records(records, columns=list(RESULT_COLUMNS))
    frame = frame.astype({"model_size": "Int64", "model_size_total": "Int64", "unique_tokens": "int64",
                          "seed": "int64", "tokens": "Int64", "best_step": "Int64", "injection": "float64"})
    for col in ("pretrain_loss_before", "pretrain_loss_init", "finetune_loss_before", "pretrain_loss",
                "finetune_loss", "loss", "best_epoch"):
        frame[col] = frame[col].astype("float64")
    return frame.sort_values(_SORT, kind="stable").reset_index(drop=True)


def load_curves(study_dir: str | Path, all_runs: bool = False) -> pd.DataFrame:
    """Every evaluation of every finished finetuning run: run_key, the curve keys and the run's cell."""
    with warnings.catch_warnings():  # load_results already warned about failed runs, if asked
        warnings.simplefilter("ignore")
        results = load_results(study_dir, all_runs=all_runs)
    store = ResultsStore.open_existing(study_dir)
    try:
        curves = pd.read_sql_query(
            f"SELECT run_key, idx, {', '.join(CURVE_COLUMNS)} FROM curves ORDER BY run_key, idx", store.conn)
    finally:
        store.close()
    labels = results[["run_key", *CURVE_LABELS]]
    merged = labels.merge(curves, on="run_key", how="inner")
    merged = merged.sort_values(["domain", "model_size", "unique_tokens", "injection", "seed", "run_key", "idx"],
                                kind="stable").drop(columns="idx").reset_index(drop=True)
    return merged[["run_key", *CURVE_COLUMNS, *CURVE_LABELS]]


def export_results(study_dir: str | Path, csv: str | Path | None = None, parquet: str | Path | None = None) -> pd.DataFrame:
    """Write the canonical table as CSV and/or Parquet."""
    if csv is None and parquet is None:
        raise UserError("results export: give --csv FILE or --parquet FILE")
    frame = load_results(study_dir)
    if frame.empty:
        raise UserError(f"{study_dir}: no finished finetuning runs to export yet; run 'forgetlaw sweep' first")
    if csv is not None:
        Path(csv).parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(csv, index=False)
    if parquet is not None:
        Path(parquet).parent.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(parquet, index=False)
    return frame
