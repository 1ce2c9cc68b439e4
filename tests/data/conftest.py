"""Small, generated fixtures for the data tests: no network, no files outside tests/."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from forgetlaw.data import DataConfig, build_data

WORDS = ["the", "of", "and", "to", "in", "a", "is", "that", "for", "it", "as", "was", "with", "be", "by", "on", "not", "he", "this", "are", "or", "his", "from", "at", "which", "but", "have", "an", "they", "you", "were", "her", "she", "there", "been", "one", "all", "we", "their", "has", "would", "when", "if", "river", "house", "letter", "morning", "garden", "captain", "window", "winter", "market", "judge", "doctor", "mountain", "quietly", "slowly", "remembered", "answered", "promised", "wandered"]


def write_prose(folder: Path, n_docs: int, seed: int, words_per_doc: int = 300) -> Path:
    """Deterministic English-like documents, one file each (plus one exact duplicate)."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n_docs):
        sentences = []
        for _ in range(words_per_doc // 10):
            words = [rng.choice(WORDS) for _ in range(rng.randint(6, 14))]
            sentences.append(" ".join(words).capitalize() + rng.choice(".!?"))
        (folder / f"doc{i:03d}.txt").write_text(" ".join(sentences) + "\n")
    (folder / "copy_of_doc000.txt").write_text((folder / "doc000.txt").read_text())
    return folder


def write_jsonl(path: Path, n_docs: int, seed: int) -> Path:
    import json

    rng = random.Random(seed)
    with open(path, "w") as out:
        for i in range(n_docs):
            body = "\n".join(f"def f{i}_{j}(x):\n    return x * {rng.randint(2, 99)} + {j}"
                             for j in range(rng.randint(3, 12)))
            out.write(json.dumps({"text": body, "id": i}) + "\n")
    return path


@pytest.fixture(scope="session")
def prose_dir(tmp_path_factory) -> Path:
    return write_prose(tmp_path_factory.mktemp("prose") / "generic", n_docs=120, seed=1)


@pytest.fixture(scope="session")
def code_jsonl(tmp_path_factory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("code") / "code.jsonl", n_docs=80, seed=2)


def small_config(root: Path, prose: Path, **overrides) -> DataConfig:
    """A fast build: the generic corpus from the prose fixture, vocab 300, caches under `root`."""
    source_dirs = {"generic": prose, **overrides.pop("source_dirs", {})}
    fields = {"vocab_size": 300, "cache_dir": root / "data", "raw_dir": root / "raw",
              "val_fraction": 0.1, "source_dirs": source_dirs, **overrides}
    return DataConfig(**fields)


@pytest.fixture(scope="session")
def small_store(tmp_path_factory, prose_dir, code_jsonl):
    root = tmp_path_factory.mktemp("store")
    return build_data(small_config(root, prose_dir, domains=("code",),
                                   source_dirs={"code": code_jsonl}))
