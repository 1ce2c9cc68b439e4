"""Fits for the report made with `forgetlaw.laws`.

Per law, one call of `forgetlaw.laws.fit` with `holdout="largest-model"` (all domains in one batch)
gives two fits per domain:
- the full fit on every run, bootstrapped: its coefficients, CIs and in-sample MRE are reported, and
  the recommendation table plans from it;
- the holdout fold's fit on every run but the largest model's: its predictions for the largest model
  (`GroupFit.points["holdout_predicted"]`) are the held-out points of the predicted-vs-observed
  figure, and the held-out MRE is computed from them by the law engine.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from forgetlaw.errors import UserError
from forgetlaw.laws import fit, get_law, plan_injection, save_fit
from forgetlaw.report.fits import GroupFit, StudyFits


def fit_law(table: pd.DataFrame, law_name: str, bootstrap: int) -> tuple[list[GroupFit], object]:
    law = get_law(law_name)
    full = fit(table, law, by="domain", bootstrap=bootstrap, holdout="largest-model")
    views = []
    for group_fit in full.fits:
        domain = group_fit.group["domain"]
        points = group_fit.points
        held_part = points["heldout"].to_numpy(dtype=bool)
        observed = points["observed"].to_numpy(dtype=float)
        # In-sample predictions for the runs the full fit saw, the holdout fold's for the largest model.
        predicted = np.where(held_part, points["holdout_predicted"].to_numpy(dtype=float),
                             points["predicted"].to_numpy(dtype=float))
        ci = {k: (v[0], v[1]) for k, v in group_fit.ci.items()} if group_fit.ci else None
        views.append(GroupFit(law.name, law.target, {"domain": domain}, group_fit.params, ci,
                              group_fit.mre, group_fit.holdout_mre, group_fit.n,
                              observed, predicted, held_part))
    return views, full


def _planner(report):
    def plan(domain, model_size, unique_tokens, max_forgetting, relative):
        result = plan_injection(report, model_size, unique_tokens, max_forgetting,
                                relative=relative, domain=domain)
        ci = getattr(result, "ci", None)
        return result.injection, bool(result.feasible), tuple(ci) if ci is not None else None

    return plan


def fit_study(results: pd.DataFrame, bootstrap: int, laws: dict[str, str]) -> StudyFits:
    table = results.reset_index(drop=True)
    views, notes, planner, reports = [], [], None, []
    if table.groupby("domain")["model_size"].nunique().min() == 2:
        notes.append("With two model sizes, the held-out fit sees a single size, so its N exponent is "
                     "unconstrained: read the held-out MRE as a lower bound on usefulness, not a test of the law.")
    for law_name in laws:
        if table.groupby("domain")["model_size"].nunique().min() < 2:
            notes.append("Fits skipped: every domain needs at least two model sizes to hold out the largest.")
            break
        try:
            law_views, report = fit_law(table, law_name, bootstrap)
        except UserError as exc:
            # A study too small for a law (fewer runs than parameters) still gets its report.
            notes.append(f"{law_name} law not fitted: {exc}")
            continue
        views.extend(law_views)
        reports.append(report)
        if get_law(law_name).role == "forgetting":
            planner = _planner(report)

    def save(path: Path) -> Path:
        path.unlink(missing_ok=True)  # a fresh file: never mix in the fits of an older report
        for report in reports:
            save_fit(report, path)
        return path

    return StudyFits(views, planner=planner, note=" ".join(notes), saver=save if reports else None)
