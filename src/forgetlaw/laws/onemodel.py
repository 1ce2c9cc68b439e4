"""Does a one-model plan hold? Fit a study's largest model on its smaller-D runs, predict its largest-D
runs, and compare the recommended p with the p read from the measured runs (docs/laws.md, "One model").

"The p read from the measured runs", at the held-out D: the measured forgetting F(p) (mean over seeds
at each measured p), joined linearly between measured p values; the smallest p where that line
reaches the budget. p = 0 when F(0) is already within it; None when no measured p reaches it. Two
budgets: half the forgetting at p = 0 (each side's own F(0): the law's predicted one, the measured
one), and an absolute budget midway between the measured F at p = 0 and at the largest p (so the
measured p exists by construction).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from forgetlaw.errors import UserError
from forgetlaw.laws.fit import fit
from forgetlaw.laws.forms import get_law
from forgetlaw.laws.plan import plan_injection
from forgetlaw.laws.validate import DEFAULT_FORGETTING_FLOOR, forgetting_error


def measured_p(p: np.ndarray, forgetting: np.ndarray, budget: float) -> float | None:
    """Smallest p where the piecewise-linear measured F(p) reaches `budget` (module docstring)."""
    table = pd.DataFrame({"p": p, "f": forgetting}).groupby("p")["f"].mean().sort_index()
    ps, fs = table.index.to_numpy(dtype=float), table.to_numpy(dtype=float)
    if fs[0] <= budget:
        return float(ps[0])
    for i in range(1, len(ps)):
        if fs[i] <= budget:
            t = (fs[i - 1] - budget) / (fs[i - 1] - fs[i])
            return float(ps[i - 1] + t * (ps[i] - ps[i - 1]))
    return None


@dataclass
class BudgetCheck:
    kind: str  # "fraction" (of F at p = 0) or "absolute"
    value: float  # the fraction, or the budget in loss units
    budget_measured: float  # the budget in loss units on the measured side
    p_predicted: float | None
    p_measured: float | None
    p_error: float | None  # predicted - measured


@dataclass
class OneModelCheck:
    group: dict | None
    model_size: float
    train_unique_tokens: list[float]
    heldout_unique_tokens: float
    train_rows: int
    heldout_rows: int
    left_out: dict[str, int]  # rows not used: {"unimproved": k, "capped": k}
    params: dict[str, float]
    heldout_mre_forgetting: float | None
    heldout_forgetting_rows: int
    budgets: list[BudgetCheck]
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)


def usable_runs(results: pd.DataFrame, include_capped: bool = False) -> tuple[pd.DataFrame, dict[str, int]]:
    """Rows that measure forgetting: not those whose best step is step 0 (F = 0 by construction) and,
    unless `include_capped`, not those stopped by the epoch cap before their U-curve turned up."""
    keep = np.ones(len(results), dtype=bool)
    left = {"unimproved": 0, "capped": 0}
    if "best_step" in results:
        unimproved = (results["best_step"] == 0).to_numpy()
        left["unimproved"] = int(unimproved.sum())
        keep &= ~unimproved
    if "stop_reason" in results and not include_capped:
        capped = (results["stop_reason"] == "max_epochs").to_numpy() & keep
        left["capped"] = int(capped.sum())
        keep &= ~capped
    return results[keep].reset_index(drop=True), left


def validate_one_model(results: pd.DataFrame, law: str = "forgetting", by: str | None = "domain", *,
                       fraction: float = 0.5, include_capped: bool = False, bootstrap: int = 0,
                       forgetting_floor: float = DEFAULT_FORGETTING_FLOOR, seed: int = 0) -> list[OneModelCheck]:
    """Per group: the one-model fit's error on F at the largest D and its recommended p (module docstring)."""
    law = get_law(law)
    if law.role != "forgetting":
        raise UserError(f"law {law.name} is not a forgetting law; the one-model check plans injection")
    if by is not None and by not in results:
        raise UserError(f"--by column {by!r} is missing; columns are: {', '.join(map(str, results.columns))}")
    groups = [(None, results)] if by is None else [({by: k}, part) for k, part in results.groupby(by, sort=True)]
    return [_check_group(law, group, *usable_runs(part, include_capped), fraction, bootstrap, forgetting_floor, seed)
            for group, part in groups]


def _check_group(law, group, part, left, fraction, bootstrap, floor, seed) -> OneModelCheck:
    if part.empty:
        raise UserError(f"group {group}: no run measures forgetting (all unimproved or capped)")
    n = float(part["model_size"].max())
    rows = part[part["model_size"] == n]
    d_max = float(rows["unique_tokens"].max())
    train, held = rows[rows["unique_tokens"] < d_max], rows[rows["unique_tokens"] == d_max]
    if train.empty:
        raise UserError(f"group {group}: the largest model has runs at one D only ({d_max:g}); the one-model "
                        "check needs smaller-D runs to fit on")
    report = fit(train, law, bootstrap=bootstrap, forgetting_floor=floor, seed=seed)
    (f,) = report.fits
    cols = {c: held[c].to_numpy(dtype=float) for c in law.columns}
    pred = law.predict(f.params, cols)
    l0 = held["pretrain_loss_before"].to_numpy(dtype=float)
    error = forgetting_error(pred, held["pretrain_loss"].to_numpy(dtype=float), l0, floor)
    p, forgetting = held["injection"].to_numpy(dtype=float), held["pretrain_loss"].to_numpy(dtype=float) - l0
    f0 = float(pd.Series(forgetting)[p == p.min()].mean())
    f_last = float(pd.Series(forgetting)[p == p.max()].mean())
    absolute = (f0 + f_last) / 2
    half = plan_injection(report, n, d_max, forgetting_fraction=fraction)
    fixed = plan_injection(report, n, d_max, max_forgetting=absolute) if absolute > 0 else None
    budgets = [_budget("fraction", fraction, fraction * f0, half.injection, measured_p(p, forgetting, fraction * f0)),
               _budget("absolute", absolute, absolute, None if fixed is None else fixed.injection,
                       measured_p(p, forgetting, absolute))]
    return OneModelCheck(group, n, sorted(float(x) for x in train["unique_tokens"].unique()), d_max, len(train),
                         len(held), dict(left), dict(f.params), error.value, error.rows, budgets, list(f.warnings))


def _budget(kind: str, value: float, budget: float, predicted: float | None, measured: float | None) -> BudgetCheck:
    err = None if predicted is None or measured is None else predicted - measured
    return BudgetCheck(kind, float(value), float(budget), predicted, measured, err)
