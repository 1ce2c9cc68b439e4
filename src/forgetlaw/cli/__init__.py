"""The `forgetlaw` command: one verb per pipeline stage.

Each stage owns a module here with ``register(subparsers)``; every handler is set with
``parser.set_defaults(func=handler)`` and returns an exit code (or None for 0). A `UserError`
becomes one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from forgetlaw import __version__
from forgetlaw.errors import UserError

# Stage modules, in pipeline order. A module that is not there yet is skipped, so the CLI works
# while a stage is being built.
STAGES = ("data", "models", "train", "study", "laws", "lawcheck", "report", "integrations")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's own errors: one line, exit 2
        self.exit(2, f"forgetlaw: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="forgetlaw", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"forgetlaw {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for stage in STAGES:
        try:
            module = importlib.import_module(f"forgetlaw.cli.{stage}")
        except ModuleNotFoundError as exc:
            if exc.name == f"forgetlaw.cli.{stage}":
                continue
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        code = args.func(args)
    except UserError as exc:
        print(f"forgetlaw: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("forgetlaw: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
