"""External check: Epoch AI's replication of Chinchilla (Besiroglu et al. 2024), see data/README.md.

Our fit of E + A/N^alpha + B/D^beta, with the law's default start grid (Epoch's), must land within
Epoch's bootstrap standard errors of their estimates.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from forgetlaw.laws import fit

DATA = Path(__file__).parent / "data" / "chinchilla_epoch.csv"
EPOCH = {"E": (1.817, 0.026), "alpha": (0.348, 0.015), "beta": (0.366, 0.021)}


def epoch_table() -> pd.DataFrame:
    raw = pd.read_csv(DATA)
    df = pd.DataFrame({"model_size": raw["Model Size"], "loss": raw["loss"]})
    df["tokens"] = raw["Training FLOP"] / (6 * raw["Model Size"])  # D = C / (6 N), as Epoch
    return df.sort_values("loss").iloc[:-5]  # drop the 5 highest-loss points, as Epoch


def test_fit_lands_within_epochs_standard_errors():
    df = epoch_table()
    assert len(df) == 240
    (f,) = fit(df, "chinchilla", bootstrap=400, seed=0).fits
    for name, (value, se) in EPOCH.items():
        assert abs(f.params[name] - value) <= se, (name, f.params[name])
        # Our bootstrap spread matches theirs too (they used 4,000 resamples, BFGS, a fixed start).
        j = list(f.params).index(name)
        assert float(np.std(f.bootstrap_params[:, j])) == pytest.approx(se, rel=0.25), name
    # Epoch's grid-search L-BFGS result, which the same recipe should reproduce closely.
    assert f.params["alpha"] == pytest.approx(0.3473, abs=2e-3)
    assert f.params["beta"] == pytest.approx(0.3672, abs=2e-3)
    assert f.diagnostics["starts"] == 4500
    assert f.mre < 0.01
