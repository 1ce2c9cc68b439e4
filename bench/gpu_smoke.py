"""GPU smoke and speed check, one prepared script (well under 5 minutes on one H200).

1. bf16-autocast pretraining steps (forward + backward + fused AdamW, the `pretrain` step) of the
   `paper` ladder's 41M and 109M shapes: tokens/s and MFU.
   FLOPs per trained token = 6 (N_non_embedding + V d) + 6 L T d: the weight matmuls (tied head
   included, embedding lookups not) times 3 for forward + backward, plus the attention score and
   value matmuls with the causal half skipped (PaLM's 12 L T d, halved). MFU = achieved FLOP/s over
   `--peak-tflops` (default 989: H200/H100 SXM dense bf16 without sparsity; set your chip's).
2. K finetuning runs of each `cpu-tiny` shape trained together (`finetune_many`, vectorized) vs the
   same K one by one; the ratio of wall times.
3. A small study on a ladder of Hugging Face models, the path users with their own checkpoints take:
   GPTs pretrained briefly here on made-up words (the GPU machine has no network, so no corpora and
   no hub), exported with `forgetlaw.models.export` (GPT2LMHeadModel folders), then a `ladder.models`
   sweep (bases, finetuning with injection, bf16 autocast, micro-batches) through `run_study`: wall
   times, finetuning tokens/s and MFU per run.

`--cpu-smoke` runs the same code on the CPU with the smallest shapes in a few seconds, so that the
script is known to work before a GPU is spent on it. `--json` prints one JSON object.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from forgetlaw.models import GPT, ladder, non_embedding_params
from forgetlaw.training import FinetuneConfig, finetune_many
from forgetlaw.training.common import autocast_context, lm_loss, make_adamw


def words_text(n_tokens: int, seed: int, vocab: int, word_seed: int) -> np.ndarray:
    """Made-up words (2-6 tokens) in random order: learnable, cheap, no files needed."""
    rng = np.random.default_rng(word_seed)
    words = [rng.integers(1, vocab, size=rng.integers(2, 7)) for _ in range(400)]
    order = np.random.default_rng(seed).integers(0, len(words), size=n_tokens // 2)
    return np.concatenate([words[i] for i in order])[:n_tokens].astype(np.uint16)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def flops_per_token(cfg) -> int:
    return 6 * (non_embedding_params(cfg) + cfg.vocab_size * cfg.d_model) + 6 * cfg.n_layer * cfg.seq_len * cfg.d_model


def pretrain_steps(shape, device: torch.device, args) -> dict:
    """Timed pretraining steps of one shape on random tokens (the speed does not depend on them)."""
    torch.manual_seed(0)
    cfg = shape.to_config(vocab_size=args.vocab, seq_len=args.seq_len)
    model = GPT(cfg).to(device)
    trained = torch.compile(model) if args.compile else model
    optimizer = make_adamw(model, 3e-4, 0.1, device)
    ctx = autocast_context(device, "bf16")
    batch = torch.randint(0, args.vocab, (args.batch, args.seq_len + 1), device=device)

    def step() -> None:
        with ctx:
            loss = lm_loss(trained(batch[:, :-1]), batch[:, 1:])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    warm_started = time.perf_counter()
    for _ in range(args.warmup_steps):  # kernel selection, allocator, compilation
        step()
    sync(device)
    warmup_s = time.perf_counter() - warm_started
    started = time.perf_counter()
    for _ in range(args.steps):
        step()
    sync(device)
    elapsed = time.perf_counter() - started
    tokens_per_s = args.steps * args.batch * args.seq_len / elapsed
    achieved = tokens_per_s * flops_per_token(cfg)
    result = {
        "shape": shape.name, "n_layer": cfg.n_layer, "d_model": cfg.d_model, "vocab": cfg.vocab_size,
        "seq_len": cfg.seq_len, "batch": args.batch, "non_embedding_params": non_embedding_params(cfg),
        "tokens_per_s": tokens_per_s, "achieved_tflops": achieved / 1e12,
        "mfu": achieved / (args.peak_tflops * 1e12), "step_ms": 1e3 * elapsed / args.steps,
        "warmup_s": warmup_s, "compiled": bool(args.compile),
    }
    if device.type == "cuda":
        result["max_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
        torch.cuda.reset_peak_memory_stats(device)
    return result  # the model and optimizer are freed on return, before the next shape


def vectorized_ratio(shape, device: torch.device, args) -> dict:
    """K runs (differing in p and seed) of one tiny shape: vectorized vs one by one, fixed work
    (no early stop). The base is a fresh model: the speed does not depend on its weights."""
    vocab, seq = 512, 128
    pt_train, pt_val = words_text(200_000, 0, vocab, 1), words_text(20_000, 1, vocab, 1)
    dom_train, dom_val = words_text(60_000, 2, vocab, 2), words_text(20_000, 3, vocab, 2)
    torch.manual_seed(0)
    base = GPT(shape.to_config(vocab_size=vocab, seq_len=seq))
    first = FinetuneConfig(unique_tokens=args.unique_tokens, max_epochs=args.epochs, patience=10_000,
                           lr=1e-3, device=device.type, seq_len=seq)
    fractions = (0.0, 0.01, 0.05, 0.1, 0.2, 0.3, 0.02, 0.15)
    configs = [dataclasses.replace(first, injection_fraction=fractions[i % len(fractions)], seed=i)
               for i in range(args.runs)]
    arrays = (dom_train, dom_val, pt_train, pt_val)
    finetune_many(configs[:1], base, *arrays, vectorized=True)  # warm-up: kernels, allocator
    timings: dict[bool, float] = {}
    for vectorized in (False, True):
        sync(device)
        started = time.perf_counter()
        results = finetune_many(configs, base, *arrays, vectorized=vectorized)
        sync(device)
        timings[vectorized] = time.perf_counter() - started
    return {
        "shape": shape.name, "non_embedding_params": shape.non_embedding_params(), "runs": args.runs,
        "steps_per_run": results[0].summary["steps"], "sequential_s": timings[False],
        "vectorized_s": timings[True], "vectorized_ratio": timings[False] / timings[True],
    }


def word_texts(n_docs: int, seed: int, letters: str) -> list[str]:
    """Documents of made-up words over `letters`: a tokenizer and a domain without any file."""
    rng = np.random.default_rng(seed)
    words = ["".join(rng.choice(list(letters), size=rng.integers(2, 8))) for _ in range(300)]
    return [" ".join(words[i] for i in rng.integers(0, len(words), size=200)) + "." for _ in range(n_docs)]


def word_tokenizer(folder: Path, texts: list[str], vocab: int) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=vocab, special_tokens=["<|endoftext|>"],
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>").save_pretrained(folder)
    return folder


def _encode(tokenizer_dir: Path, texts: list[str]) -> np.ndarray:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    ids = tokenizer(texts)["input_ids"]
    return np.concatenate([np.append(np.asarray(i), tokenizer.eos_token_id) for i in ids]).astype(np.uint16)


def _split(tokens: np.ndarray) -> dict[str, np.ndarray]:
    cut = int(len(tokens) * 0.9)
    return {"train": tokens[:cut], "val": tokens[cut:]}


def ladder_study(device: torch.device, args) -> dict:
    """Pretrain, export and study a ladder of HF models (see the module docstring, part 3)."""
    from forgetlaw.models import ModelShape
    from forgetlaw.models.export import export_gpt
    from forgetlaw.study import ResultsStore, run_study, spec_from_dict
    from forgetlaw.training import PretrainConfig, pretrain
    from forgetlaw.training.checkpoint import load_model

    root = Path(tempfile.mkdtemp(prefix="forgetlaw-gpu-smoke-"))
    generic_texts, domain_texts = word_texts(args.study_docs, 0, "abcdefghijklm"), word_texts(args.study_docs // 3, 1, "nopqrstuvwxyz")
    tokenizer_dir = word_tokenizer(root / "tokenizer", generic_texts + domain_texts, args.study_vocab)
    data = {"generic": _split(_encode(tokenizer_dir, generic_texts)), "words": _split(_encode(tokenizer_dir, domain_texts))}
    models, shapes = [], {}
    started = time.perf_counter()
    for layers, width in args.study_shapes:
        shape = ModelShape(f"d{width}L{layers}", layers, width, max(1, width // 64))
        cfg = shape.to_config(args.study_vocab + 64, args.study_seq_len)
        config = PretrainConfig(tokens_per_param=args.study_tokens_per_param, batch_size=args.study_batch,
                                seq_len=args.study_seq_len, eval_tokens=8 * args.study_seq_len, device=device.type)
        result = pretrain(config, cfg, data["generic"]["train"], data["generic"]["val"], root / "bases" / shape.name)
        model, _ = load_model(result.checkpoint)
        export_gpt(model, root / "models" / shape.name, tokenizer_dir, {"final_lr": config.lr * config.min_lr_frac})
        models.append({"name": shape.name, "path": str(root / "models" / shape.name)})
        shapes[shape.name] = cfg
    pretrain_s = time.perf_counter() - started
    spec = spec_from_dict({
        "name": "gpu-smoke-ladder", "seq_len": args.study_seq_len, "ladder": {"models": models},
        "data": {"pretrain_corpus": "generic"}, "domains": ["words"], "unique_tokens": args.study_unique_tokens,
        "injection": [0.0, 0.05], "pretrain": {"eval_tokens": 16 * args.study_seq_len},
        "finetune": {"batch_size": args.study_batch, "micro_batch_size": max(1, args.study_batch // 2),
                     "eval_tokens": 16 * args.study_seq_len, "pretrain_eval_tokens": 16 * args.study_seq_len,
                     "patience": 3, "max_epochs": args.study_epochs, "min_eval_interval_steps": 4},
        "execution": {"device": device.type, "progress_every_s": 60},
    })
    started = time.perf_counter()
    run_study(spec, root / "study", workers=1, data=data, progress=False)
    study_s = time.perf_counter() - started
    store = ResultsStore.open_existing(root / "study")
    runs = []
    try:
        for run in store.runs(kind="finetune"):
            summary = store.summary(run["key"]) or {}
            cfg = shapes[run["model_name"]]
            tokens = summary["steps"] * args.study_batch * args.study_seq_len
            train_s = summary["wall_s"] - summary["eval_s"]
            runs.append({"model": run["model_name"], "unique_tokens": run["unique_tokens"], "injection": run["injection"],
                         "status": run["status"], "steps": summary["steps"], "wall_s": summary["wall_s"],
                         "tokens_per_s": tokens / train_s,
                         "mfu": tokens / train_s * flops_per_token(cfg) / (args.peak_tflops * 1e12),
                         "pretrain_loss_before": summary["pretrain_loss_before"],
                         "forgetting": summary["pretrain_loss"] - summary["pretrain_loss_before"]})
        failed = [r["key"] for r in store.runs(status="failed")]
    finally:
        store.close()
    return {"folder": str(root), "pretrain_and_export_s": pretrain_s, "study_s": study_s, "failed": failed, "runs": runs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-smoke", action="store_true",
                        help="run on the CPU with the smallest shapes and a few steps (seconds)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--compile", action="store_true", help="torch.compile the pretraining model")
    parser.add_argument("--peak-tflops", type=float, default=989.0,
                        help="the chip's dense bf16 peak for MFU (H200/H100 SXM: 989)")
    parser.add_argument("--shapes", default="41M,109M", help="paper-ladder shapes to pretrain")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=1024)
    parser.add_argument("--vocab", type=int, default=50_304, help="GPT-2's 50,257 padded to a multiple of 64")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup-steps", type=int, default=5)
    parser.add_argument("--runs", type=int, default=8, help="K runs for the vectorized comparison")
    parser.add_argument("--unique-tokens", type=int, default=16_000)
    parser.add_argument("--epochs", type=float, default=4.0)
    parser.add_argument("--tiny-shapes", default="", help="cpu-tiny shapes (default: all)")
    parser.add_argument("--no-study", action="store_true", help="skip part 3 (the ladder study)")
    args = parser.parse_args(argv)
    # part 3: (layers, width) of the exported ladder, and its study's sizes
    args.study_shapes, args.study_vocab, args.study_seq_len, args.study_batch = [(4, 256), (6, 384)], 8192, 512, 32
    args.study_docs, args.study_tokens_per_param, args.study_unique_tokens, args.study_epochs = 6000, 4, [200_000, 400_000], 4

    if args.cpu_smoke:
        device = torch.device("cpu")
        torch.set_num_threads(1)
        # Smallest shapes, a few steps: checks the code path, not the speed (bf16 autocast on this
        # CPU is slow; the figures mean nothing here).
        pretrain_shapes = ladder("cpu-tiny")[:2]
        args.batch, args.seq_len, args.vocab, args.steps, args.warmup_steps = 2, 64, 256, 2, 1
        args.runs, args.unique_tokens, args.epochs, args.compile = 2, 2_000, 1.0, False
        tiny_shapes = ladder("cpu-tiny")[:1]
        args.study_shapes, args.study_vocab, args.study_seq_len, args.study_batch = [(1, 16), (1, 24)], 300, 32, 4
        args.study_docs, args.study_tokens_per_param, args.study_unique_tokens, args.study_epochs = 60, 4, [512], 2
    else:
        if not torch.cuda.is_available():
            print("no CUDA device: run on a GPU machine, or pass --cpu-smoke", file=sys.stderr)
            return 2
        device = torch.device("cuda")
        torch.backends.cuda.matmul.allow_tf32 = True  # the fp32 parts (loss, optimizer) only
        wanted = {name.strip() for name in args.shapes.split(",") if name.strip()}
        pretrain_shapes = [s for s in ladder("paper") if s.name in wanted]
        tiny_wanted = {name.strip() for name in args.tiny_shapes.split(",") if name.strip()}
        tiny_shapes = [s for s in ladder("cpu-tiny") if not tiny_wanted or s.name in tiny_wanted]

    started = time.perf_counter()
    result = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__, "peak_tflops": args.peak_tflops, "cpu_smoke": args.cpu_smoke,
        "flop_formula": "6*(N_non_embedding + V*d) + 6*L*T*d per trained token",
        "pretrain": [pretrain_steps(shape, device, args) for shape in pretrain_shapes],
        "vectorized": [vectorized_ratio(shape, device, args) for shape in tiny_shapes],
    }
    if not args.no_study:
        result["ladder_study"] = ladder_study(device, args)
    result["total_s"] = time.perf_counter() - started
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{result['device']}, torch {result['torch']}, peak {args.peak_tflops:g} TFLOP/s (bf16 dense)")
    for row in result["pretrain"]:
        print(f"pretrain {row['shape']:>5} (L={row['n_layer']} d={row['d_model']} B={row['batch']} "
              f"T={row['seq_len']}): {row['tokens_per_s']:,.0f} tok/s, {row['achieved_tflops']:.1f} TFLOP/s, "
              f"MFU {row['mfu']:.1%}{' (compiled)' if row['compiled'] else ''}")
    for row in result["vectorized"]:
        print(f"finetune_many {row['shape']:>4} x{row['runs']}: one by one {row['sequential_s']:.1f} s, "
              f"vectorized {row['vectorized_s']:.1f} s: ratio {row['vectorized_ratio']:.2f}")
    study = result.get("ladder_study")
    if study:
        print(f"ladder study (exported HF models): pretrain+export {study['pretrain_and_export_s']:.0f} s, "
              f"sweep {study['study_s']:.0f} s, {len(study['failed'])} failed")
        for row in study["runs"]:
            print(f"  {row['model']} D={row['unique_tokens']} p={row['injection']:g}: {row['steps']} steps, "
                  f"{row['tokens_per_s']:,.0f} tok/s, MFU {row['mfu']:.1%}, forgetting {row['forgetting']:+.3f}")
    print(f"took {result['total_s']:.0f} s; {result['flop_formula']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
