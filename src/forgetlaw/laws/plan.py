"""The minimum injection p that keeps forgetting within a budget, in closed form.

Every forgetting law here writes forgetting F(p) = L_pt(p) - L0 as shift + scale * g(p), with
g(p) = A * D^beta / ((1 + B p) N)^alpha:  additive: (0, 1); multiplicative: (0, L0);
floor: (-C L0, 1). With budget eps (absolute, or eps * L0 when relative):

    g* = (eps - shift) / scale
    p  = 0                                        if g(0) <= g*
    p  = ((g(0) / g*)^(1 / alpha) - 1) / B        if alpha > 0, B > 0, and that is < 1
    infeasible                                    otherwise (g* <= 0, alpha <= 0, or p >= 1)

The same formula applied to each bootstrap parameter set gives the CI of p.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from forgetlaw.errors import UserError
from forgetlaw.laws.fit import FitReport, GroupFit
from forgetlaw.laws.forms import Law
from forgetlaw.laws.saved import SavedFit

DEFAULT_GRID = (0.0, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5)


def min_injection(params: dict[str, np.ndarray], law: Law, model_size: float, unique_tokens: float,
                  l0: float, budget: float) -> tuple[np.ndarray, np.ndarray]:
    """Closed-form minimum p (NaN where infeasible) and the least forgetting over p in [0, 1).

    `params` values may be arrays (one entry per bootstrap resample); `budget` is absolute.
    """
    a, b = np.asarray(params["A"], dtype=float), np.asarray(params["B"], dtype=float)
    alpha, beta = np.asarray(params["alpha"], dtype=float), np.asarray(params["beta"], dtype=float)
    shift, scale = law.forgetting_shift_scale(params, l0)
    log_g0 = np.log(a) + beta * np.log(unique_tokens) - alpha * np.log(model_size)
    g_star = (budget - shift) / scale
    with np.errstate(divide="ignore", invalid="ignore"):
        log_ratio = log_g0 - np.log(np.where(g_star > 0, g_star, np.nan))
        # Exponent capped at 700 (exp overflow); anything that large is p >> 1 anyway.
        exponent = np.minimum(log_ratio / np.where(alpha > 0, alpha, 1.0), 700.0)
        needed = np.where(alpha > 0, np.expm1(exponent) / b, np.inf)
    p = np.where(log_ratio <= 0, 0.0, needed)
    p = np.where((g_star > 0) & (p < 1), p, np.nan)
    # Forgetting falls with p when alpha > 0, so its least value is at p -> 1; otherwise at p = 0.
    g_least = np.exp(log_g0 - np.maximum(alpha, 0.0) * np.log1p(b))
    least = shift + scale * g_least
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
    max_forgetting: float
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


def plan_injection(
    fit: SavedFit | FitReport,
    model_size: float,
    unique_tokens: float,
    max_forgetting: float,
    relative: bool = False,
    domain: str | None = None,
    *,
    pretrain_loss_before: float | None = None,
    grid: Sequence[float] = DEFAULT_GRID,
) -> Plan:
    saved = fit if isinstance(fit, SavedFit) else SavedFit(**{fit.law.role: fit})
    report = saved.forgetting
    if report is None:
        raise UserError("the fit file holds no forgetting fit; make one with forgetlaw fit TABLE "
                        "--law forgetting --save FIT")
    law = report.law
    if not model_size > 0:
        raise UserError(f"--model-size {model_size} must be > 0")
    if not unique_tokens > 0:
        raise UserError(f"--unique-tokens {unique_tokens} must be > 0")
    if not max_forgetting > 0:
        raise UserError(f"--max-forgetting {max_forgetting} must be > 0 (a loss increase you accept)")
    grid = [float(p) for p in grid]
    if any(not 0 <= p < 1 for p in grid):
        raise UserError("--grid values must be injection fractions in [0, 1), e.g. 0,0.01,0.05")
    group_fit = report.find(domain)
    l0 = _l0_for(group_fit, model_size, pretrain_loss_before)
    budget = max_forgetting * l0 if relative else max_forgetting
    params = {k: np.asarray(v) for k, v in group_fit.params.items()}
    p, least = min_injection(params, law, model_size, unique_tokens, l0, budget)
    p, least = float(p), float(least)
    feasible = bool(np.isfinite(p))

    ci = infeasible_fraction = None
    if group_fit.bootstrap_params is not None:
        samples = {name: group_fit.bootstrap_params[:, j] for j, name in enumerate(law.param_names)}
        p_boot, _ = min_injection(samples, law, model_size, unique_tokens, l0, budget)
        infeasible_fraction = float(np.mean(~np.isfinite(p_boot)))
        level = group_fit.diagnostics.get("bootstrap", {}).get("ci_level", 0.95)
        tail = 100 * (1 - level) / 2
        # Infeasible resamples rank above every feasible p; a bound that falls on them is None.
        ranked = np.where(np.isfinite(p_boot), p_boot, np.inf)
        lo = np.percentile(ranked, tail, method="lower")
        hi = np.percentile(ranked, 100 - tail, method="higher")
        ci = [float(lo) if np.isfinite(lo) else None, float(hi) if np.isfinite(hi) else None]

    def pretrain_at(ps: np.ndarray) -> np.ndarray:
        cols = {"model_size": np.full(ps.size, model_size), "unique_tokens": np.full(ps.size, unique_tokens),
                "injection": ps, "pretrain_loss_before": np.full(ps.size, l0)}
        return law.predict(group_fit.params, cols)

    # The finetuning fit, when the file has one for this domain (or one fit for all domains);
    # without it the target-loss predictions are null and `finetune_law` says so.
    ft_report = saved.finetuning
    ft_fit = None
    if ft_report is not None:
        if len(ft_report.fits) == 1 and ft_report.fits[0].group is None:
            ft_fit = ft_report.fits[0]
        else:
            try:
                ft_fit = ft_report.find(domain)
            except UserError:
                ft_fit = None

    def finetune_at(ps: np.ndarray) -> np.ndarray | None:
        if ft_fit is None:
            return None
        cols = {"model_size": np.full(ps.size, model_size), "unique_tokens": np.full(ps.size, unique_tokens),
                "injection": ps}
        return ft_report.law.predict(ft_fit.params, cols)

    p_eval = p if feasible else None
    # Infeasible: the pretraining loss at the least forgetting reachable (p -> 1 when alpha > 0).
    predicted_pt = float(pretrain_at(np.array([p_eval]))[0]) if p_eval is not None else l0 + least
    # No injection meets an infeasible budget, so there is no target loss to predict for it.
    ft_at_p = finetune_at(np.array([p_eval])) if p_eval is not None else None
    grid_arr = np.array(sorted(set(grid)))
    pt_grid = pretrain_at(grid_arr)
    ft_grid = finetune_at(grid_arr)
    rows = [{"injection": float(q), "pretrain_loss": float(pt_grid[i]), "forgetting": float(pt_grid[i] - l0),
             "finetune_loss": None if ft_grid is None else float(ft_grid[i])} for i, q in enumerate(grid_arr)]
    return Plan(
        injection=p_eval, feasible=feasible, ci=ci, predicted_pretrain_loss=predicted_pt,
        predicted_forgetting=predicted_pt - l0,
        predicted_finetune_loss=None if ft_at_p is None else float(ft_at_p[0]),
        least_forgetting=least, max_forgetting=max_forgetting, relative=relative, budget=budget,
        pretrain_loss_before=l0, model_size=model_size, unique_tokens=unique_tokens, law=law.name,
        finetune_law=None if ft_fit is None else ft_report.law.name, group=group_fit.group,
        ci_infeasible_fraction=infeasible_fraction, grid=rows,
    )
