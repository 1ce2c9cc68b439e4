"""Provenance shared by every stage: code version and stable hashes of configs and files."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from forgetlaw import __version__


def _jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if hasattr(obj, "model_dump"):  # pydantic models
        return _jsonable(obj.model_dump(mode="json"))
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float) and obj.is_integer():
        # 1.0 and 1 hash alike, so a YAML "1" and a computed 1.0 give the same run key.
        return int(obj)
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        return _jsonable(obj.item())
    return obj


def canonical_json(obj: Any) -> str:
    """Stable JSON of a config: sorted keys, no whitespace, dataclasses and pydantic models expanded."""
    return json.dumps(_jsonable(obj), sort_keys=True, separators=(",", ":"), default=str)


def config_hash(obj: Any, length: int = 16) -> str:
    """Hex digest that identifies a config; equal configs give equal hashes across processes."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:length]


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@lru_cache(maxsize=1)
def code_version() -> str:
    """Package version, plus the git commit (and '-dirty') when running from a checkout."""
    root = Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return __version__
    return f"{__version__}+g{sha}{'-dirty' if dirty else ''}" if sha else __version__


# Field metadata that decides what a run key covers (see `keyed_fields`).
KEY = "key"
NEVER = "never"  # how a run is executed, not what it computes (device placement, checkpoint timing)
IF_SET = "if-set"  # an option added after keys were fixed: in the key only when not at its default


def keyed_fields(config: Any) -> dict[str, Any]:
    """A config dataclass as the dict a run key hashes: `asdict`, minus the fields whose metadata
    says `key: never`, minus those with `key: if-set` that hold their default. So adding an option to
    a training config leaves the keys of every run that does not use it as they were (finished runs
    are not redone), while a run that sets it gets a key of its own."""
    return key_view(type(config), dataclasses.asdict(config))


def key_view(cls: type, values: dict[str, Any]) -> dict[str, Any]:
    """`values` (a config of dataclass `cls` as a dict) less what `keyed_fields` leaves out."""
    out = dict(values)
    for f in dataclasses.fields(cls):
        rule = f.metadata.get(KEY)
        if f.name in out and (rule == NEVER or (rule == IF_SET and out[f.name] == _default_of(f))):
            del out[f.name]
    return out


def _default_of(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def provenance(config: Any = None, seed: int | None = None, data_manifest_hash: str | None = None) -> dict:
    """The provenance block stored with every result and report."""
    block: dict[str, Any] = {"code_version": code_version()}
    if config is not None:
        block["config"] = _jsonable(config)
        block["config_hash"] = config_hash(config)
    if seed is not None:
        block["seed"] = seed
    if data_manifest_hash is not None:
        block["data_manifest_hash"] = data_manifest_hash
    return block
