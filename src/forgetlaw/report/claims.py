"""The paper's qualitative claims, checked against a study's results and its measured seed noise.

Each check compares cell means (averaged over seeds) in pairs that differ in one factor only, and
judges the mean paired difference against its standard error from the seed noise:
se = sqrt(sum_i sigma^2 (1/n_a,i + 1/n_b,i)) / k for k pairs, where sigma is the pooled seed-to-seed
standard deviation of one run (see `derive.seed_noise`). A difference counts when it exceeds
`z` standard errors (default 2). Without replicate runs the noise is unknown, se is 0, and the
verdict rests on the sign alone; the evidence says so.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from forgetlaw.report.derive import SeedNoise, format_p, nearest_injection

HELD, NOT_HELD, NOT_TESTED = "held", "not held", "not tested"


@dataclass(frozen=True)
class ClaimSettings:
    z: float = 2.0                   # standard errors a difference must exceed to count
    shield_injection: float = 0.01   # the paper's "1%"
    shield_share: float = 0.5        # "shields" = removes at least this share of the forgetting at p = 0


@dataclass
class Claim:
    key: str
    statement: str
    verdict: str
    evidence: str
    numbers: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def _pairs(cells: pd.DataFrame, vary: str, low, high, value: str) -> pd.DataFrame:
    """Join cells at vary=low and vary=high on every other cell key; diff = value(high) - value(low)."""
    keys = [c for c in ("domain", "model_size", "unique_tokens", "injection") if c != vary]
    a = cells[cells[vary] == low][keys + [value, "n_seeds"]]
    b = cells[cells[vary] == high][keys + [value, "n_seeds"]]
    joined = a.merge(b, on=keys, suffixes=("_low", "_high"))
    joined["diff"] = joined[f"{value}_high"] - joined[f"{value}_low"]
    joined["inv_n"] = 1.0 / joined["n_seeds_low"] + 1.0 / joined["n_seeds_high"]
    return joined


def _mean_and_se(pairs: pd.DataFrame, sigma: float) -> tuple[float, float]:
    k = len(pairs)
    mean = float(pairs["diff"].mean())
    if not np.isfinite(sigma):
        return mean, 0.0
    return mean, float(np.sqrt(sigma**2 * pairs["inv_n"].sum()) / k)


def _noise_note(noise: SeedNoise) -> str:
    if noise.measured:
        return ""
    return " Seed noise was not measured (no replicate runs), so this verdict rests on the sign alone."


def check_shield(cells: pd.DataFrame, noise: SeedNoise, settings: ClaimSettings) -> Claim:
    statement = (
        f"Injecting {format_p(settings.shield_injection)} of pretraining data into the finetuning mix "
        "shields the model from forgetting."
    )
    p1 = nearest_injection(cells["injection"], settings.shield_injection)
    has_zero = nearest_injection(cells["injection"], 0.0) is not None
    if p1 is None or not has_zero:
        return Claim("shield", statement, NOT_TESTED,
                     f"The study has no p = 0 and p = {format_p(settings.shield_injection)} pair of runs.")
    pairs = _pairs(cells, "injection", 0.0, p1, "forgetting")
    mean_f0 = float(pairs["forgetting_low"].mean())
    mean_f1 = float(pairs["forgetting_high"].mean())
    diff, se = _mean_and_se(pairs, noise.forgetting_sd)
    reduction = -diff
    # Share of the p = 0 forgetting removed, pooled over cells (a ratio of means is stable where
    # single cells forget almost nothing).
    share = reduction / mean_f0 if mean_f0 > 0 else float("nan")
    significant = reduction > settings.z * se
    held = bool(significant and np.isfinite(share) and share >= settings.shield_share)
    others = []
    for p in sorted(set(cells["injection"]) - {0.0, p1}):
        other = _pairs(cells, "injection", 0.0, p, "forgetting")
        if len(other) and other["forgetting_low"].mean() > 0:
            others.append((p, float(-other["diff"].mean() / other["forgetting_low"].mean())))
    other_text = "; ".join(f"{format_p(p)} removes {100 * s:.0f}%" for p, s in others)
    evidence = (
        f"Over {len(pairs)} cells, mean forgetting is {mean_f0:.3f} nats at p = 0 and {mean_f1:.3f} at "
        f"p = {format_p(p1)}: a reduction of {reduction:.3f} ± {se:.3f} (1 s.e. from seed noise), "
        f"{100 * share:.0f}% of the forgetting. The claim needs a reduction larger than "
        f"{settings.z:g} s.e. and at least {100 * settings.shield_share:.0f}% of the forgetting."
        + (f" For comparison: {other_text}." if other_text else "")
        + _noise_note(noise)
    )
    numbers = {"cells": len(pairs), "forgetting_p0": mean_f0, "forgetting_p1": mean_f1,
               "reduction": reduction, "se": se, "share_removed": share,
               "share_removed_by_p": {format_p(p): s for p, s in others}}
    return Claim("shield", statement, HELD if held else NOT_HELD, evidence, numbers)


def _trend(cells: pd.DataFrame, noise: SeedNoise, settings: ClaimSettings, vary: str,
           expect_sign: int, key: str, statement: str, label: str) -> Claim:
    base = cells[cells["injection"] == 0.0]
    if base.empty:
        return Claim(key, statement, NOT_TESTED, "The study has no p = 0 runs.")
    per_domain = []
    all_pairs = []
    for domain, group in base.groupby("domain", sort=True):
        values = sorted(group[vary].unique())
        if len(values) < 2:
            continue
        pairs = _pairs(group, vary, values[0], values[-1], "forgetting")
        if pairs.empty:
            continue
        diff, se = _mean_and_se(pairs, noise.forgetting_sd)
        per_domain.append({"domain": domain, "low": float(values[0]), "high": float(values[-1]),
                           "forgetting_low": float(pairs["forgetting_low"].mean()),
                           "forgetting_high": float(pairs["forgetting_high"].mean()),
                           "change": diff, "se": se, "pairs": len(pairs)})
        all_pairs.append(pairs)
    if not per_domain:
        return Claim(key, statement, NOT_TESTED, f"The study has a single value of {label}.")
    pooled = pd.concat(all_pairs, ignore_index=True)
    diff, se = _mean_and_se(pooled, noise.forgetting_sd)
    held = expect_sign * diff > settings.z * se

    def verdict_of(change: float, err: float) -> str:
        if expect_sign * change > settings.z * err:
            return "as the paper says"
        if -expect_sign * change > settings.z * err:
            return "the opposite of the paper"
        return "no change beyond noise"

    lines = [
        f"{d['domain']}: {d['forgetting_low']:.3f} → {d['forgetting_high']:.3f} nats from "
        f"{label} = {d['low']:,.0f} to {d['high']:,.0f} ({d['change']:+.3f} ± {d['se']:.3f}; "
        f"{verdict_of(d['change'], d['se'])})"
        for d in per_domain
    ]
    evidence = (
        f"At p = 0, forgetting changes by {diff:+.3f} ± {se:.3f} nats (mean over {len(pooled)} pairs, "
        f"smallest vs largest {label}, 1 s.e.). By domain: " + "; ".join(lines) + "." + _noise_note(noise)
    )
    numbers = {"change": diff, "se": se, "pairs": len(pooled), "by_domain": per_domain}
    return Claim(key, statement, HELD if held else NOT_HELD, evidence, numbers)


def check_grows_with_d(cells, noise, settings) -> Claim:
    return _trend(cells, noise, settings, "unique_tokens", +1, "grows_with_d",
                  "Forgetting grows with the number of unique finetuning tokens D.", "D")


def check_shrinks_with_n(cells, noise, settings) -> Claim:
    return _trend(cells, noise, settings, "model_size", -1, "shrinks_with_n",
                  "Forgetting shrinks as the model size N grows.", "N")


def check_target_unharmed(cells: pd.DataFrame, noise: SeedNoise, settings: ClaimSettings) -> Claim:
    statement = "Injecting pretraining data does not hurt the target (finetuning) loss."
    injections = sorted(p for p in set(cells["injection"]) if p > 0)
    if nearest_injection(cells["injection"], 0.0) is None or not injections:
        return Claim("target_unharmed", statement, NOT_TESTED, "The study lacks p = 0 or p > 0 runs.")
    rows = []
    for p in injections:
        pairs = _pairs(cells, "injection", 0.0, p, "finetune_loss")
        if pairs.empty:
            continue
        diff, se = _mean_and_se(pairs, noise.finetune_sd)
        rows.append({"injection": p, "change": diff, "se": se, "pairs": len(pairs),
                     "worst": float(pairs["diff"].max())})
    hurt = [r for r in rows if r["change"] > settings.z * r["se"]]
    lines = [
        f"p = {format_p(r['injection'])}: {r['change']:+.3f} ± {r['se']:.3f} nats "
        f"(worst cell {r['worst']:+.3f}; {'worse beyond noise' if r in hurt else 'within noise or better'})"
        for r in rows
    ]
    evidence = (
        "Change of the best target validation loss against p = 0, mean over cells (1 s.e.): "
        + "; ".join(lines) + "." + _noise_note(noise)
    )
    return Claim("target_unharmed", statement, NOT_HELD if hurt else HELD, evidence, {"by_injection": rows})


def check_claims(cells: pd.DataFrame, noise: SeedNoise, settings: ClaimSettings | None = None) -> list[Claim]:
    settings = settings or ClaimSettings()
    return [
        check_shield(cells, noise, settings),
        check_grows_with_d(cells, noise, settings),
        check_shrinks_with_n(cells, noise, settings),
        check_target_unharmed(cells, noise, settings),
    ]
