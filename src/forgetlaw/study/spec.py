"""The study spec: what a sweep runs, validated with pydantic and loaded from YAML, TOML or a preset.

A spec names the model ladder, the data, the grid (domains x unique tokens D x injection p x seeds),
an optional replicate block (extra seeds on a subset of cells, to measure seed noise), and the
pretraining and finetuning budgets. Unknown keys and wrong types are rejected with the field named.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from forgetlaw.errors import UserError


class _Strict(BaseModel):
    # Unknown keys are a typo more often than not: refuse them. Lax types: YAML's "3e-3" (a string in
    # YAML 1.1) still reads as a float, while "fast" for a learning rate is refused.
    model_config = ConfigDict(extra="forbid", frozen=True)


class ShapeSpec(_Strict):
    """One model of an explicit ladder (the same fields as `forgetlaw.models.ModelShape`)."""

    name: str
    n_layer: int = Field(gt=0)
    d_model: int = Field(gt=0)
    n_head: int = Field(gt=0)
    # Small models need more tokens per parameter to be usable bases (tiny-pilot: d=32 at 20 is
    # undertrained); None uses the study-wide `pretrain.tokens_per_param`.
    tokens_per_param: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _heads_divide_width(self) -> ShapeSpec:
        if self.d_model % self.n_head:
            raise ValueError(f"d_model {self.d_model} is not divisible by n_head {self.n_head}")
        return self


class PretrainedModelSpec(_Strict):
    """One pretrained model of a ladder (`forgetlaw.models.pretrained.ModelSource`): a local
    save_pretrained folder (`path`), a GGUF file in a folder (`path` + `gguf_file`), or a hub id
    (`hub` + `revision`, needs the network). No pretraining stage runs for it."""

    name: str
    path: Path | None = None
    gguf_file: str | None = None
    hub: str | None = None
    revision: str | None = None
    # The model's finetuning LR; None: finetune.lr, else what the folder records (forgetlaw exports).
    lr: float | None = Field(default=None, gt=0)
    # Never run code shipped with a model unless asked.
    trust_remote_code: bool = False

    @model_validator(mode="after")
    def _one_location(self) -> PretrainedModelSpec:
        if (self.path is None) == (self.hub is None):
            raise ValueError("give exactly one of 'path' (a local folder) or 'hub' (a hub id)")
        if self.hub is not None and self.gguf_file is not None:
            raise ValueError("gguf_file goes with a local path, not with hub")
        if self.path is not None and self.revision is not None:
            raise ValueError("revision goes with hub, not with a local path")
        return self


class LadderSpec(_Strict):
    """A named ladder of `forgetlaw.models`, explicit shapes (both pretrained by forgetlaw), or
    pretrained models; `sizes` keeps a subset by name."""

    preset: str | None = None
    shapes: list[ShapeSpec] | None = None
    models: list[PretrainedModelSpec] | None = None
    sizes: list[str] | None = None

    @model_validator(mode="after")
    def _one_source(self) -> LadderSpec:
        given = [k for k in ("preset", "shapes", "models") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of 'preset' (a ladder name), 'shapes' (a list of shapes to "
                             "pretrain) or 'models' (pretrained models)")
        entries = self.shapes or self.models
        if entries is not None:
            names = [s.name for s in entries]
            if len(set(names)) != len(names):
                raise ValueError(f"names must be unique, got {names}")
            if not names:
                raise ValueError("the ladder is empty; list at least one model")
        return self

    @property
    def pretrained(self) -> bool:
        return self.models is not None


class CorpusFiles(_Strict):
    """Token arrays of one corpus as .npy files (1-D integer arrays)."""

    train: Path
    val: Path


class TokenFilesSpec(_Strict):
    """User-provided token arrays instead of a `forgetlaw.data` build."""

    vocab_size: int = Field(gt=1)
    pretrain: CorpusFiles
    domains: dict[str, CorpusFiles]


class DataSpec(_Strict):
    """How to get the token arrays: a `forgetlaw.data` build (default; see `forgetlaw.data.DataConfig`
    for the fields) or explicit `.npy` files in `token_files`."""

    vocab_size: int = Field(default=512, gt=1)
    source_dirs: dict[str, Path] = Field(default_factory=dict)
    pretrain_max_mb: float | None = Field(default=None, gt=0)
    domain_max_mb: float | None = Field(default=None, gt=0)
    val_fraction: float = Field(default=0.02, gt=0, lt=1)
    seed: int = 0
    cache_dir: Path | None = None
    tokenizer: Path | None = None  # a user's own HF tokenizer directory instead of training one
    token_files: TokenFilesSpec | None = None
    # The corpus that plays the pretraining data, for injection and for L_pt: "generic" (the default
    # for ladders forgetlaw pretrains, which train on it), a built domain such as "wikipedia" (the
    # default for pretrained ladders, whose own pretraining data is mostly closed: docs/pretrained.md),
    # or a name of your own text or hf: dataset in `source_dirs`.
    pretrain_corpus: str | None = None
    # More corpora to build and measure each base on (its loss on them before finetuning, in the report):
    # how far each is from what the models know, to choose a stand-in (docs/pretrained.md).
    probe_corpora: list[str] = Field(default_factory=list)


class PretrainSpec(_Strict):
    tokens_per_param: float = Field(default=20.0, gt=0)
    lr: float = Field(default=3e-3, gt=0)
    batch_size: int = Field(default=32, gt=0)
    warmup_frac: float = Field(default=0.05, ge=0, lt=1)
    min_lr_frac: float = Field(default=0.1, ge=0, le=1)
    weight_decay: float = Field(default=0.1, ge=0)
    grad_clip: float = Field(default=1.0, gt=0)
    eval_tokens: int = Field(default=8192, gt=0)
    seed: int = 0
    # Steps between resumable checkpoints: a killed sweep loses at most this much pretraining.
    checkpoint_every: int = Field(default=500, gt=0)
    # Seconds of training between checkpoints as well (None: the training default, 60 s). Not part of
    # the run keys: it changes when progress is saved, not what is computed.
    checkpoint_every_s: float | None = Field(default=None, gt=0)
    # Memory (docs/training.md): gradient accumulation over micro-batches; recompute activations.
    micro_batch_size: int | None = Field(default=None, gt=0)
    activation_checkpointing: bool = False


class FinetuneSpec(_Strict):
    # None: the LR the base's pretraining ended at (see docs/training.md).
    lr: float | None = Field(default=None, gt=0)
    warmup_steps: int = Field(default=5, ge=0)
    schedule: Literal["constant", "cosine", "linear"] = "constant"
    batch_size: int = Field(default=8, gt=0)
    eval_tokens: int = Field(default=8192, gt=0)
    # The pretraining validation set of a finetuning run; None keeps the training stage's default.
    pretrain_eval_tokens: int | None = Field(default=None, gt=0)
    eval_every_epochs: float = Field(default=1.0, gt=0)
    min_eval_interval_steps: int = Field(default=8, gt=0)
    patience: int = Field(default=5, gt=0)
    max_epochs: float = Field(default=20.0, gt=0)
    max_eval_interval_steps: int = Field(default=500, gt=0)
    # L_pt is evaluated at every improvement of the target loss and at every k-th evaluation.
    pretrain_eval_every: int = Field(default=2, gt=0)
    min_lr_frac: float = Field(default=0.1, ge=0, le=1)
    weight_decay: float = Field(default=0.1, ge=0)
    grad_clip: float = Field(default=1.0, gt=0)
    micro_batch_size: int | None = Field(default=None, gt=0)
    activation_checkpointing: bool = False
    # Pretrained (Hugging Face) models: the dtype of the weights AdamW updates (docs/training.md).
    weights_dtype: Literal["float32", "bfloat16"] = "float32"


class ReplicateSpec(_Strict):
    """Extra seeds on a subset of the grid; a None filter keeps every value of that axis."""

    seeds: list[int] = Field(min_length=1)
    sizes: list[str] | None = None
    domains: list[str] | None = None
    unique_tokens: list[int] | None = None
    injection: list[float] | None = None


class OverrideSpec(_Strict):
    """Finetuning settings for the runs that match every given filter (e.g. a larger epoch cap for one
    domain). Matching runs get a different config, hence a different run key."""

    sizes: list[str] | None = None
    domains: list[str] | None = None
    unique_tokens: list[int] | None = None
    injection: list[float] | None = None
    seeds: list[int] | None = None
    finetune: dict[str, Any]

    @field_validator("finetune")
    @classmethod
    def _known_fields(cls, value: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(value) - set(FinetuneSpec.model_fields))
        if unknown:
            raise ValueError(f"unknown finetune fields {unknown}; known: {sorted(FinetuneSpec.model_fields)}")
        FinetuneSpec(**value)  # the values must be valid finetune settings too
        return value


class ExecutionSpec(_Strict):
    device: str = "auto"
    # finetune_many runs several runs in one vectorized model; on a 2-core CPU it gained little, so off.
    vectorize: bool = False
    # Seconds between progress lines from inside a run.
    progress_every_s: float = Field(default=10.0, gt=0)
    # Where the sweep also logs every run (cell as parameters, curve as metrics): none, mlflow, wandb,
    # or any tracker registered under the `forgetlaw.trackers` entry points (forgetlaw.study.tracking).
    tracker: str = "none"


class StudySpec(_Strict):
    """A whole study. `forgetlaw sweep` runs every (size, domain, D, p, seed) cell once."""

    name: str = "study"
    description: str = ""
    seq_len: int = Field(default=128, gt=0)
    ladder: LadderSpec
    data: DataSpec = Field(default_factory=DataSpec)
    domains: list[str] = Field(min_length=1)
    unique_tokens: list[int] = Field(min_length=1)
    injection: list[float] = Field(min_length=1)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    replicates: ReplicateSpec | None = None
    pretrain: PretrainSpec = Field(default_factory=PretrainSpec)
    finetune: FinetuneSpec = Field(default_factory=FinetuneSpec)
    overrides: list[OverrideSpec] = Field(default_factory=list)
    execution: ExecutionSpec = Field(default_factory=ExecutionSpec)

    @field_validator("unique_tokens")
    @classmethod
    def _positive_d(cls, value: list[int]) -> list[int]:
        if any(d <= 0 for d in value):
            raise ValueError(f"every D must be a positive token count, got {value}")
        return value

    @field_validator("injection")
    @classmethod
    def _fractions(cls, value: list[float]) -> list[float]:
        if any(not 0 <= p < 1 for p in value):
            raise ValueError(f"every p must be a fraction in [0, 1) (5% is 0.05), got {value}")
        return value

    @field_validator("domains", "unique_tokens", "injection", "seeds")
    @classmethod
    def _no_duplicates(cls, value: list) -> list:
        if len(set(value)) != len(value):
            raise ValueError(f"values must be unique, got {value}")
        return value

    @model_validator(mode="after")
    def _token_files_cover_domains(self) -> StudySpec:
        files = self.data.token_files
        if files is not None:
            missing = sorted(set(self.domains) - set(files.domains))
            if missing:
                raise ValueError(f"data.token_files.domains lacks {missing}")
        if self.pretrain_corpus in self.domains:
            raise ValueError(f"data.pretrain_corpus '{self.pretrain_corpus}' is also a target domain; the "
                             "pretraining stand-in must be another corpus")
        return self

    @property
    def pretrain_corpus(self) -> str:
        """The corpus that plays the pretraining data (see DataSpec.pretrain_corpus)."""
        if self.data.pretrain_corpus is not None:
            return self.data.pretrain_corpus
        if self.data.token_files is not None:  # its `pretrain:` files
            return "generic"
        return PRETRAINED_STANDIN if self.ladder.pretrained else "generic"


# ---------------------------------------------------------------------------------------------------
# Loading

PRESETS = ("quick", "cpu", "cpu-full", "paper", "smollm2", "pythia")
# The default pretraining stand-in of pretrained ladders: broad natural-language text, the closest
# offline corpus to the web text such models are trained on (docs/pretrained.md has the measurement).
PRETRAINED_STANDIN = "wikipedia"


def _error_line(exc: ValidationError, source: str) -> str:
    err = exc.errors()[0]
    field = ".".join(str(part) for part in err["loc"]) or "(top level)"
    message = err["msg"]
    if err["type"] == "extra_forbidden":
        message = "unknown key (check the spelling; see docs/study.md for the fields)"
    extra = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{source}: field '{field}': {message}{extra}"


def spec_from_dict(data: Any, source: str = "spec") -> StudySpec:
    """Validate a plain dict; any problem becomes a one-line UserError naming the field."""
    if not isinstance(data, dict):
        raise UserError(f"{source}: a study spec must be a mapping of fields, got {type(data).__name__}")
    try:
        return StudySpec.model_validate(data)
    except ValidationError as exc:
        raise UserError(_error_line(exc, source)) from None


def load_spec(path: str | Path) -> StudySpec:
    """Read a study spec from a .yaml/.yml or .toml file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"spec file {path} does not exist; give a YAML/TOML file or --preset NAME")
    text = path.read_text()
    import tomllib  # Python >= 3.11; imported here so that YAML specs work on 3.10

    try:
        data = tomllib.loads(text) if path.suffix.lower() == ".toml" else yaml.safe_load(text)
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{path}: not valid {'TOML' if path.suffix == '.toml' else 'YAML'}: {first}") from None
    spec = spec_from_dict(data, str(path))
    # Relative data paths are relative to the spec file, not the working directory.
    return _anchor_paths(spec, path.parent)


def _anchor_paths(spec: StudySpec, base: Path) -> StudySpec:
    def anchor(p: Path) -> Path:
        p = p.expanduser()
        return p if p.is_absolute() else (base / p).resolve()

    if spec.ladder.models is not None:
        models = [m if m.path is None else m.model_copy(update={"path": anchor(m.path)}) for m in spec.ladder.models]
        spec = spec.model_copy(update={"ladder": spec.ladder.model_copy(update={"models": models})})
    data = spec.data
    updates: dict[str, Any] = {"source_dirs": {k: anchor(v) for k, v in data.source_dirs.items()}}
    if data.token_files is not None:
        tf = data.token_files
        updates["token_files"] = tf.model_copy(update={
            "pretrain": CorpusFiles(train=anchor(tf.pretrain.train), val=anchor(tf.pretrain.val)),
            "domains": {k: CorpusFiles(train=anchor(c.train), val=anchor(c.val))
                        for k, c in tf.domains.items()},
        })
    return spec.model_copy(update={"data": data.model_copy(update=updates)})


def load_preset(name: str) -> StudySpec:
    """One of the presets shipped with the package (see docs/study.md)."""
    if name not in PRESETS:
        raise UserError(f"unknown preset '{name}'; choose one of {', '.join(PRESETS)}")
    text = resources.files("forgetlaw.study").joinpath("presets").joinpath(f"{name}.yaml").read_text()
    return spec_from_dict(yaml.safe_load(text), f"preset {name}")
