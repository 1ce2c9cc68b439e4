"""The results store: one SQLite file (WAL) per study, written by one process.

Tables:
- `runs`: one row per run (pretraining of a base model, or one finetuning run), keyed by the hash of
  its full config; status pending -> running -> done | failed, the error, attempts, timings and the
  provenance (code version, data manifest hash, seed).
- `curves`: one row per evaluation of a finetuning run.
- `summaries`: one row per finished run (L0, the U-curve bottom, final values, ...).

A finished run's curve, summary and status commit in one transaction, so a kill at any moment leaves
either the whole result or none of it; a run caught `running` by a kill is simply redone.
"""

from __future__ import annotations

import errno
import functools
import json
import math
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from forgetlaw.errors import UserError

STORE_NAME = "results.sqlite"
SCHEMA_VERSION = 1

RUN_STATUSES = ("pending", "running", "done", "failed")
CURVE_COLUMNS = ("step", "tokens_seen", "epoch", "train_loss", "finetune_val_loss", "pretrain_val_loss")
SUMMARY_COLUMNS = (
    "pretrain_loss_before", "pretrain_loss_init", "finetune_loss_before", "finetune_loss",
    "pretrain_loss", "best_step", "best_epoch", "best_tokens", "final_finetune_loss",
    "final_pretrain_loss", "steps", "epochs", "stop_reason", "model_size", "model_size_total",
    "tokens_seen", "wall_s", "eval_s",
)

_SUMMARY_TYPES = {"stop_reason": "TEXT", "best_step": "INTEGER", "best_tokens": "INTEGER", "steps": "INTEGER",
                  "model_size": "INTEGER", "model_size_total": "INTEGER", "tokens_seen": "INTEGER"}

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    key TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('pretrain', 'finetune')),
    config TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN {RUN_STATUSES}),
    error TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    wall_s REAL,
    code_version TEXT,
    data_manifest_hash TEXT,
    seed INTEGER,
    base_key TEXT,
    model_name TEXT,
    domain TEXT,
    unique_tokens INTEGER,
    injection REAL,
    result TEXT
);
CREATE INDEX IF NOT EXISTS runs_status ON runs (status, kind);
CREATE TABLE IF NOT EXISTS curves (
    run_key TEXT NOT NULL REFERENCES runs (key),
    idx INTEGER NOT NULL,
    {", ".join(f"{c} {'INTEGER' if c in ('step', 'tokens_seen') else 'REAL'}" for c in CURVE_COLUMNS)},
    PRIMARY KEY (run_key, idx)
);
CREATE TABLE IF NOT EXISTS summaries (
    run_key TEXT PRIMARY KEY REFERENCES runs (key),
    {", ".join(f"{c} {_SUMMARY_TYPES.get(c, 'REAL')}" for c in SUMMARY_COLUMNS)},
    extra TEXT NOT NULL
);
"""


# SQLite's primary result codes (the sqlite3 module names them only from Python 3.11 on).
SQLITE_PERM, SQLITE_READONLY, SQLITE_IOERR, SQLITE_CORRUPT, SQLITE_FULL, SQLITE_CANTOPEN, SQLITE_NOTADB = (
    3, 8, 10, 11, 13, 14, 26)
# errno of a write that found no room: ENOSPC (device full), EFBIG (a file size limit), EDQUOT (quota).
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)


def is_disk_full(exc: BaseException) -> bool:
    """Whether a failed write means the disk (or a quota or size limit) is full: SQLite's
    "database or disk is full", or an OSError ENOSPC/EFBIG/EDQUOT from a checkpoint or token write."""
    if isinstance(exc, sqlite3.OperationalError):
        return getattr(exc, "sqlite_errorcode", None) == SQLITE_FULL or "disk is full" in str(exc)
    if isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS:
        return True
    cause = getattr(exc, "cause", None)  # Ray's RayTaskError carries the worker's exception here
    return isinstance(cause, BaseException) and cause is not exc and is_disk_full(cause)


def disk_full_error(study_dir: str | Path) -> UserError:
    """The one line a sweep stops with when its disk fills up."""
    return UserError(f"the disk holding {study_dir} is full; nothing finished is lost (finished runs are "
                     "committed to the store); free some space and run the same command again to resume")


@contextmanager
def stop_when_disk_full(study_dir: str | Path) -> Iterator[None]:
    """Around a sweep: a full disk (the store's commit, a checkpoint or a token write) becomes the
    one-line `disk_full_error` instead of a traceback."""
    try:
        yield
    except (OSError, sqlite3.OperationalError) as exc:
        if is_disk_full(exc):
            raise disk_full_error(study_dir) from None
        raise


class DamagedStore(UserError):
    """A store SQLite cannot read: "file is not a database", "database disk image is malformed"."""

    def __init__(self, path: Path, detail: Any):
        self.path, self.detail = Path(path), str(detail)
        super().__init__(f"{path} is damaged ({detail}); run 'forgetlaw results verify {self.path.parent}' to "
                         f"see what is wrong, then {REPAIR}")


REPAIR = "restore the file from a backup, or move it away and run the sweep again to redo the study"


def damaged_store_error(path: Path, detail: Any) -> DamagedStore:
    return DamagedStore(path, detail)


def store_error(path: Path, exc: sqlite3.DatabaseError) -> UserError | None:
    """The one-line UserError for an SQLite error that is the file's fault, not a bug: damaged
    ("file is not a database", "malformed"), or unreadable/unwritable. None for the rest (a full disk
    included: the sweep reports it, see `is_disk_full`)."""
    code = getattr(exc, "sqlite_errorcode", None)
    primary = None if code is None else code & 0xFF  # extended codes carry the primary one in the low byte
    text = str(exc)
    if primary in (SQLITE_CORRUPT, SQLITE_NOTADB) or "malformed" in text or "not a database" in text:
        return damaged_store_error(path, exc)
    if primary in (SQLITE_CANTOPEN, SQLITE_READONLY, SQLITE_PERM, SQLITE_IOERR):
        return UserError(f"{path}: SQLite cannot read or write it ({exc}); check that its folder exists, "
                         "that you may write there, and that the disk has room")
    return None


def _readable(method):
    """Store methods turn SQLite errors that are the file's fault into a one-line UserError naming the file."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except sqlite3.DatabaseError as exc:
            error = None if is_disk_full(exc) else store_error(self.path, exc)
            if error is None:
                raise
            raise error from None
    return wrapper


def _number(value: Any) -> Any:
    """Plain Python numbers for SQLite (numpy scalars otherwise become blobs)."""
    if value is None or isinstance(value, str):
        return value
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else value
    return value


def _json(value: Any) -> str:
    # NaN and +-inf are not JSON; the store keeps them as null (a run that reached an infinite
    # validation loss must still be recorded, not crash the sweep).
    def clean(v: Any) -> Any:
        if isinstance(v, Mapping):
            return {str(k): clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        v = _number(v)
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, Path):
            return str(v)
        return v

    return json.dumps(clean(value), sort_keys=True, allow_nan=False, default=str)


class ResultsStore:
    """The SQLite results store of one study. Open one per process; only the sweep's parent writes."""

    @_readable
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE ... COMMIT), see transaction().
        self.conn = sqlite3.connect(self.path, isolation_level=None, timeout=60.0)
        self.conn.row_factory = sqlite3.Row
        mode = self.conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise UserError(f"{self.path}: SQLite could not switch to WAL mode ({mode}); put the study on a local disk")
        # FULL: a commit survives a power cut too, not only a killed process; the cost is small here.
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.execute("PRAGMA foreign_keys=ON")
        with self.transaction():
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self.conn.execute(statement)
            found = self.conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if found is None:
                self.conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif int(found[0]) != SCHEMA_VERSION:
                raise UserError(f"{self.path}: schema version {found[0]}, this forgetlaw reads {SCHEMA_VERSION}; "
                                "export it with the forgetlaw version that wrote it")

    @classmethod
    def open_existing(cls, study_dir: str | Path) -> ResultsStore:
        """The store of an existing study, checked first (`PRAGMA quick_check`): a damaged file is one
        line naming it, not a traceback half-way through a read."""
        path = Path(study_dir) / STORE_NAME
        if not path.is_file():
            raise UserError(f"{study_dir} holds no {STORE_NAME}; give the --out folder of a 'forgetlaw sweep'")
        store = cls(path)
        problems = store.check_integrity(quick=True)
        if problems:
            store.close()
            raise damaged_store_error(path, problems[0] + (f" and {len(problems) - 1} more" if len(problems) > 1 else ""))
        return store

    @_readable
    def check_integrity(self, quick: bool = False) -> list[str]:
        """SQLite's own check of every page and index (`quick`: no index contents, O(N)); [] when sound."""
        rows = self.conn.execute("PRAGMA quick_check" if quick else "PRAGMA integrity_check").fetchall()
        found = [str(row[0]) for row in rows]
        return [] if found == ["ok"] else found

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        # IMMEDIATE takes the write lock at the start, so a transaction never fails half-way on a busy lock.
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            # SQLite may have rolled back already (a full disk does that): a second ROLLBACK would
            # raise "no transaction is active" and hide the real error.
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    # -- meta ----------------------------------------------------------------------------------------
    @_readable
    def set_meta(self, key: str, value: Any) -> None:
        with self.transaction() as c:
            c.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, _json(value)))

    @_readable
    def get_meta(self, key: str, default: Any = None) -> Any:
        row = self.conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    # -- runs ----------------------------------------------------------------------------------------
    @_readable
    def add_runs(self, runs: Iterable[Mapping[str, Any]]) -> int:
        """Insert planned runs that are not there yet (a run already known keeps its status). Returns
        the number of new runs."""
        now = time.time()
        added = 0
        with self.transaction() as c:
            for run in runs:
                cur = c.execute(
                    "INSERT OR IGNORE INTO runs (key, kind, config, status, created_at, data_manifest_hash, seed,"
                    " base_key, model_name, domain, unique_tokens, injection) "
                    "VALUES (?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?, ?)",
                    (run["key"], run["kind"], _json(run["config"]), now, run.get("data_manifest_hash"),
                     run.get("seed"), run.get("base_key"), run.get("model_name"), run.get("domain"),
                     run.get("unique_tokens"), _number(run.get("injection"))),
                )
                added += cur.rowcount
        return added

    @_readable
    def reset_interrupted(self) -> int:
        """Runs left `running` by a killed sweep go back to pending (they are redone from scratch)."""
        with self.transaction() as c:
            return c.execute("UPDATE runs SET status='pending', started_at=NULL WHERE status='running'").rowcount

    @_readable
    def reset_failed(self, keys: Iterable[str] | None = None) -> int:
        with self.transaction() as c:
            if keys is None:
                return c.execute("UPDATE runs SET status='pending' WHERE status='failed'").rowcount
            return sum(c.execute("UPDATE runs SET status='pending' WHERE status='failed' AND key=?", (k,)).rowcount
                       for k in keys)

    @_readable
    def mark_running(self, keys: Iterable[str], code_version: str) -> None:
        now = time.time()
        with self.transaction() as c:
            for key in keys:
                c.execute(
                    "UPDATE runs SET status='running', attempts=attempts+1, started_at=?, code_version=?,"
                    " error=NULL WHERE key=? AND status='pending'",
                    (now, code_version, key),
                )

    @_readable
    def record_done(self, key: str, summary: Mapping[str, Any], curve: list[Mapping[str, Any]] = (),
                    result: Mapping[str, Any] | None = None, wall_s: float | None = None) -> None:
        """Curve, summary and status in one transaction. A run already done is never written twice."""
        with self.transaction() as c:
            row = c.execute("SELECT status FROM runs WHERE key=?", (key,)).fetchone()
            if row is None:
                raise KeyError(f"no run {key} in {self.path}")
            if row["status"] == "done":
                raise RuntimeError(f"run {key} is already done; refusing to record it twice")
            c.execute("DELETE FROM curves WHERE run_key=?", (key,))
            c.executemany(
                f"INSERT INTO curves (run_key, idx, {', '.join(CURVE_COLUMNS)}) "
                f"VALUES (?, ?, {', '.join('?' * len(CURVE_COLUMNS))})",
                [(key, i, *(_number(point.get(col)) for col in CURVE_COLUMNS)) for i, point in enumerate(curve)],
            )
            c.execute(
                f"INSERT OR REPLACE INTO summaries (run_key, {', '.join(SUMMARY_COLUMNS)}, extra) "
                f"VALUES (?, {', '.join('?' * len(SUMMARY_COLUMNS))}, ?)",
                (key, *(_number(summary.get(col)) for col in SUMMARY_COLUMNS), _json(summary)),
            )
            c.execute(
                "UPDATE runs SET status='done', error=NULL, finished_at=?, wall_s=?, result=? WHERE key=?",
                (time.time(), _number(wall_s), _json(result or {}), key),
            )

    @_readable
    def record_failed(self, key: str, error: str, wall_s: float | None = None) -> None:
        with self.transaction() as c:
            c.execute(
                "UPDATE runs SET status='failed', error=?, finished_at=?, wall_s=? WHERE key=? AND status!='done'",
                (error, time.time(), _number(wall_s), key),
            )

    @_readable
    def get_run(self, key: str) -> dict[str, Any] | None:
        row = self.conn.execute("SELECT * FROM runs WHERE key=?", (key,)).fetchone()
        return None if row is None else _run_dict(row)

    @_readable
    def runs(self, status: str | None = None, kind: str | None = None) -> list[dict[str, Any]]:
        query, args = "SELECT * FROM runs WHERE 1=1", []
        if status is not None:
            query += " AND status=?"
            args.append(status)
        if kind is not None:
            query += " AND kind=?"
            args.append(kind)
        return [_run_dict(r) for r in self.conn.execute(query + " ORDER BY created_at, key", args)]

    @_readable
    def counts(self) -> dict[str, dict[str, int]]:
        """{kind: {status: n}} over all runs."""
        out: dict[str, dict[str, int]] = {k: dict.fromkeys(RUN_STATUSES, 0) for k in ("pretrain", "finetune")}
        for row in self.conn.execute("SELECT kind, status, COUNT(*) AS n FROM runs GROUP BY kind, status"):
            out[row["kind"]][row["status"]] = row["n"]
        return out

    @_readable
    def summary(self, key: str) -> dict[str, Any] | None:
        row = self.conn.execute("SELECT extra FROM summaries WHERE run_key=?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    @_readable
    def curve(self, key: str) -> list[dict[str, Any]]:
        rows = self.conn.execute(
            f"SELECT {', '.join(CURVE_COLUMNS)} FROM curves WHERE run_key=? ORDER BY idx", (key,))
        return [dict(r) for r in rows]


def _run_dict(row: sqlite3.Row) -> dict[str, Any]:
    run = dict(row)
    run["config"] = json.loads(run["config"])
    run["result"] = json.loads(run["result"]) if run["result"] else None
    return run
