"""The minimum injection p that keeps forgetting within a budget, in closed form.

Every forgetting law writes forgetting F(p) = L_pt(p) - L0 as shift + scale * g(p), with
g(p) = A D^beta N^-alpha h(p) and h(0) = 1 (`forms.ForgettingForm`): additive: (0, 1);
multiplicative: (0, L0); floor: (-C L0, 1); h = (1 + B p)^-alpha (the paper's) or exp(-B p). With a
budget eps (absolute; eps * L0 when relative; eps * F(0) as a fraction of the forgetting at p = 0):

    g* = (eps - shift) / scale
    p  = 0                                  if g(0) <= g*
    p  = the form's inverse of h(p) = g*/g(0): ((g(0)/g*)^(1/alpha) - 1) / B  or  log(g(0)/g*) / B
    infeasible                              otherwise (g* <= 0, h does not fall with p, or p >= 1)

The same formula applied to each bootstrap parameter set gives the CI of p.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from forgetlaw.errors import UserError
from forgetlaw.laws.fit import FitReport, GroupFit
from forgetlaw.laws.forms import Law
from forgetlaw.laws.saved import SavedFit

DEFAULT_GRID = (0.0, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5)


def forgetting_at(params: dict, law: Law, model_size: float, unique_tokens: float, l0: float,
                  p: np.ndarray | float) -> np.ndarray:
    """Predicted forgetting F(p); `params` values may be arrays (one per bootstrap draw)."""
    form = law.forgetting
    shift, scale = form.shift_scale(params, l0)
    return shift + scale * np.exp(form.log_g0(params, model_size, unique_tokens) + form.log_h(params, p))


def min_injection(params: dict[str, np.ndarray], law: Law, model_size: float, unique_tokens: float,
                  l0: float, budget: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Closed-form minimum p (NaN where infeasible) and the least forgetting over p in [0, 1).

    `params` values may be arrays (one entry per bootstrap resample); `budget` is absolute (and may
    be an array too).
    """
    form = law.forgetting
    shift, scale = form.shift_scale(params, l0)
    log_g0 = form.log_g0(params, model_size, unique_tokens)
    g_star = (budget - shift) / scale
    with np.errstate(divide="ignore", invalid="ignore"):
        log_ratio = log_g0 - np.log(np.where(g_star > 0, g_star, np.nan))
        needed = form.p_for(params, np.where(log_ratio > 0, log_ratio, 1.0))
    p = np.where(log_ratio <= 0, 0.0, needed)
    p = np.where((g_star > 0) & (p < 1), p, np.nan)
    least = shift + scale * np.exp(log_g0 + form.log_h_least(params))
    return p, least


@dataclass
class Plan:
    injection: float | None
    feasible: bool
    ci: list[float | None] | None
    predicted_pretrain_loss: float
    predicted_forgetting: float
    predicted_finetune_loss: float | None
    least_forgetting: float
    max_forgetting: float | None
    relative: bool
    budget: float  # absolute loss increase allowed
    pretrain_loss_before: float
    model_size: float
    unique_tokens: float
    law: str
    finetune_law: str | None
    group: dict | None
    ci_infeasible_fraction: float | None
    grid: list[dict]
    # What a user acts on (docs/laws.md, "Planning"):
    forgetting_fraction: float | None = None  # budget = this x F(p = 0), when given
    forgetting_at_zero: float | None = None  # predicted F at p = 0
    prob_over_budget: float | None = None  # share of bootstrap fits over the budget at p
    finetune_loss_change: float | None = None  # target loss at p minus at p = 0 (law with injection)
    compute_factor: float | None = None  # 1 / (1 - p): finetuning steps at equal target tokens
    # N, D, the recommended p outside the fitted ranges (p: None when infeasible); {} for old fit files
    extrapolated: dict[str, bool | None] = field(default_factory=dict)
    fitted_ranges: dict[str, list[float]] | None = None
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)


def _l0_for(group_fit: GroupFit, model_size: float, given: float | None) -> float:
    if given is not None:
        if not given > 0:
            raise UserError(f"--pretrain-loss-before {given} must be > 0")
        return float(given)
    known = group_fit.pretrain_loss_before or {}
    for n, l0 in known.items():
        if np.isclose(n, model_size, rtol=1e-9):
            return l0
    sizes = ", ".join(f"{n:g}" for n in sorted(known))
    raise UserError(f"no pretrain_loss_before is known for --model-size {model_size:g} (the fit saw {sizes}); "
                    "pass the base model's pretraining loss with --pretrain-loss-before L0")


def _check_inputs(model_size, unique_tokens, max_forgetting, forgetting_fraction, grid) -> list[float]:
    if not model_size > 0:
        raise UserError(f"--model-size {model_size} must be > 0")
    if not unique_tokens > 0:
        raise UserError(f"--unique-tokens {unique_tokens} must be > 0")
    if (max_forgetting is None) == (forgetting_fraction is None):
        raise UserError("give exactly one budget: --max-forgetting EPS or --forgetting-fraction R")
    if max_forgetting is not None and not max_forgetting > 0:
        raise UserError(f"--max-forgetting {max_forgetting} must be > 0 (a loss increase you accept)")
    if forgetting_fraction is not None and not 0 < forgetting_fraction < 1:
        raise UserError(f"--forgetting-fraction {forgetting_fraction} must be in (0, 1), e.g. 0.5 for the p "
                        "that halves the forgetting at p = 0")
    grid = [float(p) for p in grid]
    if any(not 0 <= p < 1 for p in grid):
        raise UserError("--grid values must be injection fractions in [0, 1), e.g. 0,0.01,0.05")
    return grid


def _finetuning_fit(saved: SavedFit, domain: str | None) -> GroupFit | None:
    """The finetuning fit for this domain (or one fit for all domains), when the file has one."""
    ft_report = saved.finetuning
    if ft_report is None:
        return None
    if len(ft_report.fits) == 1 and ft_report.fits[0].group is None:
        return ft_report.fits[0]
    try:
        return ft_report.find(domain)
    except UserError:
        return None


def _extrapolation(ranges: dict | None, model_size: float, unique_tokens: float,
                   p: float | None) -> tuple[dict[str, bool | None], list[str]]:
    """Which of N, D and the recommended p lie outside the fitted ranges (None: no p to check)."""
    if not ranges:
        return {}, []
    checks = [("model_size", "N", model_size), ("unique_tokens", "D", unique_tokens), ("injection", "p", p)]
    flags, warnings = {}, []
    for column, symbol, value in checks:
        if column not in ranges:
            continue
        if value is None:
            flags[column] = None
            continue
        lo, hi = ranges[column]
        # A relative tolerance: sizes read back from a file differ in the last digits.
        outside = value < lo * (1 - 1e-9) - 1e-12 or value > hi * (1 + 1e-9) + 1e-12
        flags[column] = bool(outside)
        if outside:
            what = "recommended p" if symbol == "p" else symbol
            warnings.append(f"the {what} = {value:.4g} lies outside the fitted {column} range "
                            f"[{lo:.4g}, {hi:.4g}]: the plan extrapolates the law")
    return flags, warnings


def _bootstrap_summary(group_fit: GroupFit, law: Law, model_size: float, unique_tokens: float, l0: float,
                       budget_of, p: float | None) -> tuple[list | None, float | None, float | None]:
    """CI of p, share of infeasible draws, and the share of draws over the budget at p."""
    if group_fit.bootstrap_params is None:
        return None, None, None
    samples = {name: group_fit.bootstrap_params[:, j] for j, name in enumerate(law.param_names)}
    budgets = budget_of(samples)
    p_boot, _ = min_injection(samples, law, model_size, unique_tokens, l0, budgets)
    infeasible = float(np.mean(~np.isfinite(p_boot)))
    level = group_fit.diagnostics.get("bootstrap", {}).get("ci_level", 0.95)
    tail = 100 * (1 - level) / 2
    # Infeasible resamples rank above every feasible p; a bound that falls on them is None.
    ranked = np.where(np.isfinite(p_boot), p_boot, np.inf)
    lo = np.percentile(ranked, tail, method="lower")
    hi = np.percentile(ranked, 100 - tail, method="higher")
    ci = [float(lo) if np.isfinite(lo) else None, float(hi) if np.isfinite(hi) else None]
    over = None
    if p is not None:
        f_boot = forgetting_at(samples, law, model_size, unique_tokens, l0, p)
        over = float(np.mean(~(f_boot <= budgets)))  # a non-finite draw counts as over
    return ci, infeasible, over


def plan_injection(
    fit: SavedFit | FitReport,
    model_size: float,
    unique_tokens: float,
    max_forgetting: float | None = None,
    relative: bool = False,
    domain: str | None = None,
    *,
    forgetting_fraction: float | None = None,
    pretrain_loss_before: float | None = None,
    grid: Sequence[float] = DEFAULT_GRID,
) -> Plan:
    """The minimum p for a budget: `max_forgetting` (absolute, or x L0 with `relative`), or
    `forgetting_fraction` R (forgetting at most R times the law's forgetting at p = 0; 0.5: halve it)."""
    saved = fit if isinstance(fit, SavedFit) else SavedFit(**{fit.law.role: fit})
    report = saved.forgetting
    if report is None:
        raise UserError("the fit file holds no forgetting fit; make one with forgetlaw fit TABLE "
                        "--law forgetting --save FIT")
    law = report.law
    grid = _check_inputs(model_size, unique_tokens, max_forgetting, forgetting_fraction, grid)
    group_fit = report.find(domain)
    l0 = _l0_for(group_fit, model_size, pretrain_loss_before)

    def budget_of(params: dict) -> np.ndarray:
        if forgetting_fraction is not None:
            return forgetting_fraction * forgetting_at(params, law, model_size, unique_tokens, l0, 0.0)
        return np.asarray(max_forgetting * l0 if relative else max_forgetting, dtype=float)

    params = {k: np.asarray(v) for k, v in group_fit.params.items()}
    budget = float(budget_of(params))
    p, least = (float(x) for x in min_injection(params, law, model_size, unique_tokens, l0, budget))
    feasible = bool(np.isfinite(p))
    p_eval = p if feasible else None
    ci, infeasible_fraction, over = _bootstrap_summary(group_fit, law, model_size, unique_tokens, l0,
                                                       budget_of, p_eval)
    extrapolated, warnings = _extrapolation(group_fit.ranges, model_size, unique_tokens, p_eval)
    losses = _Losses(law, group_fit, saved, domain, model_size, unique_tokens, l0)
    # Infeasible: the pretraining loss at the least forgetting reachable (p -> 1 when it falls with p).
    predicted_pt = float(losses.pretrain(np.array([p]))[0]) if feasible else l0 + least
    return Plan(
        injection=p_eval, feasible=feasible, ci=ci, predicted_pretrain_loss=predicted_pt,
        predicted_forgetting=predicted_pt - l0, predicted_finetune_loss=losses.finetune_at(p_eval),
        least_forgetting=least, max_forgetting=max_forgetting, relative=relative, budget=budget,
        pretrain_loss_before=l0, model_size=model_size, unique_tokens=unique_tokens, law=law.name,
        finetune_law=None if losses.ft_fit is None else saved.finetuning.law.name, group=group_fit.group,
        ci_infeasible_fraction=infeasible_fraction, grid=losses.grid_rows(grid),
        forgetting_fraction=forgetting_fraction,
        forgetting_at_zero=float(forgetting_at(params, law, model_size, unique_tokens, l0, 0.0)),
        prob_over_budget=over, finetune_loss_change=losses.finetune_change(p_eval),
        compute_factor=None if p_eval is None else 1.0 / (1.0 - p_eval), extrapolated=extrapolated,
        fitted_ranges=group_fit.ranges, warnings=warnings,
    )


class _Losses:
    """Predicted pretraining and target losses at (N, D) as functions of p."""

    def __init__(self, law: Law, group_fit: GroupFit, saved: SavedFit, domain, model_size, unique_tokens, l0):
        self.law, self.group_fit, self.l0 = law, group_fit, l0
        self.n, self.d = model_size, unique_tokens
        self.ft_fit = _finetuning_fit(saved, domain)
        self.ft_law = None if self.ft_fit is None else saved.finetuning.law

    def _columns(self, ps: np.ndarray) -> dict[str, np.ndarray]:
        return {"model_size": np.full(ps.size, self.n), "unique_tokens": np.full(ps.size, self.d),
                "injection": ps, "pretrain_loss_before": np.full(ps.size, self.l0)}

    def pretrain(self, ps: np.ndarray) -> np.ndarray:
        return self.law.predict(self.group_fit.params, self._columns(ps))

    def finetune(self, ps: np.ndarray) -> np.ndarray | None:
        if self.ft_fit is None:
            return None
        cols = self._columns(ps)
        return self.ft_law.predict(self.ft_fit.params, {c: cols[c] for c in self.ft_law.columns})

    def finetune_at(self, p: float | None) -> float | None:
        # No injection meets an infeasible budget, so there is no target loss to predict for it.
        values = None if p is None else self.finetune(np.array([p]))
        return None if values is None else float(values[0])

    def finetune_change(self, p: float | None) -> float | None:
        """Only a finetuning law that reads p can say what injection does to the target loss."""
        if p is None or self.ft_law is None or "injection" not in self.ft_law.columns:
            return None
        values = self.finetune(np.array([0.0, p]))
        return float(values[1] - values[0])

    def grid_rows(self, grid: list[float]) -> list[dict]:
        ps = np.array(sorted(set(grid)))
        pt, ft = self.pretrain(ps), self.finetune(ps)
        return [{"injection": float(q), "pretrain_loss": float(pt[i]), "forgetting": float(pt[i] - self.l0),
                 "finetune_loss": None if ft is None else float(ft[i])} for i, q in enumerate(ps)]
