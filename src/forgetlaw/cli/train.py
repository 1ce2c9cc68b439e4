"""`forgetlaw pretrain` and `forgetlaw finetune`: single training runs.

Tokens come from a data build (`--data DIR`, see `forgetlaw data build`) or from raw token files
(`--train-tokens FILE`, 1-D arrays of --dtype, e.g. made with numpy's tofile).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from forgetlaw.errors import UserError

_DTYPES = ("uint16", "uint32", "int32", "int64")


def register(subparsers) -> None:
    pre = subparsers.add_parser("pretrain", help="pretrain one GPT of a ladder (resumes if interrupted)")
    pre.add_argument("--shape", required=True, help="model shape, e.g. d64 (cpu-tiny) or 109M (paper)")
    _add_token_sources(pre, ("train", "val"))
    pre.add_argument("--out", type=Path, required=True, help="run folder (checkpoint.pt, result.json)")
    pre.add_argument("--tokens-per-param", type=float, default=None,
                     help="default: 20 for cpu-tiny shapes, 100 for paper shapes")
    pre.add_argument("--vocab-size", type=int, default=None,
                     help="with token files: the tokenizer's vocabulary (default: largest id seen + 1)")
    pre.add_argument("--batch-size", type=int, default=32)
    pre.add_argument("--seq-len", type=int, default=128)
    pre.add_argument("--lr", type=float, default=3e-3)
    pre.add_argument("--eval-tokens", type=int, default=8192)
    pre.add_argument("--seed", type=int, default=0)
    pre.add_argument("--device", default="auto")
    pre.add_argument("--compile", action="store_true", help="torch.compile (CUDA only)")
    pre.add_argument("--quiet", action="store_true")
    pre.set_defaults(func=cmd_pretrain)

    ft = subparsers.add_parser("finetune", help="finetune a base model on a domain with injection")
    ft.add_argument("--base", type=Path, required=True,
                    help="a checkpoint.pt from pretrain, or a local Hugging Face model folder")
    ft.add_argument("--gguf-file", help="with a Hugging Face folder: the GGUF file inside it")
    ft.add_argument("--domain", help="with --data: the target domain's name")
    _add_token_sources(ft, ("domain-train", "domain-val", "pretrain-train", "pretrain-val"))
    ft.add_argument("--unique-tokens", type=int, required=True, help="D, unique target tokens")
    ft.add_argument("--injection", type=float, default=0.0, help="p, fraction of pretraining sequences")
    ft.add_argument("--lr", type=float, default=None, help="default: the LR the base's pretraining ended at (peak x min_lr_frac)")
    ft.add_argument("--schedule", default="constant", choices=("constant", "cosine", "linear"))
    ft.add_argument("--warmup-steps", type=int, default=5)
    ft.add_argument("--batch-size", type=int, default=8)
    ft.add_argument("--seq-len", type=int, default=128)
    ft.add_argument("--eval-tokens", type=int, default=8192, help="target validation tokens")
    ft.add_argument("--pretrain-eval-tokens", type=int, default=4096, help="pretraining validation tokens")
    ft.add_argument("--patience", type=int, default=5)
    ft.add_argument("--max-epochs", type=float, default=20.0)
    ft.add_argument("--seed", type=int, default=0)
    ft.add_argument("--device", default="auto")
    ft.add_argument("--out", type=Path, help="write the curve and summary as JSON here")
    ft.add_argument("--quiet", action="store_true")
    ft.set_defaults(func=cmd_finetune)


def _add_token_sources(parser: argparse.ArgumentParser, names: tuple[str, ...]) -> None:
    parser.add_argument("--data", type=Path, help="a data build folder (forgetlaw data build)")
    for name in names:
        parser.add_argument(f"--{name}-tokens", type=Path, metavar="FILE", help=f"raw {name} token file")
    parser.add_argument("--dtype", default="uint16", choices=_DTYPES, help="dtype of raw token files")


def _token_file(path: Path | None, dtype: str, flag: str) -> np.ndarray:
    if path is None:
        raise UserError(f"{flag} is required without --data; pass a token file or a data build folder")
    if not path.is_file():
        raise UserError(f"{flag} {path} does not exist or is not a file")
    itemsize = np.dtype(dtype).itemsize
    size = path.stat().st_size
    if size == 0 or size % itemsize:
        raise UserError(f"{flag} {path} holds {size} bytes, not a whole number of {dtype} tokens; "
                        "pass a token file written as a flat array, or set --dtype")
    return np.memmap(path, dtype=dtype, mode="r")


def _progress(args):
    return None if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))


def cmd_pretrain(args) -> int:
    from forgetlaw.models import LADDERS, TOKENS_PER_PARAM, find_shape
    from forgetlaw.training import PretrainConfig, pretrain

    shape = find_shape(args.shape)
    family = next(name for name, shapes in LADDERS.items() if shape in shapes)
    manifest_hash = None
    if args.data:
        from forgetlaw.data import open_data

        store = open_data(args.data)
        corpus = store.pretrain_corpus
        train, val = store.tokens(corpus, "train"), store.tokens(corpus, "val")
        vocab, manifest_hash = store.vocab_size, store.manifest_hash
    else:
        train = _token_file(args.train_tokens, args.dtype, "--train-tokens")
        val = _token_file(args.val_tokens, args.dtype, "--val-tokens")
        vocab = args.vocab_size or int(max(train.max(), val.max())) + 1
    config = PretrainConfig(
        tokens_per_param=args.tokens_per_param or TOKENS_PER_PARAM[family], batch_size=args.batch_size,
        seq_len=args.seq_len, lr=args.lr, eval_tokens=args.eval_tokens, seed=args.seed,
        device=args.device, compile=args.compile,
    )
    result = pretrain(config, shape.to_config(vocab, args.seq_len), train, val, args.out,
                      _progress(args), data_manifest_hash=manifest_hash)
    print(json.dumps(result.to_dict(), indent=2))
    return 0


def cmd_finetune(args) -> int:
    from forgetlaw.training import FinetuneConfig, finetune

    if args.out and args.out.is_dir():  # checked before training, so a finished run is never lost
        raise UserError(f"--out {args.out} is a folder; give a file path for the run's JSON")
    if args.data:
        from forgetlaw.data import open_data

        store = open_data(args.data)
        if not args.domain:
            raise UserError(f"--domain is required with --data; choose one of {', '.join(store.domains)}")
        if args.domain not in store.domains:
            raise UserError(f"--domain '{args.domain}' is not in {args.data}; choose one of {', '.join(store.domains)}")
        pt = store.pretrain_corpus
        arrays = [store.tokens(args.domain, "train"), store.tokens(args.domain, "val"),
                  store.tokens(pt, "train"), store.tokens(pt, "val")]
    else:
        arrays = [_token_file(getattr(args, f"{name}_tokens"), args.dtype, f"--{name.replace('_', '-')}-tokens")
                  for name in ("domain_train", "domain_val", "pretrain_train", "pretrain_val")]
    base: object = args.base
    if args.base.is_dir():
        from forgetlaw.models.hf import load_hf_causal_lm

        base, _ = load_hf_causal_lm(args.base, gguf_file=args.gguf_file)
    config = FinetuneConfig(
        unique_tokens=args.unique_tokens, injection_fraction=args.injection, lr=args.lr,
        warmup_steps=args.warmup_steps, schedule=args.schedule, batch_size=args.batch_size,
        seq_len=args.seq_len, eval_tokens=args.eval_tokens,
        pretrain_eval_tokens=args.pretrain_eval_tokens, patience=args.patience,
        max_epochs=args.max_epochs, seed=args.seed, device=args.device, domain=args.domain or "",
    )
    result = finetune(config, base, *arrays, progress=_progress(args))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result.to_dict(), indent=2, default=str))
    print(json.dumps(result.summary, indent=2, default=str))
    return 0
