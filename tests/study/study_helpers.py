"""Helpers of the study tests: byte-level token arrays from the repository's own text files and a
tiny spec (a one-layer width-16 GPT, a few short finetuning runs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[2]


def bytes_of(paths: list[Path]) -> np.ndarray:
    data = b"\0".join(p.read_bytes() for p in sorted(paths))
    return np.frombuffer(data, dtype=np.uint8).astype(np.uint16)


def split_tokens(tokens: np.ndarray, val_tokens: int) -> dict[str, np.ndarray]:
    return {"train": tokens[:-val_tokens].copy(), "val": tokens[-val_tokens:].copy()}


def tiny_spec_dict(token_files: dict | None = None, **changes) -> dict:
    spec = {
        "name": "tiny",
        "seq_len": 32,
        "ladder": {"shapes": [{"name": "t16", "n_layer": 1, "d_model": 16, "n_head": 1}]},
        "domains": ["code"],
        "unique_tokens": [1024, 2048],
        "injection": [0.0, 0.2],
        "seeds": [0],
        "pretrain": {"tokens_per_param": 8, "batch_size": 8, "eval_tokens": 512, "lr": 3e-3},
        "finetune": {"batch_size": 4, "eval_tokens": 256, "min_eval_interval_steps": 2, "patience": 2,
                     "max_epochs": 3, "warmup_steps": 2},
        "execution": {"device": "cpu", "progress_every_s": 60},
    }
    if token_files is not None:
        spec["data"] = {"token_files": token_files}
    spec.update(changes)
    return spec


def write_spec(path: Path, spec: dict) -> Path:
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def visible_devices_after(seconds: float) -> str | None:
    """What a worker process sees as CUDA_VISIBLE_DEVICES, after holding it busy for a while (so
    that concurrent calls land on different workers)."""
    import os
    import time

    time.sleep(seconds)
    return os.environ.get("CUDA_VISIBLE_DEVICES")
