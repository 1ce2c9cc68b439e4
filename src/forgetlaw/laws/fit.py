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

from forgetlaw.errors import UserError
from forgetlaw.laws.forms import Law, get_law
from forgetlaw.laws.optim import lbfgs_batched
from forgetlaw.laws.table import check_table, split_groups
from forgetlaw.laws.validate import Holdout, mean_relative_error, parse_holdout, train_masks
from forgetlaw.provenance import provenance


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

    def to_json(self) -> dict:
        return {"group": self.group, "params": self.params, "ci": self.ci, "mre": self.mre,
                "holdout_mre": self.holdout_mre, "n": self.n}


@dataclass
class FitReport:
    law: Law
    fits: list[GroupFit]
    settings: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict:
        """Exactly the `forgetlaw fit --json` object."""
        return {"law": self.law.name, "fits": [f.to_json() for f in self.fits]}

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
           initial_memory=None):
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
                         initial_memory=initial_memory)


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
    source: dict | None = None,
) -> FitReport:
    """Fit `law` to the table, per group of `by`; see the module docstring for the recipe."""
    law = get_law(law)
    by_cols = [by] if isinstance(by, str) else list(by or [])
    if bootstrap < 0:
        raise UserError(f"--bootstrap {bootstrap}: the number of resamples must be >= 0")
    if not 0 < ci_level < 1:
        raise UserError(f"ci_level {ci_level} must be in (0, 1), e.g. 0.95")
    if not huber_delta > 0:  # also rejects NaN
        raise UserError(f"huber_delta {huber_delta} must be > 0, e.g. 1e-3")
    holdout = parse_holdout(holdout)
    table = check_table(df, law, by_cols)
    groups = split_groups(table, by_cols)
    n_par = len(law.params)
    for group, part in groups:
        if len(part) < n_par:
            raise UserError(f"group {_group_label(group)} has {len(part)} row(s) but law {law.name} has "
                            f"{n_par} parameters; add runs or fit without --by")
    grid = law.start_grid() if starts is None else np.atleast_2d(np.asarray(starts, dtype=float))
    if grid.shape[1] != n_par:
        raise UserError(f"starts have {grid.shape[1]} columns; law {law.name} has {n_par} parameters")
    data = pad_groups(law, [part for _, part in groups])
    width = data.log_obs.shape[1]

    # Stage one: every group's full data and holdout folds, times every start, in one batch.
    weight_sets, set_group, fold_masks = [], [], []
    for g, (group, part) in enumerate(groups):
        weight_sets.append(data.valid[g].astype(float))
        set_group.append(g)
        masks = train_masks(holdout, part, law, seed) if holdout else []
        fold_masks.append(masks)
        for mask in masks:
            if mask.sum() < n_par:
                raise UserError(f"--holdout {holdout.kind}: group {_group_label(group)} keeps {int(mask.sum())} "
                                f"training row(s) for {n_par} parameters; add runs or use another holdout")
            w = np.zeros(width)
            w[: len(part)] = mask
            weight_sets.append(w)
            set_group.append(g)
    weights = np.stack(weight_sets)
    n_sets, n_starts = len(weight_sets), grid.shape[0]
    weights_of = np.repeat(np.arange(n_sets), n_starts)
    group_of = np.asarray(set_group)[weights_of]
    result = _solve(law, data, weights, group_of, weights_of, np.tile(grid, (n_sets, 1)), huber_delta, max_iter,
                    prune_factor)
    fun = np.where(np.isfinite(result.fun), result.fun, np.inf).reshape(n_sets, n_starts)
    best_start = np.argmin(fun, axis=1)
    best_theta = result.x.reshape(n_sets, n_starts, n_par)[np.arange(n_sets), best_start]
    converged = result.converged.reshape(n_sets, n_starts)
    if not np.isfinite(fun.min(axis=1)).all():
        raise UserError(f"law {law.name}: no start gave a finite loss; check the table's values")

    # Stage two: bootstrap resamples of every group, in one batch, from each group's best fit.
    rng = np.random.default_rng(seed)
    full_set = [set_group.index(g) for g in range(len(groups))]
    boot_theta = boot_conv = None
    if bootstrap > 0:
        counts = bootstrap_counts(data.sizes, bootstrap, rng)
        idx = np.arange(len(groups) * bootstrap)
        # Each resample starts at its group's best fit, with that fit's L-BFGS curvature memory.
        best_flat = np.asarray(full_set) * n_starts + best_start[full_set]
        origin = np.repeat(best_flat, bootstrap)
        memory = tuple(m[origin] for m in result.memory)
        boot = _solve(law, data, counts, idx // bootstrap, idx, best_theta[np.repeat(full_set, bootstrap)],
                      huber_delta, max_iter, initial_memory=memory)
        boot_theta = boot.x.reshape(len(groups), bootstrap, n_par)
        boot_conv = boot.converged.reshape(len(groups), bootstrap)

    fits = []
    tail = 100 * (1 - ci_level) / 2
    lower, upper = law.lower, law.upper
    for g, (group, part) in enumerate(groups):
        s = full_set[g]
        theta = best_theta[s]
        public = law.to_public(theta)
        obs = part[law.target].to_numpy(dtype=float)
        pred = _predict_rows(law, theta, data, g)[: len(part)]
        tol = 1e-9 + 1e-5 * abs(fun[s, best_start[s]])
        span = upper - lower
        at_bound = [p.name for j, p in enumerate(law.params)
                    if min(theta[j] - lower[j], upper[j] - theta[j]) <= 1e-6 * span[j]]
        diagnostics: dict[str, Any] = {
            "objective": float(fun[s, best_start[s]]),
            "starts": int(n_starts),
            "converged_starts": int(converged[s].sum()),
            "starts_at_best": int((fun[s] <= fun[s, best_start[s]] + tol).sum()),
            "best_start_converged": bool(converged[s, best_start[s]]),
            "at_bound": at_bound,
        }
        holdout_mre = None
        if fold_masks[g]:
            held_pred, held_obs = [], []
            for f, mask in enumerate(fold_masks[g]):
                fold_pred = _predict_rows(law, best_theta[s + 1 + f], data, g)[: len(part)]
                held_pred.append(fold_pred[~mask])
                held_obs.append(obs[~mask])
            holdout_mre = mean_relative_error(np.concatenate(held_pred), np.concatenate(held_obs))
            diagnostics["holdout"] = {"kind": holdout.kind, "folds": len(fold_masks[g]),
                                      "held_out_rows": int(sum((~m).sum() for m in fold_masks[g]))}
        ci = samples = None
        if boot_theta is not None:
            samples = law.to_public(boot_theta[g])
            ok = np.isfinite(samples).all(axis=1)
            lo, hi = np.percentile(samples[ok], [tail, 100 - tail], axis=0)
            ci = {p.name: [float(lo[j]), float(hi[j])] for j, p in enumerate(law.params)}
            diagnostics["bootstrap"] = {"resamples": bootstrap, "converged": int(boot_conv[g].sum()),
                                        "ci_level": ci_level}
        l0 = None
        if "pretrain_loss_before" in law.columns:
            l0 = {float(k): float(v) for k, v in part.groupby("model_size")["pretrain_loss_before"].mean().items()}
        fits.append(GroupFit(
            group=group, params={p.name: float(public[j]) for j, p in enumerate(law.params)}, ci=ci,
            mre=mean_relative_error(pred, obs), holdout_mre=holdout_mre, n=len(part),
            diagnostics=diagnostics, bootstrap_params=samples, pretrain_loss_before=l0,
        ))
    settings = {"by": by_cols or None, "bootstrap": bootstrap, "holdout": None if holdout is None else
                (holdout.kind if holdout.kind != "kfold" else f"kfold:{holdout.folds}"),
                "huber_delta": huber_delta, "ci_level": ci_level, "seed": seed, "starts": int(n_starts),
                "max_iter": max_iter, "prune_factor": prune_factor}
    prov = provenance(config={"law": law.name, **settings}, seed=seed)
    if source:
        prov["source"] = source
    return FitReport(law=law, fits=fits, settings=settings, provenance=prov)
