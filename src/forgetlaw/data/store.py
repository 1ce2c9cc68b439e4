"""The token store: per corpus and split a flat token array (`.bin`, memmapped) and document offsets,
described by `manifest.json` (sources, versions, sha256 of raw artefacts and token files, counts).

Layout of a build root::

    manifest.json
    tokenizer/                 save_pretrained folder (AutoTokenizer loads it)
    corpora/<name>/{train,val}.bin         uint16 (vocab <= 65536) or uint32 tokens, EOS between docs
    corpora/<name>/{train,val}.starts.npy  int64 token offset of each document
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from forgetlaw.errors import UserError
from forgetlaw.provenance import config_hash, file_sha256

MANIFEST = "manifest.json"
SPLITS = ("train", "val")
PRETRAIN_CORPUS = "generic"


def write_manifest(root: Path, manifest: dict) -> None:
    tmp = root / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True))
    os.replace(tmp, root / MANIFEST)


def read_manifest(root: Path) -> dict | None:
    path = root / MANIFEST
    if not path.exists():
        return None
    return json.loads(path.read_text())


def view_hash(manifest: dict, corpora: list[str]) -> str:
    """Hash of what a study consumes: tokenizer + the chosen corpora (not timings, not other domains)."""
    return config_hash({
        "format": manifest["format"], "dtype": manifest["dtype"], "tokenizer": manifest["tokenizer"],
        "corpora": {name: manifest["corpora"][name] for name in sorted(corpora)},
    })


def file_records(manifest: dict) -> list[dict]:
    """Every file the manifest pins: {path (relative), bytes, sha256}."""
    records = [dict(f) for f in manifest["tokenizer"]["files"]]
    for entry in manifest["corpora"].values():
        for split in entry["splits"].values():
            records.append({"path": split["file"], "bytes": split["bytes"], "sha256": split["sha256"]})
            records.append({"path": split["starts_file"], "bytes": split["starts_bytes"],
                            "sha256": split["starts_sha256"]})
    return records


def check_files(root: Path, manifest: dict, full: bool) -> None:
    """Raise a one-line UserError naming the first missing, truncated or modified file."""
    for record in file_records(manifest):
        path = root / record["path"]
        fix = f"delete {root} and run 'forgetlaw data build' again"
        if not path.exists():
            raise UserError(f"data file {path} is missing; {fix}")
        size = path.stat().st_size
        if size != record["bytes"]:
            raise UserError(f"data file {path} has {size} bytes, the manifest says {record['bytes']} "
                            f"(truncated or changed); {fix}")
        if full and file_sha256(path) != record["sha256"]:
            raise UserError(f"data file {path} does not match its sha256 in the manifest (modified); {fix}")


class DataStore:
    """A built data directory: token arrays of the generic corpus and the domains, and the tokenizer."""

    pretrain_corpus = PRETRAIN_CORPUS

    def __init__(self, root: Path, manifest: dict, domains: list[str] | None = None):
        self.root = Path(root)
        self.manifest = manifest
        built = [name for name in manifest["corpora"] if name != PRETRAIN_CORPUS]
        self.domains = list(domains) if domains is not None else sorted(built)
        for name in self.domains:
            if name not in manifest["corpora"]:
                raise UserError(f"domains: '{name}' is not built in {root} (built: {sorted(built)}); "
                                "build it with 'forgetlaw data build --domains ...'")
        self.manifest_hash = view_hash(manifest, [PRETRAIN_CORPUS, *self.domains])
        self.tokenizer_path = self.root / manifest["tokenizer"]["path"]
        self.vocab_size = int(manifest["tokenizer"]["vocab_size"])
        self.eos_id = int(manifest["tokenizer"]["eos_id"])
        self.dtype = np.dtype(manifest["dtype"])

    def _split(self, corpus: str, split: str) -> dict:
        if corpus not in self.manifest["corpora"]:
            raise UserError(f"corpus: '{corpus}' is not in this build (has "
                            f"{sorted(self.manifest['corpora'])}); build it with --domains {corpus}")
        if split not in SPLITS:
            raise UserError(f"split: '{split}' must be 'train' or 'val'")
        return self.manifest["corpora"][corpus]["splits"][split]

    def tokens(self, corpus: str, split: str) -> np.ndarray:
        """The 1-D token memmap (read-only), documents separated by `eos_id`."""
        entry = self._split(corpus, split)
        return np.memmap(self.root / entry["file"], dtype=self.dtype, mode="r", shape=(entry["tokens"],))

    def document_starts(self, corpus: str, split: str) -> np.ndarray:
        """Token offset of each document in `tokens(corpus, split)`, in the fixed document order."""
        return np.load(self.root / self._split(corpus, split)["starts_file"])

    def load_tokenizer(self):
        from transformers import PreTrainedTokenizerFast

        return PreTrainedTokenizerFast.from_pretrained(str(self.tokenizer_path))

    def verify(self, full: bool = True) -> None:
        check_files(self.root, self.manifest, full)

    def rows(self) -> list[dict]:
        """One row per corpus for tables: name, source, documents, MB, tokens."""
        out = []
        for name, entry in self.manifest["corpora"].items():
            splits = entry["splits"]
            out.append({
                "corpus": name,
                "source": ", ".join(s["name"] for s in entry["sources"]),
                "documents": sum(s["documents"] for s in splits.values()),
                "mb": round(sum(s["mb"] for s in splits.values()), 2),
                "tokens": sum(s["tokens"] for s in splits.values()),
                "train_tokens": splits["train"]["tokens"],
                "val_tokens": splits["val"]["tokens"],
            })
        return out


def open_data(root: Path | str, domains: list[str] | None = None, verify: bool = False) -> DataStore:
    """An existing build (a folder with manifest.json). Sizes are always checked; `verify` hashes too."""
    root = Path(root).expanduser()
    manifest = read_manifest(root)
    if manifest is None:
        raise UserError(f"data root {root} has no {MANIFEST}; run 'forgetlaw data build' "
                        "or give the folder it printed")
    check_files(root, manifest, full=verify)
    return DataStore(root, manifest, domains)
