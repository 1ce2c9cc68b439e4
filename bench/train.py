"""Training speed, measured in one run on this machine.

1. tokens/s of our GPT vs Hugging Face `GPT2LMHeadModel` of the same shape, on identical batches
   (forward + backward + AdamW step; both use SDPA attention and the same loss on the logits), as
   HF ships it (tanh GELU) and with exact GELU (exactly our math); and the step's kernel floor
   (its GEMMs and SDPA alone), the bound on any implementation;
2. achieved GFLOP/s of our training step vs a large fp32 matmul's GFLOP/s measured in the same run.
   FLOPs per trained token = 6 * (N_non_embedding + V * d) + 6 * L * T * d: the weight matmuls
   (the tied output head included, embedding lookups not) times 3 for forward + backward, plus the
   attention score and value matmuls (Kaplan et al. 2020, without halving for causality);
3. K finetuning runs trained together (`finetune_many`, vectorized) vs the same K one by one;
4. the share of a default finetuning run's wall time spent in evaluation.

`--json` prints one object with vs_hf_ratio, matmul_fraction, vectorized_ratio, eval_share (and
the raw figures). About a minute on one idle CPU core. At 1 thread (the default) step times are the
thread's CPU time, which leaves out time other processes held the core; the vectorized and
evaluation figures are wall time and stay noisy when other work shares the CPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from forgetlaw.models import GPT, GPTConfig, non_embedding_params
from forgetlaw.training import FinetuneConfig, PretrainConfig, finetune, finetune_many, pretrain
from forgetlaw.training.common import lm_loss, make_adamw


def words_text(n_tokens: int, seed: int, vocab: int, word_seed: int) -> np.ndarray:
    """Made-up words (2-6 tokens) in random order: learnable, cheap, no files needed."""
    rng = np.random.default_rng(word_seed)
    words = [rng.integers(1, vocab, size=rng.integers(2, 7)) for _ in range(400)]
    order = np.random.default_rng(seed).integers(0, len(words), size=n_tokens // 2)
    return np.concatenate([words[i] for i in order])[:n_tokens].astype(np.uint16)


def step_timer() -> Callable[[], float]:
    """At 1 torch thread the whole step runs on this thread, so its CPU time (`thread_time`) is the
    step's cost without the time other processes held the core: on a shared machine it is far
    steadier than wall time, and equal to it on an idle one. With more threads, wall time."""
    return time.thread_time if torch.get_num_threads() == 1 else time.perf_counter


def time_interleaved(models: dict, batches: list[torch.Tensor], warmup: int = 2) -> dict[str, float]:
    """Median seconds per training step of each model, their steps interleaved so that a burst of
    load from other processes hits all of them alike. Same AdamW (fused), same clipping, same
    batches, float32 for both."""
    clock = step_timer()
    optimizers = {name: make_adamw(model, 1e-3, 0.1, torch.device("cpu")) for name, (model, _) in models.items()}
    times: dict[str, list[float]] = {name: [] for name in models}
    for i, batch in enumerate(batches):
        for name, (model, logits_of) in models.items():
            model.train()
            started = clock()
            loss = lm_loss(logits_of(model, batch[:, :-1]), batch[:, 1:])
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizers[name].step()
            optimizers[name].zero_grad(set_to_none=True)
            if i >= warmup:
                times[name].append(clock() - started)
    return {name: float(np.median(t)) for name, t in times.items()}


def matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
    clock = step_timer()
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    started = clock()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (clock() - started) / 1e9


def kernel_floor_s(cfg: GPTConfig, batch: int, repeats: int = 5) -> float:
    """Seconds per training step spent in the kernels any implementation of this shape must run:
    each linear's forward (addmm) and its two backward matmuls, the tied head's three, and causal
    SDPA forward + backward per layer. A step cannot be faster than this; the gap to it is what
    the rest (GELU, LayerNorm, loss, AdamW, copies, Python) costs."""
    clock = step_timer()
    n_tokens, d, heads = batch * cfg.seq_len, cfg.d_model, cfg.n_head
    gemms = [(d, 3 * d), (d, d), (d, cfg.mlp_ratio * d), (cfg.mlp_ratio * d, d)]

    def linear_cost(d_in: int, d_out: int, bias: bool) -> float:
        x, grad = torch.randn(n_tokens, d_in), torch.randn(n_tokens, d_out)
        weight, b = torch.randn(d_out, d_in), torch.randn(d_out)

        def run() -> None:
            torch.addmm(b, x, weight.t()) if bias else x @ weight.t()
            grad @ weight
            grad.t() @ x

        run()
        started = clock()
        for _ in range(repeats):
            run()
        return (clock() - started) / repeats

    q, k, v = (torch.randn(batch, heads, cfg.seq_len, d // heads, requires_grad=True) for _ in range(3))
    grad_out = torch.randn(batch, heads, cfg.seq_len, d // heads)
    torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True).backward(grad_out)
    started = clock()
    for _ in range(repeats):
        torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True).backward(grad_out)
    attention = (clock() - started) / repeats
    per_layer = sum(linear_cost(i, o, True) for i, o in gemms) + attention
    return cfg.n_layer * per_layer + linear_cost(d, cfg.vocab_size, False)


def bench_vs_hf(width: int, layers: int, vocab: int, seq: int, batch: int, steps: int) -> dict:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=vocab, n_layer=layers, n_head=width // 64, d_model=width, seq_len=seq)
    ours = GPT(cfg)
    hf_config = GPT2Config(vocab_size=vocab, n_positions=seq, n_embd=width, n_layer=layers,
                           n_head=width // 64, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                           bos_token_id=0, eos_token_id=0)
    hf = GPT2LMHeadModel(hf_config)
    hf.config.use_cache = False
    # The headline compares against GPT-2 as HF ships it (tanh GELU, `gelu_new`); this second copy
    # runs exactly our math (exact GELU), so the ratio to it is pure implementation overhead.
    hf_exact = GPT2LMHeadModel(GPT2Config(**{**hf_config.to_dict(), "activation_function": "gelu"}))
    hf_exact.config.use_cache = False
    data = words_text(batch * (seq + 1) * (steps + 2), 0, vocab, 1)
    batches = [torch.from_numpy(w.astype(np.int64)) for w in data.reshape(steps + 2, batch, seq + 1)]
    step_s = time_interleaved({
        "ours": (ours, lambda m, x: m(x)),
        "hf": (hf, lambda m, x: m(input_ids=x, use_cache=False).logits),
        "hf_exact_gelu": (hf_exact, lambda m, x: m(input_ids=x, use_cache=False).logits),
    }, batches)
    ours_s, hf_s, hf_exact_s = step_s["ours"], step_s["hf"], step_s["hf_exact_gelu"]
    tokens = batch * seq
    n = non_embedding_params(cfg)
    flops_per_token = 6 * (n + vocab * width) + 6 * layers * seq * width
    peak = matmul_gflops()
    achieved = flops_per_token * tokens / ours_s / 1e9
    floor_s = kernel_floor_s(cfg, batch)
    return {
        "timer": "thread_time" if torch.get_num_threads() == 1 else "wall",
        "ours_step_ms": 1e3 * ours_s, "hf_step_ms": 1e3 * hf_s, "kernel_floor_ms": 1e3 * floor_s,
        # The best ratio any implementation of the same math could reach against this HF step.
        "vs_hf_ceiling": hf_s / floor_s,
        "hf_exact_gelu_step_ms": 1e3 * hf_exact_s, "vs_hf_exact_gelu_ratio": hf_exact_s / ours_s,
        "shape": {"d_model": width, "n_layer": layers, "vocab": vocab, "seq_len": seq, "batch": batch},
        "ours_tokens_per_s": tokens / ours_s, "hf_tokens_per_s": tokens / hf_s,
        "vs_hf_ratio": hf_s / ours_s, "achieved_gflops": achieved, "matmul_gflops": peak,
        "matmul_fraction": achieved / peak,
    }


def bench_finetuning(runs: int) -> dict:
    """A d64 (cpu-tiny) base pretrained briefly; the eval share of one default-settings finetune, and
    K runs (differing in p and seed) vectorized vs one by one."""
    vocab, seq = 512, 128
    pt_train, pt_val = words_text(200_000, 0, vocab, 1), words_text(20_000, 1, vocab, 1)
    dom_train, dom_val = words_text(64_000, 2, vocab, 2), words_text(20_000, 3, vocab, 2)
    cfg = GPTConfig(vocab_size=vocab, n_layer=2, n_head=2, d_model=64, seq_len=seq)
    with tempfile.TemporaryDirectory() as tmp:
        base = pretrain(PretrainConfig(tokens_per_param=0.5, batch_size=16, device="cpu"), cfg,
                        pt_train, pt_val, Path(tmp))
        arrays = (dom_train, dom_val, pt_train, pt_val)
        # Default settings (8k + 4k-token val sets, eval every epoch but not more often than 8 steps)
        # at a D in the demo's range.
        one = finetune(FinetuneConfig(unique_tokens=16_000, injection_fraction=0.05, max_epochs=8,
                                      device="cpu"), base.checkpoint, *arrays)
        # The same at 4x the unique tokens (4 epochs): the validation sets are fixed, so their
        # share falls as D grows.
        large = finetune(FinetuneConfig(unique_tokens=64_000, injection_fraction=0.05, max_epochs=4,
                                        device="cpu"), base.checkpoint, *arrays)
        # Fixed work for the speed comparison: no early stop, a few epochs.
        first = FinetuneConfig(unique_tokens=4_000, max_epochs=3, patience=1000, device="cpu")
        configs = [dataclasses.replace(first, injection_fraction=p, seed=s)
                   for p, s in zip((0.0, 0.01, 0.05, 0.2, 0.1, 0.0, 0.05, 0.2)[:runs], range(runs), strict=True)]
        timings: dict[bool, list[float]] = {False: [], True: []}
        for vectorized in (False, True, False, True):  # alternated, best of two: load bursts
            started = time.perf_counter()
            finetune_many(configs, base.checkpoint, *arrays, vectorized=vectorized)
            timings[vectorized].append(time.perf_counter() - started)
        sequential_s, vectorized_s = min(timings[False]), min(timings[True])
    s = one.summary
    return {
        "eval_share": s["eval_s"] / s["wall_s"],
        "eval_share_d64k": large.summary["eval_s"] / large.summary["wall_s"],
        "eval_run": {k: s[k] for k in ("steps", "epochs", "wall_s", "eval_s", "eval_interval_steps", "stop_reason")},
        "vectorized_runs": runs, "sequential_s": sequential_s, "vectorized_s": vectorized_s,
        "vectorized_ratio": sequential_s / vectorized_s,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: steadier figures on a shared machine)")
    parser.add_argument("--runs", type=int, default=4, help="K runs for the vectorized comparison")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    result = {
        **bench_vs_hf(args.width, args.layers, vocab=512, seq=128, batch=8, steps=args.steps),
        **bench_finetuning(args.runs), "threads": torch.get_num_threads(),
        "flop_formula": "6*(N_non_embedding + V*d) + 6*L*T*d per trained token",
    }
    result["bench_s"] = time.perf_counter() - started
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"shape d={args.width} L={args.layers} V=512 T=128 B=8, {result['threads']} threads")
    print(f"ours {result['ours_tokens_per_s']:,.0f} tok/s vs HF GPT2LMHeadModel "
          f"{result['hf_tokens_per_s']:,.0f} tok/s: ratio {result['vs_hf_ratio']:.2f} (target >= 1.3; "
          f"timer {result['timer']})")
    print(f"step {result['ours_step_ms']:.0f} ms vs HF {result['hf_step_ms']:.0f} ms; GEMM + SDPA floor "
          f"{result['kernel_floor_ms']:.0f} ms, so no implementation exceeds {result['vs_hf_ceiling']:.2f}x")
    print(f"vs HF with exact GELU (our math exactly): {result['hf_exact_gelu_step_ms']:.0f} ms, "
          f"ratio {result['vs_hf_exact_gelu_ratio']:.2f}")
    print(f"achieved {result['achieved_gflops']:.1f} GFLOP/s vs fp32 matmul {result['matmul_gflops']:.1f}: "
          f"fraction {result['matmul_fraction']:.2f} (target >= 0.7); {result['flop_formula']}")
    print(f"{args.runs} finetuning runs: one by one {result['sequential_s']:.1f} s, vectorized "
          f"{result['vectorized_s']:.1f} s: ratio {result['vectorized_ratio']:.2f}")
    print(f"evaluation share of a finetuning run: {result['eval_share']:.0%} ({result['eval_run']}); "
          f"at D=64k: {result['eval_share_d64k']:.0%}")
    print(f"bench took {result['bench_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
