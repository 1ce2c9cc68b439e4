"""Progress over a study: runs done and failed, what is running, an ETA. One line per event on a
non-terminal (logs, CI); on a terminal a progress bar (`forgetlaw.console.progress_bar`, tqdm) over
the runs left to this session, with its ETA and the study's counts beside it, and the finished runs'
lines printed above it."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from forgetlaw.console import is_terminal, progress_bar


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


class StudyProgress:
    def __init__(self, total: int, done: int = 0, failed: int = 0, slots: int = 1,
                 stream: TextIO | None = None, enabled: bool = True,
                 remaining: dict[str, int] | None = None):
        self.total, self.done, self.failed, self.slots = total, done, failed, max(1, slots)
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.tty = is_terminal(self.stream)
        self.start = time.monotonic()
        self.finished_here = 0
        self.running = 0
        # Runs left by kind and the wall times seen this session: pretraining and finetuning runs
        # cost very different amounts, so the ETA prices each kind at its own mean.
        self.remaining = dict(remaining or {"finetune": total - done - failed})
        self.walls: dict[str, list[float]] = {kind: [] for kind in self.remaining}
        # The bar counts this session's runs only: runs finished before a resume would make its
        # rate (and so its ETA) look far faster than the runs left.
        self.bar = (progress_bar(max(0, total - done - failed), "study", self.stream, unit="run")
                    if enabled and self.tty else None)

    def eta_s(self) -> float | None:
        seen = [w for walls in self.walls.values() for w in walls]
        if not seen or sum(self.remaining.values()) <= 0:
            return None
        fallback = sum(seen) / len(seen)
        work = sum(n * (sum(self.walls[k]) / len(self.walls[k]) if self.walls.get(k) else fallback)
                   for k, n in self.remaining.items())
        return work / self.slots

    def counts(self) -> str:
        return f"{self.done}/{self.total} done, {self.failed} failed, {self.running} running"

    def line(self) -> str:
        eta = self.eta_s()
        return (f"study: {self.counts()}, elapsed {_duration(time.monotonic() - self.start)}"
                + (f", ETA {_duration(eta)}" if eta is not None else ""))

    def note(self, message: str) -> None:
        if self.enabled:
            if self.tty:
                self.stream.write("\r\033[K")
            print(message, file=self.stream, flush=True)

    def started(self, n: int = 1) -> None:
        self.running += n

    def finished(self, label: str, ok: bool, wall_s: float | None, error: str | None = None,
                 kind: str = "finetune") -> None:
        self.running -= 1
        self.finished_here += 1
        self.remaining[kind] = max(0, self.remaining.get(kind, 0) - 1)
        if wall_s is not None:
            self.walls.setdefault(kind, []).append(wall_s)
        if ok:
            self.done += 1
        else:
            self.failed += 1
        if self.bar is not None:
            self.bar.update()
        status = "done" if ok else "FAILED"
        wall = f" in {wall_s:.1f}s" if wall_s is not None else ""
        reason = f": {error.splitlines()[0]}" if error and not ok else ""
        self.note(f"{status} {label}{wall}{reason}")
        self.show()

    def show(self) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.set_postfix_str(self.counts())  # redraws the bar under any line just printed
        else:
            print(self.line(), file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
