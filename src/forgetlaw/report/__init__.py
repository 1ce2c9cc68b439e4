"""The report stage: the paper's figures, its claims checked against a study, the HTML report, the demo.

`build_report(results, curves, out_dir, provenance, fits=None, options=None)` turns the canonical
results table and the curves table (docs/interfaces.md) into `report.html`, PNGs and `report.json`.
"""

from forgetlaw.report.build import Budget, ReportOptions, build_report
from forgetlaw.report.claims import Claim, ClaimSettings, check_claims
from forgetlaw.report.fits import GroupFit, StudyFits, fit_study

__all__ = ["Budget", "Claim", "ClaimSettings", "GroupFit", "ReportOptions", "StudyFits",
           "build_report", "check_claims", "fit_study"]
