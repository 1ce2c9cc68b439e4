"""`run_study`: plan a study, add its runs to the store, and run what is not done yet.

Resume is the normal path: the store knows every run's status, so the same call after an
interruption (Ctrl-C, kill -9, a lost node) redoes only the runs that were not recorded as done.
A run caught `running` is redone from scratch (pretraining resumes from its own checkpoint).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import yaml

from forgetlaw.errors import UserError
from forgetlaw.provenance import code_version, config_hash, file_sha256
from forgetlaw.study.executors import make_executor
from forgetlaw.study.plan import PlannedRun, plan_study
from forgetlaw.study.progress import StudyProgress
from forgetlaw.study.spec import StudySpec
from forgetlaw.study.store import STORE_NAME, ResultsStore, is_disk_full, stop_when_disk_full
from forgetlaw.study.tasks import DataRef, Task
from forgetlaw.study.tracking import log_recorded, open_tracker
from forgetlaw.study.verify import check_at_start

LOCK_NAME = ".sweep.lock"


@dataclass
class StudyOutcome:
    study_dir: Path
    total: int
    done: int
    failed: int
    pending: int
    redone_after_interrupt: int
    wall_s: float


@contextmanager
def study_lock(study_dir: Path) -> Iterator[None]:
    """One sweep per study folder at a time (the store has one writer). The OS drops the lock when
    the process dies, kill -9 included, so a stale lock never blocks a resume."""
    with open(study_dir / LOCK_NAME, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"another sweep is running on {study_dir}; wait for it or use another --out") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# ---------------------------------------------------------------------------------------------------
# Data

def _files_ref(files: Mapping[str, Mapping[str, Path]], vocab_size: int, standin: str = "generic") -> DataRef:
    resolved = {corpus: {split: str(Path(path).resolve()) for split, path in splits.items()}
                for corpus, splits in files.items()}
    for corpus, splits in resolved.items():
        for split in ("train", "val"):
            path = splits.get(split)
            if path is None or not Path(path).is_file():
                raise UserError(f"data.token_files: {corpus} {split} file {path} does not exist")
            array = np.load(path, mmap_mode="r")
            if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
                raise UserError(f"data.token_files: {path} must hold a 1-D integer array, "
                                f"got {array.dtype} {array.shape}")
            if array.size and int(array.max()) >= vocab_size:
                raise UserError(f"data.token_files: {path} has token id {int(array.max())} >= vocab_size "
                                f"{vocab_size}; raise data.token_files.vocab_size")
    # The content, not the paths, identifies the data: moving the files keeps the run keys.
    manifest = {c: {s: file_sha256(p) for s, p in splits.items()} for c, splits in resolved.items()}
    return DataRef(vocab_size=vocab_size, manifest_hash=config_hash({"vocab_size": vocab_size, **manifest}),
                   pretrain_corpus=standin, files=resolved, corpora=tuple(c for c in resolved if c != standin))


def save_token_arrays(arrays: Mapping[str, Mapping[str, np.ndarray]], folder: Path) -> dict[str, dict[str, Path]]:
    """Write in-memory token arrays as .npy files that workers can memory-map."""
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, dict[str, Path]] = {}
    for corpus, splits in arrays.items():
        for split, array in splits.items():
            path = folder / f"{corpus}.{split}.npy"
            tmp = path.with_suffix(".tmp.npy")
            np.save(tmp, np.ascontiguousarray(array))
            os.replace(tmp, path)
            out.setdefault(corpus, {})[split] = path
    return out


def _arrays_ref(data: Any, spec: StudySpec, study_dir: Path) -> tuple[DataRef, list[str]]:
    standin = spec.pretrain_corpus
    if standin not in data:
        raise UserError(f"data: token arrays need a '{standin}' entry (the pretraining corpus)")
    files = save_token_arrays(data, study_dir / "data")
    return _files_ref(files, spec.data.vocab_size, standin), [c for c in files if c != standin]


def resolve_data(spec: StudySpec, study_dir: Path, data: Any = None, note=print,
                 tokenizer: Path | None = None) -> tuple[DataRef, list[str]]:
    """The study's data as a DataRef workers can open, and the domains it holds.

    `data` (API only) overrides the spec: a `forgetlaw.data.DataStore`, or token arrays
    {"generic": {"train": a, "val": b}, domain: {...}} (copied into the study folder; the stand-in's
    entry is named after `spec.pretrain_corpus`). `tokenizer`: the ladder's own, for a data build."""
    standin = spec.pretrain_corpus
    if data is not None and hasattr(data, "manifest_hash") and hasattr(data, "root"):
        if standin not in data.manifest["corpora"]:
            raise UserError(f"data.pretrain_corpus: '{standin}' is not built in {data.root}; build it too")
        return (DataRef(vocab_size=int(data.vocab_size), manifest_hash=data.manifest_hash, pretrain_corpus=standin,
                        build_root=str(data.root), corpora=tuple(data.domains), tokenizer=str(data.tokenizer_path)),
                list(data.domains))
    if data is not None:
        return _arrays_ref(data, spec, study_dir)
    if spec.data.token_files is not None:
        tf = spec.data.token_files
        files = {standin: {"train": tf.pretrain.train, "val": tf.pretrain.val}}
        files.update({d: {"train": c.train, "val": c.val} for d, c in tf.domains.items()})
        return _files_ref(files, tf.vocab_size, standin), list(tf.domains)
    from forgetlaw.data import DataConfig, build_data

    d = spec.data
    # The stand-in is built like a domain when it is not the generic corpus (which is always built).
    extra = [c for c in (standin, *d.probe_corpora) if c != "generic"]
    wanted = list(dict.fromkeys([*spec.domains, *extra]))
    config = DataConfig(domains=tuple(wanted), vocab_size=d.vocab_size, cache_dir=d.cache_dir,
                        source_dirs=dict(d.source_dirs), pretrain_max_mb=d.pretrain_max_mb,
                        domain_max_mb=d.domain_max_mb, val_fraction=d.val_fraction, seed=d.seed,
                        tokenizer=tokenizer or d.tokenizer)
    store = build_data(config, progress=note)
    return (DataRef(vocab_size=int(store.vocab_size), manifest_hash=store.manifest_hash, pretrain_corpus=standin,
                    build_root=str(store.root), corpora=tuple(wanted), tokenizer=str(store.tokenizer_path)),
            list(store.domains))


def _train_tokens(data_ref: DataRef, corpora: list[str]) -> dict[str, int]:
    return {c: int(data_ref.tokens(c, "train").shape[0]) for c in corpora}


def _memory_shapes(spec: StudySpec, vocab_size: int, ladder) -> dict[str, tuple[object, bool]]:
    from forgetlaw.models import ModelShape
    from forgetlaw.study.plan import resolve_ladder
    from forgetlaw.training.memory import gpt_shape

    if ladder is not None:
        return {name: (shape, True) for name, shape in ladder.shapes.items()}
    return {s.name: (gpt_shape(ModelShape(s.name, s.n_layer, s.d_model, s.n_head).to_config(vocab_size, spec.seq_len)),
                     False) for s in resolve_ladder(spec)}


def prepare_study(spec: StudySpec, study_dir: Path, data: Any = None, note=print) -> tuple[DataRef, list[PlannedRun]]:
    """Everything that can be checked before a run starts (docs/study.md, pre-flight), then the plan."""
    from forgetlaw.study.plan import resolve_ladder
    from forgetlaw.study.preflight import check_memory, check_pretrained_ladder, check_unique_tokens
    from forgetlaw.training.common import resolve_device

    ladder = check_pretrained_ladder(spec, resolve_ladder(spec)) if spec.ladder.pretrained else None
    data_ref, domains = resolve_data(spec, study_dir, data, note, ladder.tokenizer_dir if ladder else None)
    missing = [d for d in spec.domains if d not in domains]
    if missing:
        raise UserError(f"domains: {missing} are not in the data (it has {sorted(domains)}); "
                        "fix 'domains' or the data section")
    check_unique_tokens(spec, _train_tokens(data_ref, [*spec.domains, data_ref.pretrain_corpus]),
                        data_ref.pretrain_corpus)
    check_memory(spec, _memory_shapes(spec, data_ref.vocab_size, ladder), resolve_device(spec.execution.device))
    return data_ref, plan_study(spec, data_ref.vocab_size, data_ref.manifest_hash, domains)


def _record_plan(store: ResultsStore, spec: StudySpec, plan: list[PlannedRun], data_ref: DataRef, note) -> int:
    """Write the spec and plan into the store; returns the number of interrupted runs to redo."""
    store.set_meta("spec", spec.model_dump(mode="json"))
    store.set_meta("plan", [run.key for run in plan])
    store.set_meta("data", {"manifest_hash": data_ref.manifest_hash, "vocab_size": data_ref.vocab_size,
                            "pretrain_corpus": data_ref.pretrain_corpus, "tokenizer": data_ref.tokenizer})
    added = store.add_runs(run.as_row() for run in plan)
    redone = store.reset_interrupted()
    if redone:
        note(f"resuming: {redone} run(s) interrupted while running will be redone")
    if added < len(plan):
        note(f"{len(plan) - added} of {len(plan)} runs already known to {store.path}")
    return redone


# ---------------------------------------------------------------------------------------------------
# The sweep

def _label(run: Mapping[str, Any]) -> str:
    if run["kind"] == "pretrain":
        verb = "base" if "pretrained" in run["config"]["model"] else "pretrain"
        return f"{verb} {run['model_name']}"
    return (f"{run['model_name']} {run['domain']} D={run['unique_tokens']} p={run['injection']:g} "
            f"seed={run['seed']}")


def run_study(spec: StudySpec, out_dir: str | Path, executor: str = "local", workers: int | None = None,
              address: str | None = None, retry_failed: bool = False, data: Any = None, threads: int | None = None,
              progress: bool = True, stream: TextIO | None = None) -> StudyOutcome:
    """Run (or resume) a study into `out_dir`. See docs/study.md.

    executor: "local" (worker processes) or "ray"; workers: tasks at once (default one per core, or
    one per GPU); threads: torch threads per task (default the cores divided between the workers;
    results are bit-identical only at equal thread counts); data: a `forgetlaw.data.DataStore` or
    token arrays {"generic": {"train", "val"}, domain: {...}} instead of the spec's data section."""
    study_dir = Path(out_dir).resolve()
    tracker = open_tracker(spec.execution.tracker, spec.name, study_dir)  # before anything is written
    try:
        return _run_study(spec, study_dir, executor, workers, address, retry_failed, data, threads, progress,
                          stream if stream is not None else sys.stderr, tracker)
    finally:
        if tracker is not None:
            tracker.close()


def _run_study(spec: StudySpec, study_dir: Path, executor: str, workers: int | None, address: str | None,
               retry_failed: bool, data: Any, threads: int | None, progress: bool, stream: TextIO,
               tracker: Any) -> StudyOutcome:
    new_folder = not study_dir.exists()
    study_dir.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()

    def note(message: str) -> None:
        if progress:
            print(message, file=stream, flush=True)

    with stop_when_disk_full(study_dir), study_lock(study_dir):
        # A damaged store is found before anything else runs; a new one is made only once the study
        # has passed its pre-flight checks.
        store = ResultsStore(study_dir / STORE_NAME) if (study_dir / STORE_NAME).exists() else None
        if store is not None:
            note(check_at_start(store, study_dir))
        try:
            data_ref, plan = prepare_study(spec, study_dir, data, note)
        except UserError:
            if store is not None:
                store.close()
            elif new_folder:  # a study that cannot start leaves nothing behind
                shutil.rmtree(study_dir, ignore_errors=True)
            raise
        (study_dir / "spec.yaml").write_text(yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False))
        store = store or ResultsStore(study_dir / STORE_NAME)
        try:
            redone = _record_plan(store, spec, plan, data_ref, note)
            retried = store.reset_failed([r.key for r in plan]) if retry_failed else 0
            if retried:
                note(f"--retry-failed: {retried} failed run(s) will be rerun")
            if any(store.get_run(r.key)["status"] == "pending" for r in plan):
                # Workers start only when there is work: a finished study reopens in a blink.
                pool = make_executor(executor, workers, address, threads, device=spec.execution.device)
                try:
                    _sweep(spec, store, plan, data_ref, study_dir, pool, progress, stream, tracker)
                finally:
                    pool.close()
            return _outcome(spec, store, plan, study_dir, redone, time.monotonic() - start, note)
        finally:
            store.close()


def _outcome(spec: StudySpec, store: ResultsStore, plan: list[PlannedRun], study_dir: Path, redone: int,
             wall_s: float, note) -> StudyOutcome:
    statuses = {r["key"]: r["status"] for r in store.runs()}
    counts = {s: sum(statuses[r.key] == s for r in plan) for s in ("done", "failed", "pending")}
    outcome = StudyOutcome(study_dir, len(plan), counts["done"], counts["failed"], counts["pending"], redone, wall_s)
    note(f"study {spec.name}: {outcome.done}/{outcome.total} runs done, {outcome.failed} failed, "
         f"{outcome.wall_s:.1f}s; results in {study_dir / STORE_NAME}"
         + (" (rerun with --retry-failed to retry the failed runs)" if outcome.failed else ""))
    return outcome


def _sweep(spec: StudySpec, store: ResultsStore, plan: list[PlannedRun], data_ref: DataRef,
           study_dir: Path, pool: Any, progress: bool, stream: TextIO, tracker: Any = None) -> None:
    version = code_version()
    status = {r["key"]: r for r in store.runs()}
    planned = {run.key: run for run in plan}
    pending = [run for run in plan if status[run.key]["status"] == "pending"]
    bar = StudyProgress(total=len(plan), done=sum(status[k]["status"] == "done" for k in planned),
                        failed=sum(status[k]["status"] == "failed" for k in planned),
                        slots=pool.slots, stream=stream, enabled=progress,
                        remaining={kind: sum(r.kind == kind for r in pending) for kind in ("pretrain", "finetune")})
    bar.show()
    in_flight: dict[Any, Task] = {}

    def base_state(run: PlannedRun) -> tuple[str, str | None]:
        base = store.get_run(run.base_key)
        if base["status"] != "done":
            return base["status"], base.get("error")
        checkpoint = Path(base["result"]["checkpoint"])
        return "done", str(checkpoint if checkpoint.is_absolute() else study_dir / checkpoint)

    def next_tasks(free: int) -> list[Task]:
        tasks: list[Task] = []
        taken: set[str] = set()
        for run in list(pending):
            if len(tasks) >= free:
                break
            if run.key in taken:
                continue
            if run.kind == "pretrain":
                group = [run]
                checkpoint = None
            else:
                state, detail = base_state(run)
                if state == "failed":  # no base, no finetuning: fail it now, --retry-failed redoes both
                    store.record_failed(run.key, f"base model {run.model_name} failed: "
                                        f"{(detail or '').splitlines()[0] if detail else ''}")
                    pending.remove(run)
                    bar.running += 1
                    bar.finished(_label(run.as_row()), False, None, "its base model failed", run.kind)
                    continue
                if state != "done":
                    continue
                checkpoint = detail
                group = [run]
                if spec.execution.vectorize:
                    group = [r for r in pending if r.kind == "finetune" and r.key not in taken
                             and (r.base_key, r.domain, r.unique_tokens, r.seed)
                             == (run.base_key, run.domain, run.unique_tokens, run.seed)]
            for r in group:
                taken.add(r.key)
                pending.remove(r)
            tasks.append(Task(kind=run.kind, runs=tuple((r.key, r.config) for r in group), data=data_ref,
                              study_dir=str(study_dir), threads=pool.threads, base_checkpoint=checkpoint,
                              vectorize=spec.execution.vectorize,
                              progress_every_s=spec.execution.progress_every_s,
                              parent_pid=pool.parent_pid, model_source=run.model_source))
        return tasks

    while True:
        for task in next_tasks(pool.slots - len(in_flight)):
            store.mark_running(task.keys, version)
            in_flight[pool.submit(task)] = task
            bar.started(len(task.keys))
        if not in_flight:
            if pending:  # only runs whose base is neither done nor failed: cannot happen, but never spin
                raise RuntimeError(f"{len(pending)} runs wait for a base model that is not scheduled")
            break
        for handle, outcome in pool.wait(list(in_flight), timeout=1.0):
            task = in_flight.pop(handle)
            if isinstance(outcome, BaseException):
                if is_disk_full(outcome):  # run_study turns it into the one-line "disk full" error
                    raise outcome
                error = f"worker died: {type(outcome).__name__}: {outcome}"
                outcome = [{"key": key, "status": "failed", "error": error, "wall_s": None} for key in task.keys]
            for result in outcome:
                run = planned[result["key"]]
                if result["status"] == "done":
                    store.record_done(run.key, result["summary"], result["curve"], result["result"],
                                      result["wall_s"])
                else:
                    store.record_failed(run.key, result["error"], result["wall_s"])
                log_recorded(tracker, run.as_row(), result, bar.note)
                bar.finished(_label(run.as_row()), result["status"] == "done", result["wall_s"],
                             result.get("error"), run.kind)
    bar.close()
