"""The paper's reading inside a Hugging Face `Trainer`: follow the pretraining loss on fixed windows,
read the run at its best target evaluation, and write a row of forgetlaw's results table.

    from forgetlaw.integrations.hf import attach
    callback = attach(trainer, pretrain_val_tokens, seq_len=128, domain="code",
                      unique_tokens=2_000_000, injection=0.05, results_csv="runs.csv")
    trainer.train()          # logs pretrain_val_loss; appends one row to runs.csv for `forgetlaw fit`

The pretraining loss is forgetlaw's own evaluation (`forgetlaw.training.common.evaluate` on
`forgetlaw.data.mixture.validation_windows`), so the numbers equal those of a forgetlaw run of the
same weights on the same windows. It is evaluated at the start (L0, before any update), at every
`pretrain_eval_every`-th target evaluation and at the best target evaluation; see
docs/integrations.md for the two ways of reading the best step (`at_best`).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import torch
from transformers import TrainerCallback

from forgetlaw.data.mixture import validation_windows
from forgetlaw.errors import UserError
from forgetlaw.models.hf import HFCausalLM
from forgetlaw.models.params import count_parameters
from forgetlaw.provenance import code_version, config_hash
from forgetlaw.training.common import evaluate
from forgetlaw.training.finetune import FinetuneConfig

# One place for each default: the finetuning stage's own.
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(FinetuneConfig)}
AT_BEST = ("evaluate", "copy")
LOGGED = "pretrain_val_loss"


class ForgettingCallback(TrainerCallback):
    """See the module docstring. `trainer` is the Trainer whose `log` carries `pretrain_val_loss` to
    its trackers (W&B, MLflow, TensorBoard); `attach` sets it and registers the callback."""

    def __init__(self, pretrain_val: np.ndarray, *, seq_len: int, domain: str = "",
                 unique_tokens: int | None = None, injection: float = 0.0,
                 results_csv: str | Path | None = None, model_name: str | None = None,
                 pretrain_eval_tokens: int = _DEFAULTS["pretrain_eval_tokens"],
                 pretrain_eval_every: int = _DEFAULTS["pretrain_eval_every"], at_best: str = "evaluate",
                 metric: str = "eval_loss", precision: str = _DEFAULTS["precision"], batch_size: int = 64,
                 trainer=None):
        from forgetlaw.integrations.datasets import check_fraction

        if at_best not in AT_BEST:
            raise UserError(f"at_best must be one of {', '.join(AT_BEST)}; got '{at_best}'")
        if not pretrain_eval_every > 0:
            raise UserError(f"pretrain_eval_every must be positive; got {pretrain_eval_every}")
        if results_csv is not None and not (unique_tokens and unique_tokens > 0):
            raise UserError("results_csv needs unique_tokens=D (the unique target tokens), the D of the laws")
        tokens = np.asarray(pretrain_val)
        self.windows = tokens if tokens.ndim == 2 else validation_windows(tokens, seq_len, pretrain_eval_tokens)
        self.seq_len, self.domain, self.unique_tokens = seq_len, domain, unique_tokens
        self.injection = check_fraction(injection, "injection")
        self.results_csv = None if results_csv is None else Path(results_csv)
        self.model_name, self.every, self.at_best = model_name, pretrain_eval_every, at_best
        self.metric, self.precision, self.batch_size, self.trainer = metric, precision, batch_size, trainer
        self.curve: list[dict] = []  # step, epoch, target metric, pretrain_val_loss (NaN where not evaluated)
        self.row: dict | None = None  # the results row, once training ends
        self._reset()

    def _reset(self) -> None:
        self.l0: float | None = None
        self.target_before = math.nan
        self.evals = 0
        self.best: dict | None = None
        self._best_weights: dict | None = None

    # ---- evaluation ----
    def pretrain_loss(self, model: torch.nn.Module) -> float:
        """forgetlaw's evaluation of `model` on the fixed pretraining windows."""
        vocab = getattr(getattr(model, "config", None), "vocab_size", None)
        if vocab is not None and int(self.windows.max()) >= vocab:
            raise UserError(f"the pretraining windows hold token id {int(self.windows.max())} but the model's "
                            f"vocabulary has {vocab} entries; tokenize them with the model's tokenizer")
        device = next(model.parameters()).device
        wrapped = HFCausalLM(model)
        wrapped.train(model.training)  # evaluate restores this mode afterwards
        return evaluate(wrapped, self.windows, device, self.precision, self.batch_size)

    def _log(self, logs: dict) -> None:
        if self.trainer is None:
            raise UserError("ForgettingCallback logs through the Trainer: register it with "
                            "forgetlaw.integrations.hf.attach(trainer, ...), or set callback.trainer = trainer")
        self.trainer.log(dict(logs))

    # ---- Trainer events ----
    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self._reset()
        self.curve = []
        self.l0 = self.pretrain_loss(model)
        self._log({LOGGED: self.l0})

    def on_evaluate(self, args, state, control, metrics=None, model=None, **kwargs):
        if self.metric not in (metrics or {}):
            raise UserError(f"metric '{self.metric}' is not among the evaluation metrics "
                            f"{sorted(metrics or {})}; pass metric='NAME' (the target validation loss)")
        target = float(metrics[self.metric])
        initial = state.global_step == 0
        improved = self.best is None or target < self.best["finetune_loss"]
        if initial:
            self.target_before = target
        else:
            self.evals += 1
        point = {"step": state.global_step, "epoch": state.epoch or 0.0, self.metric: target, LOGGED: math.nan}
        if initial:
            point[LOGGED] = self.l0  # the same weights L0 was evaluated on
        elif self.evals % self.every == 0 or (improved and self.at_best == "evaluate"):
            point[LOGGED] = self.pretrain_loss(model)
            self._log({LOGGED: point[LOGGED]})
        self.curve.append(point)
        if improved:
            self.best = {"step": state.global_step, "epoch": state.epoch or 0.0, "finetune_loss": target,
                         "pretrain_loss": point[LOGGED], "tokens": self._tokens(args, state)}
            # forgetlaw's own way: keep the weights and evaluate them once, when training ends.
            self._best_weights = None
            if math.isnan(point[LOGGED]):
                self._best_weights = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if self.best is None:
            raise UserError("training ended without an evaluation of the target; set eval_strategy "
                            "(e.g. 'steps' with eval_steps) and an eval_dataset")
        if self._best_weights is not None:
            self.best["pretrain_loss"] = self._evaluate_kept(model)
            self._best_weights = None
        stopped_early = state.max_steps and state.global_step < state.max_steps
        self.row = self._row(args, state, model, "patience" if stopped_early else "max_epochs")
        self._log({"pretrain_loss_before": self.l0, "pretrain_loss": self.best["pretrain_loss"],
                   "finetune_loss": self.best["finetune_loss"], "best_step": self.best["step"]})
        if self.results_csv is not None and state.is_world_process_zero:
            append_row(self.results_csv, self.row)

    def _evaluate_kept(self, model: torch.nn.Module) -> float:
        current = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        model.load_state_dict(self._best_weights)
        try:
            return self.pretrain_loss(model)
        finally:
            model.load_state_dict(current)

    # ---- the results row ----
    def _tokens(self, args, state) -> int:
        seen = getattr(state, "num_input_tokens_seen", 0) or 0
        if seen:
            return int(seen)
        per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps * max(1, args.world_size)
        return int(state.global_step * per_step * self.seq_len)

    def _row(self, args, state, model, stop_reason: str) -> dict:
        from forgetlaw.study.results import RESULT_COLUMNS

        counts = count_parameters(model)
        name = self.model_name or getattr(getattr(model, "config", None), "_name_or_path", "") or type(model).__name__
        settings = {"model": name, "N": counts.non_embedding, "domain": self.domain, "D": self.unique_tokens,
                    "p": self.injection, "seed": args.seed, "lr": args.learning_rate,
                    "batch": args.per_device_train_batch_size, "accumulation": args.gradient_accumulation_steps,
                    "max_steps": args.max_steps, "epochs": args.num_train_epochs, "at_best": self.at_best,
                    "windows": config_hash(self.windows.tobytes().hex())}
        best = self.best
        row = {
            "domain": self.domain, "model_size": counts.non_embedding, "model_size_total": counts.total,
            "model_name": name, "unique_tokens": self.unique_tokens, "injection": self.injection,
            "seed": args.seed, "tokens": best["tokens"], "pretrain_loss_before": self.l0,
            "pretrain_loss_init": math.nan, "finetune_loss_before": self.target_before,
            "pretrain_loss": best["pretrain_loss"], "finetune_loss": best["finetune_loss"],
            "loss": best["finetune_loss"], "best_step": best["step"], "best_epoch": best["epoch"],
            "stop_reason": stop_reason, "run_key": config_hash(settings),
        }
        assert tuple(row) == RESULT_COLUMNS, "keep the row in the canonical column order"
        return {**row, "source": "hf-trainer", "code_version": code_version()}


def attach(trainer, pretrain_val: np.ndarray, **settings) -> ForgettingCallback:
    """A `ForgettingCallback` bound to `trainer`, registered first so that its last log (the reading
    at the best step, at the end of training) reaches trackers that close their run then (MLflow)."""
    callback = ForgettingCallback(pretrain_val, trainer=trainer, **settings)
    trainer.callback_handler.callbacks.insert(0, callback)
    return callback


def append_row(path: Path, row: dict) -> None:
    """Append one results row to a CSV (header written with the first row; `forgetlaw fit` reads it)."""
    import pandas as pd

    frame = pd.DataFrame([row])
    if path.is_file() and path.stat().st_size:
        header = pd.read_csv(path, nrows=0).columns.tolist()
        if header != list(row):
            raise UserError(f"{path} has columns {header}, not those of a results row; "
                            "append to a CSV this callback wrote, or give a new results_csv")
        frame.to_csv(path, mode="a", header=False, index=False)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(path, index=False)
