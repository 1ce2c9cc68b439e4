"""Comparing laws on one table: errors on the loss and on F, in-sample and held out, AIC and BIC.

AIC and BIC come from the fit's own objective. The summed Huber loss H(theta) of the log residuals
is, up to a scale s, the negative log-likelihood of Huber's density
    f(r) = exp(-rho_delta(r) / s) / Z(s),  Z(s) = sqrt(2 pi s) erf(delta / sqrt(2 s)) + (2 s / delta) exp(-delta^2 / (2 s)),
Gaussian in the middle (|r| <= delta) and Laplace in the tails. With s profiled out,
    -log L = min_s [H / s + n log Z(s)],   AIC = 2 k + 2 (-log L),   BIC = k log(n) + 2 (-log L),
with k = the law's parameters + 1 (the scale). It is the Gaussian AIC when every |r| <= delta and the
Laplace one when delta -> 0. Only differences between laws fitted to the same rows with the same
delta mean anything. docs/laws.md, "Comparing laws".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from scipy.optimize import minimize_scalar
from scipy.special import erf

from forgetlaw.errors import UserError
from forgetlaw.laws.fit import FitReport, GroupFit, fit
from forgetlaw.laws.forms import LAWS, get_law
from forgetlaw.laws.validate import DEFAULT_FORGETTING_FLOOR

FORGETTING_LAWS = tuple(name for name, law in LAWS.items() if law.role == "forgetting")


def huber_log_normalizer(s: float, delta: float) -> float:
    """log Z(s) of Huber's density exp(-rho_delta(r) / s) / Z(s)."""
    middle = np.sqrt(2 * np.pi * s) * erf(delta / np.sqrt(2 * s))
    tails = 2 * s / delta * np.exp(-delta * delta / (2 * s))
    return float(np.log(middle + tails))


def huber_neg_log_likelihood(objective: float, n: int, delta: float) -> float:
    """min over the scale s of H / s + n log Z(s) (see the module docstring)."""
    if objective <= 0:
        return -np.inf  # a perfect fit: the likelihood is unbounded

    def nll(log_s: float) -> float:
        s = np.exp(log_s)
        return objective / s + n * huber_log_normalizer(s, delta)

    # Smooth in log s with one minimum, at s = 2 H / n when every |r| <= delta (Gaussian) and at
    # s = H / n when every |r| >> delta (Laplace): a bracket of e^±10 around them holds it.
    guess = np.log(max(1.5 * objective / n, 1e-300))
    best = minimize_scalar(nll, bounds=(guess - 10.0, guess + 10.0), method="bounded",
                           options={"xatol": 1e-10, "maxiter": 500})
    return float(best.fun)


def information_criteria(objective: float, n: int, n_params: int, delta: float) -> tuple[float, float]:
    """(AIC, BIC) from a fit's summed Huber objective over n rows; k = n_params + 1 (the scale)."""
    nll = huber_neg_log_likelihood(objective, n, delta)
    k = n_params + 1
    return 2 * k + 2 * nll, k * np.log(n) + 2 * nll


@dataclass
class LawScore:
    law: str
    role: str
    group: dict | None
    params: dict[str, float]
    ci: dict[str, list[float]] | None
    mre: float
    holdout_mre: float | None
    mre_forgetting: float | None
    holdout_mre_forgetting: float | None
    aic: float
    bic: float
    objective: float
    n: int
    warnings: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, report: FitReport, f: GroupFit) -> LawScore:
        objective = f.diagnostics["objective"]
        aic, bic = information_criteria(objective, f.n, len(report.law.params), report.settings["huber_delta"])
        return cls(report.law.name, report.law.role, f.group, f.params, f.ci, f.mre, f.holdout_mre,
                   f.mre_forgetting, f.holdout_mre_forgetting, aic, bic, objective, f.n, list(f.warnings))


@dataclass
class Comparison:
    laws: list[str]
    settings: dict
    scores: list[LawScore]
    reports: dict[str, FitReport] = field(default_factory=dict, repr=False)

    def to_json(self) -> dict:
        """Exactly the `forgetlaw compare --json` object."""
        return {"laws": self.laws, "settings": self.settings, "scores": [asdict(s) for s in self.scores]}


def parse_laws(spec: str | Sequence[str]) -> list[str]:
    names = [n.strip() for n in spec.split(",")] if isinstance(spec, str) else [str(n).strip() for n in spec]
    names = [n for n in names if n]
    if not names:
        raise UserError("--laws is empty; name laws separated by commas, e.g. forgetting,forgetting-exp")
    for name in names:
        if name not in LAWS:
            raise UserError(f"--laws: unknown law {name!r}; choose from: {', '.join(LAWS)}")
    if len(set(names)) != len(names):
        raise UserError(f"--laws {','.join(names)} names a law twice; name each once")
    return names


def compare_laws(df: pd.DataFrame, laws: str | Sequence[str] = FORGETTING_LAWS, by: str | Sequence[str] | None = None,
                 holdout: str | None = None, *, bootstrap: int = 0, seed: int = 0, huber_delta: float = 1e-3,
                 forgetting_floor: float = DEFAULT_FORGETTING_FLOOR, progress: bool = False) -> Comparison:
    """Fit each law to the same table with the same options; one score per (law, group)."""
    names = parse_laws(laws)
    for name in names:  # every column every law needs, before any fit runs
        law = get_law(name)
        missing = [c for c in (*law.columns, law.target) if c not in df.columns]
        if missing:
            raise UserError(f"law {name} reads column {missing[0]!r}, which the table lacks; "
                            f"rename yours with --column {missing[0]}=YOUR_NAME or drop {name} from --laws")
    reports, scores = {}, []
    for name in names:
        report = fit(df, name, by=by, bootstrap=bootstrap, holdout=holdout, seed=seed, huber_delta=huber_delta,
                     forgetting_floor=forgetting_floor, progress=progress)
        reports[name] = report
        scores += [LawScore.of(report, f) for f in report.fits]
    settings = {k: v for k, v in next(iter(reports.values())).settings.items()
                if k in ("by", "holdout", "bootstrap", "huber_delta", "seed", "forgetting_floor")}
    return Comparison(names, settings, scores, reports)


@dataclass
class Verdict:
    """Which forgetting law predicts held-out F best in one group, and by how much."""

    group: dict | None
    best: str | None
    best_error: float | None
    runner_up: str | None
    runner_up_error: float | None
    margin: float | None  # runner-up error minus best error (fraction, e.g. 0.03 = 3 points)
    ratio: float | None  # runner-up error / best error
    errors: dict[str, float | None]  # every law's held-out error on F

    def to_json(self) -> dict:
        return asdict(self)


def best_forgetting_law(df: pd.DataFrame, by: str | Sequence[str] | None = "domain",
                        holdout: str = "largest-model", laws: Sequence[str] = FORGETTING_LAWS,
                        **options) -> tuple[list[Verdict], Comparison]:
    """Fit every forgetting form; per group, the one with the least held-out error on F and its margin."""
    comparison = compare_laws(df, laws, by=by, holdout=holdout, **options)
    verdicts = []
    for group in _groups(comparison):
        errors = {s.law: s.holdout_mre_forgetting for s in comparison.scores if s.group == group}
        ranked = sorted((e, name) for name, e in errors.items() if e is not None)
        best = ranked[0] if ranked else (None, None)
        second = ranked[1] if len(ranked) > 1 else (None, None)
        margin = None if second[0] is None else second[0] - best[0]
        ratio = None if second[0] is None or best[0] == 0 else second[0] / best[0]
        verdicts.append(Verdict(group, best[1], best[0], second[1], second[0], margin, ratio, errors))
    return verdicts, comparison


def _groups(comparison: Comparison) -> list[dict | None]:
    seen = []
    for s in comparison.scores:
        if s.group not in seen:
            seen.append(s.group)
    return seen
