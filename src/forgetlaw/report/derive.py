"""Quantities the report derives from the canonical results table.

Definitions (also stated in the report):
- forgetting F = pretrain_loss - pretrain_loss_before: the rise of the pretraining validation loss
  between the base model (L0) and the finetuning step with the best target validation loss.
- share of pretraining progress lost = F / (pretrain_loss_init - pretrain_loss_before), where
  pretrain_loss_init is the pretraining validation loss of the same architecture at initialisation
  (before any pretraining). 0 means nothing was forgotten, 1 means the model is back to its random init.
- seed noise: pooled standard deviation of a quantity across replicate runs, i.e. runs of the same
  cell (domain, model_size, unique_tokens, injection) that differ only in their finetuning seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from forgetlaw.errors import UserError

CELL = ["domain", "model_size", "unique_tokens", "injection"]
RESULT_COLUMNS = (
    "domain", "model_size", "unique_tokens", "injection", "seed",
    "pretrain_loss_before", "pretrain_loss_init", "pretrain_loss", "finetune_loss",
)
CURVE_COLUMNS = (
    "run_key", "step", "epoch", "train_loss", "finetune_val_loss", "pretrain_val_loss",
    "domain", "model_size", "unique_tokens", "injection", "seed",
)


def check_columns(table: pd.DataFrame, required: tuple[str, ...], name: str) -> None:
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise UserError(
            f"{name} table lacks column(s) {', '.join(missing)}; export it with "
            f"'forgetlaw results export' or rename your columns to the canonical names (docs/interfaces.md)"
        )


def prepare_results(results: pd.DataFrame) -> pd.DataFrame:
    """Validate the canonical table and add `forgetting` and `share_lost`."""
    check_columns(results, RESULT_COLUMNS, "results")
    if results.empty:
        raise UserError("results table is empty; run a study first ('forgetlaw sweep' or 'forgetlaw demo')")
    table = results.copy()
    loss_cols = ["pretrain_loss_before", "pretrain_loss_init", "pretrain_loss", "finetune_loss"]
    bad = table[loss_cols].isna().any(axis=1)
    table = table[~bad].reset_index(drop=True)
    if table.empty:
        raise UserError("results table has no row with all losses set; check the study for failed runs")
    table["injection"] = table["injection"].astype(float)
    table["forgetting"] = table["pretrain_loss"] - table["pretrain_loss_before"]
    progress = table["pretrain_loss_init"] - table["pretrain_loss_before"]
    # A base model that never improved on its init has no progress to lose; leave the share undefined.
    table["share_lost"] = np.where(progress > 0, table["forgetting"] / progress.where(progress > 0), np.nan)
    return table


def split_unimproved(results: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Runs whose best target step is step 0 (finetuning never beat the base model on the target)
    apart from the rest. Their forgetting is 0 by construction, not a measurement, so the report leaves
    them out of claims and fits and lists them instead."""
    if "best_step" not in results.columns:
        return results, results.iloc[:0]
    unimproved = (results["best_step"] == 0).to_numpy()
    return results[~unimproved].reset_index(drop=True), results[unimproved].reset_index(drop=True)


def cell_means(table: pd.DataFrame) -> pd.DataFrame:
    """One row per cell: mean over seeds of forgetting, share lost and both losses, and the seed count."""
    grouped = table.groupby(CELL, as_index=False)
    means = grouped.agg(
        forgetting=("forgetting", "mean"),
        share_lost=("share_lost", "mean"),
        finetune_loss=("finetune_loss", "mean"),
        pretrain_loss=("pretrain_loss", "mean"),
        pretrain_loss_before=("pretrain_loss_before", "mean"),
        forgetting_sd=("forgetting", "std"),
        n_seeds=("seed", "nunique"),
    )
    return means.sort_values(CELL).reset_index(drop=True)


@dataclass(frozen=True)
class SeedNoise:
    """Pooled seed-to-seed standard deviation of one run's numbers (NaN when there are no replicates)."""

    forgetting_sd: float
    finetune_sd: float
    replicate_cells: int
    replicate_runs: int

    @property
    def measured(self) -> bool:
        return self.replicate_cells > 0 and np.isfinite(self.forgetting_sd)


def _pooled_sd(table: pd.DataFrame, column: str) -> float:
    grouped = table.groupby(CELL)[column]
    n = grouped.count()
    var = grouped.var(ddof=1)
    keep = n > 1
    dof = (n[keep] - 1).sum()
    if dof == 0:
        return float("nan")
    return float(np.sqrt(((n[keep] - 1) * var[keep]).sum() / dof))


def seed_noise(table: pd.DataFrame) -> SeedNoise:
    counts = table.groupby(CELL)["seed"].nunique()
    replicated = counts[counts > 1]
    return SeedNoise(
        forgetting_sd=_pooled_sd(table, "forgetting"),
        finetune_sd=_pooled_sd(table, "finetune_loss"),
        replicate_cells=int(len(replicated)),
        replicate_runs=int(replicated.sum()),
    )


def nearest_injection(values, wanted: float, rel_tol: float = 1e-6) -> float | None:
    """The grid value equal to `wanted` (within float tolerance), or None if the grid lacks it."""
    for value in sorted(set(float(v) for v in values)):
        if abs(value - wanted) <= rel_tol * max(1.0, abs(wanted)):
            return value
    return None


def format_p(p: float) -> str:
    """Injection fraction as a percentage label: 0.01 -> '1%', 0.001 -> '0.1%'."""
    return f"{100 * p:.3g}%"
