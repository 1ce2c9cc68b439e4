"""Scaling laws: laws as data, batched robust fitting, held-out validation, injection planning,
law comparison and one-model designs.

Stand-alone on purpose: numpy, scipy and pandas only, no other forgetlaw stage, so users can fit
tables produced anywhere. See docs/laws.md.
"""

from forgetlaw.laws.compare import Comparison, LawScore, Verdict, best_forgetting_law, compare_laws
from forgetlaw.laws.design import Design, DesignOptions, design_runs
from forgetlaw.laws.fit import FitReport, GroupFit, HoldoutFold, fit
from forgetlaw.laws.forms import LAWS, Law, Param, get_law
from forgetlaw.laws.onemodel import OneModelCheck, validate_one_model
from forgetlaw.laws.plan import Plan, min_injection, plan_injection
from forgetlaw.laws.saved import SavedFit, load_fit, save_fit
from forgetlaw.laws.table import parse_renames, read_table

__all__ = [
    "LAWS", "Comparison", "Design", "DesignOptions", "FitReport", "GroupFit", "HoldoutFold", "Law", "LawScore",
    "OneModelCheck", "Param", "Plan", "SavedFit", "Verdict", "best_forgetting_law", "compare_laws", "design_runs",
    "fit", "get_law", "load_fit", "min_injection", "parse_renames", "plan_injection", "read_table", "save_fit",
    "validate_one_model",
]
