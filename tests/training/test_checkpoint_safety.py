"""Checkpoints: safe to load (weights_only), and saved often enough to survive frequent kills."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from forgetlaw.cli import main
from forgetlaw.training import pretrain
from forgetlaw.training.checkpoint import FORMAT, read_checkpoint

from .conftest import MODEL, pretrain_config, synthetic_text


class RunsCode:
    """Unpickling this runs a shell command: what a checkpoint from a stranger could do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


# torch.save's zip format and a bare pickle (protocol 2, torch's legacy format) are refused as unsafe;
# a protocol-5 pickle already fails on an opcode the safe unpickler does not take, before any import.
@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize(("writer", "says"), [("torch.save", "could run code"), (2, "could run code"),
                                              (5, "not a forgetlaw checkpoint")])
def test_a_checkpoint_that_would_run_code_is_refused_and_runs_nothing(tmp_path, capsys, writer, says):
    marker = tmp_path / "code-ran"
    evil = tmp_path / "evil.pt"
    payload = {"format": FORMAT, "model_config": {}, "model": RunsCode(marker)}
    if writer == "torch.save":
        torch.save(payload, evil)
    else:
        with open(evil, "wb") as handle:
            pickle.dump(payload, handle, protocol=writer)
    # The file really is an exploit: loading it the unsafe way runs the command.
    if writer == "torch.save":
        torch.load(evil, weights_only=False)
    else:
        with open(evil, "rb") as handle:
            pickle.load(handle)
    assert marker.exists()
    marker.unlink()

    tokens = synthetic_text(8_000, 0, 1, 32, word_seed=100)
    tokens.tofile(tmp_path / "pt.bin")
    code = main(["finetune", "--base", str(evil), "--unique-tokens", "1000", "--quiet",
                 *[arg for flag in ("--domain-train-tokens", "--domain-val-tokens", "--pretrain-train-tokens",
                                    "--pretrain-val-tokens") for arg in (flag, str(tmp_path / "pt.bin"))]])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert str(evil) in err[0] and says in err[0]
    assert not marker.exists()


def test_what_pretraining_saves_loads_as_tensors_and_plain_data(tmp_path, corpora):
    config = pretrain_config(tokens_per_param=2, checkpoint_every=5)
    pretrain(config, MODEL, corpora["pretrain_train"], corpora["pretrain_val"], tmp_path, max_steps=7)
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=True)  # raises on anything else
    assert saved["step"] == 7 and not saved["done"]
    assert saved["optimizer"]["state"] and isinstance(saved["rng"]["torch"], torch.Tensor)
    assert isinstance(saved["pretrain_config"]["betas"], tuple) and isinstance(saved["provenance"], dict)


_PRETRAIN_SCRIPT = """
import json, sys
from pathlib import Path
import numpy as np, torch
from forgetlaw.models import GPTConfig
from forgetlaw.training import PretrainConfig, pretrain
torch.set_num_threads(1)
folder = Path(sys.argv[1])
pretrain(PretrainConfig(**json.loads(sys.argv[3])), GPTConfig(**json.loads(sys.argv[4])),
         np.load(folder / "train.npy"), np.load(folder / "val.npy"), Path(sys.argv[2]), progress=print)
"""


def test_a_kill_between_wall_time_checkpoints_resumes_from_the_last_one(tmp_path, corpora):
    import dataclasses

    # Steps alone would checkpoint never (10^6 steps); every 0.3 s of training it does.
    settings = dict(tokens_per_param=16, checkpoint_every=10**6, checkpoint_every_s=0.3)
    config = pretrain_config(**settings)
    train, val = corpora["pretrain_train"], corpora["pretrain_val"]
    np.save(tmp_path / "train.npy", train)
    np.save(tmp_path / "val.npy", val)
    script = tmp_path / "pretrain.py"
    script.write_text(_PRETRAIN_SCRIPT)
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path), str(killed),
                             json.dumps(dataclasses.asdict(config)), json.dumps(dataclasses.asdict(MODEL))],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    checkpoint = killed / "checkpoint.pt"
    deadline = time.monotonic() + 120
    while not checkpoint.exists():
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline
        time.sleep(0.01)
    time.sleep(0.15)  # half-way to the next wall-time checkpoint
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    saved = read_checkpoint(checkpoint)
    total = config.total_steps(MODEL)
    assert 0 < saved["step"] < total and not saved["done"]

    torch.set_num_threads(1)
    lines: list[str] = []
    resumed = pretrain(config, MODEL, train, val, killed, lines.append)
    assert lines[0] == f"pretrain: resuming at step {saved['step']}/{total}"
    whole = pretrain(config, MODEL, train, val, tmp_path / "whole")
    assert resumed.steps == whole.steps == total
    a, b = read_checkpoint(whole.checkpoint)["model"], read_checkpoint(resumed.checkpoint)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.pretrain_loss_before == whole.pretrain_loss_before
    assert not (killed / "checkpoint.pt.tmp").exists()  # a save cut short by the kill left nothing
