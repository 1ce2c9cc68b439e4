"""The integrations tests keep datasets' cache out of the user's home (where datasets is not yet
imported; the tests also pass cache folders of their own where the API takes one)."""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("HF_DATASETS_CACHE", tempfile.mkdtemp(prefix="forgetlaw-hf-datasets-"))
os.environ.setdefault("WANDB_SILENT", "true")
