"""Planning: a spec plus a data identity -> the list of runs, each keyed by the hash of its full config.

A pretraining run per model size, shared by all of that size's finetuning runs; a finetuning run per
(size, domain, D, p, seed) cell of the grid, plus the replicate seeds. A finetuning config names its
base by the base's run key, so the key covers the whole chain (model, pretraining, data, finetuning).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from forgetlaw.errors import UserError
from forgetlaw.provenance import config_hash
from forgetlaw.study.preflight import SUGGESTED_PRETRAINED_LR, model_source
from forgetlaw.study.spec import (
    FinetuneSpec,
    OverrideSpec,
    PretrainedModelSpec,
    ShapeSpec,
    StudySpec,
)

# One model of a ladder: a shape forgetlaw pretrains, or a pretrained model.
LadderEntry = ShapeSpec | PretrainedModelSpec


@dataclass(frozen=True)
class PlannedRun:
    key: str
    kind: str  # "pretrain" | "finetune"
    config: dict[str, Any]  # the full config; key == run_key(config)
    model_name: str
    data_manifest_hash: str
    seed: int
    base_key: str | None = None
    domain: str | None = None
    unique_tokens: int | None = None
    injection: float | None = None
    labels: dict[str, Any] = field(default_factory=dict)
    # A pretrained model's ModelSource fields (where workers load it from); None for our GPTs.
    model_source: dict[str, Any] | None = None

    def as_row(self) -> dict[str, Any]:
        return {
            "key": self.key, "kind": self.kind, "config": self.config, "model_name": self.model_name,
            "data_manifest_hash": self.data_manifest_hash, "seed": self.seed, "base_key": self.base_key,
            "domain": self.domain, "unique_tokens": self.unique_tokens, "injection": self.injection,
        }


def _full_config(kind: str, values: dict[str, Any]) -> dict[str, Any]:
    """The training stage's config with its defaults filled in, so the run key covers every setting
    (a changed training default then gives new keys instead of silently mixing results). Building
    the dataclass also validates the values before any run starts."""
    from forgetlaw.training import FinetuneConfig, PretrainConfig

    cls = PretrainConfig if kind == "pretrain" else FinetuneConfig
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise UserError(f"{kind}: settings {unknown} are not known to forgetlaw.training.{cls.__name__}")
    return dataclasses.asdict(cls(**values))


def run_key(config: dict[str, Any]) -> str:
    """The key of a run: the hash of its config less the settings that do not change what it
    computes (`key: never` fields: checkpoint timing, micro-batches) and the options added later
    that it leaves at their default (`key: if-set`), so that those keep existing keys (see
    `forgetlaw.provenance.keyed_fields`). The stored config keeps them all: workers read it."""
    from forgetlaw.provenance import key_view
    from forgetlaw.training import FinetuneConfig, PretrainConfig

    keyed = dict(config)
    for section, cls in (("pretrain", PretrainConfig), ("finetune", FinetuneConfig)):
        if isinstance(keyed.get(section), dict):
            keyed[section] = key_view(cls, keyed[section])
    return config_hash(keyed)


def resolve_ladder(spec: StudySpec) -> list[LadderEntry]:
    """The ladder's models (shapes, smallest first, or pretrained models in the spec's order),
    restricted to `ladder.sizes` when given."""
    ladder = spec.ladder
    if ladder.models is not None:
        shapes = list(ladder.models)
    elif ladder.shapes is not None:
        shapes = list(ladder.shapes)
    else:
        # The models stage owns the named ladders.
        from forgetlaw.models import ladder as named_ladder

        try:
            found = named_ladder(ladder.preset)
        except (KeyError, UserError) as exc:
            raise UserError(f"ladder.preset: {exc}") from None
        shapes = [ShapeSpec(name=s.name, n_layer=s.n_layer, d_model=s.d_model, n_head=s.n_head) for s in found]
    if ladder.sizes is not None:
        by_name = {s.name: s for s in shapes}
        unknown = [n for n in ladder.sizes if n not in by_name]
        if unknown:
            raise UserError(f"ladder.sizes: {unknown} not in the ladder; choose from {sorted(by_name)}")
        shapes = [s for s in shapes if s.name in ladder.sizes]
    return shapes


def pretrain_config(spec: StudySpec, shape: ShapeSpec, vocab_size: int, manifest_hash: str) -> dict[str, Any]:
    p = spec.pretrain
    config = {
        "kind": "pretrain",
        "model": {"name": shape.name, "n_layer": shape.n_layer, "d_model": shape.d_model,
                  "n_head": shape.n_head, "vocab_size": vocab_size, "seq_len": spec.seq_len},
        "pretrain": {
            "tokens_per_param": shape.tokens_per_param or p.tokens_per_param,
            "batch_size": p.batch_size, "seq_len": spec.seq_len, "lr": p.lr,
            "warmup_frac": p.warmup_frac, "min_lr_frac": p.min_lr_frac,
            "weight_decay": p.weight_decay, "grad_clip": p.grad_clip, "eval_tokens": p.eval_tokens,
            "seed": p.seed, "device": spec.execution.device, "checkpoint_every": p.checkpoint_every,
            # how the run is executed (left out of its key, see run_key); None: the training default
            **{k: v for k, v in (("checkpoint_every_s", p.checkpoint_every_s), ("micro_batch_size", p.micro_batch_size),
                                 ("activation_checkpointing", p.activation_checkpointing)) if v is not None},
        },
        "data": {"manifest_hash": manifest_hash},
    }
    config["pretrain"] = _full_config("pretrain", config["pretrain"])
    _record_standin(spec, config)
    return config


def _record_standin(spec: StudySpec, config: dict[str, Any]) -> None:
    # Only when it is not the pretraining corpus itself, so that the keys of studies made before the
    # stand-in became a choice do not move.
    if spec.pretrain_corpus != "generic":
        config["data"]["pretrain_corpus"] = spec.pretrain_corpus


def pretrained_config(spec: StudySpec, entry: PretrainedModelSpec, manifest_hash: str) -> dict[str, Any]:
    """The base run of a pretrained model: load it, count N, measure L0. Its identity is the content
    of the model's files (or hub id and revision), not where they are."""
    from forgetlaw.models.pretrained import identity

    config = {
        "kind": "pretrain",
        "model": {"name": entry.name, "pretrained": identity(model_source(entry)),
                  "trust_remote_code": entry.trust_remote_code},
        "evaluate": {"seq_len": spec.seq_len, "eval_tokens": spec.pretrain.eval_tokens, "seed": spec.pretrain.seed,
                     "device": spec.execution.device},
        "data": {"manifest_hash": manifest_hash},
    }
    _record_standin(spec, config)
    return config


def _matches(override: OverrideSpec | Any, cell: dict[str, Any]) -> bool:
    return _selects(override, cell) and (override.seeds is None or cell["seed"] in override.seeds)


def finetune_config(spec: StudySpec, base_key: str, cell: dict[str, Any], manifest_hash: str,
                    entry: LadderEntry | None = None) -> dict[str, Any]:
    settings = spec.finetune.model_dump()
    for override in spec.overrides:
        if _matches(override, cell):
            settings.update(override.finetune)
    if isinstance(entry, PretrainedModelSpec):
        settings["lr"] = _pretrained_lr(entry, settings.get("lr"))
    # None means "the training stage's default": leave it out, _full_config fills it in.
    settings = {k: v for k, v in FinetuneSpec(**settings).model_dump().items() if v is not None}
    config = {
        "kind": "finetune",
        "base": base_key,
        "domain": cell["domain"],
        "finetune": {
            "unique_tokens": cell["unique_tokens"], "injection_fraction": cell["injection"],
            **settings, "seq_len": spec.seq_len, "seed": cell["seed"], "device": spec.execution.device,
            "domain": cell["domain"], **{axis.field: cell[axis.name] for axis in EXTRA_AXES},
        },
        "data": {"manifest_hash": manifest_hash},
    }
    config["finetune"] = _full_config("finetune", config["finetune"])
    _record_standin(spec, config)
    return config


def _pretrained_lr(entry: PretrainedModelSpec, lr: float | None) -> float:
    from forgetlaw.models.pretrained import finetune_lr

    found = finetune_lr(model_source(entry), lr)
    if found is None:
        raise UserError(f"finetune.lr: no finetuning LR is known for {entry.name}; set finetune.lr, e.g. "
                        f"{SUGGESTED_PRETRAINED_LR:g} (docs/pretrained.md), or lr: in its ladder.models entry")
    return float(found)


@dataclass(frozen=True)
class Axis:
    """A grid axis beyond size, domain, D and p (e.g. the finetuning method): its values come from the
    spec, and a cell's value goes into the finetuning config as `field`. That field is declared
    `key: if-set`, so a study that keeps the axis at its one default value keeps its run keys. A
    `replicates` or `overrides` filter of the same name, where the spec has one, selects on it."""

    name: str  # the cell key (and the results column)
    field: str  # the FinetuneConfig field it sets
    values: Callable[[StudySpec], list]


# The extra axes, in the order they nest (outermost first), inside p and outside the seeds.
EXTRA_AXES: tuple[Axis, ...] = ()

# replicates/overrides filter -> cell key, for the fixed axes
_FILTERS = (("sizes", "model_name"), ("domains", "domain"), ("unique_tokens", "unique_tokens"),
            ("injection", "injection"))


def _axes(spec: StudySpec, entries: list[LadderEntry]) -> list[tuple[str, list]]:
    return [("model_name", [e.name for e in entries]), ("domain", list(spec.domains)),
            ("unique_tokens", list(spec.unique_tokens)), ("injection", list(spec.injection)),
            *((axis.name, list(axis.values(spec))) for axis in EXTRA_AXES)]


def _selects(block: Any, cell: dict[str, Any]) -> bool:
    """Whether a replicates/overrides block's filters (None: every value) all admit the cell."""
    checks = [*_FILTERS, *((axis.name, axis.name) for axis in EXTRA_AXES)]
    return all(getattr(block, attr, None) is None or cell[key] in getattr(block, attr) for attr, key in checks)


def _check_replicates(spec: StudySpec, axes: list[tuple[str, list]]) -> None:
    values = dict(axes)
    for attr, key in [*_FILTERS, *((axis.name, axis.name) for axis in EXTRA_AXES)]:
        wanted = getattr(spec.replicates, attr, None)
        universe = set(values[key])
        if wanted is not None and not set(wanted) <= universe:
            raise UserError(f"replicates.{attr}: {sorted(set(wanted) - universe)} not in the study's "
                            f"{attr}; choose from {sorted(universe)}")


def grid_cells(spec: StudySpec, shapes: list[LadderEntry]) -> list[dict[str, Any]]:
    """Every (size, domain, D, p, [extra axes,] seed) cell: the main grid, then the replicate seeds,
    no duplicates."""
    axes = _axes(spec, shapes)
    names = [name for name, _ in axes]
    cells: list[dict[str, Any]] = []
    seen: set[tuple] = set()

    def add(values: tuple, seed: int) -> None:
        if (*values, seed) not in seen:
            seen.add((*values, seed))
            cells.append({**dict(zip(names, values, strict=True)), "seed": seed})

    for values in itertools.product(*(v for _, v in axes)):
        for seed in spec.seeds:
            add(values, seed)
    rep = spec.replicates
    if rep is not None:
        _check_replicates(spec, axes)
        for values in itertools.product(*(v for _, v in axes)):
            if _selects(rep, dict(zip(names, values, strict=True))):
                for seed in rep.seeds:
                    add(values, seed)
    return cells


def plan_study(spec: StudySpec, vocab_size: int, manifest_hash: str,
               available_domains: list[str] | None = None) -> list[PlannedRun]:
    """All runs of a study: pretraining runs (smallest model first), then finetuning runs."""
    if available_domains is not None:
        missing = [d for d in spec.domains if d not in available_domains]
        if missing:
            raise UserError(f"domains: {missing} are not in the data (it has {sorted(available_domains)}); "
                            "fix 'domains' or the data section")
    entries = resolve_ladder(spec)
    runs: list[PlannedRun] = []
    base_keys: dict[str, str] = {}
    sources: dict[str, dict[str, Any] | None] = {}
    for entry in entries:
        if isinstance(entry, PretrainedModelSpec):
            config = pretrained_config(spec, entry, manifest_hash)
            sources[entry.name] = dataclasses.asdict(model_source(entry))
        else:
            config = pretrain_config(spec, entry, vocab_size, manifest_hash)
            sources[entry.name] = None
        key = run_key(config)
        base_keys[entry.name] = key
        runs.append(PlannedRun(key=key, kind="pretrain", config=config, model_name=entry.name,
                               data_manifest_hash=manifest_hash, seed=spec.pretrain.seed,
                               model_source=sources[entry.name]))
    by_name = {entry.name: entry for entry in entries}
    for cell in grid_cells(spec, entries):
        base_key = base_keys[cell["model_name"]]
        config = finetune_config(spec, base_key, cell, manifest_hash, by_name[cell["model_name"]])
        runs.append(PlannedRun(key=run_key(config), kind="finetune", config=config, base_key=base_key,
                               data_manifest_hash=manifest_hash, model_source=sources[cell["model_name"]], **cell))
    return runs
