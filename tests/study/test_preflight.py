"""Pre-flight: a config that cannot fit its device is refused before anything runs, naming
micro_batch_size; local workers are spread over GPUs one each."""

from __future__ import annotations

import pytest
import torch

from forgetlaw.errors import UserError
from forgetlaw.models import ladder
from forgetlaw.study import load_preset, spec_from_dict
from forgetlaw.study.executors import LocalExecutor
from forgetlaw.study.preflight import check_memory
from forgetlaw.training.memory import GIB, estimate, gpt_shape


def _paper_shapes(spec):
    vocab = spec.data.vocab_size
    return {s.name: (gpt_shape(s.to_config(vocab, spec.seq_len)), False) for s in ladder("paper")}


class _Device:  # a device type and the memory check's view of it, without CUDA
    def __init__(self, kind: str):
        self.type, self.index = kind, 0


def test_the_paper_preset_fits_one_80_gb_gpu_only_with_its_micro_batches(monkeypatch):
    spec = load_preset("paper")
    shapes = _paper_shapes(spec)
    monkeypatch.setattr("forgetlaw.training.memory.device_memory", lambda device: 80 * 10**9)
    monkeypatch.setattr("forgetlaw.training.common.bf16_supported", lambda device: True)
    check_memory(spec, shapes, _Device("cuda"))  # fits, as shipped
    whole = spec.model_copy(update={"pretrain": spec.pretrain.model_copy(update={"micro_batch_size": None})})
    with pytest.raises(UserError, match=r"pretrain\.micro_batch_size: pretrain of 41M at 256 sequences"):
        check_memory(whole, shapes, _Device("cuda"))


def test_estimate_grows_with_the_micro_batch_and_shrinks_with_checkpointing():
    shape = gpt_shape(ladder("paper")[-1].to_config(32768, 1024))
    small, large = (estimate(shape, b, 1024, bf16=True) for b in (4, 16))
    assert large.activations == 4 * small.activations and large.weights == small.weights
    saved = estimate(shape, 16, 1024, bf16=True, activation_checkpointing=True)
    assert saved.activations < large.activations / 5 and 20 * GIB < large.weights < 30 * GIB


def test_a_sweep_that_cannot_fit_this_machine_is_refused_before_training(tmp_path, tiny_files, capsys):
    from study_helpers import tiny_spec_dict, write_spec

    from forgetlaw.cli import main

    # 50M parameters fit this machine; 512 sequences of 2048 tokens of activations do not
    spec = tiny_spec_dict(tiny_files, seq_len=2048, ladder={"shapes": [
        {"name": "wide", "n_layer": 4, "d_model": 1024, "n_head": 16}]},
        pretrain={"batch_size": 512, "tokens_per_param": 1})
    out = tmp_path / "never"
    capsys.readouterr()
    assert main(["sweep", str(write_spec(tmp_path / "s.yaml", spec)), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "pretrain.micro_batch_size" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
    # weights that cannot fit at any micro-batch are said so
    huge = spec_from_dict({**tiny_spec_dict(tiny_files), "ladder": {"shapes": [
        {"name": "huge", "n_layer": 48, "d_model": 8192, "n_head": 64}]}})
    shapes = {"huge": (gpt_shape(ladder("cpu-tiny")[0].__class__("huge", 48, 8192, 64).to_config(256, 32)), False)}
    with pytest.raises(UserError, match="at any micro_batch_size"):
        check_memory(huge, shapes, torch.device("cpu"))


def test_local_workers_get_one_gpu_each():
    from study_helpers import visible_devices_after

    executor = LocalExecutor(workers=2, threads=1, gpus=[0, 1])
    try:
        futures = [executor._pool.submit(visible_devices_after, 2.0) for _ in range(2)]
        assert sorted(f.result(timeout=120) for f in futures) == ["0", "1"]
    finally:
        executor.close()
    plain = LocalExecutor(workers=1, threads=1)
    try:
        assert plain._pool.submit(visible_devices_after, 0.0).result(timeout=120) is None
    finally:
        plain.close()
