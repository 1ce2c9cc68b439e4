"""`forgetlaw report STUDY_DIR [--out DIR]` and `forgetlaw demo [--preset NAME] [--out DIR]`."""

from __future__ import annotations

import argparse
from pathlib import Path

from forgetlaw.errors import UserError


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 0")
    return value


def register(subparsers) -> None:
    report = subparsers.add_parser(
        "report", help="build the HTML report (figures, fits, claims) of a finished study",
        description="Build report.html, its PNG figures and report.json from a study folder.")
    report.add_argument("study_dir", type=Path, metavar="STUDY_DIR", help="the --out folder of a sweep or demo")
    report.add_argument("--out", type=Path, default=None, help="report folder (default STUDY_DIR/report)")
    report.add_argument("--bootstrap", type=_positive_int, default=200,
                        help="bootstrap resamples for the fits' CIs (default 200; 0: none)")
    report.add_argument("--max-forgetting", type=float, default=0.05,
                        help="forgetting budget of the recommendation table (default 0.05)")
    report.add_argument("--absolute", action="store_true",
                        help="read --max-forgetting in nats instead of as a fraction of L0")
    report.set_defaults(func=_report)

    demo = subparsers.add_parser(
        "demo", help="build data, run the preset study, fit both laws and write the report",
        description="The whole pipeline in one command; run it again to resume an interrupted demo.")
    from forgetlaw.study.spec import PRESETS  # one list of presets, the study stage's

    demo.add_argument("--preset", choices=PRESETS, default="cpu", help="study preset (default cpu)")
    demo.add_argument("--out", type=Path, default=None, help="study folder (default ./forgetlaw-demo-PRESET)")
    demo.add_argument("--workers", type=int, default=None, help="local worker processes (default: per core)")
    demo.add_argument("--executor", choices=("local", "ray"), default="local")
    demo.add_argument("--address", default=None, help="Ray cluster address (with --executor ray)")
    demo.add_argument("--bootstrap", type=_positive_int, default=200, help="bootstrap resamples (default 200)")
    demo.set_defaults(func=_demo)


def _budget(args):
    from forgetlaw.report import Budget

    if not args.max_forgetting > 0:
        raise UserError(f"--max-forgetting {args.max_forgetting} must be > 0 (e.g. 0.05 = 5% of L0)")
    return Budget(max_forgetting=args.max_forgetting, relative=not args.absolute)


def _report(args) -> int:
    from forgetlaw.report.demo import report_study

    path, _ = report_study(args.study_dir, args.out, bootstrap=args.bootstrap, budget=_budget(args), progress=print)
    print(f"report: {path}")
    return 0


def _demo(args) -> int:
    from forgetlaw.report.demo import run_demo

    run_demo(args.preset, args.out, workers=args.workers, executor=args.executor, address=args.address,
             bootstrap=args.bootstrap, progress=print)
    return 0
