"""Where forgetlaw keeps built data and other reusable artefacts."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """The per-user cache: ``$FORGETLAW_CACHE``, else ``$XDG_CACHE_HOME/forgetlaw``, else ``~/.cache/forgetlaw``."""
    explicit = os.environ.get("FORGETLAW_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "forgetlaw"
