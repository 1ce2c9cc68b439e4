"""The batched L-BFGS against scipy's L-BFGS-B, problem by problem."""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize

from forgetlaw.laws import fit
from forgetlaw.laws.optim import lbfgs_batched
from forgetlaw.laws.synthetic import synthetic_runs


def rosenbrock(x: np.ndarray, shift: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Shifted 2-D Rosenbrock per row: minimum at (1 + shift, 1)."""
    a, b = x[:, 0] - shift, x[:, 1]
    f = (1 - a) ** 2 + 100 * (b - a * a) ** 2
    g = np.stack([-2 * (1 - a) - 400 * a * (b - a * a), 200 * (b - a * a)], axis=1)
    return f, g


def test_batched_matches_scipy_with_and_without_active_bounds():
    rng = np.random.default_rng(0)
    shifts = rng.uniform(-0.5, 0.5, 40)
    x0 = rng.uniform(-2, 2, (40, 2))
    lower, upper = np.array([-3.0, -3.0]), np.array([1.2, 3.0])  # x1 <= 1.2 binds where shift > 0.2
    result = lbfgs_batched(lambda x, idx: rosenbrock(x, shifts[idx]), x0, lower, upper, gtol=1e-8)
    assert result.converged.all()
    for k in range(40):
        ref = minimize(lambda x, k=k: tuple(v[0] for v in rosenbrock(x[None], shifts[k : k + 1])), x0[k],
                       jac=True, method="L-BFGS-B", bounds=list(zip(lower, upper, strict=True)),
                       options={"gtol": 1e-10, "ftol": 1e-14})
        assert result.fun[k] <= ref.fun + 1e-8
        np.testing.assert_allclose(result.x[k], ref.x, atol=1e-3)
    at_bound = result.x[:, 0] >= upper[0] - 1e-12
    assert 0 < at_bound.sum() < 40  # both kinds of problem were in the batch


def test_pruning_hopeless_starts_keeps_the_best_fit():
    df = synthetic_runs("forgetting", dict(A=50.0, B=20.0, alpha=0.4, beta=0.2), 100, noise=0.01, seed=9)
    pruned = fit(df, "forgetting").fits[0]
    full = fit(df, "forgetting", prune_factor=None).fits[0]
    assert pruned.diagnostics["objective"] <= full.diagnostics["objective"] * (1 + 1e-6)
    for name, value in full.params.items():
        assert pruned.params[name] == np.float64(value) or abs(pruned.params[name] - value) < 1e-3 * abs(value)


def test_progress_callback_counts_every_problem_once():
    rng = np.random.default_rng(1)
    shifts = rng.uniform(-0.5, 0.5, 30)
    done = []
    lbfgs_batched(lambda x, idx: rosenbrock(x, shifts[idx]), rng.uniform(-2, 2, (30, 2)), np.full(2, -3.0),
                  np.full(2, 3.0), max_iter=15, on_done=done.append)
    assert sum(done) == 30 and all(k > 0 for k in done)  # some stop at the cap of 15 iterations
