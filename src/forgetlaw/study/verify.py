"""`forgetlaw results verify`: is a study folder sound?

Checks, cheapest first: SQLite's integrity check of the store; every run's key against its stored
config (key == `plan.run_key(config)`); every finished run has its summary, and a finished finetuning
run its curve and a finished base; and (the deep part) the checkpoint of every finished base loads.
Each problem is one line. A sweep runs the cheap part (integrity and keys) when it starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from forgetlaw.errors import UserError
from forgetlaw.study.store import (
    REPAIR,
    STORE_NAME,
    DamagedStore,
    ResultsStore,
    damaged_store_error,
)


def verify_study(study_dir: str | Path, deep: bool = True) -> tuple[list[str], dict[str, int]]:
    """Problems found in a study folder (one line each; [] when sound) and what was checked."""
    study_dir = Path(study_dir)
    path = study_dir / STORE_NAME
    if not path.is_file():
        raise UserError(f"{study_dir} holds no {STORE_NAME}; give the --out folder of a 'forgetlaw sweep'")
    try:
        store = ResultsStore(path)
    except DamagedStore as exc:  # a file SQLite cannot even open is the problem found, not a crash
        return [_damage_line(exc.path, exc.detail)], {"runs": 0}
    try:
        return verify_store(store, study_dir, deep)
    finally:
        store.close()


def verify_store(store: ResultsStore, study_dir: Path, deep: bool) -> tuple[list[str], dict[str, int]]:
    try:
        damage = store.check_integrity()
    except DamagedStore as exc:
        damage = [exc.detail]
    if damage:  # on a damaged file the other checks would only repeat the damage
        return [_damage_line(store.path, line) for line in damage], {"runs": 0}
    runs = store.runs()
    problems = key_problems(runs)
    problems += completeness_problems(store, runs)
    checked = {"runs": len(runs), "checkpoints": 0}
    if deep:
        bases = [r for r in runs if r["kind"] == "pretrain" and r["status"] == "done"]
        problems += [p for run in bases if (p := checkpoint_problem(run, study_dir))]
        checked["checkpoints"] = len(bases)
    return problems, checked


def _damage_line(path: Path, detail: str) -> str:
    return f"{path}: damaged ({detail}); {REPAIR}"


def label(run: dict[str, Any]) -> str:
    if run["kind"] == "pretrain":
        return f"run {run['key']} (pretrain {run['model_name']})"
    return (f"run {run['key']} ({run['model_name']} {run['domain']} D={run['unique_tokens']} "
            f"p={run['injection']:g} seed={run['seed']})")


def key_problems(runs: list[dict[str, Any]]) -> list[str]:
    from forgetlaw.study.plan import run_key

    return [f"{label(run)}: its key does not match its stored config (hash {run_key(run['config'])}); "
            "the row was edited or written by another program" for run in runs
            if run_key(run["config"]) != run["key"]]


def completeness_problems(store: ResultsStore, runs: list[dict[str, Any]]) -> list[str]:
    with_summary = {row[0] for row in store.conn.execute("SELECT run_key FROM summaries")}
    with_curve = {row[0] for row in store.conn.execute("SELECT DISTINCT run_key FROM curves")}
    status = {run["key"]: run["status"] for run in runs}
    problems = []
    for run in runs:
        if run["status"] != "done":
            if run["key"] in with_summary or run["key"] in with_curve:
                problems.append(f"{label(run)}: is {run['status']} but has a stored result")
            continue
        if run["key"] not in with_summary:
            problems.append(f"{label(run)}: is done but has no summary")
        if run["kind"] == "finetune":
            if run["key"] not in with_curve:
                problems.append(f"{label(run)}: is done but has no curve")
            if status.get(run["base_key"]) != "done":
                problems.append(f"{label(run)}: is done but its base {run['base_key']} is not")
    return problems


def checkpoint_problem(run: dict[str, Any], study_dir: Path) -> str | None:
    """None when the base's checkpoint loads as a finished forgetlaw checkpoint, else the problem."""
    from forgetlaw.training.checkpoint import load_model

    recorded = (run.get("result") or {}).get("checkpoint")
    if not recorded:
        return f"{label(run)}: is done but records no checkpoint"
    path = Path(recorded) if Path(recorded).is_absolute() else study_dir / recorded
    try:
        _, meta = load_model(path)
    except UserError as exc:
        return f"{label(run)}: {exc}"
    if not meta.get("done"):
        return f"{label(run)}: checkpoint {path} is of an unfinished run"
    return None


def check_at_start(store: ResultsStore, study_dir: Path) -> str:
    """The cheap part of `verify_study` when a sweep starts: a damaged store stops the sweep (a
    UserError naming the file); runs whose key does not match their config are reported. Returns
    one line saying what was found."""
    damage = store.check_integrity()  # raises the one-line UserError when SQLite cannot read it
    if damage:
        raise damaged_store_error(store.path, damage[0])
    runs = store.runs()
    if not runs:
        return f"store {store.path}: new"
    problems = key_problems(runs)
    return f"store {store.path}: {len(runs)} runs, integrity ok, " + (
        "keys ok" if not problems else f"{len(problems)} run(s) whose key does not match their stored "
        f"config ('forgetlaw results verify {study_dir}' lists them)")
