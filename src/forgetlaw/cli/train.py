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


# Training flags: (flag, type, help). Their defaults are the training configs' own (PretrainConfig,
# FinetuneConfig: one place for each default); a flag left out keeps it.
_PRETRAIN_FLAGS = (
    ("--batch-size", int, "sequences per optimizer step"), ("--seq-len", int, "context length"),
    ("--lr", float, "peak learning rate"), ("--eval-tokens", int, "validation tokens for L0"),
    ("--seed", int, "seed"), ("--device", str, "auto, cpu, cuda"),
    ("--micro-batch-size", int, "sequences per micro-batch (gradient accumulation; memory, not math)"),
    ("--checkpoint-every-s", float, "seconds between resumable checkpoints (as well as every 500 steps)"),
)
_FINETUNE_FLAGS = (
    ("--lr", float, "finetuning LR (default: the LR the base's pretraining ended at; needed for other models)"),
    ("--schedule", str, "constant, cosine or linear"), ("--warmup-steps", int, "linear warmup steps"),
    ("--batch-size", int, "sequences per optimizer step"), ("--seq-len", int, "context length"),
    ("--eval-tokens", int, "target validation tokens"), ("--pretrain-eval-tokens", int, "pretraining validation tokens"),
    ("--pretrain-eval-every", int, "L_pt on every k-th evaluation (and at the best step)"),
    ("--eval-every-epochs", float, "target evaluations per epoch (inverse)"),
    ("--patience", int, "evaluations without improvement before stopping"), ("--max-epochs", float, "epoch cap"),
    ("--seed", int, "seed"), ("--device", str, "auto, cpu, cuda"),
    ("--micro-batch-size", int, "sequences per micro-batch (gradient accumulation; memory, not math)"),
    ("--weights-dtype", str, "float32 or bfloat16 (the weights AdamW updates)"),
)


def _add_flags(parser: argparse.ArgumentParser, flags) -> None:
    for flag, kind, text in flags:
        parser.add_argument(flag, type=kind, default=None, help=f"{text} (default: the training config's)")


def _given(args, flags) -> dict:
    """The training settings given on the command line, by config field name."""
    names = (flag.removeprefix("--").replace("-", "_") for flag, _, _ in flags)
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def register(subparsers) -> None:
    pre = subparsers.add_parser("pretrain", help="pretrain one GPT of a ladder (resumes if interrupted)")
    pre.add_argument("--shape", required=True, help="model shape, e.g. d64 (cpu-tiny) or 109M (paper)")
    _add_token_sources(pre, ("train", "val"))
    pre.add_argument("--out", type=Path, required=True, help="run folder (checkpoint.pt, result.json)")
    pre.add_argument("--tokens-per-param", type=float, default=None,
                     help="default: 20 for cpu-tiny shapes, 100 for paper shapes")
    pre.add_argument("--vocab-size", type=int, default=None,
                     help="with token files: the tokenizer's vocabulary (default: largest id seen + 1)")
    _add_flags(pre, _PRETRAIN_FLAGS)
    pre.add_argument("--compile", action="store_true", help="torch.compile (CUDA only)")
    pre.add_argument("--activation-checkpointing", action="store_true", help="recompute activations (memory)")
    pre.add_argument("--quiet", action="store_true")
    pre.set_defaults(func=cmd_pretrain)

    ft = subparsers.add_parser("finetune", help="finetune a base model on a domain with injection")
    ft.add_argument("--base", type=Path, required=True,
                    help="a checkpoint.pt from pretrain, or a local Hugging Face model folder")
    ft.add_argument("--gguf-file", help="with a Hugging Face folder: the GGUF file inside it")
    ft.add_argument("--trust-remote-code", action="store_true",
                    help="let a Hugging Face folder run the code it ships (off: never run it unasked)")
    ft.add_argument("--domain", help="with --data: the target domain's name")
    _add_token_sources(ft, ("domain-train", "domain-val", "pretrain-train", "pretrain-val"))
    ft.add_argument("--pretrain-corpus", default="generic",
                    help="with --data: the corpus that plays the pretraining data (injection and L_pt)")
    ft.add_argument("--unique-tokens", type=int, required=True, help="D, unique target tokens")
    ft.add_argument("--injection", type=float, default=0.0, help="p, fraction of pretraining sequences")
    _add_flags(ft, _FINETUNE_FLAGS)
    ft.add_argument("--activation-checkpointing", action="store_true", help="recompute activations (memory)")
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
    config = PretrainConfig(tokens_per_param=args.tokens_per_param or TOKENS_PER_PARAM[family],
                            compile=args.compile, activation_checkpointing=args.activation_checkpointing,
                            **_given(args, _PRETRAIN_FLAGS))
    result = pretrain(config, shape.to_config(vocab, config.seq_len), train, val, args.out,
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
        pt = args.pretrain_corpus
        if pt not in store.manifest["corpora"]:
            raise UserError(f"--pretrain-corpus '{pt}' is not built in {args.data}; build it with --domains {pt}")
        arrays = [store.tokens(args.domain, "train"), store.tokens(args.domain, "val"),
                  store.tokens(pt, "train"), store.tokens(pt, "val")]
    else:
        arrays = [_token_file(getattr(args, f"{name}_tokens"), args.dtype, f"--{name.replace('_', '-')}-tokens")
                  for name in ("domain_train", "domain_val", "pretrain_train", "pretrain_val")]
    base: object = args.base
    if args.base.is_dir():
        from forgetlaw.models.hf import load_hf_causal_lm

        base, _ = load_hf_causal_lm(args.base, gguf_file=args.gguf_file, trust_remote_code=args.trust_remote_code)
    config = FinetuneConfig(unique_tokens=args.unique_tokens, injection_fraction=args.injection,
                            domain=args.domain or "", activation_checkpointing=args.activation_checkpointing,
                            **_given(args, _FINETUNE_FLAGS))
    result = finetune(config, base, *arrays, progress=_progress(args))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result.to_dict(), indent=2, default=str))
    print(json.dumps(result.summary, indent=2, default=str))
    return 0
