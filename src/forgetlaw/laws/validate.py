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


# Rows whose measured forgetting |F| is at most this (in loss units, nats) are left out of the error
# on F: there |F| is within measurement noise of 0 and |F_hat - F| / |F| measures the noise, not the
# law (the `cpu` demo: seed-to-seed sigma(F) = 0.007 nats; one run with F = -0.004 had a relative
# error of 54x). docs/laws.md gives the reason for the value.
DEFAULT_FORGETTING_FLOOR = 0.01


@dataclass(frozen=True)
class ForgettingError:
    """Mean |F_hat - F| / |F| over the rows with |F| > floor, F = L_pt - L0, and how many rows it used."""

    value: float | None  # None when no row is above the floor
    rows: int
    left_out: int

    def to_json(self) -> dict:
        return {"value": self.value, "rows": self.rows, "left_out": self.left_out}


def forgetting_error(predicted: np.ndarray, observed: np.ndarray, l0: np.ndarray,
                     floor: float = DEFAULT_FORGETTING_FLOOR) -> ForgettingError:
    """The error on the forgetting F = L_pt - L0 itself; `predicted`/`observed` are L_pt."""
    f_hat = np.asarray(predicted, dtype=float) - l0
    f = np.asarray(observed, dtype=float) - l0
    keep = np.abs(f) > floor
    value = float(np.mean(np.abs(f_hat[keep] - f[keep]) / np.abs(f[keep]))) if keep.any() else None
    return ForgettingError(value, int(keep.sum()), int((~keep).sum()))
