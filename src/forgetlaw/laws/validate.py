"""Held-out validation: which rows each fold trains on, and the error measure (MRE)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from forgetlaw.errors import UserError
from forgetlaw.laws.forms import Law

HOLDOUT_HELP = "largest-model | largest-tokens | kfold[:K]"


@dataclass(frozen=True)
class Holdout:
    kind: str  # "largest-model" | "largest-tokens" | "kfold"
    folds: int = 1


def parse_holdout(spec: str | Holdout | None) -> Holdout | None:
    if spec is None or isinstance(spec, Holdout):
        return spec
    kind, _, k = spec.partition(":")
    if kind in ("largest-model", "largest-tokens") and not k:
        return Holdout(kind)
    if kind == "kfold":
        try:
            folds = int(k) if k else 5
        except ValueError:
            folds = 0
        if folds < 2:
            raise UserError(f"--holdout {spec!r}: K must be an integer >= 2, e.g. kfold:5")
        return Holdout("kfold", folds)
    raise UserError(f"--holdout {spec!r} is not known; use {HOLDOUT_HELP}")


def train_masks(holdout: Holdout, part: pd.DataFrame, law: Law, seed: int = 0) -> list[np.ndarray]:
    """One boolean mask per fold: True = fit on this row, False = predict it."""
    n = len(part)
    if holdout.kind in ("largest-model", "largest-tokens"):
        column = law.model_column if holdout.kind == "largest-model" else law.data_column
        values = part[column].to_numpy()
        mask = values < values.max()
        return [mask]
    if holdout.folds > n:
        raise UserError(f"--holdout kfold:{holdout.folds} needs at least {holdout.folds} rows per group, "
                        f"a group has {n}; use fewer folds")
    order = np.random.default_rng(seed).permutation(n)
    masks = []
    for fold in range(holdout.folds):
        mask = np.ones(n, dtype=bool)
        mask[order[fold :: holdout.folds]] = False
        masks.append(mask)
    return masks


def mean_relative_error(predicted: np.ndarray, observed: np.ndarray) -> float:
    """MRE = mean |pred - obs| / obs."""
    return float(np.mean(np.abs(predicted - observed) / observed))
