"""Warnings about a fit, as plain sentences a reader can act on (docs/laws.md, "Diagnostics").

Each check looks at one thing that makes fitted numbers untrustworthy even when the MRE is small:
a parameter that ended on its bound, a bootstrap CI wider than two decades, fewer than 3 rows per
parameter, a factor the table does not vary (and the parameters that leaves confounded), a best
start or bootstrap refits that did not converge.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from forgetlaw.laws.forms import Law

ROWS_PER_PARAMETER = 3  # below this many rows per parameter a fit can follow the noise
WIDE_CI_DECADES = 2.0  # a scale parameter whose CI spans more than this is barely constrained
BOOTSTRAP_CONVERGED = 0.9  # warn when fewer bootstrap refits than this share converged


def value_ranges(law: Law, part: pd.DataFrame) -> dict[str, list[float]]:
    """[min, max] of each factor the law reads (not L0, which is a measurement of the base model)."""
    return {c: [float(part[c].min()), float(part[c].max())] for c in law.columns if c != "pretrain_loss_before"}


def at_bound(law: Law, theta: np.ndarray) -> list[str]:
    span = law.upper - law.lower
    return [p.name for j, p in enumerate(law.params)
            if min(theta[j] - law.lower[j], law.upper[j] - theta[j]) <= 1e-6 * span[j]]


def confounded(law: Law, part: pd.DataFrame) -> tuple[list[str], set[str]]:
    """Sentences for each factor that takes one value, and the parameters they name."""
    sentences, names = [], set()
    for c in law.confounds:
        if c.column not in part or part[c.column].nunique() > 1:
            continue
        names.update(c.params)
        text = (f"the table has one {c.column} ({part[c.column].iloc[0]:g}): {' and '.join(c.params)} "
                f"are confounded ({c.note})")
        if c.rescue is not None:
            column, needed = c.rescue
            k = int(part[column].nunique()) if column in part else 0
            exponent = c.params[1]
            text += (f"; {exponent} is still identified through {column}, which takes {k} values"
                     if k >= needed else
                     f"; {column} takes {k} value(s), fewer than the {needed} that identify {exponent} through it")
        sentences.append(text + f"; predictions at another {c.column} are extrapolations")
    return sentences, names


def _bound_sentences(law: Law, theta: np.ndarray) -> list[str]:
    out = []
    public = law.to_public(theta)
    for name in at_bound(law, theta):
        j = law.param_names.index(name)
        side = "lower" if theta[j] - law.lower[j] <= law.upper[j] - theta[j] else "upper"
        bound = law.to_public(law.lower if side == "lower" else law.upper)[j]
        out.append(f"{name} = {public[j]:.4g} is at its {side} bound ({bound:.4g}): the data push it out of "
                   "the allowed range, so it and the parameters it trades off with are not estimates")
    return out


def _ci_sentences(law: Law, ci: dict[str, list[float]] | None, skip: set[str], level: float) -> list[str]:
    out = []
    for p in law.params:
        if not ci or not p.log or p.name in skip:
            continue
        lo, hi = ci[p.name]
        if lo > 0 and hi / lo > 10**WIDE_CI_DECADES:
            out.append(f"the {100 * level:.0f}% bootstrap CI of {p.name} [{lo:.3g}, {hi:.3g}] spans "
                       f"{np.log10(hi / lo):.1f} decades: these rows barely constrain it")
    return out


def fit_warnings(law: Law, part: pd.DataFrame, theta: np.ndarray, ci: dict[str, list[float]] | None,
                 diagnostics: dict) -> list[str]:
    """Every warning for one group's fit; `theta` is the internal best fit."""
    n, n_par = len(part), len(law.params)
    warnings = _bound_sentences(law, theta)
    confound_text, confounded_names = confounded(law, part)
    level = diagnostics.get("bootstrap", {}).get("ci_level", 0.95)
    # A confounded scale's CI is wide by construction; the confound sentence already says why.
    warnings += _ci_sentences(law, ci, confounded_names, level)
    if n < ROWS_PER_PARAMETER * n_par:
        warnings.append(f"{n} rows for {n_par} parameters, fewer than {ROWS_PER_PARAMETER} per parameter: "
                        "the fit can follow the noise; add runs")
    warnings += confound_text
    if not diagnostics.get("best_start_converged", True):
        warnings.append("the best start stopped at the iteration cap before converging")
    boot = diagnostics.get("bootstrap")
    if boot and boot["converged"] < BOOTSTRAP_CONVERGED * boot["resamples"]:
        warnings.append(f"only {boot['converged']} of {boot['resamples']} bootstrap refits converged: "
                        "the CIs are rough")
    return warnings
