"""The study progress display: counts and an ETA that prices each kind of run at its own pace."""

from __future__ import annotations

import io

from forgetlaw.study.progress import StudyProgress


def test_progress_lines_and_eta():
    out = io.StringIO()
    bar = StudyProgress(total=6, done=1, slots=2, stream=out, remaining={"pretrain": 1, "finetune": 4})
    assert bar.eta_s() is None
    bar.started(2)
    bar.finished("pretrain d32", True, 40.0, kind="pretrain")
    bar.finished("d32 code D=1024 p=0 seed=0", True, 2.0)
    # 3 finetuning runs left at 2 s each on 2 slots; the 40 s pretraining run does not inflate it.
    assert bar.eta_s() == 3.0
    bar.started()
    bar.finished("d32 code D=1024 p=0.2 seed=0", False, 1.0, "TrainingDiverged: loss is nan\ntraceback")
    text = out.getvalue()
    assert "FAILED d32 code D=1024 p=0.2 seed=0 in 1.0s: TrainingDiverged: loss is nan" in text
    assert "traceback" not in text
    assert text.strip().splitlines()[-1].startswith("study: 3/6 done, 1 failed, 0 running")
