"""Scaling laws: laws as data, batched robust fitting, held-out validation, injection planning.

Stand-alone on purpose: numpy, scipy and pandas only, no other forgetlaw stage, so users can fit
tables produced anywhere. See docs/laws.md.
"""

from forgetlaw.laws.fit import FitReport, GroupFit, fit
from forgetlaw.laws.forms import LAWS, Law, Param, get_law
from forgetlaw.laws.plan import Plan, min_injection, plan_injection
from forgetlaw.laws.saved import SavedFit, load_fit, save_fit
from forgetlaw.laws.table import parse_renames, read_table

__all__ = [
    "LAWS", "FitReport", "GroupFit", "Law", "Param", "Plan", "SavedFit", "fit", "get_law",
    "load_fit", "min_injection", "parse_renames", "plan_injection", "read_table", "save_fit",
]
