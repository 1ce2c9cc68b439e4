"""`forgetlaw sweep` (run or resume a study) and `forgetlaw results` (export, status, verify)."""

from __future__ import annotations

import argparse
import sys

from forgetlaw.errors import UserError


def register(subparsers: argparse._SubParsersAction) -> None:
    sweep = subparsers.add_parser(
        "sweep", help="run or resume a study: pretrain each size once, then every finetuning run",
        description="Run a study into --out. Running the same command again resumes it: finished runs "
                    "are kept, interrupted ones are redone.")
    sweep.add_argument("spec", nargs="?", help="study spec file (.yaml/.yml/.toml)")
    from forgetlaw.study.spec import PRESETS

    sweep.add_argument("--preset", help=f"a shipped spec instead of a file: {', '.join(PRESETS)}")
    sweep.add_argument("--out", required=True, help="study folder (holds results.sqlite and the bases)")
    sweep.add_argument("--executor", default="local", choices=("local", "ray"))
    sweep.add_argument("--address", help="Ray cluster address (with --executor ray); default a local instance")
    sweep.add_argument("--workers", type=int, help="tasks at once (local: processes; default one per core)")
    sweep.add_argument("--threads", type=int, help="torch threads per task (default: cores / workers)")
    sweep.add_argument("--retry-failed", action="store_true", help="rerun the runs recorded as failed")
    sweep.add_argument("--dry-run", action="store_true", help="print the plan's size and stop")
    sweep.add_argument("--quiet", action="store_true", help="no progress lines")
    sweep.set_defaults(func=_sweep)

    results = subparsers.add_parser("results", help="the results of a study: export the table, show status, verify")
    verbs = results.add_subparsers(dest="results_command", metavar="VERB", parser_class=type(results))
    export = verbs.add_parser("export", help="write the canonical results table (CSV or Parquet)")
    export.add_argument("study_dir", metavar="DIR")
    export.add_argument("--csv", help="CSV file to write")
    export.add_argument("--parquet", help="Parquet file to write")
    export.set_defaults(func=_export)
    status = verbs.add_parser("status", help="runs by status, and the errors of failed runs")
    status.add_argument("study_dir", metavar="DIR")
    status.set_defaults(func=_status)
    verify = verbs.add_parser("verify", help="check a study folder: store integrity, run keys, results, checkpoints",
                              description="Exit 0 when the study is sound, 1 with one line per problem.")
    verify.add_argument("study_dir", metavar="DIR")
    verify.add_argument("--quick", action="store_true", help="skip loading the base checkpoints")
    verify.set_defaults(func=_verify)
    results.set_defaults(func=lambda args: results.print_help(sys.stderr) or 2)


def _load(args: argparse.Namespace):
    from forgetlaw.study.spec import load_preset, load_spec

    if bool(args.spec) == bool(args.preset):
        raise UserError("sweep: give a spec file or --preset NAME (one of them)")
    return load_preset(args.preset) if args.preset else load_spec(args.spec)


def _sweep(args: argparse.Namespace) -> int:
    from forgetlaw.study.runner import run_study

    spec = _load(args)
    if args.dry_run:
        from forgetlaw.study.plan import grid_cells, resolve_ladder

        shapes = resolve_ladder(spec)
        cells = grid_cells(spec, shapes)
        print(f"{spec.name}: {len(shapes)} pretraining runs ({', '.join(s.name for s in shapes)}), "
              f"{len(cells)} finetuning runs")
        return 0
    outcome = run_study(spec, args.out, executor=args.executor, workers=args.workers, address=args.address,
                        retry_failed=args.retry_failed, threads=args.threads,
                        progress=not args.quiet)
    return 1 if outcome.failed else 0


def _export(args: argparse.Namespace) -> int:
    from forgetlaw.study.results import export_results

    frame = export_results(args.study_dir, csv=args.csv, parquet=args.parquet)
    print(f"{len(frame)} runs written to {', '.join(p for p in (args.csv, args.parquet) if p)}")
    return 0


def _status(args: argparse.Namespace) -> int:
    from forgetlaw.study.store import ResultsStore

    store = ResultsStore.open_existing(args.study_dir)
    try:
        for kind, counts in store.counts().items():
            print(f"{kind:9s} " + "  ".join(f"{status} {n}" for status, n in counts.items()))
        for run in store.runs(status="failed"):
            first = (run["error"] or "").splitlines()[0] if run["error"] else ""
            print(f"failed {run['kind']} {run['key']} {run['model_name']} {run['domain'] or ''} "
                  f"D={run['unique_tokens']} p={run['injection']} seed={run['seed']}: {first}")
    finally:
        store.close()
    return 0


def _verify(args: argparse.Namespace) -> int:
    from forgetlaw.study.verify import verify_study

    problems, checked = verify_study(args.study_dir, deep=not args.quick)
    for line in problems:
        print(line)
    if problems:
        print(f"{len(problems)} problem(s) in {args.study_dir}", file=sys.stderr)
        return 1
    loaded = "" if args.quick else f", {checked['checkpoints']} base checkpoint(s) load"
    print(f"ok: {args.study_dir} ({checked['runs']} runs: integrity, keys and results complete{loaded})")
    return 0
