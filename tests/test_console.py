"""The shared progress bar: plain throttled lines off a terminal, a tqdm bar on one."""

from __future__ import annotations

import io

from forgetlaw.console import progress_bar


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_plain_lines_off_a_terminal_end_with_the_total():
    out = io.StringIO()
    with progress_bar(total=5, desc="bootstrap", stream=out, every_s=3600) as bar:
        for _ in range(5):
            bar.update()
    lines = out.getvalue().splitlines()
    # throttled to nothing during the loop, then one closing line with the count
    assert lines == [lines[0]] and lines[0].startswith("bootstrap: 5/5 it (100%)")
    assert "\r" not in out.getvalue()


def test_a_terminal_gets_a_bar_and_disabled_prints_nothing():
    tty = _Terminal()
    with progress_bar(total=3, desc="sweep", stream=tty) as bar:
        bar.update(3)
    assert "sweep" in tty.getvalue() and "3/3" in tty.getvalue() and "\r" in tty.getvalue()
    quiet = io.StringIO()
    with progress_bar(total=3, desc="x", stream=quiet, enabled=False) as bar:
        bar.update(3)
    assert quiet.getvalue() == ""
