"""`execution.tracker`: a real sweep logs every run to MLflow's local file store (and W&B offline),
with its cell as parameters and its curve as metrics; a tracker that is not there is one line, exit 2,
before anything runs."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import yaml

from forgetlaw.cli import main
from forgetlaw.study import spec_from_dict
from forgetlaw.study.results import load_curves, load_results
from forgetlaw.study.runner import run_study
from forgetlaw.study.tracking import open_tracker


def markov(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    nxt = rng.integers(0, 256, (256, 4))
    out = np.empty(n, dtype=np.uint16)
    state = 0
    for i in range(n):
        state = int(nxt[state, rng.integers(0, 4)])
        out[i] = state
    return out


ARRAYS = {"generic": {"train": markov(40_000, 1), "val": markov(3_000, 2)},
          "code": {"train": markov(8_000, 3), "val": markov(2_000, 4)}}


def tiny_spec(tracker: str) -> dict:
    return {
        "name": "tracked", "seq_len": 32, "domains": ["code"], "unique_tokens": [1024], "injection": [0.0, 0.2],
        "ladder": {"shapes": [{"name": "t16", "n_layer": 1, "d_model": 16, "n_head": 1}]},
        "pretrain": {"tokens_per_param": 8, "batch_size": 8, "eval_tokens": 512, "lr": 3e-3},
        "finetune": {"batch_size": 4, "eval_tokens": 256, "min_eval_interval_steps": 2, "patience": 2,
                     "max_epochs": 3, "warmup_steps": 2},
        "execution": {"device": "cpu", "progress_every_s": 60, "tracker": tracker},
    }


def test_a_sweep_logs_every_run_to_mlflow(tmp_path, monkeypatch):
    MlflowClient = pytest.importorskip("mlflow").MlflowClient  # CI installs it: forgetlaw[all]

    uri = f"file:{tmp_path / 'mlruns'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps the file store behind a switch
    study = tmp_path / "study"
    run_study(spec_from_dict(tiny_spec("mlflow")), study, workers=1, threads=1, data=ARRAYS, progress=False)
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("tracked")
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.data.params["kind"] for r in runs) == ["finetune", "finetune", "pretrain"]
    results = load_results(study).set_index("run_key")
    curves = load_curves(study)
    for run in (r for r in runs if r.data.params["kind"] == "finetune"):
        key = run.data.params["run_key"]
        assert run.info.status == "FINISHED"
        assert float(run.data.params["injection"]) == results.loc[key, "injection"]
        assert run.data.params["domain"] == "code" and run.data.params["unique_tokens"] == "1024"
        assert run.data.params["finetune.batch_size"] == "4"  # the full config too
        # the whole curve, step by step, equals the store's
        history = client.get_metric_history(run.info.run_id, "finetune_val_loss")
        stored = curves[curves["run_key"] == key]
        assert [m.step for m in history] == stored["step"].tolist()
        assert [m.value for m in history] == pytest.approx(stored["finetune_val_loss"].tolist(), abs=0)
        lpt = client.get_metric_history(run.info.run_id, "pretrain_val_loss")
        assert len(lpt) == int(stored["pretrain_val_loss"].notna().sum())  # NaN points left out
        assert run.data.metrics["pretrain_loss"] == results.loc[key, "pretrain_loss"]


def _wandb_records(run_file: Path):
    """The records of an offline W&B run file (LevelDB log blocks of 32 KiB after a 7-byte header)."""
    from wandb.proto import wandb_internal_pb2

    data = run_file.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, chunks, records = 7, 32768, b"", []
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # too little room left in the block for a header: padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if length == 0 and kind == 0:
            break
        chunks += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST: a whole record
            record = wandb_internal_pb2.Record()
            record.ParseFromString(chunks)
            records.append(record)
            chunks = b""
    return records


def test_a_sweep_logs_every_run_to_wandb_offline(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    study = tmp_path / "study"
    run_study(spec_from_dict(tiny_spec("wandb")), study, workers=1, threads=1, data=ARRAYS, progress=False)
    files = sorted((study / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(files) == 3
    curves = load_curves(study)
    seen = 0
    for path in files:
        records = _wandb_records(path)
        config = {item.key: yaml.safe_load(item.value_json) for r in records if r.HasField("run")
                  for item in r.run.config.update}
        if config["kind"] != "finetune":
            continue
        seen += 1
        stored = curves[curves["run_key"] == config["run_key"]]
        assert config["injection"] in (0.0, 0.2) and config["unique_tokens"] == 1024
        steps = []
        for r in (r for r in records if r.HasField("history")):
            values = {item.key or "/".join(item.nested_key): yaml.safe_load(item.value_json)
                      for item in r.history.item}
            steps.append(values["_step"])
            assert values["finetune_val_loss"] == \
                stored.loc[stored["step"] == values["_step"], "finetune_val_loss"].item()
        assert steps == stored["step"].tolist()
    assert seen == 2


def _sweep_cli(tmp_path, tracker: str, capsys) -> tuple[int, str, Path]:
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(tiny_spec(tracker)))
    out = tmp_path / "never"
    code = main(["sweep", str(spec), "--out", str(out)])
    return code, capsys.readouterr().err, out


def test_an_unknown_tracker_stops_before_anything(tmp_path, capsys):
    code, err, out = _sweep_cli(tmp_path, "neptune", capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "execution.tracker: no tracker 'neptune'" in err and "mlflow" in err
    assert not out.exists()


def test_a_tracker_whose_library_is_missing_names_the_extra(tmp_path, monkeypatch, capsys):
    import builtins

    real_import = builtins.__import__

    def no_mlflow(name, *args, **kwargs):  # this machine has MLflow: take it away for this test
        if name == "mlflow" or name.startswith("mlflow."):
            raise ModuleNotFoundError(f"No module named '{name}'", name=name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_mlflow)
    code, err, out = _sweep_cli(tmp_path, "mlflow", capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "pip install 'forgetlaw[mlflow]'" in err
    assert not out.exists()
    assert open_tracker("none", "s", tmp_path) is None
