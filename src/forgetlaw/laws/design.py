"""One model, a few cheap runs: which K finetuning runs pin down the forgetting law at the user's D.

The user has one base model (one N) and D unique target tokens. Candidate runs use a fraction f of
D (a subset of the data) and an injection p; a run costs f / (1 - p) full-D runs at p = 0 (the same
number of epochs over f D target tokens, plus the injected sequences). The fitted law then predicts
the forgetting at the full D for any p, which is what the planner inverts.

The design (docs/laws.md, "One model"): among every K-subset of the candidates whose Jacobian
identifies every parameter (one N: >= 2 values of D and, for the paper's form, >= 3 of p), pick the
one with the least cost x V, where V is the mean predicted variance of log F at the full D over the
candidate p values (delta method, from the law's own gradient at prior parameters, per unit noise
on log L_pt). cost x V is invariant to replicating a design, so it trades compute against precision
at the rate replication does.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass, field

import numpy as np

from forgetlaw.errors import UserError
from forgetlaw.laws.fit import FitReport
from forgetlaw.laws.forms import Law, get_law
from forgetlaw.laws.plan import forgetting_at

MAX_SUBSETS = 200_000  # K-subsets scored at once; beyond this, fewer candidates are needed


@dataclass(frozen=True)
class DesignOptions:
    fractions: tuple[float, ...] = (0.5, 0.25, 0.125)  # of the user's D
    injections: tuple[float, ...] = (0.0, 0.01, 0.05, 0.2)
    # Prior parameters (alpha, beta, B, C) and the forgetting share F/L0 at (D, p = 0), which sets A.
    # Generic guesses: only alpha and B (the p shape) move the design much; docs/laws.md.
    prior: dict[str, float] | None = None
    forgetting_share: float = 0.1
    model_size: float = 1e6  # nominal N and L0: with one model they only set A's scale
    pretrain_loss_before: float = 3.0
    noise: float = 0.002  # relative noise of one run's L_pt (for the predicted SE of F)


DEFAULT_PRIORS = {"power": {"alpha": 0.3, "beta": 0.3, "B": 20.0, "C": 0.0},
                  "exp": {"alpha": 0.3, "beta": 0.3, "B": 5.0}}


@dataclass
class Design:
    law: str
    unique_tokens: float
    runs_requested: int
    runs: list[dict]  # {"unique_tokens", "fraction", "injection", "cost"}
    total_cost: float  # in full-D runs at p = 0
    cheapest_identifying_cost: float  # the least cost of any K runs that identify the law
    predicted_se: list[dict]  # {"injection", "relative_se_forgetting"} at the full D
    prior: dict[str, float]
    noise: float
    candidates: int
    identifying_subsets: int
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)


def prior_from_fit(report: FitReport, domain: str | None = None) -> dict:
    """A prior from a fitted forgetting law (a similar study): its parameters, largest N and its L0."""
    f = report.find(domain)
    n_max = max(f.pretrain_loss_before) if f.pretrain_loss_before else DesignOptions.model_size
    l0 = f.pretrain_loss_before[n_max] if f.pretrain_loss_before else DesignOptions.pretrain_loss_before
    return {"params": dict(f.params), "model_size": n_max, "pretrain_loss_before": l0}


def _prior_params(law: Law, d: float, options: DesignOptions) -> dict[str, float]:
    prior = {**DEFAULT_PRIORS[law.forgetting.shape], **(options.prior or {})}
    params = {name: float(prior.get(name, 1.0)) for name in law.param_names}
    if options.prior is None or "A" not in options.prior:
        # A such that F(D, p = 0) = forgetting_share x L0 (F is linear in A for these laws at C = 0).
        params["A"] = 1.0
        unit = forgetting_at(params, law, options.model_size, d, options.pretrain_loss_before, 0.0)
        params["A"] = float(options.forgetting_share * options.pretrain_loss_before / unit)
    return params


def _gradients(law: Law, params: dict, d_values: np.ndarray, p_values: np.ndarray,
               options: DesignOptions) -> tuple[np.ndarray, np.ndarray]:
    """d log L_pt / d theta per row [n, P], and log L_pt / F per row (d log F = that x d log L_pt)."""
    cols = {"model_size": np.full(d_values.size, options.model_size), "unique_tokens": d_values,
            "injection": p_values, "pretrain_loss_before": np.full(d_values.size, options.pretrain_loss_before)}
    feats = {k: v[None, :] for k, v in law.features(cols).items()}
    log_pred, grads = law.log_predict(law.to_internal(params)[None, :], feats)
    jac = np.stack([np.broadcast_to(g, log_pred.shape)[0] for g in grads], axis=1)
    pred = np.exp(log_pred[0])
    return jac, pred / (pred - options.pretrain_loss_before)


def one_model_params(law: Law) -> list[int]:
    """Indices of the parameters one model can identify: a constant N merges alpha into A unless the
    law identifies alpha through p (the paper's form does, forgetting-exp does not)."""
    drop = {c.params[1] for c in law.confounds if c.column == law.model_column and c.rescue is None}
    return [j for j, name in enumerate(law.param_names) if name not in drop]


def _check(law: Law, d: float, runs: int, options: DesignOptions) -> None:
    if law.role != "forgetting":
        raise UserError(f"--law {law.name} is not a forgetting law; design plans forgetting runs "
                        "(forgetting, forgetting-exp, ...)")
    if not d > 0:
        raise UserError(f"--unique-tokens {d} must be > 0")
    if any(not 0 < f <= 1 for f in options.fractions) or not options.fractions:
        raise UserError("--fractions must be fractions of D in (0, 1], e.g. 0.5,0.25,0.125")
    if any(not 0 <= p < 1 for p in options.injections) or not options.injections:
        raise UserError("--injections must be fractions in [0, 1), e.g. 0,0.01,0.05,0.2")
    n_par = len(one_model_params(law))
    if runs < n_par:
        raise UserError(f"--runs {runs}: law {law.name} has {n_par} parameters on one model, so at least "
                        f"{n_par} runs are needed to fit it; ask for --runs {n_par} or more")
    n_cand = len(set(options.fractions)) * len(set(options.injections))
    if runs > n_cand:
        raise UserError(f"--runs {runs} exceeds the {n_cand} candidate runs (fractions x injections); "
                        "add values to --fractions or --injections")


def design_runs(unique_tokens: float, runs: int, law: str | Law = "forgetting",
                options: DesignOptions | None = None) -> Design:
    """The K runs on one model with the least cost x predicted variance (module docstring)."""
    law, options = get_law(law), options or DesignOptions()
    _check(law, unique_tokens, runs, options)
    fractions, injections = sorted(set(options.fractions), reverse=True), sorted(set(options.injections))
    cand = np.array([(f, p) for f in fractions for p in injections])
    subsets = _subsets(len(cand), runs)
    params = _prior_params(law, unique_tokens, options)
    keep = one_model_params(law)
    jac, _ = _gradients(law, params, cand[:, 0] * unique_tokens, cand[:, 1], options)
    jac = jac[:, keep]
    targets = np.array(injections)
    g_log_pt, to_f = _gradients(law, params, np.full(targets.size, unique_tokens), targets, options)
    g_targets = g_log_pt[:, keep] * to_f[:, None]  # d log F / d theta at (D, p)
    info = np.einsum("skp,skq->spq", jac[subsets], jac[subsets])
    scale = np.sqrt(np.einsum("spp->sp", info))
    with np.errstate(divide="ignore", invalid="ignore"):
        normed = info / (scale[:, :, None] * scale[:, None, :])
        ok = np.isfinite(normed).all(axis=(1, 2)) & (scale > 0).all(axis=1)
        ok[ok] = np.linalg.cond(normed[ok]) < 1e10
    if not ok.any():
        raise UserError(f"no {runs} runs among --fractions x --injections identify law {law.name} on one model: "
                        "it needs at least 2 values of D and 3 of p; add values or ask for more --runs")
    cost = (cand[:, 0] / (1 - cand[:, 1]))[subsets].sum(axis=1)
    inv = np.linalg.inv(info[ok])
    per_target = np.einsum("tp,spq,tq->st", g_targets, inv, g_targets)
    score = cost[ok] * per_target.mean(axis=1)
    pick = int(np.argmin(score))
    chosen = subsets[ok][pick]
    return Design(
        law=law.name, unique_tokens=float(unique_tokens), runs_requested=runs,
        runs=[{"unique_tokens": float(cand[i, 0] * unique_tokens), "fraction": float(cand[i, 0]),
               "injection": float(cand[i, 1]), "cost": float(cand[i, 0] / (1 - cand[i, 1]))} for i in chosen],
        total_cost=float(cost[ok][pick]), cheapest_identifying_cost=float(cost[ok].min()),
        predicted_se=[{"injection": float(t), "relative_se_forgetting": float(options.noise * np.sqrt(v))}
                      for t, v in zip(targets, per_target[pick], strict=True)],
        prior=params, noise=options.noise, candidates=len(cand), identifying_subsets=int(ok.sum()),
        warnings=_design_warnings(law, runs, options, fractions),
    )


def _subsets(n_cand: int, runs: int) -> np.ndarray:
    count = math.comb(n_cand, runs)
    if count > MAX_SUBSETS:
        raise UserError(f"{count} ways to pick {runs} of {n_cand} candidate runs is too many to score; "
                        "pass fewer --fractions or --injections")
    return np.array(list(itertools.combinations(range(n_cand), runs)))


def _design_warnings(law: Law, runs: int, options: DesignOptions, fractions: list[float]) -> list[str]:
    n_par = len(one_model_params(law))
    out = []
    if runs < 3 * n_par:
        out.append(f"{runs} runs for {n_par} parameters, fewer than 3 per parameter: the fit will follow each "
                   "run's noise; the predicted SE assumes the law's form is right")
    if max(fractions) < 1:
        out.append(f"every run uses at most {max(fractions):g} of D: the forgetting at the full D is an "
                   f"extrapolation by a factor {1 / max(fractions):g} in D")
    if options.prior is None:
        out.append("the prior is a generic guess (alpha 0.3, beta 0.3, B 20 or 5 for forgetting-exp); "
                   "pass a fit of a similar study as the prior to sharpen the design")
    return out
