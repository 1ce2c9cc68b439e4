"""`forgetlaw fit` and `forgetlaw plan`: fit a law to a results table; plan the injection."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from forgetlaw.errors import UserError


def register(subparsers: argparse._SubParsersAction) -> None:
    from forgetlaw.laws.forms import LAWS
    from forgetlaw.laws.validate import HOLDOUT_HELP

    p = subparsers.add_parser("fit", help="fit a scaling law to a table of runs (CSV or Parquet)",
                              description="Fit a scaling law to a table of runs (CSV or Parquet).")
    p.add_argument("table", help="CSV or Parquet file with the canonical columns")
    p.add_argument("--law", required=True, metavar="NAME", help=f"one of: {', '.join(LAWS)}")
    p.add_argument("--by", default=None, metavar="COLUMN", help="fit one law per value of COLUMN (e.g. domain); "
                   "comma-separated for several")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="K",
                   help="bootstrap resamples for percentile CIs (default 1000; 0 = no CIs)")
    p.add_argument("--holdout", default=None, metavar="H", help=HOLDOUT_HELP)
    p.add_argument("--column", action="append", default=[], metavar="NEW=OLD",
                   help="use the table's column OLD as the canonical column NEW (repeatable)")
    add_fit_options(p)
    p.add_argument("--json", action="store_true", help="print exactly one JSON object on stdout")
    p.add_argument("--points", action="store_true",
                   help="with --json: add each group's per-run observed and predicted values")
    p.add_argument("--save", default=None, metavar="FIT",
                   help="write the fit (with its bootstrap draws) into this JSON fit file; a file that "
                        "already holds a fit of the other role (forgetting/finetuning) keeps it")
    p.set_defaults(func=run_fit)

    q = subparsers.add_parser("plan", help="minimum injection p for a forgetting budget, from a saved fit",
                              description="Minimum injection p for a forgetting budget, from a saved fit.")
    q.add_argument("fit", metavar="FIT", help="fit file written by forgetlaw fit --save")
    q.add_argument("--model-size", type=float, required=True, metavar="N", help="non-embedding parameters")
    q.add_argument("--unique-tokens", type=float, required=True, metavar="D", help="unique target tokens")
    budget = q.add_mutually_exclusive_group(required=True)
    budget.add_argument("--max-forgetting", type=float, default=None, metavar="EPS",
                        help="allowed rise of the pretraining loss (absolute, or a fraction of L0 with --relative)")
    budget.add_argument("--forgetting-fraction", type=float, default=None, metavar="R",
                        help="keep forgetting to R times the law's forgetting at p = 0 (0.5: the p that halves it)")
    q.add_argument("--relative", action="store_true", help="EPS is a fraction of L0")
    q.add_argument("--domain", default=None, help="which domain's fit to use")
    q.add_argument("--pretrain-loss-before", type=float, default=None, metavar="L0",
                   help="the base model's pretraining loss (needed when N is not a size the fit saw)")
    q.add_argument("--grid", default=None, metavar="P,P,...", help="injection fractions to predict losses at")
    q.add_argument("--json", action="store_true", help="print exactly one JSON object on stdout")
    q.set_defaults(func=run_plan)


def add_fit_options(p: argparse.ArgumentParser) -> None:
    """The fitting options `fit` and `compare` share; their defaults are `forgetlaw.laws.fit`'s."""
    import inspect

    from forgetlaw.laws import fit

    defaults = {k: v.default for k, v in inspect.signature(fit).parameters.items()}
    p.add_argument("--huber-delta", type=float, default=defaults["huber_delta"],
                   help="Huber delta on log-loss residuals")
    p.add_argument("--seed", type=int, default=defaults["seed"], help="seed of the bootstrap and k-fold splits")
    p.add_argument("--forgetting-floor", type=float, default=defaults["forgetting_floor"], metavar="EPS",
                   help="rows with |L_pt - L0| at most EPS (loss units) are left out of the error on F "
                        f"(default {defaults['forgetting_floor']:g}; docs/laws.md)")


def print_warnings(label: str, warnings: list[str]) -> None:
    for w in warnings:
        print(f"warning ({label}): {w}")


def fmt(x: float | None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.4g}"


def run_fit(args: argparse.Namespace) -> int:
    from forgetlaw.laws import fit, get_law, parse_renames, read_table, save_fit
    from forgetlaw.laws.saved import check_save_target
    from forgetlaw.laws.validate import parse_holdout
    from forgetlaw.provenance import file_sha256

    law = get_law(args.law)
    holdout = parse_holdout(args.holdout)
    renames = parse_renames(args.column)
    by = [c.strip() for c in args.by.split(",") if c.strip()] if args.by else None
    if args.save:
        check_save_target(args.save)
    df = read_table(args.table, renames)
    source = {"table": str(args.table), "sha256": file_sha256(args.table), "rows": len(df),
              "renames": renames or None}
    report = fit(df, law, by=by, bootstrap=args.bootstrap, holdout=holdout, huber_delta=args.huber_delta,
                 seed=args.seed, forgetting_floor=args.forgetting_floor, progress=not args.json, source=source)
    if args.save:
        save_fit(report, args.save)
    if args.json:
        print(json.dumps(report.to_json(points=args.points)))
        return 0
    print(f"law {law.name}: {law.formula}")
    print_table(*_fit_rows(report))
    for f in report.fits:
        print_warnings(group_text(f.group), f.warnings)
    if law.role == "forgetting":
        print(f"mre_F: the error on the forgetting F = L_pt - L0, over rows with |F| > "
              f"{args.forgetting_floor:g} (rows left out: in-sample/held-out)")
    if args.bootstrap:
        print(f"CIs: {100 * report.settings['ci_level']:.0f}% bootstrap percentiles over {args.bootstrap} resamples")
    if args.save:
        print(f"saved the {law.role} fit to {args.save}")
    return 0


def _fit_rows(report) -> tuple[list[str], list[list[str]]]:
    law = report.law
    names = list(law.param_names)
    forgetting = law.role == "forgetting"
    header = ["group", *names, "mre", "holdout_mre", *(["mre_F", "holdout_mre_F", "left out"] if forgetting else []),
              "n", "starts ok/best/all", "at bound"]
    rows = []
    for f in report.fits:
        cells = [group_text(f.group)]
        for name in names:
            cell = fmt(f.params[name])
            if f.ci:
                cell += f" [{fmt(f.ci[name][0])}, {fmt(f.ci[name][1])}]"
            cells.append(cell)
        d = f.diagnostics
        cells += [fmt(f.mre), fmt(f.holdout_mre)]
        if forgetting:
            e = d["forgetting_error"]
            held = "-" if e["holdout_left_out"] is None else str(e["holdout_left_out"])
            cells += [fmt(f.mre_forgetting), fmt(f.holdout_mre_forgetting), f"{e['left_out']}/{held}"]
        cells += [str(f.n), f"{d['converged_starts']}/{d['starts_at_best']}/{d['starts']}",
                  ",".join(d["at_bound"]) or "-"]
        rows.append(cells)
    return header, rows


def print_table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))


def group_text(group: dict | None) -> str:
    return "all" if not group else ",".join(str(v) for v in group.values())


def run_plan(args: argparse.Namespace) -> int:
    from forgetlaw.laws import load_fit, plan_injection
    from forgetlaw.laws.plan import DEFAULT_GRID

    grid = DEFAULT_GRID
    if args.grid:
        try:
            grid = tuple(float(x) for x in args.grid.split(","))
        except ValueError:
            raise UserError(f"--grid {args.grid!r} is not a comma-separated list of numbers, e.g. 0,0.01,0.05") from None
    saved = load_fit(Path(args.fit))
    if args.relative and args.forgetting_fraction is not None:
        raise UserError("--relative scales --max-forgetting by L0; --forgetting-fraction is already relative "
                        "(to the forgetting at p = 0): drop one of them")
    plan = plan_injection(saved, args.model_size, args.unique_tokens, args.max_forgetting,
                          relative=args.relative, domain=args.domain, forgetting_fraction=args.forgetting_fraction,
                          pretrain_loss_before=args.pretrain_loss_before, grid=grid)
    if args.json:
        print(json.dumps(plan.to_json()))
        return 0
    _print_plan(plan)
    return 0


def _budget_text(plan) -> str:
    if plan.forgetting_fraction is not None:
        return (f"{plan.forgetting_fraction:g} x F(p=0) = {plan.forgetting_fraction:g} x "
                f"{plan.forgetting_at_zero:.4g} = {plan.budget:.4g}")
    return f"{plan.max_forgetting:g} x L0 = {plan.budget:.4g}" if plan.relative else f"{plan.budget:.4g}"


def _print_plan(plan) -> None:
    where = f" ({group_text(plan.group)})" if plan.group else ""
    print(f"law {plan.law}{where}: N = {plan.model_size:g}, D = {plan.unique_tokens:g}, "
          f"L0 = {plan.pretrain_loss_before:.4g}, forgetting budget {_budget_text(plan)}")
    if plan.feasible:
        ci = ""
        if plan.ci:
            ci = f"  CI [{fmt(plan.ci[0])}, {fmt(plan.ci[1]) if plan.ci[1] is not None else 'infeasible'}]"
        print(f"minimum injection p = {plan.injection:.4g}{ci}")
        print(f"predicted pretrain loss {plan.predicted_pretrain_loss:.4g} (forgetting {plan.predicted_forgetting:.4g})")
        if plan.prob_over_budget is not None:
            print(f"probability the budget is exceeded at this p: {plan.prob_over_budget:.2f} (bootstrap fits)")
        print(f"finetuning compute at equal target tokens: x{plan.compute_factor:.4g} (1 / (1 - p))")
        if plan.predicted_finetune_loss is not None:
            change = ("" if plan.finetune_loss_change is None
                      else f", {plan.finetune_loss_change:+.4g} vs p = 0")
            print(f"predicted finetune loss {plan.predicted_finetune_loss:.4g} ({plan.finetune_law}{change})")
    else:
        print(f"infeasible: no p < 1 keeps forgetting within the budget; the least reachable is "
              f"{plan.least_forgetting:.4g}")
    print_warnings("plan", plan.warnings)
    print("p        pretrain_loss  forgetting  finetune_loss")
    for row in plan.grid:
        print(f"{row['injection']:<8g} {row['pretrain_loss']:<14.4g} {row['forgetting']:<11.4g} "
              f"{fmt(row['finetune_loss'])}")
