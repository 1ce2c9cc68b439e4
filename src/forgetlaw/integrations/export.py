"""`forgetlaw export-mix SPEC --out DIR`: the mixed training set on disk, for trainers that take a
dataset and have no mixing weights (TRL, axolotl, a plain Trainer), and the weights that make
trainers which mix on their own (LLaMA-Factory, Megatron-LM) draw the same fraction of sequences.

The SPEC (YAML or TOML; relative paths are relative to the SPEC file):

    target: data/my-domain.jsonl      # a JSONL file (`text` field), a text file or folder, a
    pretrain: hf:allenai/c4:en@train  #   save_to_disk folder, a .npy token array, or hf:NAME[:CONFIG][@SPLIT]
    p: 0.05                           # the injected fraction of sequences, in [0, 1)
    seed: 0
    sequences: 100000                 # rows in all (target + injected) ... or
    # epochs: 3                       # ... passes over the target (injected rows do not count)
    format: jsonl                     # jsonl | save_to_disk
    seq_len: 128                      # tokens per sequence, for .npy token arrays
    text_column: text                 # the column holding the text (pretrain_column: for the other)
    mark: injected                    # optional: a boolean column, True for injected rows
"""

from __future__ import annotations

import json
import math
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from forgetlaw.data import byo
from forgetlaw.errors import UserError
from forgetlaw.integrations.datasets import (
    MixPlan,
    check_fraction,
    mixed_pairs,
    plan_mix,
    require_datasets,
)
from forgetlaw.provenance import code_version, config_hash, file_sha256

MIX_FILE = "mix.jsonl"
DATASET_DIR = "dataset"
MANIFEST = "mix.json"


class MixSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    target: str
    pretrain: str | None = None
    p: float
    seed: int = 0
    sequences: int | None = Field(default=None, gt=0)
    epochs: float | None = Field(default=None, gt=0)
    format: Literal["jsonl", "save_to_disk"] = "jsonl"
    seq_len: int | None = Field(default=None, gt=0)
    text_column: str = "text"
    pretrain_column: str | None = None
    shuffle: bool = True
    mark: str | None = None

    @field_validator("p", mode="before")
    @classmethod
    def _fraction(cls, value: Any) -> float:
        try:
            return check_fraction(value)
        except UserError as exc:
            raise ValueError(str(exc)) from None

    @model_validator(mode="after")
    def _budget_and_sources(self) -> MixSpec:
        if (self.sequences is None) == (self.epochs is None):
            raise ValueError("give exactly one budget: 'sequences' (rows in all) or 'epochs' (target passes)")
        if self.p > 0 and not self.pretrain:
            raise ValueError(f"p={self.p} needs a 'pretrain' source (or p: 0)")
        return self


def load_mix_spec(path: str | Path) -> MixSpec:
    """Read and validate a mix SPEC; every problem is a one-line UserError naming the field."""
    import tomllib
    import yaml

    path = Path(path)
    if not path.is_file():
        raise UserError(f"mix spec {path} does not exist; give a YAML or TOML file (see docs/integrations.md)")
    try:
        data = tomllib.loads(path.read_text()) if path.suffix.lower() == ".toml" else yaml.safe_load(path.read_text())
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UserError(f"{path}: not valid {'TOML' if path.suffix == '.toml' else 'YAML'}: {first}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: a mix spec is a mapping of fields (target, pretrain, p, ...)")
    try:
        spec = MixSpec.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(part) for part in err["loc"]) or "(top level)"
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown key (check the spelling; see docs/integrations.md for the fields)"
        raise UserError(f"{path}: field '{field}': {message}") from None
    anchor = {k: _anchor(getattr(spec, k), path.parent) for k in ("target", "pretrain")}
    return spec.model_copy(update=anchor)


def _anchor(source: str | None, base: Path) -> str | None:
    if source is None or source.startswith("hf:") or Path(source).expanduser().is_absolute():
        return source
    return str((base / source).resolve())


# ---- reading a source ---------------------------------------------------------------------------

def _check_exists(source: str | None, field: str) -> None:
    if source is not None and not source.startswith("hf:") and not Path(source).expanduser().exists():
        raise UserError(f"{field}: {source} does not exist; give a JSONL or text file, a folder, a "
                        "save_to_disk folder, a .npy token array or hf:NAME")


def load_source(source: str, field: str, cache_dir: str | None = None):
    """A source of the spec as what `inject` takes: a token array, a Dataset or an IterableDataset."""
    if source.startswith("hf:"):
        return _hub(require_datasets(), source[3:])
    _check_exists(source, field)
    path = Path(source).expanduser()
    if path.suffix == ".npy":
        tokens = np.load(path, mmap_mode="r")
        if tokens.ndim != 1 or not np.issubdtype(tokens.dtype, np.integer):
            raise UserError(f"{field}: {path} must hold a 1-D integer token array, got {tokens.dtype} {tokens.shape}")
        return tokens
    datasets = require_datasets()
    if path.is_dir() and any((path / n).exists() for n in ("dataset_info.json", "state.json", "dataset_dict.json")):
        loaded = datasets.load_from_disk(str(path))
        if isinstance(loaded, datasets.DatasetDict):
            if "train" not in loaded:
                raise UserError(f"{field}: {path} has splits {list(loaded)} and no 'train'; save the split you want")
            loaded = loaded["train"]
        return loaded
    if path.is_file() and path.name.endswith((".jsonl", ".jsonl.gz", ".json")):
        return datasets.load_dataset("json", data_files=str(path), split="train", cache_dir=cache_dir)
    # A text file (one document per blank-line-separated block) or a folder of text files.
    return datasets.Dataset.from_dict({"text": list(byo.documents(path, field))})


def _hub(datasets, name: str):
    split = "train"
    if "@" in name:
        name, split = name.rsplit("@", 1)
    config = None
    if ":" in name:
        name, config = name.split(":", 1)
    return datasets.load_dataset(name, config, split=split, streaming=True)


# ---- writing ------------------------------------------------------------------------------------

def export_mix(spec: MixSpec, out: str | Path) -> dict:
    """Write the mix into `out` (which must not exist yet) and return its manifest (also `out/mix.json`).
    Everything is written into a sibling folder first and renamed at the end: no partial output."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"--out {out} exists and is not empty; give a new folder")
    for field in ("target", "pretrain"):  # both, before reading either (a missing one wastes no time)
        _check_exists(getattr(spec, field), field)
    staging = out.parent / f".{out.name}.partial-{uuid.uuid4().hex[:8]}"
    staging.mkdir(parents=True)
    try:
        cache = str(staging / ".cache")  # datasets' arrow files of the sources: gone with the staging
        plan = plan_mix(load_source(spec.target, "target", cache),
                        load_source(spec.pretrain, "pretrain", cache) if spec.pretrain and spec.p > 0 else None,
                        spec.p, spec.seed, num_sequences=spec.sequences, epochs=spec.epochs, seq_len=spec.seq_len,
                        text_column=spec.text_column, pretrain_column=spec.pretrain_column, mark=spec.mark,
                        shuffle=spec.shuffle)
        stats = _write(plan, spec, staging)
        manifest = {"spec": spec.model_dump(mode="json"), **stats, "weights": trainer_weights(spec.p, stats),
                    "code_version": code_version(), "spec_hash": config_hash(spec)}
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        shutil.rmtree(staging / ".cache", ignore_errors=True)
        if out.exists():
            out.rmdir()
        os.replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


class _Tally:
    def __init__(self, plan: MixPlan):
        self.plan = plan
        self.counts = {True: 0, False: 0}
        self.sizes = {True: 0, False: 0}  # characters (text rows) or tokens (token rows)
        self.prefix_exact = True

    def add(self, row: dict, injected: bool) -> dict:
        self.counts[injected] += 1
        value = row.get("input_ids", row.get(self.plan.text_column))
        self.sizes[injected] += len(value) if isinstance(value, (str, list)) else 0
        k = self.counts[True] + self.counts[False]
        self.prefix_exact &= self.counts[True] == math.floor(self.plan.p * k + 1e-9)
        if self.plan.mark:
            row[self.plan.mark] = injected
        return row

    def stats(self) -> dict:
        total = self.counts[True] + self.counts[False]
        mean = {k: (self.sizes[k] / self.counts[k] if self.counts[k] else None) for k in (True, False)}
        return {"sequences": total, "injected": self.counts[True], "target": self.counts[False],
                "exact": self.prefix_exact, "unit": "tokens" if self.plan.tokens else "characters",
                "mean_length": {"target": mean[False], "pretrain": mean[True]}}


def _write(plan: MixPlan, spec: MixSpec, folder: Path) -> dict:
    tally = _Tally(plan)
    rows = (tally.add(row, injected) for row, injected in mixed_pairs(plan))
    if spec.format == "jsonl":
        with open(folder / MIX_FILE, "w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        written = {"file": MIX_FILE, "sha256": file_sha256(folder / MIX_FILE)}
    else:
        dataset = require_datasets().Dataset.from_generator(lambda: rows, cache_dir=str(folder / ".cache"),
                                                             fingerprint=uuid.uuid4().hex)
        dataset.save_to_disk(str(folder / DATASET_DIR))
        written = {"file": DATASET_DIR}
    return {**tally.stats(), **written}


def trainer_weights(p: float, stats: dict) -> dict:
    """The weights to give trainers that mix on their own, in their units (docs/integrations.md).

    LLaMA-Factory samples *examples* with `interleave_probs` (datasets.interleave_datasets): without
    packing one example is one sequence, so the probability is p itself; with packing (its `pt`
    stage, `packing: true`) sequences are cut from the concatenated tokens, so the share of sequences
    is the share of tokens, and the example probability q solves q Lp / (q Lp + (1 - q) Lt) = p with
    Lt, Lp the mean lengths of a target and a pretraining example.
    Megatron-LM's `--data-path W1 PREFIX1 W2 PREFIX2` weights are shares of samples, each of seq_length
    tokens cut from its dataset's packed tokens: shares of sequences and of tokens alike, so p."""
    lengths = stats["mean_length"]
    lt, lp = lengths["target"], lengths["pretrain"]
    packed = p if not (p and lt and lp) else p * lt / (p * lt + (1 - p) * lp)
    return {
        "llamafactory": {"interleave_probs": [round(1 - p, 6), round(p, 6)],
                         "interleave_probs_packed": [round(1 - packed, 6), round(packed, 6)],
                         "length_unit": stats["unit"]},
        "megatron": {"data_path": [round(1 - p, 6), "TARGET_PREFIX", round(p, 6), "PRETRAIN_PREFIX"]},
    }


def summary_lines(manifest: dict, out: Path) -> list[str]:
    """What `forgetlaw export-mix` prints."""
    p = manifest["spec"]["p"]
    w = manifest["weights"]
    lf = w["llamafactory"]
    lengths = manifest["mean_length"]
    probs = ",".join(f"{x:g}" for x in lf["interleave_probs"])
    packed = ",".join(f"{x:g}" for x in lf["interleave_probs_packed"])
    weights = " ".join(str(x) if isinstance(x, str) else f"{x:g}" for x in w["megatron"]["data_path"])
    length_note = (f"mean {lengths['target']:.0f} / {lengths['pretrain']:.0f} {manifest['unit']} per target / "
                   "pretraining example" if lengths["target"] and lengths["pretrain"] else "no injected rows")
    return [
        f"wrote {manifest['sequences']:,} sequences to {out / manifest['file']}: {manifest['injected']:,} injected "
        f"(floor({p:g} x k) after every k: {'yes' if manifest['exact'] else 'NO'}), {manifest['target']:,} target",
        f"LLaMA-Factory (datasets: target,pretrain; mix_strategy: interleave_under): interleave_probs: {probs} "
        "(one example per sequence)",
        f"LLaMA-Factory with packing (pt stage or packing: true): interleave_probs: {packed} ({length_note})",
        f"Megatron-LM: --data-path {weights} (weights are shares of seq_length-token samples)",
        f"manifest: {out / MANIFEST}",
    ]
