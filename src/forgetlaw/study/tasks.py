"""What a worker runs: one task (a pretraining run, or one or more finetuning runs on the same base)
in, plain result dicts out. Workers never touch the results store; the sweep's parent writes it.

Everything here is picklable and imported lazily, so a task runs the same in a local worker process
and in a Ray task on another machine (which then needs the study folder on a shared file system).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class DataRef:
    """Where a worker finds the token arrays: a `forgetlaw.data` build root, or .npy files."""

    vocab_size: int
    manifest_hash: str
    pretrain_corpus: str = "generic"
    build_root: str | None = None
    files: dict[str, dict[str, str]] = field(default_factory=dict)  # corpus -> split -> .npy path
    corpora: tuple[str, ...] = ()  # every corpus of the study's data (stand-in and domains)
    tokenizer: str | None = None  # the tokenizer folder of a data build

    def tokens(self, corpus: str, split: str) -> np.ndarray:
        if self.build_root is not None:
            from forgetlaw.data import open_data

            return open_data(Path(self.build_root)).tokens(corpus, split)
        return np.load(self.files[corpus][split], mmap_mode="r")


@dataclass(frozen=True)
class Task:
    """One unit of work. `runs` are (key, config) pairs; several only for vectorized finetuning."""

    kind: str  # "pretrain" | "finetune"
    runs: tuple[tuple[str, dict[str, Any]], ...]
    data: DataRef
    study_dir: str
    threads: int
    base_checkpoint: str | None = None
    vectorize: bool = False
    progress_every_s: float = 10.0
    parent_pid: int | None = None
    # A pretrained model's ModelSource fields; None for forgetlaw's own GPTs.
    model_source: dict[str, Any] | None = None

    @property
    def keys(self) -> list[str]:
        return [key for key, _ in self.runs]


def base_dir(study_dir: str | Path, model_name: str, key: str) -> Path:
    """Where a base model's pretraining checkpoint lives inside the study folder."""
    return Path(study_dir) / "bases" / f"{model_name}-{key}"


def _make(cls: type, values: dict[str, Any]) -> Any:
    """Build a config dataclass; a field the spec does not know keeps its default, an unknown key is a bug."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise TypeError(f"{cls.__name__} has no fields {unknown}; the study and training stages disagree")
    return cls(**values)


class _Reporter:
    """Progress from inside a run: throttled stderr lines. Also the watchdog that stops an orphan:
    a worker whose sweep was killed exits at its next progress call instead of training on."""

    def __init__(self, label: str, every_s: float, parent_pid: int | None):
        self.label, self.every_s, self.parent_pid = label, every_s, parent_pid
        self.last = time.monotonic()

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        if self.parent_pid is not None and os.getppid() != self.parent_pid:
            os._exit(3)
        now = time.monotonic()
        if now - self.last >= self.every_s:
            self.last = now
            message = args[0] if args else kwargs
            if isinstance(message, dict):
                message = " ".join(f"{k}={_short(v)}" for k, v in message.items())
            print(f"  [{self.label}] {message}", file=sys.stderr, flush=True)


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _error_text(exc: BaseException) -> str:
    # The last frames say where it broke; the whole traceback would bloat the store.
    lines = traceback.format_exception(type(exc), exc, exc.__traceback__)
    tail = "".join(lines[-3:]).strip()
    return f"{type(exc).__name__}: {exc}" + (f"\n{tail}" if tail else "")


def execute(task: Task) -> list[dict[str, Any]]:
    """Run a task; returns one outcome per run: {key, status: done|failed, error, summary, curve, result, wall_s}.
    A run that raises (divergence included) becomes a failed outcome; the others of the task go on."""
    import torch

    torch.set_num_threads(max(1, task.threads))
    if task.kind == "pretrain":
        return [_run_one(task, task.runs[0], _pretrain)]
    if task.vectorize and len(task.runs) > 1:
        try:
            return _finetune_many(task)
        except Exception as exc:  # fall back to one by one, so one bad run does not fail its group
            print(f"  vectorized group failed ({type(exc).__name__}: {exc}); running its runs one by one",
                  file=sys.stderr, flush=True)
    return [_run_one(task, run, _finetune) for run in task.runs]


def _run_one(task: Task, run: tuple[str, dict[str, Any]], fn) -> dict[str, Any]:
    key, config = run
    start = time.perf_counter()
    try:
        summary, curve, result = fn(task, key, config)
    except Exception as exc:
        from forgetlaw.study.store import is_disk_full

        if is_disk_full(exc):  # not the run's failure: the sweep stops, and a rerun resumes
            raise
        return {"key": key, "status": "failed", "error": _error_text(exc),
                "wall_s": time.perf_counter() - start}
    return {"key": key, "status": "done", "error": None, "summary": summary, "curve": curve,
            "result": result, "wall_s": time.perf_counter() - start}


def _pretrain(task: Task, key: str, config: dict[str, Any]):
    if "pretrained" in config["model"]:
        from forgetlaw.study.bases import measure_pretrained

        return measure_pretrained(task, key, config)
    from forgetlaw.models import ModelShape
    from forgetlaw.training import PretrainConfig, pretrain

    model = config["model"]
    shape = ModelShape(model["name"], model["n_layer"], model["d_model"], model["n_head"])
    model_config = shape.to_config(model["vocab_size"], model["seq_len"])
    out_dir = base_dir(task.study_dir, model["name"], key)
    data = task.data
    reporter = _Reporter(f"pretrain {model['name']}", task.progress_every_s, task.parent_pid)
    result = pretrain(_make(PretrainConfig, config["pretrain"]), model_config,
                      data.tokens(data.pretrain_corpus, "train"), data.tokens(data.pretrain_corpus, "val"),
                      out_dir, progress=reporter)
    summary = {
        "pretrain_loss_before": result.pretrain_loss_before, "pretrain_loss_init": result.init_loss,
        "model_size": result.non_embedding_params, "model_size_total": result.total_params,
        "tokens_seen": result.tokens_seen, "wall_s": result.wall_s,
    }
    checkpoint = Path(result.checkpoint)
    # Relative to the study folder, so that a study folder can be moved or mounted elsewhere.
    with contextlib.suppress(ValueError):
        checkpoint = checkpoint.resolve().relative_to(Path(task.study_dir).resolve())
    return summary, [], {"checkpoint": str(checkpoint), "threads": task.threads}


def _finetune_inputs(task: Task, domain: str) -> tuple[np.ndarray, ...]:
    data = task.data
    return (data.tokens(domain, "train"), data.tokens(domain, "val"),
            data.tokens(data.pretrain_corpus, "train"), data.tokens(data.pretrain_corpus, "val"))


def _finetune_base(task: Task):
    """A forgetlaw checkpoint's path, or a pretrained model loaded for this run alone."""
    if task.model_source is None:
        return Path(task.base_checkpoint)
    from forgetlaw.study.bases import load_pretrained_base

    return load_pretrained_base(task)


def _finetune_outcome(result: Any) -> tuple[dict, list, dict]:
    return dict(result.summary), [dict(point) for point in result.curve], {}


def _finetune(task: Task, key: str, config: dict[str, Any]):
    from forgetlaw.training import FinetuneConfig, finetune

    ft = config["finetune"]
    label = f"{config['domain']} D={ft['unique_tokens']} p={ft['injection_fraction']} s={ft['seed']}"
    reporter = _Reporter(label, task.progress_every_s, task.parent_pid)
    result = finetune(_make(FinetuneConfig, ft), _finetune_base(task),
                      *_finetune_inputs(task, config["domain"]), progress=reporter)
    summary, curve, extra = _finetune_outcome(result)
    return summary, curve, {**extra, "threads": task.threads}


def _finetune_many(task: Task) -> list[dict[str, Any]]:
    from forgetlaw.training import FinetuneConfig, finetune_many

    domain = task.runs[0][1]["domain"]
    start = time.perf_counter()
    configs = [_make(FinetuneConfig, config["finetune"]) for _, config in task.runs]
    reporter = _Reporter(f"{domain} x{len(configs)} vectorized", task.progress_every_s, task.parent_pid)
    results = finetune_many(configs, _finetune_base(task), *_finetune_inputs(task, domain),
                            progress=reporter)
    wall = (time.perf_counter() - start) / len(results)
    outcomes = []
    for (key, _), result in zip(task.runs, results, strict=True):
        summary, curve, extra = _finetune_outcome(result)
        outcomes.append({"key": key, "status": "done", "error": None, "summary": summary, "curve": curve,
                         "result": {**extra, "threads": task.threads, "vectorized": len(results)},
                         "wall_s": wall})
    return outcomes
