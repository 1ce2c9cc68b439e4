"""Law fits as the report sees them, and the bridge to `forgetlaw.laws`.

The report needs, per law and per domain: the fitted parameters with their bootstrap CIs, the MRE
in-sample and on the held-out largest model, and every run's observed and predicted value (for the
predicted-vs-observed figure). `GroupFit` holds exactly that, so a report can be built from fits
made by `forgetlaw.laws` (`fit_study`) or from any other source that fills these fields.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

# The two laws the report shows, and the column each predicts.
REPORT_LAWS = {"forgetting": "pretrain_loss", "finetuning": "finetune_loss"}


@dataclass
class GroupFit:
    law: str
    target: str                                   # column the law predicts
    group: dict | None                            # e.g. {"domain": "code"}; None for a pooled fit
    params: dict[str, float]
    ci: dict[str, tuple[float, float]] | None
    mre: float                                    # in-sample mean |pred - obs| / obs
    holdout_mre: float | None                     # on the held-out largest model
    n: int
    observed: np.ndarray = field(repr=False)
    predicted: np.ndarray = field(repr=False)
    heldout: np.ndarray = field(repr=False)       # bool per row: was this run held out of the fit

    @property
    def label(self) -> str:
        return ", ".join(f"{v}" for v in self.group.values()) if self.group else "all"

    def summary(self) -> dict:
        return {"law": self.law, "group": self.group, "params": self.params, "ci": self.ci,
                "mre": self.mre, "holdout_mre": self.holdout_mre, "n": self.n}


# (domain, model_size, unique_tokens, max_forgetting, relative) -> (injection or None, feasible, ci or None)
Planner = Callable[[str, float, float, float, bool], tuple[float | None, bool, tuple[float, float] | None]]


@dataclass
class StudyFits:
    fits: list[GroupFit]
    planner: Planner | None = None
    note: str = ""                                # why fits are missing or partial, shown in the report
    # Writes the fits in the law engine's fit-file format (for `forgetlaw plan FIT ...`); None: no file.
    saver: Callable[[Path], Path] | None = None


def fit_study(results: pd.DataFrame, bootstrap: int = 200, laws: dict[str, str] | None = None) -> StudyFits:
    """Fit the report's laws per domain with `forgetlaw.laws`, the largest model held out."""
    from forgetlaw.report import lawbridge  # lawbridge imports this module's types

    return lawbridge.fit_study(results, bootstrap=bootstrap, laws=laws or REPORT_LAWS)
