"""Checkpoints: one file holding the model, its config, and (while a run is unfinished) the
optimizer, RNG states and step, written atomically so an interrupted save never corrupts a run."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import torch

from forgetlaw.errors import UserError
from forgetlaw.models.gpt import GPT, GPTConfig

FORMAT = "forgetlaw-gpt-v1"


def save_checkpoint(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save({"format": FORMAT, **payload}, tmp)
    os.replace(tmp, path)


def read_checkpoint(path: Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise UserError(f"checkpoint {path} does not exist; pretrain first or pass the right path")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception:  # a text file, a truncated save, another framework's pickle: the user's file
        payload = None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise UserError(f"{path} is not a forgetlaw checkpoint; pass the checkpoint.pt that pretrain wrote")
    return payload


def load_model(path: Path) -> tuple[GPT, dict]:
    """The GPT stored in a checkpoint (on CPU) and the checkpoint's metadata."""
    payload = read_checkpoint(path)
    model = GPT(GPTConfig(**payload["model_config"]))
    model.load_state_dict(payload["model"])
    meta = {k: v for k, v in payload.items() if k not in ("model", "optimizer", "rng")}
    return model, meta


def config_dict(config) -> dict:
    return dataclasses.asdict(config)
