"""`forgetlaw compare` (several laws on one table) and `forgetlaw design` (cheap runs on one model)."""

from __future__ import annotations

import argparse
import json

from forgetlaw.cli.laws import add_fit_options, fmt, group_text, print_table, print_warnings
from forgetlaw.errors import UserError


def register(subparsers: argparse._SubParsersAction) -> None:
    from forgetlaw.laws.forms import LAWS
    from forgetlaw.laws.validate import HOLDOUT_HELP

    p = subparsers.add_parser("compare", help="fit several laws to one table and compare their errors, AIC, BIC",
                              description="Fit several laws to one table: parameters, MRE on the loss and on "
                                          "the forgetting F, in-sample and held out, AIC and BIC (docs/laws.md).")
    p.add_argument("table", help="CSV or Parquet file with the canonical columns")
    p.add_argument("--laws", required=True, metavar="L1,L2,...", help=f"comma-separated, from: {', '.join(LAWS)}")
    p.add_argument("--by", default=None, metavar="COLUMN", help="one fit per value of COLUMN (e.g. domain)")
    p.add_argument("--holdout", default=None, metavar="H", help=HOLDOUT_HELP)
    p.add_argument("--bootstrap", type=int, default=0, metavar="K", help="bootstrap resamples (default 0)")
    p.add_argument("--column", action="append", default=[], metavar="NEW=OLD",
                   help="use the table's column OLD as the canonical column NEW (repeatable)")
    add_fit_options(p)
    p.add_argument("--json", action="store_true", help="print exactly one JSON object on stdout")
    p.set_defaults(func=run_compare)

    from forgetlaw.laws.design import DesignOptions

    defaults = DesignOptions()
    q = subparsers.add_parser("design", help="the cheapest K finetuning runs on one model that pin down the law",
                              description="Propose K runs on one model (subsets of your D, a few p) that pin down "
                                          "the forgetting law at your full D (docs/laws.md, 'One model').")
    q.add_argument("--unique-tokens", type=float, required=True, metavar="D", help="your unique target tokens")
    q.add_argument("--runs", type=int, required=True, metavar="K", help="how many runs you can afford")
    q.add_argument("--law", default="forgetting", metavar="NAME", help="a forgetting law (default forgetting)")
    q.add_argument("--fractions", default=_csv(defaults.fractions), metavar="F,F,...",
                   help=f"fractions of D a run may use (default {_csv(defaults.fractions)})")
    q.add_argument("--injections", default=_csv(defaults.injections), metavar="P,P,...",
                   help=f"injection fractions a run may use (default {_csv(defaults.injections)})")
    q.add_argument("--prior", default=None, metavar="FIT", help="a fit file of a similar study: its forgetting law's "
                   "parameters replace the generic prior")
    q.add_argument("--domain", default=None, help="which domain's fit in --prior")
    q.add_argument("--noise", type=float, default=defaults.noise,
                   help=f"relative noise of one run's pretraining loss (default {defaults.noise:g})")
    q.add_argument("--json", action="store_true", help="print exactly one JSON object on stdout")
    q.set_defaults(func=run_design)


def _csv(values) -> str:
    return ",".join(f"{v:g}" for v in values)


def _floats(text: str, flag: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise UserError(f"{flag} {text!r} is not a comma-separated list of numbers, e.g. 0,0.01,0.05") from None


def run_compare(args: argparse.Namespace) -> int:
    from forgetlaw.laws import parse_renames, read_table
    from forgetlaw.laws.compare import compare_laws, parse_laws
    from forgetlaw.laws.validate import parse_holdout

    names = parse_laws(args.laws)  # bad input fails before the table is read
    holdout = parse_holdout(args.holdout)
    by = [c.strip() for c in args.by.split(",") if c.strip()] if args.by else None
    df = read_table(args.table, parse_renames(args.column))
    result = compare_laws(df, names, by=by, holdout=holdout, bootstrap=args.bootstrap, seed=args.seed,
                          huber_delta=args.huber_delta, forgetting_floor=args.forgetting_floor,
                          progress=not args.json)
    if args.json:
        print(json.dumps(result.to_json()))
        return 0
    header = ["law", "group", "params", "mre", "holdout_mre", "mre_F", "holdout_mre_F", "AIC", "BIC", "n"]
    rows = [[s.law, group_text(s.group), " ".join(f"{k}={fmt(v)}" for k, v in s.params.items()),
             fmt(s.mre), fmt(s.holdout_mre), fmt(s.mre_forgetting), fmt(s.holdout_mre_forgetting),
             f"{s.aic:.1f}", f"{s.bic:.1f}", str(s.n)] for s in result.scores]
    print_table(header, rows)
    for s in result.scores:
        print_warnings(f"{s.law}, {group_text(s.group)}", s.warnings)
    print(f"mre_F: error on F = L_pt - L0 over rows with |F| > {args.forgetting_floor:g}; AIC/BIC from the summed "
          "Huber objective (docs/laws.md); compare only laws that predict the same column")
    return 0


def run_design(args: argparse.Namespace) -> int:
    from forgetlaw.laws import load_fit
    from forgetlaw.laws.design import DesignOptions, design_runs, prior_from_fit

    options = DesignOptions(fractions=_floats(args.fractions, "--fractions"),
                            injections=_floats(args.injections, "--injections"), noise=args.noise)
    if not args.noise > 0:
        raise UserError(f"--noise {args.noise} must be > 0, e.g. 0.002")
    if args.prior:
        saved = load_fit(args.prior)
        if saved.forgetting is None:
            raise UserError(f"--prior {args.prior!r} holds no forgetting fit; make one with forgetlaw fit ... --save")
        if saved.forgetting.law.name != args.law:
            raise UserError(f"--prior holds a {saved.forgetting.law.name} fit but --law is {args.law}; "
                            f"pass --law {saved.forgetting.law.name}")
        prior = prior_from_fit(saved.forgetting, args.domain)
        options = DesignOptions(fractions=options.fractions, injections=options.injections, noise=args.noise,
                                prior=prior["params"], model_size=prior["model_size"],
                                pretrain_loss_before=prior["pretrain_loss_before"])
    design = design_runs(args.unique_tokens, args.runs, args.law, options)
    if args.json:
        print(json.dumps(design.to_json()))
        return 0
    print(f"law {design.law}: {design.runs_requested} runs on one model for D = {design.unique_tokens:g} "
          f"(cost in full-D runs at p = 0: {design.total_cost:.3g}; the cheapest identifying set costs "
          f"{design.cheapest_identifying_cost:.3g})")
    print_table(["unique_tokens", "fraction", "injection", "cost"],
                [[f"{r['unique_tokens']:g}", f"{r['fraction']:g}", f"{r['injection']:g}", f"{r['cost']:.3g}"]
                 for r in design.runs])
    se = ", ".join(f"p={s['injection']:g}: {100 * s['relative_se_forgetting']:.1f}%" for s in design.predicted_se)
    print(f"predicted relative SE of F at the full D (noise {design.noise:g} per run): {se}")
    print_warnings("design", design.warnings)
    return 0
