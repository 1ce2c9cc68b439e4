"""The saved-fit file (`forgetlaw fit --save FIT`): one JSON file, one slot per law role.

A file holds at most one fit per role: "forgetting" (predicts pretrain_loss), "finetuning"
(predicts finetune_loss) and "loss" (chinchilla). Saving into an existing fit file replaces that
role's slot and keeps the others, so

    forgetlaw fit runs.csv --law forgetting --by domain --bootstrap 1000 --save fit.json
    forgetlaw fit runs.csv --law finetuning-injection --by domain --save fit.json

gives a file that `forgetlaw plan` reads for both the injection and the predicted target losses.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from forgetlaw.errors import UserError
from forgetlaw.laws.fit import FitReport, GroupFit, HoldoutFold
from forgetlaw.laws.forms import get_law

FORMAT = "forgetlaw-fit"
VERSION = 1
ROLES = ("forgetting", "finetuning", "loss")


@dataclass
class SavedFit:
    forgetting: FitReport | None = None
    finetuning: FitReport | None = None
    loss: FitReport | None = None

    def get(self, role: str) -> FitReport | None:
        return getattr(self, role)


def _group_record(f: GroupFit) -> dict:
    rec = f.to_json(points=True)
    rec["diagnostics"] = f.diagnostics
    rec["holdout_folds"] = [fold.to_json() for fold in f.holdout_folds]
    rec["bootstrap_params"] = None if f.bootstrap_params is None else f.bootstrap_params.tolist()
    rec["pretrain_loss_before"] = (None if f.pretrain_loss_before is None
                                   else [[n, l0] for n, l0 in sorted(f.pretrain_loss_before.items())])
    return rec


def report_record(report: FitReport) -> dict:
    return {"law": report.law.name, "param_names": list(report.law.param_names),
            "settings": report.settings, "provenance": report.provenance,
            "fits": [_group_record(f) for f in report.fits]}


def report_from_record(rec: dict) -> FitReport:
    law = get_law(rec["law"])
    fits = []
    for f in rec["fits"]:
        boot = f.get("bootstrap_params")
        l0 = f.get("pretrain_loss_before")
        points = f.get("points")
        fits.append(GroupFit(
            group=f["group"], params={k: float(v) for k, v in f["params"].items()}, ci=f["ci"],
            mre=f["mre"], holdout_mre=f["holdout_mre"], n=f["n"], diagnostics=f.get("diagnostics", {}),
            bootstrap_params=None if boot is None else np.asarray(boot, dtype=float),
            pretrain_loss_before=None if l0 is None else {float(n): float(v) for n, v in l0},
            # Files written before the error on F and the warnings existed read as "not computed".
            mre_forgetting=f.get("mre_forgetting"), holdout_mre_forgetting=f.get("holdout_mre_forgetting"),
            warnings=list(f.get("warnings", [])), ranges=f.get("ranges"),
            points=None if points is None else pd.DataFrame(points).astype({"heldout": bool}),
            holdout_folds=[HoldoutFold(dict(h["params"]), list(h["held_out"])) for h in f.get("holdout_folds", [])],
        ))
    return FitReport(law=law, fits=fits, settings=rec.get("settings", {}), provenance=rec.get("provenance", {}))


def _read_raw(path: Path) -> dict:
    try:
        raw = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{str(path)!r} is not a readable forgetlaw fit file ({type(exc).__name__}); "
                        "make one with forgetlaw fit ... --save FIT") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise UserError(f"{str(path)!r} is not a forgetlaw fit file; make one with forgetlaw fit ... --save FIT")
    if raw.get("version") != VERSION:
        raise UserError(f"{str(path)!r} has fit-file version {raw.get('version')}, this forgetlaw reads "
                        f"{VERSION}; refit with forgetlaw fit ... --save FIT")
    return raw


def check_save_target(path: str | Path) -> None:
    """Fail before fitting, so that a bad --save writes nothing and wastes no time."""
    path = Path(path)
    if path.exists():
        _read_raw(path)
    elif not path.parent.exists():
        raise UserError(f"--save {str(path)!r}: folder {str(path.parent)!r} does not exist; create it first")


def save_fit(report: FitReport, path: str | Path) -> Path:
    """Write `report` into its role's slot of the fit file at `path` (atomically)."""
    path = Path(path)
    check_save_target(path)
    raw = _read_raw(path) if path.exists() else {"format": FORMAT, "version": VERSION, "fits": {}}
    raw["fits"][report.law.role] = report_record(report)
    text = json.dumps(raw, indent=1, allow_nan=False, default=float)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_fit(path: str | Path) -> SavedFit:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"fit file {str(path)!r} does not exist; make one with forgetlaw fit ... --save FIT")
    raw = _read_raw(path)
    slots = {}
    for role in ROLES:
        rec = raw["fits"].get(role)
        slots[role] = None if rec is None else report_from_record(rec)
    return SavedFit(**slots)
