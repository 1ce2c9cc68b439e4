"""MLflow and W&B for sweeps: `execution.tracker: mlflow | wandb` (found through the
`forgetlaw.trackers` entry points by `forgetlaw.study.tracking`).

Each recorded run of the sweep becomes one tracker run: the cell (model, domain, D, p, seed, run key)
and the run's full config (dotted keys) as parameters, the curve as metrics by optimizer step
(`train_loss`, `finetune_val_loss`, `pretrain_val_loss`, `epoch`, `tokens_seen`), the summary
(`finetune_loss`, `pretrain_loss`, `pretrain_loss_before`, `best_step`, ...) as final values, and a
failed run with its error. Where the runs go is each tracker's own setting: `MLFLOW_TRACKING_URI`
(and the experiment: the study's name), `WANDB_PROJECT` (default: the study's name), `WANDB_MODE`.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

CELL = ("kind", "model_name", "domain", "unique_tokens", "injection", "seed", "key", "base_key")
CURVE_METRICS = ("train_loss", "finetune_val_loss", "pretrain_val_loss", "epoch", "tokens_seen")


def run_label(run: dict[str, Any]) -> str:
    if run["kind"] == "pretrain":
        return f"pretrain {run['model_name']}"
    return f"{run['model_name']} {run['domain']} D={run['unique_tokens']} p={run['injection']:g} seed={run['seed']}"


def run_params(run: dict[str, Any]) -> dict[str, Any]:
    """The cell, then the full config flattened to dotted keys (`finetune.lr`, `model.d_model`, ...)."""
    params = {("run_key" if k == "key" else k): run[k] for k in CELL if run.get(k) is not None}
    for key, value in _flatten(run.get("config") or {}).items():
        params.setdefault(key, value)
    return params


def _flatten(config: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, name + "."))
        elif value is not None:
            out[name] = value
    return out


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def split_summary(summary: dict | None) -> tuple[dict[str, float], dict[str, str]]:
    """Numbers (metrics) and words (tags) of a run summary."""
    numbers, words = {}, {}
    for key, value in (summary or {}).items():
        if _finite(value):
            numbers[key] = float(value)
        elif isinstance(value, str):
            words[key] = value
    return numbers, words


class MLflowTracker:
    def __init__(self, study: str, study_dir: Path):
        import mlflow  # noqa: F401 - fails here, before any run, when MLflow is not installed
        from mlflow import MlflowClient

        self.client = MlflowClient()  # MLFLOW_TRACKING_URI, or MLflow's own default
        self.study, self.study_dir = study, study_dir
        self._experiment_id: str | None = None

    def _experiment(self) -> str:
        if self._experiment_id is None:
            found = self.client.get_experiment_by_name(self.study)
            self._experiment_id = found.experiment_id if found else self.client.create_experiment(self.study)
        return self._experiment_id

    def log_run(self, run, status, summary, curve, error) -> None:
        from mlflow.entities import Metric, Param, RunTag

        numbers, words = split_summary(summary)
        tags = {"forgetlaw.study": self.study, "forgetlaw.study_dir": str(self.study_dir),
                "forgetlaw.kind": run["kind"], **{f"forgetlaw.{k}": v for k, v in words.items()}}
        if error:
            tags["forgetlaw.error"] = error[:5000]
        created = self.client.create_run(self._experiment(), run_name=run_label(run), tags=tags)
        run_id = created.info.run_id
        now = int(time.time() * 1000)
        metrics = [Metric(name, float(point[name]), now, int(point["step"]))
                   for point in curve for name in CURVE_METRICS if _finite(point.get(name))]
        metrics += [Metric(name, value, now, 0) for name, value in numbers.items()]
        params = [Param(k, str(v)[:6000]) for k, v in run_params(run).items()]
        for start in range(0, max(len(metrics), len(params), 1), 100):  # MLflow's per-batch limits
            self.client.log_batch(run_id, metrics=metrics[start:start + 100],
                                  params=params[start:start + 100], tags=[RunTag(k, v) for k, v in
                                                                          (tags.items() if start == 0 else ())])
        self.client.set_terminated(run_id, status="FINISHED" if status == "done" else "FAILED")

    def close(self) -> None:
        pass


class WandbTracker:
    def __init__(self, study: str, study_dir: Path):
        import wandb  # fails here, before any run, when W&B is not installed

        self.wandb = wandb
        self.study, self.study_dir = study, study_dir
        self.project = os.environ.get("WANDB_PROJECT", study)

    def log_run(self, run, status, summary, curve, error) -> None:
        numbers, words = split_summary(summary)
        self.study_dir.mkdir(parents=True, exist_ok=True)
        handle = self.wandb.init(
            project=self.project, name=run_label(run), group=self.study, job_type=run["kind"],
            config=run_params(run), dir=str(self.study_dir), reinit="create_new",
            settings=self.wandb.Settings(silent=True, console="off", x_disable_stats=True))
        try:
            for point in curve:
                values = {name: float(point[name]) for name in CURVE_METRICS if _finite(point.get(name))}
                handle.log(values, step=int(point["step"]))
            handle.summary.update({**numbers, **words, "status": status, **({"error": error} if error else {})})
        finally:
            handle.finish(exit_code=0 if status == "done" else 1)

    def close(self) -> None:
        # Waits for W&B's service to write out every run (finish() may return before an offline run
        # file is complete) and stops it.
        self.wandb.teardown()
