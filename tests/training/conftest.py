"""A tiny synthetic language for real (not mocked) training runs that take about a second.

Pretraining text and the target domain are sentences of made-up words; the domain's words use
token ids 32..63 and the pretraining words 1..31, so a sequence's origin is visible in its ids and
finetuning on the domain really does make the model forget the pretraining text.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from forgetlaw.models import GPTConfig
from forgetlaw.training import PretrainConfig, pretrain

VOCAB = 64
SEQ = 32


def synthetic_text(n_tokens: int, seed: int, low: int, high: int, word_seed: int) -> np.ndarray:
    words_rng = np.random.default_rng(word_seed)
    words = [words_rng.integers(low, high, size=words_rng.integers(2, 6)) for _ in range(40)]
    order = np.random.default_rng(seed).integers(0, len(words), size=n_tokens // 2)
    return np.concatenate([np.append(words[i], 0) for i in order])[:n_tokens].astype(np.uint16)


@pytest.fixture(scope="session")
def corpora() -> dict[str, np.ndarray]:
    return {
        "pretrain_train": synthetic_text(60_000, 0, 1, 32, word_seed=100),
        "pretrain_val": synthetic_text(6_000, 1, 1, 32, word_seed=100),
        "domain_train": synthetic_text(20_000, 2, 32, 64, word_seed=200),
        "domain_val": synthetic_text(3_000, 3, 32, 64, word_seed=200),
        # Half pretraining-like, half domain text: finetuning first lowers this loss (the domain
        # half) and then raises it (forgetting the other half), a cheap and certain U-curve.
        "mixed_val": np.concatenate([synthetic_text(1_500, 5, 1, 32, word_seed=100),
                                     synthetic_text(1_500, 3, 32, 64, word_seed=200)]),
    }


MODEL = GPTConfig(vocab_size=VOCAB, n_layer=1, n_head=2, d_model=32, seq_len=SEQ)


def pretrain_config(**overrides) -> PretrainConfig:
    settings = dict(tokens_per_param=8, batch_size=16, seq_len=SEQ, eval_tokens=1024,
                    checkpoint_every=25, device="cpu")
    return PretrainConfig(**{**settings, **overrides})


@pytest.fixture(scope="session")
def base(tmp_path_factory, corpora):
    """A pretrained tiny base model (about 1 s)."""
    torch.set_num_threads(1)
    return pretrain(pretrain_config(), MODEL, corpora["pretrain_train"], corpora["pretrain_val"],
                    tmp_path_factory.mktemp("base"))
