"""Fixtures of the study tests: tiny token arrays, in memory and as .npy files."""

from __future__ import annotations

import numpy as np
import pytest
from study_helpers import REPO, bytes_of, split_tokens


@pytest.fixture(scope="session")
def tiny_arrays() -> dict[str, dict[str, np.ndarray]]:
    """generic: this file and the test suite; code: the package's sources (vocab 256, bytes)."""
    generic = bytes_of(list((REPO / "tests").rglob("*.py")))
    code = bytes_of(list((REPO / "src" / "forgetlaw").rglob("*.py")))
    return {"generic": split_tokens(generic[:60_000], 4_000), "code": split_tokens(code[:30_000], 3_000)}


@pytest.fixture
def tiny_files(tmp_path, tiny_arrays) -> dict:
    """The arrays as .npy files, in the spec's `data.token_files` shape."""
    folder = tmp_path / "tokens"
    folder.mkdir()
    files: dict = {"vocab_size": 256, "domains": {}}
    for corpus, splits in tiny_arrays.items():
        entry = {}
        for split, array in splits.items():
            path = folder / f"{corpus}.{split}.npy"
            np.save(path, array)
            entry[split] = str(path)
        if corpus == "generic":
            files["pretrain"] = entry
        else:
            files["domains"][corpus] = entry
    return files
