"""Faults around a study's files: a damaged store, `results verify`, a disk that fills up mid-sweep."""

from __future__ import annotations

import io
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
from study_helpers import tiny_spec_dict, write_spec

from forgetlaw.cli import main
from forgetlaw.study import ResultsStore, run_study, spec_from_dict
from forgetlaw.study.store import STORE_NAME
from forgetlaw.training.checkpoint import read_checkpoint


def _spec(**changes):
    return spec_from_dict({**tiny_spec_dict(data={"vocab_size": 256}), **changes})


@pytest.fixture(scope="module")
def finished_study(tmp_path_factory, tiny_arrays) -> Path:
    """A small finished study (1 base, 4 finetuning runs); tests copy it before changing it."""
    out = tmp_path_factory.mktemp("finished") / "study"
    outcome = run_study(_spec(), out, workers=1, threads=1, data=tiny_arrays, progress=False)
    assert outcome.done == outcome.total == 5
    return out


def _copy(study: Path, to: Path) -> Path:
    shutil.copytree(study, to)
    return to


def _error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def _damage(path: Path, how: str) -> None:
    size = path.stat().st_size
    if how == "garbage":
        path.write_bytes(b"these are not the results you are looking for\n" * 200)
    elif how == "truncated":
        os.truncate(path, size // 3)
    else:  # a page in the middle overwritten: the header is fine, a table is not
        with open(path, "r+b") as handle:
            handle.seek(4096 * (size // 4096 // 2))
            handle.write(b"\xa5" * 4096)


@pytest.mark.parametrize("how", ["garbage", "truncated", "overwritten"])
def test_every_verb_on_a_damaged_store_is_one_line(tmp_path, finished_study, tiny_files, capsys, how):
    study = _copy(finished_study, tmp_path / "study")
    store_path = study / STORE_NAME
    assert not (study / f"{STORE_NAME}-wal").exists()  # closed cleanly: the whole store is in the file
    _damage(store_path, how)
    damaged = store_path.read_bytes()
    spec = write_spec(tmp_path / "spec.yaml", tiny_spec_dict(tiny_files))
    verbs = [
        ["results", "export", str(study), "--csv", str(tmp_path / "out.csv")],
        ["results", "status", str(study)],
        ["report", str(study), "--out", str(tmp_path / "report")],
        ["sweep", str(spec), "--out", str(study), "--workers", "1", "--quiet"],
    ]
    for argv in verbs:
        assert main(argv) == 2, argv
        line = _error_line(capsys)
        assert str(store_path) in line and "is damaged" in line, line
        assert "restore the file from a backup, or move it away" in line
    assert not (tmp_path / "out.csv").exists() and not (tmp_path / "report").exists()
    assert store_path.read_bytes() == damaged  # nothing tried to write into it
    # verify says the same as a problem line, exit 1
    assert main(["results", "verify", str(study)]) == 1
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith(f"{store_path}: damaged (")


def test_verify_a_sound_study_then_each_kind_of_problem(tmp_path, finished_study, capsys):
    study = _copy(finished_study, tmp_path / "study")
    assert main(["results", "verify", str(study)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"ok: {study} (5 runs") and "1 base checkpoint(s) load" in out

    conn = sqlite3.connect(study / STORE_NAME)
    finetunes = [row[0] for row in conn.execute("SELECT key FROM runs WHERE kind='finetune' ORDER BY key")]
    (base_key, checkpoint), = conn.execute("SELECT key, result FROM runs WHERE kind='pretrain'")
    config = json.loads(conn.execute("SELECT config FROM runs WHERE key=?", (finetunes[0],)).fetchone()[0])
    config["finetune"]["lr"] = 1.0  # a config edited after the run
    conn.execute("UPDATE runs SET config=? WHERE key=?", (json.dumps(config), finetunes[0]))
    conn.execute("DELETE FROM curves WHERE run_key=?", (finetunes[1],))
    conn.execute("DELETE FROM summaries WHERE run_key=?", (finetunes[2],))
    conn.commit()
    conn.close()
    (study / json.loads(checkpoint)["checkpoint"]).write_bytes(b"half a checkpoint")

    assert main(["results", "verify", str(study)]) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4, lines
    assert any(finetunes[0] in line and "key does not match its stored config" in line for line in lines)
    assert any(finetunes[1] in line and "has no curve" in line for line in lines)
    assert any(finetunes[2] in line and "has no summary" in line for line in lines)
    assert any(base_key in line and "not a forgetlaw checkpoint" in line for line in lines)
    # --quick skips the checkpoints
    assert main(["results", "verify", str(study), "--quick"]) == 1
    assert len(capsys.readouterr().out.strip().splitlines()) == 3


def test_a_sweep_says_what_it_found_in_the_store(tmp_path, finished_study, tiny_arrays):
    study = _copy(finished_study, tmp_path / "study")
    stream = io.StringIO()
    run_study(_spec(), study, workers=1, threads=1, data=tiny_arrays, stream=stream)
    assert f"store {study / STORE_NAME}: 5 runs, integrity ok, keys ok" in stream.getvalue()
    conn = sqlite3.connect(study / STORE_NAME)
    conn.execute("UPDATE runs SET config='{}' WHERE kind='finetune'")
    conn.commit()
    conn.close()
    stream = io.StringIO()
    run_study(_spec(), study, workers=1, threads=1, data=tiny_arrays, stream=stream)
    assert "4 run(s) whose key does not match their stored config" in stream.getvalue()


# ---------------------------------------------------------------------------------------------------
# A disk that fills up during a sweep (a real one: a small tmpfs, mounted as root)

@pytest.fixture
def small_disk(tmp_path):
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount_point)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip()}); needs root")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def _fill(disk: Path) -> Path:
    """Take every free block of the disk."""
    ballast = disk / "ballast"
    free = shutil.disk_usage(disk).free
    with open(ballast, "ab") as handle:
        os.posix_fallocate(handle.fileno(), handle.tell(), free)
    assert shutil.disk_usage(disk).free < 4096
    return ballast


def _runs(db: Path) -> dict[str, str]:
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
        try:
            return dict(conn.execute("SELECT key, kind || ':' || status FROM runs"))
        finally:
            conn.close()
    except sqlite3.Error:  # not created yet
        return {}


def _sweep_until_the_disk_fills(spec: Path, study: Path, disk: Path, fill_when) -> tuple[str, dict]:
    """Run the sweep CLI and fill the disk as soon as `fill_when(study)` holds; returns its stderr
    once it stops and the store's statuses."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "forgetlaw", "sweep", str(spec), "--out", str(study),
                             "--workers", "1", "--threads", "1"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not fill_when(study) and proc.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    ballast = _fill(disk)
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 2, err
    ballast.unlink()  # free the space again
    return err, _runs(study / STORE_NAME)


@pytest.mark.slow  # about 40 s: three sweeps as subprocesses and one in-process
def test_a_full_disk_stops_the_sweep_with_one_line_and_a_rerun_resumes(tmp_path, small_disk, tiny_files):
    spec_dict = tiny_spec_dict(tiny_files)
    spec_dict["pretrain"] = {**spec_dict["pretrain"], "tokens_per_param": 24, "checkpoint_every_s": 0.05}
    spec = write_spec(tmp_path / "spec.yaml", spec_dict)
    reference = tmp_path / "reference"
    assert main(["sweep", str(spec), "--out", str(reference), "--workers", "1", "--threads", "1",
                 "--quiet"]) == 0
    study = small_disk / "study"

    def base_checkpointed(folder: Path) -> bool:  # pretraining is under way: it has saved once
        return any(folder.glob("bases/*/checkpoint.pt"))

    def some_finetuned(folder: Path) -> bool:
        return sum(s == "finetune:done" for s in _runs(folder / STORE_NAME).values()) >= 1

    expected = ("the disk holding {} is full; nothing finished is lost (finished runs are committed to "
                "the store); free some space and run the same command again to resume")
    # 1. The disk fills while the base is pretraining: its next checkpoint write fails in the worker.
    err, statuses = _sweep_until_the_disk_fills(spec, study, small_disk, base_checkpointed)
    assert "Traceback" not in err and err.strip().splitlines()[-1] == \
        "forgetlaw: error: " + expected.format(study.resolve())
    assert sorted(statuses.values()) == ["finetune:pending"] * 4 + ["pretrain:running"]
    assert not list(study.rglob("*.tmp"))  # the half-written checkpoint was removed
    saved = read_checkpoint(next(study.glob("bases/*/checkpoint.pt")))
    assert saved["step"] > 0 and not saved["done"]  # the rerun resumes from here, not from zero
    # 2. Space freed, the same command: pretraining resumes from its last checkpoint; the disk fills
    #    again once a finetuning run is recorded, so a store commit is what fails this time.
    err, statuses = _sweep_until_the_disk_fills(spec, study, small_disk, some_finetuned)
    assert "Traceback" not in err and err.strip().splitlines()[-1].endswith(expected.format(study.resolve()))
    done_before = {k for k, s in statuses.items() if s.endswith(":done")}
    assert 2 <= len(done_before) < 5
    # 3. Space freed once more: the study finishes, nothing is redone or recorded twice.
    assert main(["sweep", str(spec), "--out", str(study), "--workers", "1", "--threads", "1", "--quiet"]) == 0
    store = ResultsStore.open_existing(study)
    runs = store.runs()
    assert all(r["status"] == "done" for r in runs) and len(runs) == 5
    assert all(r["attempts"] == 1 for r in runs if r["key"] in done_before and r["kind"] == "finetune")
    assert store.conn.execute("SELECT COUNT(*) FROM summaries").fetchone()[0] == 5
    store.close()
    assert not list(study.rglob("*.tmp"))

    def export(folder: Path) -> str:
        csv = folder.parent / f"{folder.name}.csv"
        assert main(["results", "export", str(folder), "--csv", str(csv)]) == 0
        return csv.read_text()

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert export(study) == export(reference)


def test_checkpoint_every_s_leaves_the_run_keys_alone():
    # (that the setting reaches the worker is shown by the full-disk test: its base checkpoints
    # mid-run although its 310 steps never reach checkpoint_every = 500)
    import hashlib

    from test_run_keys import GOLDEN, QUICK

    from forgetlaw.study import plan_study

    spec = spec_from_dict({**QUICK, "pretrain": {**QUICK["pretrain"], "checkpoint_every_s": 5}})
    assert spec.pretrain.checkpoint_every_s == 5
    keys = [run.key for run in plan_study(spec, 512, "manifest-0")]
    assert hashlib.sha256(",".join(keys).encode()).hexdigest() == GOLDEN
