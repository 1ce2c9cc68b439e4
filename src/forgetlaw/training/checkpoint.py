"""Checkpoints: one file holding the model, its config, and (while a run is unfinished) the
optimizer, RNG states and step, written atomically so an interrupted save never corrupts a run.

Checkpoints are read with `torch.load(weights_only=True)`: tensors and plain data (dicts, lists,
tuples, numbers, strings) only, so a checkpoint someone hands you cannot run code when it is loaded.
Everything forgetlaw saves is of that kind.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
from pathlib import Path

import torch

from forgetlaw.errors import UserError
from forgetlaw.models.gpt import GPT, GPTConfig

FORMAT = "forgetlaw-gpt-v1"


def save_checkpoint(path: Path, payload: dict) -> None:
    """Write to a temporary file, fsync, then rename over `path`: a kill or a full disk at any moment
    leaves the previous checkpoint whole and no partial file behind. A full disk raises the OSError
    (ENOSPC) itself, not torch's RuntimeError about a failed write."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        with open(tmp, "wb") as handle:
            try:
                torch.save({"format": FORMAT, **payload}, handle)
            except RuntimeError as exc:
                if isinstance(exc.__context__, OSError):  # torch's zip writer wraps the failed write
                    raise exc.__context__ from None
                raise
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def write_text_atomic(path: Path, text: str) -> None:
    """A small text file (result.json) written like a checkpoint: whole or not at all."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        with open(tmp, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _fsync_dir(folder: Path) -> None:
    # The rename itself survives a power cut only once the folder is synced (POSIX; not on Windows).
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_checkpoint(path: Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise UserError(f"checkpoint {path} does not exist; pretrain first or pass the right path")
    if path.is_dir():
        raise UserError(f"checkpoint {path} is a folder; pass the checkpoint.pt file inside it")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # weights_only refuses any GLOBAL (a class or function the pickle would import and call);
        # other unpickling errors are a file that is simply not a checkpoint
        if "global" in str(exc).lower():
            raise UserError(
                f"{path} holds Python objects that could run code when loaded, not only tensors and plain "
                "data; refused. forgetlaw loads checkpoints with torch.load(weights_only=True): pass a "
                "checkpoint.pt that 'forgetlaw pretrain' wrote") from None
        payload = None
    except Exception:  # a text file, a truncated save, another framework's file: the user's file
        payload = None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise UserError(f"{path} is not a forgetlaw checkpoint (truncated, or another format); pass the "
                        "checkpoint.pt that pretrain wrote, or delete it and pretrain again")
    return payload


def load_model(path: Path) -> tuple[GPT, dict]:
    """The GPT stored in a checkpoint (on CPU) and the checkpoint's metadata."""
    payload = read_checkpoint(path)
    try:
        model = GPT(GPTConfig(**payload["model_config"]))
        model.load_state_dict(payload["model"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise UserError(f"{path}: its model does not load ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0][:200]}); pass a checkpoint.pt that pretrain wrote") from None
    meta = {k: v for k, v in payload.items() if k not in ("model", "optimizer", "rng")}
    return model, meta


def config_dict(config) -> dict:
    return dataclasses.asdict(config)
