"""`forgetlaw export-mix`: the mixed training set for trainers of your own (docs/integrations.md)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export-mix", help="write a target set with a fraction p of pretraining data injected, for any trainer",
        description="Write the target set with a fraction p of pretraining sequences injected by forgetlaw's "
                    "exact rule (floor(p k) after k), as JSONL or a save_to_disk folder, and print the "
                    "weights that make LLaMA-Factory and Megatron-LM draw the same fraction.")
    p.add_argument("spec", metavar="SPEC", help="mix spec (.yaml/.toml): target, pretrain, p, seed, "
                   "sequences or epochs, format (see docs/integrations.md)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder to create (must not exist or be empty)")
    p.add_argument("--json", action="store_true", help="print the manifest as one JSON object instead")
    p.set_defaults(func=_export_mix)


def _export_mix(args: argparse.Namespace) -> int:
    from forgetlaw.console import is_terminal
    from forgetlaw.integrations.export import export_mix, load_mix_spec, summary_lines

    spec = load_mix_spec(args.spec)
    if not is_terminal(sys.stderr):  # datasets' own bars are for terminals; logs get our summary
        import datasets

        datasets.disable_progress_bars()
    manifest = export_mix(spec, args.out)
    if args.json:
        print(json.dumps(manifest))
    else:
        print("\n".join(summary_lines(manifest, Path(args.out))))
    return 0
