"""Synthetic study tables drawn from a known model, for testing the report without training.

Forgetting follows the paper's law F = A * D^beta / ((1 + B*p)^gamma * N^alpha) (gamma = alpha in the paper), plus Gaussian seed noise
of known sd; L0 falls with N; the target loss follows E + A_ft / (N^a * D^b) + hurt * p. Curves are
U-shaped target losses whose minimum is the table's finetune_loss, with the pretraining loss reaching
the table's pretrain_loss at that step.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class World:
    alpha: float = 0.3
    beta: float = 0.4
    A: float = 2.0
    B: float = 3000.0
    gamma: float | None = None    # exponent of (1 + B p); None = alpha, the paper's law
    sigma: float = 0.02           # seed noise of forgetting and of the target loss
    hurt: float = 0.0             # target-loss penalty per unit p
    domains: tuple = ("code", "prose")
    sizes: tuple = (50_000, 100_000, 200_000, 400_000)
    unique_tokens: tuple = (2_000, 4_000, 8_000)
    injections: tuple = (0.0, 0.01, 0.05, 0.2)
    replicate_seeds: tuple = (1, 2, 3)   # extra seeds on a subset of cells (second size, p in {0, 1%})
    vocab: int = 512

    def forgetting(self, n, d, p):
        gamma = self.alpha if self.gamma is None else self.gamma
        return self.A * np.power(d, self.beta) / (np.power(n, self.alpha) * np.power(1 + self.B * p, gamma))

    def l0(self, n):
        return 1.6 + 40.0 / np.power(n, 0.3)

    def finetune(self, n, d, p):
        return 1.0 + 60.0 / (np.power(n, 0.25) * np.power(d, 0.1)) + self.hurt * p


def make_study(world: World = World(), seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    rows, curve_rows = [], []
    for domain, n, d, p in itertools.product(world.domains, world.sizes, world.unique_tokens, world.injections):
        seeds = [0]
        if n == world.sizes[1] and p in (0.0, 0.01):
            seeds += list(world.replicate_seeds)
        for s in seeds:
            l0 = world.l0(n)
            f = world.forgetting(n, d, p) + rng.normal(0, world.sigma)
            ft = world.finetune(n, d, p) + rng.normal(0, world.sigma)
            best_epoch = 5
            key = f"{domain}-{n}-{d}-{p}-{s}"
            rows.append({
                "domain": domain, "model_size": n, "model_size_total": n + 512 * 64,
                "model_name": f"n{n}", "unique_tokens": d, "injection": p, "seed": s,
                "tokens": d * best_epoch / (1 - p), "pretrain_loss_before": l0,
                "pretrain_loss_init": float(np.log(world.vocab)), "finetune_loss_before": ft + 1.0,
                "pretrain_loss": l0 + f, "finetune_loss": ft, "loss": ft,
                "best_step": best_epoch * 10, "best_epoch": float(best_epoch), "run_key": key,
            })
            for epoch in range(13):
                curve_rows.append({
                    "run_key": key, "step": epoch * 10, "tokens_seen": epoch * d, "epoch": float(epoch),
                    "train_loss": ft + 0.3 - 0.04 * epoch,
                    "finetune_val_loss": ft + 0.01 * (epoch - best_epoch) ** 2,
                    "pretrain_val_loss": l0 + f * (1 - np.exp(-epoch)) / (1 - np.exp(-best_epoch)),
                    "domain": domain, "model_size": n, "unique_tokens": d, "injection": p, "seed": s,
                })
    return pd.DataFrame(rows), pd.DataFrame(curve_rows)
