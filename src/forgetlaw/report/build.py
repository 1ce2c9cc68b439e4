"""`build_report`: the canonical results + curves tables in, `report.html` + PNGs + `report.json` out."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from forgetlaw.errors import UserError
from forgetlaw.report import figures, html
from forgetlaw.report.claims import ClaimSettings, check_claims
from forgetlaw.report.derive import (
    CURVE_COLUMNS,
    cell_means,
    check_columns,
    format_p,
    prepare_results,
    seed_noise,
    split_unimproved,
)
from forgetlaw.report.fits import StudyFits

DEFINITIONS = """
<dl>
<dt>L0 (pretrain_loss_before)</dt><dd>pretraining validation loss of the base model, before finetuning, on fixed validation windows.</dd>
<dt>L_pt (pretrain_loss)</dt><dd>pretraining validation loss at the finetuning step with the best target validation loss (the bottom of the U-curve), as the paper reads a run.</dd>
<dt>Forgetting F</dt><dd>F = L_pt − L0, in nats per token. Negative means the pretraining loss ended lower than before.</dd>
<dt>L_init (pretrain_loss_init)</dt><dd>pretraining validation loss of the same architecture at initialisation, before any pretraining (about ln V for a vocabulary of V tokens).</dd>
<dt>Share of pretraining progress lost</dt><dd>(L_pt − L0) / (L_init − L0): the fraction of the loss decrease that pretraining achieved which finetuning undid. 0% = nothing forgotten; 100% = back to the untrained model.</dd>
<dt>Seed noise σ</dt><dd>pooled standard deviation across replicate runs (same domain, N, D and p; different finetuning seed). Differences are judged against their standard error from σ.</dd>
<dt>MRE</dt><dd>mean relative error, mean |predicted − observed| / observed, in-sample and on the largest model held out of the fit.</dd>
</dl>
"""


@dataclass(frozen=True)
class Budget:
    """The forgetting budget of the recommendation table: absolute nats, or a fraction of L0."""

    max_forgetting: float = 0.05
    relative: bool = True

    def describe(self) -> str:
        if self.relative:
            return f"L_pt − L0 ≤ {100 * self.max_forgetting:g}% of L0"
        return f"L_pt − L0 ≤ {self.max_forgetting:g} nats"


@dataclass
class ReportOptions:
    title: str = "forgetlaw report: forgetting during finetuning with pretraining-data injection"
    curve_choice: figures.CurveChoice = field(default_factory=figures.CurveChoice)
    claims: ClaimSettings = field(default_factory=ClaimSettings)
    budget: Budget = field(default_factory=Budget)
    # Leave out runs whose best target step is 0 (see derive.split_unimproved).
    drop_unimproved: bool = True


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _clean(obj):
    """JSON-safe copy: NaN/inf -> null, numpy scalars -> Python."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.generic):
        return _clean(obj.item())
    return _finite(obj)


def headline_forgetting(table: pd.DataFrame, second: float | None) -> pd.DataFrame:
    """Mean forgetting per model size at p = 0 and at the second p (1% when in the grid)."""
    sizes = sorted(table["model_size"].unique())
    rows = []
    for n in sizes:
        sub = table[table["model_size"] == n]
        row = {"model_size": int(n), "forgetting_p0": float(sub[sub["injection"] == 0.0]["forgetting"].mean())}
        if second is not None:
            row["forgetting_second"] = float(sub[sub["injection"] == second]["forgetting"].mean())
        rows.append(row)
    return pd.DataFrame(rows)


def recommendations(table: pd.DataFrame, fits: StudyFits, budget: Budget) -> pd.DataFrame | None:
    if fits.planner is None:
        return None
    rows = []
    for (domain, n), sub in table.groupby(["domain", "model_size"], sort=True):
        for d in sorted(sub["unique_tokens"].unique()):
            p, feasible, ci = fits.planner(domain, float(n), float(d), budget.max_forgetting, budget.relative)
            rows.append({"domain": domain, "model_size": int(n), "unique_tokens": int(d),
                         "min_injection": p if feasible else None, "feasible": bool(feasible),
                         "has_ci": ci is not None,
                         "ci_low": ci[0] if ci else None, "ci_high": ci[1] if ci else None})
    return pd.DataFrame(rows)


def _fmt(x, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:.{digits}g}"


def _coefficients_html(fits: StudyFits) -> str:
    if not fits.fits:
        return f'<p class="note">{html.esc(fits.note or "No fits.")}</p>'
    parts = []
    for law in dict.fromkeys(f.law for f in fits.fits):
        group_fits = [f for f in fits.fits if f.law == law]
        names = list(dict.fromkeys(k for f in group_fits for k in f.params))
        rows = []
        for f in group_fits:
            row = {"group": f.label, "runs": f.n}
            for name in names:
                value = f.params.get(name)
                ci = (f.ci or {}).get(name)
                row[name] = _fmt(value) + (f" [{_fmt(ci[0])}, {_fmt(ci[1])}]" if ci else "")
            row["MRE"] = f"{100 * f.mre:.2f}%"
            row["held-out MRE"] = "–" if f.holdout_mre is None else f"{100 * f.holdout_mre:.2f}%"
            rows.append(row)
        parts.append(f"<h3>{html.esc(law)} law → {html.esc(group_fits[0].target)}</h3>"
                     + html.table_html(pd.DataFrame(rows), left=("group",)))
    if fits.note:
        parts.append(f'<p class="note">{html.esc(fits.note)}</p>')
    if fits.saver:
        parts.append('<p class="note">The fits are saved beside this page as <code>fits.json</code>; plan '
                     "other sizes or budgets with <code>forgetlaw plan fits.json --model-size N "
                     "--unique-tokens D --max-forgetting EPS --domain NAME</code>.</p>")
    parts.append('<p class="note">Coefficients and MRE: the fit on every run of the domain; brackets: '
                 "bootstrap percentile 95% CIs. Held-out MRE: a fit on all but the largest model, "
                 "predicting the largest.</p>")
    return "\n".join(parts)


def _recommendations_html(recs: pd.DataFrame | None, budget: Budget) -> str:
    if recs is None:
        return '<p class="note">No recommendation: it needs a fitted forgetting law.</p>'
    shown = recs.copy()
    shown["min p"] = [format_p(p) if f else "not reachable with p < 1" for p, f in
                      zip(shown["min_injection"], shown["feasible"], strict=True)]

    def bound(x) -> str:
        # the planner gives None for a bound that no p < 1 reaches
        return "≥ 100%" if x is None or (isinstance(x, float) and math.isnan(x)) else format_p(x)

    shown["95% CI"] = ["–" if not (has_ci and feasible) else f"[{bound(lo)}, {bound(hi)}]"
                       for lo, hi, has_ci, feasible in zip(shown["ci_low"], shown["ci_high"], shown["has_ci"],
                                                           shown["feasible"], strict=True)]
    shown["model_size"] = shown["model_size"].map(lambda n: f"{n:,}")
    shown["unique_tokens"] = shown["unique_tokens"].map(lambda n: f"{n:,}")
    shown = shown[["domain", "model_size", "unique_tokens", "min p", "95% CI"]]
    return (f"<p>Minimum injection p that keeps forgetting within the budget <b>{html.esc(budget.describe())}</b>, "
            "from the fitted forgetting law of each domain.</p>" + html.table_html(shown, left=("domain",)))


def _claims_html(claims) -> str:
    parts = []
    for c in claims:
        cls = c.verdict.replace(" ", "-")
        parts.append(f'<div class="claim"><p><span class="verdict {cls}">{html.esc(c.verdict)}</span> '
                     f"<b>{html.esc(c.statement)}</b></p><p>{html.esc(c.evidence)}</p></div>")
    return "\n".join(parts)


def _provenance_html(provenance: dict) -> str:
    flat = {k: v for k, v in provenance.items() if not isinstance(v, (dict, list))}
    frame = pd.DataFrame({"field": list(flat), "value": [str(v) for v in flat.values()]})
    config = {k: v for k, v in provenance.items() if isinstance(v, (dict, list))}
    return (html.table_html(frame, left=("field", "value"))
            + (f"<details><summary>full configuration (JSON)</summary><pre>"
               f"{html.esc(json.dumps(config, indent=1, default=str))}</pre></details>" if config else ""))


def build_report(results: pd.DataFrame, curves: pd.DataFrame, out_dir: Path, provenance: dict,
                 fits: StudyFits | None = None, options: ReportOptions | None = None) -> Path:
    """Write `report.html` (self-contained), the PNGs and `report.json` into out_dir; return the HTML path."""
    options = options or ReportOptions()
    fits = fits or StudyFits([], note="No fits were given to the report.")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dropped = results.iloc[:0]
    if options.drop_unimproved:
        results, dropped = split_unimproved(results)
        if results.empty and len(dropped):
            raise UserError(f"all {len(dropped)} runs have their best target step at step 0 (finetuning never "
                            "improved the target); lower the finetuning lr in the spec, or pass "
                            "ReportOptions(drop_unimproved=False) to report them anyway")
    table = prepare_results(results)
    check_columns(curves, CURVE_COLUMNS, "curves")
    cells = cell_means(table)
    noise = seed_noise(table)
    claims = check_claims(cells, noise, options.claims)
    second = figures.second_injection_of(table, options.claims.shield_injection)

    pngs: dict[str, Path] = {}
    if not curves.empty:
        choice = figures.resolve_curve_choice(curves, options.curve_choice)
        pngs["curves"] = figures.save_figure(figures.curves_figure(curves, choice), out_dir / "fig_curves.png")
    if second is not None:
        pngs["forgetting_vs_d"] = figures.save_figure(
            figures.forgetting_vs_d_figure(table, second), out_dir / "fig_forgetting_vs_d.png")
    pngs["share_lost"] = figures.save_figure(figures.share_lost_figure(table), out_dir / "fig_share_lost.png")
    if fits.fits:
        pngs["predicted_vs_observed"] = figures.save_figure(
            figures.predicted_vs_observed_figure(fits.fits), out_dir / "fig_predicted_vs_observed.png")

    fit_file = fits.saver(out_dir / "fits.json") if fits.saver else None
    recs = recommendations(table, fits, options.budget)
    headline = headline_forgetting(table, second)

    grid = {
        "runs": int(len(table)), "runs_left_out": int(len(dropped)), "domains": sorted(table["domain"].unique().tolist()),
        "model_sizes": sorted(int(n) for n in table["model_size"].unique()),
        "unique_tokens": sorted(int(d) for d in table["unique_tokens"].unique()),
        "injections": sorted(float(p) for p in table["injection"].unique()),
        "seeds": sorted(int(s) for s in table["seed"].unique()),
    }
    headline_rows = headline.rename(columns={
        "model_size": "N", "forgetting_p0": "F at p = 0",
        "forgetting_second": f"F at p = {format_p(second)}" if second is not None else "-"})
    headline_rows["N"] = headline_rows["N"].map(lambda n: f"{n:,}")
    for column in headline_rows.columns[1:]:
        headline_rows[column] = headline_rows[column].map(lambda v: f"{v:.3f}")
    verdicts = "".join(f'<li><span class="verdict {c.verdict.replace(" ", "-")}">{html.esc(c.verdict)}</span> '
                       f"{html.esc(c.statement)}</li>" for c in claims)
    mre_lines = "".join(
        f"<li>{html.esc(f.law)} law, {html.esc(f.label)}: MRE {100 * f.mre:.2f}% in-sample, "
        f"{'–' if f.holdout_mre is None else f'{100 * f.holdout_mre:.2f}%'} on the held-out largest model</li>"
        for f in fits.fits)
    noise_text = (f"σ(F) = {noise.forgetting_sd:.4f} nats and σ(target loss) = {noise.finetune_sd:.4f} nats, "
                  f"pooled over {noise.replicate_cells} replicated cells ({noise.replicate_runs} runs)."
                  if noise.measured else "Not measured: the study has no replicate runs (same cell, different seed).")

    sections = [
        ("Summary",
         _standin_html(provenance) + f"<p>{grid['runs']} finetuning runs"
         + (f" ({len(dropped)} more left out, see 'Runs left out')" if len(dropped) else "")
         + f": domains {html.esc(', '.join(grid['domains']))}; "
         f"{len(grid['model_sizes'])} model sizes (N = {html.esc(', '.join(f'{n:,}' for n in grid['model_sizes']))}); "
         f"D = {html.esc(', '.join(f'{d:,}' for d in grid['unique_tokens']))}; "
         f"p = {html.esc(', '.join(format_p(p) for p in grid['injections']))}; "
         f"seeds {html.esc(', '.join(str(s) for s in grid['seeds']))}.</p>"
         + _capped_runs_html(results) +
         f"<ul>{verdicts}</ul>" + (f"<ul>{mre_lines}</ul>" if mre_lines else "")
         + "<p>Mean forgetting (nats) by model size, over domains, D and seeds:</p>"
         + html.table_html(headline_rows) + f"<p>Seed noise: {html.esc(noise_text)}</p>"),
        ("Definitions", DEFINITIONS),
    ]
    captions = {
        "curves": ("(a) Finetuning curves", "Target validation loss (the U-curve), training loss and "
                   "pretraining validation loss over finetuning, one line per injection fraction p."),
        "forgetting_vs_d": ("(b) Forgetting against D", "Forgetting at the best target step against the number "
                            "of unique target tokens, one line per model size; error bars: sd over seeds."),
        "share_lost": ("(c) Share of pretraining progress lost", "(L_pt − L0) / (L_init − L0), mean over D and "
                       "seeds, by model size and p."),
        "predicted_vs_observed": ("(d) Laws: predicted against observed", "Each law fitted per domain. Dots: "
                                  "the fit on every run, in-sample. Crosses: the largest model as predicted by a "
                                  "fit on the smaller models only (held out)."),
    }
    for key, (heading, caption) in captions.items():
        if key in pngs:
            sections.append((heading, f'<p class="note">{html.esc(caption)}</p>'
                             + html.image_tag(pngs[key], heading)))
    sections.append(("(e) Fitted coefficients and recommended injection",
                     _coefficients_html(fits) + _recommendations_html(recs, options.budget)))
    sections.append(("(f) The paper's claims, checked against this study",
                     f'<p class="note">Each difference is judged against {options.claims.z:g} standard errors '
                     f"from the seed noise. {html.esc(noise_text)}</p>" + _claims_html(claims)))
    if len(dropped):
        cols = [c for c in ("domain", "model_name", "model_size", "unique_tokens", "injection", "seed") if c in dropped]
        sections.append(("Runs left out", f"<p>{len(dropped)} run(s) never improved on the base model's target "
                         "validation loss (best step 0): finetuning made the target worse from the first "
                         "evaluation, so their forgetting is 0 by construction. They are left out of the "
                         "figures, claims and fits. Many such runs point to a finetuning learning rate too "
                         "high for the domain, or a D-limited training slice unlike the validation text.</p>"
                         + html.table_html(dropped[cols], left=("domain", "model_name"))))
    sections.append(("Provenance", _provenance_html(provenance)))

    data = _clean({
        "provenance": provenance, "grid": grid,
        "noise": asdict(noise),
        "claims": [c.to_dict() for c in claims],
        "headline_forgetting": headline.to_dict(orient="records"),
        "second_injection": second,
        "fits": [f.summary() for f in fits.fits], "fits_note": fits.note,
        "budget": asdict(options.budget),
        "recommendations": None if recs is None else recs.to_dict(orient="records"),
        "figures": {k: p.name for k, p in pngs.items()},
        "fit_file": fit_file.name if fit_file else None,
    })
    (out_dir / "report.json").write_text(json.dumps(data, indent=1, default=str))
    page = html.page(options.title, sections, data)
    path = out_dir / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


def _standin_html(provenance: dict) -> str:
    """What played the pretraining data: the first thing a reader of a pretrained ladder's report
    must know, since the forgetting measured depends on it."""
    corpus = provenance.get("pretrain_corpus", "generic")
    text = (f"<p><b>Pretraining stand-in: {html.esc(corpus)}</b> — the corpus injected into finetuning and on "
            "which the pretraining loss L_pt (and L0) is measured.")
    if provenance.get("pretrained_ladder"):
        text += (" The models are pretrained checkpoints whose own pretraining data is not available here, so "
                 "forgetting is measured on this stand-in; a stand-in far from the models' own text can show "
                 "negative forgetting (docs/pretrained.md).")
    text += "</p>"
    losses = provenance.get("corpus_losses")
    if losses:
        frame = pd.DataFrame({"corpus": list(losses["losses"]),
                              "validation loss (nats)": [f"{v:.3f}" for v in losses["losses"].values()]})
        text += (f"<p>Loss of the smallest base ({html.esc(losses['model'])}) on each corpus of the study, before "
                 "finetuning:</p>" + html.table_html(frame, left=("corpus",)))
    return text


def _capped_runs_html(results: pd.DataFrame) -> str:
    """Runs that hit their epoch cap never showed the bottom of the U-curve: say how many and where."""
    if "stop_reason" not in results:
        return ""
    capped = results[results["stop_reason"] == "max_epochs"]
    if capped.empty:
        return ""
    where = ", ".join(f"{name} ({count})" for name, count in capped["model_name"].value_counts().sort_index().items())
    return (f"<p>{len(capped)} of {len(results)} runs reached their epoch cap before the target loss turned up "
            f"(by model: {html.esc(where)}); they are read at their best evaluation before the cap, so the bottom "
            "of their U-curve, and the forgetting there, may lie later.</p>")
