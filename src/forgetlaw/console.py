"""Progress for long loops, shared by every stage: a tqdm bar with an ETA on a terminal, and plain
lines (at most one every `every_s` seconds, plus the last) when the output is a log or CI.

    with progress_bar(total=200, desc="bootstrap") as bar:
        for _ in range(200):
            ...
            bar.update()
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


def is_terminal(stream: TextIO | None) -> bool:
    return bool(getattr(stream, "isatty", lambda: False)())


class _Lines:
    """The non-terminal form: `desc: k/total (pct), elapsed, ETA` lines, throttled."""

    def __init__(self, total: int | None, desc: str, stream: TextIO, every_s: float, unit: str):
        self.total, self.desc, self.stream, self.every_s, self.unit = total, desc, stream, every_s, unit
        self.n = 0
        self.start = self.last = time.monotonic()
        self.postfix = ""

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self.last >= self.every_s:
            self.last = now
            self._print(now)

    def set_postfix_str(self, text: str) -> None:
        self.postfix = text

    def _print(self, now: float) -> None:
        elapsed = now - self.start
        if self.total:
            eta = elapsed / self.n * (self.total - self.n) if self.n else None
            done = f"{self.n}/{self.total} {self.unit} ({100 * self.n / self.total:.0f}%)"
        else:
            eta, done = None, f"{self.n} {self.unit}"
        text = f"{self.desc}: {done}, elapsed {elapsed:.0f}s" + (f", ETA {eta:.0f}s" if eta is not None else "")
        print(text + (f" [{self.postfix}]" if self.postfix else ""), file=self.stream, flush=True)

    def close(self) -> None:
        if self.n:
            self._print(time.monotonic())


class _Off:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass


class ProgressBar:
    """`update(n)`, `set_postfix_str(text)`, `close()`; also a context manager."""

    def __init__(self, total: int | None, desc: str, stream: TextIO | None = None, enabled: bool = True,
                 every_s: float = 10.0, unit: str = "it"):
        stream = stream if stream is not None else sys.stderr
        if not enabled:
            self._impl = _Off()
        elif is_terminal(stream):
            from tqdm.auto import tqdm

            self._impl = tqdm(total=total, desc=desc, file=stream, unit=unit, dynamic_ncols=True, leave=True)
        else:
            self._impl = _Lines(total, desc, stream, every_s, unit)

    def update(self, n: int = 1) -> None:
        self._impl.update(n)

    def set_postfix_str(self, text: str) -> None:
        self._impl.set_postfix_str(text)

    def close(self) -> None:
        self._impl.close()

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def progress_bar(total: int | None, desc: str, stream: TextIO | None = None, enabled: bool = True,
                 every_s: float = 10.0, unit: str = "it") -> ProgressBar:
    return ProgressBar(total, desc, stream, enabled, every_s, unit)
