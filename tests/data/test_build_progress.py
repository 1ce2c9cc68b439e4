"""`build_data(..., bar=True)`: a progress bar over the corpora on a terminal, today's lines elsewhere."""

from __future__ import annotations

import io
import sys

from conftest import small_config
from forgetlaw.data import build_data


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_a_bar_over_the_corpora(tmp_path, prose_dir, code_jsonl, monkeypatch):
    tty = _Terminal()
    monkeypatch.setattr(sys, "stderr", tty)
    lines: list[str] = []
    config = small_config(tmp_path, prose_dir, domains=("code",), source_dirs={"code": code_jsonl})
    build_data(config, progress=lines.append, bar=True)
    text = tty.getvalue()
    assert "data build" in text and "2/2" in text and "\r" in text  # generic, then code
    assert "code/val" in text  # the messages ride on the bar...
    assert lines == []  # ... instead of going out as lines


def test_off_a_terminal_the_lines_stay_and_no_bar_is_drawn(tmp_path, prose_dir, monkeypatch):
    plain = io.StringIO()
    monkeypatch.setattr(sys, "stderr", plain)
    lines: list[str] = []
    build_data(small_config(tmp_path, prose_dir, domains=()), progress=lines.append, bar=True)
    assert any(line.startswith("generic/train") for line in lines)
    assert plain.getvalue() == ""
