"""Experiment trackers for sweeps (`execution.tracker` in a study spec).

The sweep's parent process hands every run it records to the tracker: the run's cell as parameters,
its curve as metrics by step, its summary. Trackers are found by name among the `forgetlaw.trackers`
entry points (forgetlaw registers `mlflow` and `wandb`, in `forgetlaw.integrations.trackers`; another
package may register its own), so this stage never imports a tracker library or the integrations.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Protocol

from forgetlaw.errors import UserError

GROUP = "forgetlaw.trackers"
NONE = "none"
EXTRAS = {"mlflow", "wandb"}  # forgetlaw's own trackers, each an extra: pip install 'forgetlaw[NAME]'


class Tracker(Protocol):
    """What a tracker implements. `open(study, study_dir)` is its constructor's signature."""

    def log_run(self, run: dict[str, Any], status: str, summary: dict | None, curve: list[dict],
                error: str | None) -> None:
        """One finished run. `run`: its cell and identity (key, kind, model_name, domain,
        unique_tokens, injection, seed); `status`: "done" or "failed"; `curve`: its evaluations
        (step, tokens_seen, epoch, train_loss, finetune_val_loss, pretrain_val_loss; NaN where not
        evaluated), empty for a pretraining run."""

    def close(self) -> None:
        ...


def open_tracker(name: str, study: str, study_dir: Path) -> Tracker | None:
    """The tracker called `name`, ready to log, or None for "none". Called before any run starts, so a
    tracker that is not installed stops the sweep with one line and nothing run."""
    if name == NONE:
        return None
    found = {ep.name: ep for ep in entry_points(group=GROUP)}
    if name not in found and name in EXTRAS:  # forgetlaw's own, but its metadata predates them
        raise UserError(f"execution.tracker: '{name}' is not registered; pip install 'forgetlaw[{name}]' "
                        "(installing forgetlaw again registers its trackers)")
    if name not in found:
        known = ", ".join([NONE, *sorted(set(found) | EXTRAS)])
        raise UserError(f"execution.tracker: no tracker '{name}' is installed; choose one of {known} "
                        f"(pip install 'forgetlaw[mlflow]' for MLflow) or install a package that registers '{name}'")
    try:
        factory = found[name].load()
        return factory(study=study, study_dir=Path(study_dir))
    except ImportError as exc:
        raise UserError(f"execution.tracker: '{name}' needs {exc.name or 'a package'} that is not installed; "
                        f"pip install 'forgetlaw[{name}]'") from None


def log_recorded(tracker: Tracker | None, run: dict[str, Any], result: dict[str, Any], note) -> None:
    """Hand a run the sweep just recorded to the tracker. A tracker that fails (a server gone away)
    costs its own log, not the sweep: the run is in the store either way, and `note` says so."""
    if tracker is None:
        return
    try:
        tracker.log_run(run, result["status"], result.get("summary"), result.get("curve") or [],
                        result.get("error"))
    except Exception as exc:  # noqa: BLE001 - any tracker failure is reported, never fatal
        note(f"tracker: could not log run {run['key']}: {type(exc).__name__}: {exc} (it is in the store)")
