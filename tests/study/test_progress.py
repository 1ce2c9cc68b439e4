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


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_a_bar_over_this_sessions_runs_with_the_lines_above_it():
    tty = _Terminal()
    bar = StudyProgress(total=5, done=2, slots=1, stream=tty)
    bar.show()
    bar.started()
    bar.finished("d32 code D=1024 p=0 seed=0", True, 2.0)
    bar.started()
    bar.finished("d32 code D=1024 p=0.2 seed=0", False, 1.0, "TrainingDiverged: loss is nan")
    bar.close()
    text = tty.getvalue()
    # tqdm's bar, counting the 3 runs left to this session (not the 2 done before the resume)
    assert "study" in text and "2/3" in text and "\r" in text
    assert "3/5 done, 1 failed, 0 running" in text.splitlines()[-1]
    # each finished run is a line of its own, cleared of the bar first
    assert "\r\033[Kdone d32 code D=1024 p=0 seed=0 in 2.0s\n" in text
    assert "FAILED d32 code D=1024 p=0.2 seed=0 in 1.0s: TrainingDiverged: loss is nan\n" in text
