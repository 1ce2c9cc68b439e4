"""Ladders of pretrained models: where each model comes from, what identifies it, and the checks a
ladder must pass before anything runs (one shared tokenizer, a context long enough, a known LR).

A `ModelSource` is one model of a ladder: a local `save_pretrained` folder (`path`), a GGUF file in a
folder (`path` + `gguf_file`), or a hub id (`hub` + `revision`, needs the network). Its identity,
which goes into the run keys, is the content of its files (so moving a folder keeps the keys and
editing it gives new ones) or, for the hub, the id and revision.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from forgetlaw.errors import UserError

# Written by `forgetlaw export-hf` beside the weights: how the model was pretrained.
EXPORT_RECORD = "forgetlaw.json"
_SKIP = {"__pycache__"}


@dataclass(frozen=True)
class ModelSource:
    name: str
    path: str | None = None
    gguf_file: str | None = None
    hub: str | None = None
    revision: str | None = None
    trust_remote_code: bool = False
    lr: float | None = None  # the finetuning LR for this model; None: the folder's record, if any

    @property
    def label(self) -> str:
        return self.hub or str(Path(self.path or "").expanduser() / (self.gguf_file or ""))

    def load_kwargs(self) -> dict:
        return {"path": self.path, "gguf_file": self.gguf_file, "hub": self.hub, "revision": self.revision,
                "trust_remote_code": self.trust_remote_code}


def _files(source: ModelSource) -> list[Path]:
    """The files `from_pretrained` reads: the GGUF file alone, or the folder's top-level files."""
    folder = Path(source.path).expanduser()
    if source.gguf_file:
        return [folder / source.gguf_file]
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.suffix != ".pyc" and p.name not in _SKIP)


def _cache_file() -> Path:
    from forgetlaw import paths

    return paths.cache_dir() / "file-hashes.json"


def file_sha256_cached(path: Path) -> str:
    """sha256 of a (large) file, remembered by path, size and mtime: weights are hashed once."""
    from forgetlaw.provenance import file_sha256

    stat = path.stat()
    key = f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    cache = _cache_file()
    try:
        known = json.loads(cache.read_text())
    except (OSError, ValueError):
        known = {}
    if key not in known:
        known[key] = file_sha256(path)
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(known))
        os.replace(tmp, cache)
    return known[key]


def identity(source: ModelSource) -> dict:
    """What a run key records of a model: its files' content, or its hub id and revision."""
    if source.hub is not None:
        return {"hub": source.hub, "revision": source.revision or "main"}
    folder = Path(source.path).expanduser()
    if not folder.is_dir():
        raise UserError(f"ladder.models '{source.name}': path {folder} is not a folder; give the folder "
                        "written by save_pretrained (or the one holding the GGUF file)")
    files = {p.name: file_sha256_cached(p) for p in _files(source)}
    digest = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()[:16]
    return {"files_sha256": digest, "gguf_file": source.gguf_file}


def recorded(source: ModelSource) -> dict:
    """What `forgetlaw export-hf` recorded beside the weights ({} for any other model)."""
    if source.path is None:
        return {}
    record = Path(source.path).expanduser() / EXPORT_RECORD
    try:
        return json.loads(record.read_text())
    except (OSError, ValueError):
        return {}


def finetune_lr(source: ModelSource, spec_lr: float | None) -> float | None:
    """The finetuning LR: the study's, else the model entry's, else the LR its pretraining ended at
    when the folder records it (forgetlaw's own exported models do)."""
    return spec_lr if spec_lr is not None else (source.lr if source.lr is not None else recorded(source).get("final_lr"))


def tokenizer_signature(tokenizer) -> str:
    """Two tokenizers are the same when their vocabularies (token -> id) and EOS are: then every
    corpus tokenizes to the same ids for every model of the ladder."""
    vocab = sorted(tokenizer.get_vocab().items())
    return hashlib.sha256(json.dumps([vocab, tokenizer.eos_token_id]).encode()).hexdigest()


def save_tokenizer(tokenizer) -> Path:
    """Save a ladder's tokenizer once per content into the cache, so that its folder (and the data
    build keyed on it) stays the same from one sweep to the next."""
    import shutil

    from forgetlaw import paths

    folder = paths.cache_dir() / "tokenizers" / tokenizer_signature(tokenizer)[:16]
    if not (folder / "tokenizer_config.json").is_file():
        tmp = folder.with_name(f"{folder.name}.{os.getpid()}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tokenizer.save_pretrained(str(tmp))
        shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)
    return folder
