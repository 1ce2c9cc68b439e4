"""Synthetic run tables drawn from a law with known parameters: for tests, the benchmark, and for
checking before a study whether a planned grid of (N, D, p) can identify a law's parameters."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from forgetlaw.laws.forms import Law, get_law

MODEL_SIZES = (1e5, 3e5, 1e6, 3e6, 1e7, 3e7)
UNIQUE_TOKENS = (1e5, 3e5, 1e6, 3e6, 1e7)
INJECTIONS = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5)


def base_loss(model_size: np.ndarray) -> np.ndarray:
    """A made-up L0 that falls with N, so that L0 varies across models as in a real ladder."""
    return 2.0 + 40.0 * np.asarray(model_size, dtype=float) ** -0.25


def synthetic_runs(
    law: str | Law,
    params: dict[str, float],
    n_runs: int,
    *,
    noise: float = 0.01,
    seed: int = 0,
    model_sizes: Sequence[float] = MODEL_SIZES,
    unique_tokens: Sequence[float] = UNIQUE_TOKENS,
    injections: Sequence[float] = INJECTIONS,
    domain: str | None = None,
) -> pd.DataFrame:
    """`n_runs` rows with the canonical columns; the law's target gets multiplicative noise
    exp(N(0, noise)) (log-normal, matching the log-space fit)."""
    law = get_law(law)
    rng = np.random.default_rng(seed)
    n = rng.choice(np.asarray(model_sizes, dtype=float), n_runs)
    d = rng.choice(np.asarray(unique_tokens, dtype=float), n_runs)
    cols = {
        "model_size": n,
        "unique_tokens": d,
        "tokens": d * rng.choice([1.0, 2.0, 4.0, 8.0], n_runs),  # epochs over the unique tokens
        "injection": rng.choice(np.asarray(injections, dtype=float), n_runs),
        "pretrain_loss_before": base_loss(n),
    }
    target = law.predict(params, {c: cols[c] for c in law.columns})
    cols[law.target] = target * np.exp(rng.normal(0.0, noise, n_runs))
    df = pd.DataFrame(cols)
    if domain is not None:
        df.insert(0, "domain", domain)
    return df
