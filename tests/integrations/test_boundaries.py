"""`integrations` is a leaf: no stage imports it, and a sweep without a tracker imports no tracker."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "forgetlaw"
STAGES = ("data", "models", "training", "study", "laws", "report")


IMPORT = re.compile(r"^\s*(from|import)\s+forgetlaw\.integrations", re.MULTILINE)


def test_no_stage_imports_integrations():
    offenders = [str(path.relative_to(SRC)) for stage in STAGES for path in (SRC / stage).rglob("*.py")
                 if IMPORT.search(path.read_text())]
    assert offenders == []


def test_the_study_stage_loads_without_tracker_libraries():
    code = ("import sys, forgetlaw.study.runner, forgetlaw.study.tracking; "
            "print(sorted(m for m in ('mlflow', 'wandb', 'forgetlaw.integrations') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(SRC.parent), "PATH": "/usr/bin:/bin"})
    assert out.stdout.strip() == "[]"
