"""Robust fitting: Huber on log-loss residuals, grid of starts, bootstrap, holdouts, per group.

Recipe (docs/laws.md has the why):
1. objective(theta) = sum_i w_i * huber_delta(log pred_i(theta) - log obs_i), summed, not averaged;
2. stage one solves every (group, training set, start) triple in one batched L-BFGS call, where the
   training sets are the full group and each holdout fold; each keeps its best start;
3. stage two solves every (group, bootstrap resample) pair in one more batched call, each started
   at its group's best full-data fit. A resample is a vector of multinomial counts used as weights,
   so all problems share one data layout.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from forgetlaw.console import progress_bar
from forgetlaw.errors import UserError
from forgetlaw.laws.diagnostics import at_bound, fit_warnings, value_ranges
from forgetlaw.laws.forms import Law, get_law
from forgetlaw.laws.optim import lbfgs_batched
from forgetlaw.laws.table import check_table, split_groups
from forgetlaw.laws.validate import (
    DEFAULT_FORGETTING_FLOOR,
    Holdout,
    forgetting_error,
    mean_relative_error,
    parse_holdout,
    train_masks,
)
from forgetlaw.provenance import provenance


@dataclass
class HoldoutFold:
    """One holdout fold's fit: its parameters and the rows (positions in the group) it predicts."""

    params: dict[str, float]
    held_out: list[int]

    def to_json(self) -> dict:
        return {"params": self.params, "held_out": self.held_out}


@dataclass
class GroupFit:
    group: dict | None
    params: dict[str, float]
    ci: dict[str, list[float]] | None
    mre: float
    holdout_mre: float | None
    n: int
    diagnostics: dict[str, Any]
    bootstrap_params: np.ndarray | None = None  # [B, P] public values, for CIs of derived numbers
    pretrain_loss_before: dict[float, float] | None = None  # model_size -> L0 (forgetting laws)
    # The error on the forgetting F = L_pt - L0 (forgetting laws; None otherwise or when no row
    # has |F| above the floor); diagnostics["forgetting_error"] says how many rows each one used.
    mre_forgetting: float | None = None
    holdout_mre_forgetting: float | None = None
    warnings: list[str] = field(default_factory=list)
    ranges: dict[str, list[float]] | None = None  # column -> [min, max] in the fitted rows
    # One row per run: the law's columns, observed / predicted target (in-sample and held out), and
    # for forgetting laws the same for F. `row` is the run's position in the fitted table.
    points: pd.DataFrame | None = field(default=None, repr=False)
    holdout_folds: list[HoldoutFold] = field(default_factory=list)

    def to_json(self, points: bool = False) -> dict:
        out = {"group": self.group, "params": self.params, "ci": self.ci, "mre": self.mre,
               "holdout_mre": self.holdout_mre, "mre_forgetting": self.mre_forgetting,
               "holdout_mre_forgetting": self.holdout_mre_forgetting,
               "forgetting_error": self.diagnostics.get("forgetting_error"), "n": self.n,
               "ranges": self.ranges, "warnings": self.warnings}
        if points:
            out["points"] = points_json(self.points)
        return out


def points_json(points: pd.DataFrame | None) -> dict[str, list] | None:
    """Column -> list, NaN as None (JSON has no NaN)."""
    if points is None:
        return None
    return {c: [None if isinstance(v, float) and not np.isfinite(v) else v for v in points[c].tolist()]
            for c in points.columns}


@dataclass
class FitReport:
    law: Law
    fits: list[GroupFit]
    settings: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)

    def to_json(self, points: bool = False) -> dict:
        """Exactly the `forgetlaw fit --json` object (`--points` adds each group's points)."""
        return {"law": self.law.name, "settings": self.settings,
                "fits": [f.to_json(points=points) for f in self.fits]}

    def find(self, domain: str | None) -> GroupFit:
        """The fit for one domain (or the only fit when the law was not fitted per group)."""
        if domain is None:
            if len(self.fits) == 1:
                return self.fits[0]
            names = ", ".join(str(_group_label(f.group)) for f in self.fits)
            raise UserError(f"the {self.law.name} fit has one fit per group ({names}); pick one with --domain")
        for f in self.fits:
            if f.group and str(f.group.get("domain")) == str(domain):
                return f
        if all(f.group is None for f in self.fits):
            raise UserError(f"--domain {domain!r}: the {self.law.name} fit was not made per domain; "
                            "drop --domain or refit with --by domain")
        names = ", ".join(str(_group_label(f.group)) for f in self.fits)
        raise UserError(f"--domain {domain!r} has no {self.law.name} fit; fitted groups: {names}")


def _group_label(group: dict | None) -> str:
    if not group:
        return "all"
    return ",".join(f"{v}" if k == "domain" else f"{k}={v}" for k, v in group.items())


def huber(r: np.ndarray, delta: float) -> np.ndarray:
    a = np.abs(r)
    return np.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))


class BatchedHuberObjective:
    """Summed, weighted Huber loss of log residuals for many (data, weights, theta) problems."""

    def __init__(self, law: Law, features: dict[str, np.ndarray], log_obs: np.ndarray,
                 weights: np.ndarray, group_of: np.ndarray, weights_of: np.ndarray, delta: float):
        self.law, self.features, self.log_obs = law, features, log_obs  # [G, n] each
        self.weights, self.group_of, self.weights_of, self.delta = weights, group_of, weights_of, delta
        self.single_group = log_obs.shape[0] == 1

    # Elements per block: the ~20 temporaries of one block stay in cache, which makes a large
    # batch about 2-3x faster than one pass over [K, n] arrays that spill to main memory.
    block_elements = 32768

    def __call__(self, theta: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows = max(1, self.block_elements // self.log_obs.shape[1])
        if len(idx) <= rows:
            return self._evaluate(theta, idx)
        parts = [self._evaluate(theta[i : i + rows], idx[i : i + rows]) for i in range(0, len(idx), rows)]
        return np.concatenate([v for v, _ in parts]), np.concatenate([g for _, g in parts])

    def _evaluate(self, theta: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.single_group:  # broadcast [1, n] instead of copying the data K times
            feats, log_obs = self.features, self.log_obs
        else:
            rows = self.group_of[idx]
            feats = {k: v[rows] for k, v in self.features.items()}
            log_obs = self.log_obs[rows]
        w = self.weights[self.weights_of[idx]]
        log_pred, dlog = self.law.log_predict(theta, feats)
        r = log_pred - log_obs
        value = np.einsum("kn,kn->k", w, huber(r, self.delta))
        psi = w * np.clip(r, -self.delta, self.delta)
        grad = np.stack([np.einsum("kn,kn->k", psi, np.broadcast_to(d, psi.shape)) for d in dlog], axis=1)
        bad = ~np.isfinite(value)
        if bad.any():
            value[bad] = np.inf
            grad[bad] = 0.0
        return value, grad


@dataclass
class GroupData:
    """Groups padded to one width: features [G, n_max], log_obs [G, n_max], valid [G, n_max]."""

    features: dict[str, np.ndarray]
    log_obs: np.ndarray
    valid: np.ndarray
    sizes: list[int]


def pad_groups(law: Law, parts: list[pd.DataFrame]) -> GroupData:
    sizes = [len(p) for p in parts]
    width = max(sizes)
    feats_rows, obs_rows, valid = [], [], np.zeros((len(parts), width), dtype=bool)
    for g, part in enumerate(parts):
        cols = {c: part[c].to_numpy(dtype=float) for c in law.columns}
        f = law.features(cols)
        pad = width - len(part)
        # Padding repeats the first row (finite values) and gets weight 0.
        feats_rows.append({k: np.concatenate([v, np.repeat(v[:1], pad)]) for k, v in f.items()})
        y = np.log(part[law.target].to_numpy(dtype=float))
        obs_rows.append(np.concatenate([y, np.repeat(y[:1], pad)]))
        valid[g, : len(part)] = True
    features = {k: np.stack([r[k] for r in feats_rows]) for k in feats_rows[0]}
    return GroupData(features, np.stack(obs_rows), valid, sizes)


def _solve(law: Law, data: GroupData, weights: np.ndarray, group_of: np.ndarray, weights_of: np.ndarray,
           starts: np.ndarray, delta: float, max_iter: int, prune_factor: float | None = None,
           initial_memory=None, on_done=None):
    objective = BatchedHuberObjective(law, data.features, data.log_obs, weights, group_of, weights_of, delta)
    hopeless = None
    if prune_factor is not None:
        last: dict[str, object] = {}

        def hopeless(f: np.ndarray, active: np.ndarray, iteration: int) -> np.ndarray:
            # The objective only falls and only the best start is kept, so a start may stop when
            # (a) it is still `prune_factor` times worse than its siblings' best (a start crawling
            # across a plateau where the law's term is negligible), or (b) at its rate of decrease
            # since the last check it could not reach that best before max_iter.
            best = np.full(weights.shape[0], np.inf)
            np.minimum.at(best, weights_of, f)
            target = best[weights_of]
            give_up = f > prune_factor * target + 1e-12
            if "f" in last:
                rate = (last["f"] - f) / max(iteration - last["iteration"], 1)
                behind = f - target
                with np.errstate(divide="ignore", invalid="ignore"):
                    too_slow = (behind > 1e-9 + 1e-6 * target) & (behind > rate * (max_iter - iteration))
                give_up |= too_slow
            last.update(f=f.copy(), iteration=iteration)
            return active & give_up
    return lbfgs_batched(objective, starts, law.lower, law.upper, max_iter=max_iter, hopeless=hopeless,
                         initial_memory=initial_memory, on_done=on_done)


def _predict_rows(law: Law, theta: np.ndarray, data: GroupData, group: int) -> np.ndarray:
    feats = {k: v[group : group + 1] for k, v in data.features.items()}
    log_pred, _ = law.log_predict(theta.reshape(1, -1), feats)
    return np.exp(log_pred[0])


def bootstrap_counts(sizes: Sequence[int], bootstrap: int, rng: np.random.Generator) -> np.ndarray:
    """[G * bootstrap, max(sizes)] multinomial counts: how often each row is drawn in a resample."""
    counts = np.zeros((len(sizes) * bootstrap, max(sizes)))
    for g, n in enumerate(sizes):
        counts[g * bootstrap : (g + 1) * bootstrap, :n] = rng.multinomial(n, np.full(n, 1.0 / n), size=bootstrap)
    return counts


@dataclass
class Problems:
    """Stage one's training sets: the full data and each holdout fold of every group, as weights."""

    weights: np.ndarray  # [sets, width]
    set_group: list[int]  # group of each set
    full_set: list[int]  # the full-data set of each group
    fold_masks: list[list[np.ndarray]]  # per group, per fold: True = trained on


@dataclass
class StartFits:
    """Stage one's result: every set's best start (internal parameters) and its objective."""

    theta: np.ndarray  # [sets, P]
    objective: np.ndarray  # [sets, starts]
    best_start: np.ndarray  # [sets]
    converged: np.ndarray  # [sets, starts]
    memory: tuple  # L-BFGS memories of every (set, start) problem
    n_starts: int


def _check_options(bootstrap: int, ci_level: float, huber_delta: float, forgetting_floor: float) -> None:
    if bootstrap < 0:
        raise UserError(f"--bootstrap {bootstrap}: the number of resamples must be >= 0")
    if not 0 < ci_level < 1:
        raise UserError(f"ci_level {ci_level} must be in (0, 1), e.g. 0.95")
    if not huber_delta > 0:  # also rejects NaN
        raise UserError(f"huber_delta {huber_delta} must be > 0, e.g. 1e-3")
    if not forgetting_floor >= 0:
        raise UserError(f"--forgetting-floor {forgetting_floor} must be >= 0 (loss units), e.g. 0.01")


def _start_grid(law: Law, starts: np.ndarray | None) -> np.ndarray:
    grid = law.start_grid() if starts is None else np.atleast_2d(np.asarray(starts, dtype=float))
    if grid.shape[1] != len(law.params):
        raise UserError(f"starts have {grid.shape[1]} columns; law {law.name} has {len(law.params)} parameters")
    return grid


def _problems(law: Law, groups: list, data: GroupData, holdout: Holdout | None, seed: int) -> Problems:
    n_par, width = len(law.params), data.log_obs.shape[1]
    for group, part in groups:
        if len(part) < n_par:
            raise UserError(f"group {_group_label(group)} has {len(part)} row(s) but law {law.name} has "
                            f"{n_par} parameters; add runs or fit without --by")
    weight_sets, set_group, full_set, fold_masks = [], [], [], []
    for g, (group, part) in enumerate(groups):
        full_set.append(len(weight_sets))
        weight_sets.append(data.valid[g].astype(float))
        set_group.append(g)
        masks = train_masks(holdout, part, law, seed) if holdout else []
        fold_masks.append(masks)
        for mask in masks:
            if not mask.any() and holdout.kind != "kfold":
                column = law.model_column if holdout.kind == "largest-model" else law.data_column
                raise UserError(f"--holdout {holdout.kind}: group {_group_label(group)} has one {column}, so "
                                "nothing is left to fit on; use --holdout kfold:K (or largest-tokens for one model)")
            if mask.sum() < n_par:
                raise UserError(f"--holdout {holdout.kind}: group {_group_label(group)} keeps {int(mask.sum())} "
                                f"training row(s) for {n_par} parameters; add runs or use another holdout")
            w = np.zeros(width)
            w[: len(part)] = mask
            weight_sets.append(w)
            set_group.append(g)
    return Problems(np.stack(weight_sets), set_group, full_set, fold_masks)


def _fit_starts(law: Law, data: GroupData, problems: Problems, grid: np.ndarray, delta: float, max_iter: int,
                prune_factor: float | None) -> StartFits:
    """Stage one: every group's full data and holdout folds, times every start, in one batch."""
    n_sets, n_starts, n_par = len(problems.set_group), grid.shape[0], len(law.params)
    weights_of = np.repeat(np.arange(n_sets), n_starts)
    group_of = np.asarray(problems.set_group)[weights_of]
    result = _solve(law, data, problems.weights, group_of, weights_of, np.tile(grid, (n_sets, 1)), delta,
                    max_iter, prune_factor)
    fun = np.where(np.isfinite(result.fun), result.fun, np.inf).reshape(n_sets, n_starts)
    if not np.isfinite(fun.min(axis=1)).all():
        raise UserError(f"law {law.name}: no start gave a finite loss; check the table's values")
    best_start = np.argmin(fun, axis=1)
    theta = result.x.reshape(n_sets, n_starts, n_par)[np.arange(n_sets), best_start]
    return StartFits(theta, fun, best_start, result.converged.reshape(n_sets, n_starts), result.memory, n_starts)


def _fit_bootstrap(law: Law, data: GroupData, problems: Problems, starts: StartFits, bootstrap: int,
                   rng: np.random.Generator, delta: float, max_iter: int, progress: bool):
    """Stage two: bootstrap resamples of every group, in one batch, from each group's best fit."""
    n_groups, n_par = len(problems.full_set), len(law.params)
    counts = bootstrap_counts(data.sizes, bootstrap, rng)
    idx = np.arange(n_groups * bootstrap)
    # Each resample starts at its group's best fit, with that fit's L-BFGS curvature memory.
    full = np.asarray(problems.full_set)
    origin = np.repeat(full * starts.n_starts + starts.best_start[full], bootstrap)
    memory = tuple(m[origin] for m in starts.memory)
    with progress_bar(total=n_groups * bootstrap, desc=f"bootstrap {law.name}", enabled=progress,
                      unit="fits") as bar:
        boot = _solve(law, data, counts, idx // bootstrap, idx, starts.theta[np.repeat(full, bootstrap)],
                      delta, max_iter, initial_memory=memory, on_done=bar.update)
    return boot.x.reshape(n_groups, bootstrap, n_par), boot.converged.reshape(n_groups, bootstrap)


def _holdout(law: Law, data: GroupData, g: int, part: pd.DataFrame, problems: Problems,
             starts: StartFits) -> tuple[np.ndarray, list[HoldoutFold]]:
    """Each row's prediction by the fold that did not see it (NaN for rows no fold held out)."""
    held_pred = np.full(len(part), np.nan)
    folds = []
    for f, mask in enumerate(problems.fold_masks[g]):
        theta = starts.theta[problems.full_set[g] + 1 + f]
        held_pred[~mask] = _predict_rows(law, theta, data, g)[: len(part)][~mask]
        folds.append(HoldoutFold({p.name: float(v) for p, v in zip(law.params, law.to_public(theta), strict=True)},
                                 [int(i) for i in np.flatnonzero(~mask)]))
    return held_pred, folds


def _points(law: Law, part: pd.DataFrame, pred: np.ndarray, held_pred: np.ndarray, floor: float) -> pd.DataFrame:
    points = part[list(law.columns)].reset_index(drop=True)
    points.insert(0, "row", part.index.to_numpy(dtype=int))
    points["observed"] = part[law.target].to_numpy(dtype=float)
    points["predicted"] = pred
    points["heldout"] = np.isfinite(held_pred)
    points["holdout_predicted"] = held_pred
    if law.role == "forgetting":
        l0 = points["pretrain_loss_before"].to_numpy()
        points["forgetting_observed"] = points["observed"] - l0
        points["forgetting_predicted"] = pred - l0
        points["forgetting_holdout_predicted"] = held_pred - l0
        points["forgetting_counted"] = np.abs(points["forgetting_observed"]) > floor
    return points


def _bootstrap_ci(law: Law, samples: np.ndarray, ci_level: float) -> dict[str, list[float]]:
    tail = 100 * (1 - ci_level) / 2
    ok = np.isfinite(samples).all(axis=1)
    lo, hi = np.percentile(samples[ok], [tail, 100 - tail], axis=0)
    return {p.name: [float(lo[j]), float(hi[j])] for j, p in enumerate(law.params)}


def _start_diagnostics(starts: StartFits, s: int, theta: np.ndarray, law: Law) -> dict[str, Any]:
    best = starts.objective[s, starts.best_start[s]]
    tol = 1e-9 + 1e-5 * abs(best)
    return {
        "objective": float(best),
        "starts": int(starts.n_starts),
        "converged_starts": int(starts.converged[s].sum()),
        "starts_at_best": int((starts.objective[s] <= best + tol).sum()),
        "best_start_converged": bool(starts.converged[s, starts.best_start[s]]),
        "at_bound": at_bound(law, theta),
    }


def _forgetting_errors(points: pd.DataFrame, floor: float) -> tuple[float | None, float | None, dict]:
    l0, obs = points["pretrain_loss_before"].to_numpy(), points["observed"].to_numpy()
    inside = forgetting_error(points["predicted"].to_numpy(), obs, l0, floor)
    held = points["heldout"].to_numpy()
    outside = (forgetting_error(points["holdout_predicted"].to_numpy()[held], obs[held], l0[held], floor)
               if held.any() else None)
    record = {"floor": floor, "rows": inside.rows, "left_out": inside.left_out,
              "holdout_rows": None if outside is None else outside.rows,
              "holdout_left_out": None if outside is None else outside.left_out}
    return inside.value, None if outside is None else outside.value, record


def _group_fit(law: Law, g: int, group: dict | None, part: pd.DataFrame, data: GroupData, problems: Problems,
               starts: StartFits, boot, holdout: Holdout | None, ci_level: float, floor: float) -> GroupFit:
    s = problems.full_set[g]
    theta = starts.theta[s]
    public = law.to_public(theta)
    pred = _predict_rows(law, theta, data, g)[: len(part)]
    held_pred, folds = _holdout(law, data, g, part, problems, starts)
    points = _points(law, part, pred, held_pred, floor)
    diagnostics = _start_diagnostics(starts, s, theta, law)
    holdout_mre = None
    if folds:
        held = points["heldout"].to_numpy()
        holdout_mre = mean_relative_error(held_pred[held], points["observed"].to_numpy()[held])
        diagnostics["holdout"] = {"kind": holdout.kind, "folds": len(folds), "held_out_rows": int(held.sum())}
    ci = samples = None
    if boot is not None:
        samples = law.to_public(boot[0][g])
        ci = _bootstrap_ci(law, samples, ci_level)
        diagnostics["bootstrap"] = {"resamples": samples.shape[0], "converged": int(boot[1][g].sum()),
                                    "ci_level": ci_level}
    l0 = mre_f = held_mre_f = None
    if law.role == "forgetting":
        l0 = {float(k): float(v) for k, v in part.groupby("model_size")["pretrain_loss_before"].mean().items()}
        mre_f, held_mre_f, diagnostics["forgetting_error"] = _forgetting_errors(points, floor)
    return GroupFit(
        group=group, params={p.name: float(public[j]) for j, p in enumerate(law.params)}, ci=ci,
        mre=mean_relative_error(pred, points["observed"].to_numpy()), holdout_mre=holdout_mre, n=len(part),
        diagnostics=diagnostics, bootstrap_params=samples, pretrain_loss_before=l0, mre_forgetting=mre_f,
        holdout_mre_forgetting=held_mre_f, warnings=fit_warnings(law, part, theta, ci, diagnostics),
        ranges=value_ranges(law, part), points=points, holdout_folds=folds,
    )


def fit(
    df: pd.DataFrame,
    law: str | Law,
    by: str | Sequence[str] | None = None,
    bootstrap: int = 0,
    holdout: str | Holdout | None = None,
    *,
    huber_delta: float = 1e-3,
    ci_level: float = 0.95,
    seed: int = 0,
    starts: np.ndarray | None = None,
    max_iter: int = 1000,
    prune_factor: float | None = 10.0,
    forgetting_floor: float = DEFAULT_FORGETTING_FLOOR,
    progress: bool = False,
    source: dict | None = None,
) -> FitReport:
    """Fit `law` to the table, per group of `by`; see the module docstring for the recipe.

    `forgetting_floor`: rows with |F| = |L_pt - L0| at most this are left out of the error on F.
    `progress`: show the bootstrap's progress on stderr (`forgetlaw.console.progress_bar`)."""
    law = get_law(law)
    by_cols = [by] if isinstance(by, str) else list(by or [])
    _check_options(bootstrap, ci_level, huber_delta, forgetting_floor)
    holdout = parse_holdout(holdout)
    groups = split_groups(check_table(df, law, by_cols), by_cols)
    grid = _start_grid(law, starts)
    data = pad_groups(law, [part for _, part in groups])
    problems = _problems(law, groups, data, holdout, seed)
    start_fits = _fit_starts(law, data, problems, grid, huber_delta, max_iter, prune_factor)
    rng = np.random.default_rng(seed)
    boot = (_fit_bootstrap(law, data, problems, start_fits, bootstrap, rng, huber_delta, max_iter, progress)
            if bootstrap > 0 else None)
    fits = [_group_fit(law, g, group, part, data, problems, start_fits, boot, holdout, ci_level, forgetting_floor)
            for g, (group, part) in enumerate(groups)]
    settings = {"by": by_cols or None, "bootstrap": bootstrap, "holdout": None if holdout is None else
                (holdout.kind if holdout.kind != "kfold" else f"kfold:{holdout.folds}"),
                "huber_delta": huber_delta, "ci_level": ci_level, "seed": seed, "starts": int(grid.shape[0]),
                "max_iter": max_iter, "prune_factor": prune_factor, "forgetting_floor": forgetting_floor}
    prov = provenance(config={"law": law.name, **settings}, seed=seed)
    if source:
        prov["source"] = source
    return FitReport(law=law, fits=fits, settings=settings, provenance=prov)
