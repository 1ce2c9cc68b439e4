"""Study sweeps: validated specs and presets, the SQLite results store, resumable runs on local
processes or Ray, and the canonical results table. See docs/study.md."""

from forgetlaw.study.plan import PlannedRun, plan_study
from forgetlaw.study.results import RESULT_COLUMNS, export_results, load_curves, load_results
from forgetlaw.study.runner import StudyOutcome, run_study
from forgetlaw.study.spec import PRESETS, StudySpec, load_preset, load_spec, spec_from_dict
from forgetlaw.study.store import ResultsStore

__all__ = [
    "PRESETS", "RESULT_COLUMNS", "PlannedRun", "ResultsStore", "StudyOutcome", "StudySpec",
    "export_results", "load_curves", "load_preset", "load_results", "load_spec", "plan_study",
    "run_study", "spec_from_dict",
]
