"""Test-wide settings: one torch thread per test process keeps the 2-core machine from thrashing."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Tests never touch the user's cache unless a test sets FORGETLAW_CACHE itself."""
    if "FORGETLAW_CACHE" not in os.environ:
        monkeypatch.setenv("FORGETLAW_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
