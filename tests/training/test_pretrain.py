"""Pretraining: the loss falls, and an interrupted run resumes to the same weights."""

from __future__ import annotations

import pytest
import torch

from forgetlaw.errors import UserError
from forgetlaw.models import non_embedding_params
from forgetlaw.training import pretrain
from forgetlaw.training.checkpoint import read_checkpoint

from .conftest import MODEL, pretrain_config


def test_loss_falls_and_result_reports_sizes(base):
    assert base.completed
    assert base.pretrain_loss_before < base.init_loss - 1.0  # learned much of the word structure
    assert base.non_embedding_params == non_embedding_params(MODEL)
    assert base.total_params > base.non_embedding_params
    assert base.tokens_seen >= 8 * base.non_embedding_params
    saved = read_checkpoint(base.checkpoint)
    assert saved["done"] and saved["optimizer"] is None and "provenance" in saved
    assert (base.checkpoint.parent / "result.json").exists()


def test_resume_equals_uninterrupted(tmp_path, corpora):
    config = pretrain_config(tokens_per_param=3, checkpoint_every=10)
    args = (corpora["pretrain_train"], corpora["pretrain_val"])
    whole_lines: list[str] = []
    split_lines: list[str] = []
    whole = pretrain(config, MODEL, *args, tmp_path / "whole", whole_lines.append)
    partial = pretrain(config, MODEL, *args, tmp_path / "split", split_lines.append, max_steps=23)
    assert not partial.completed and partial.steps == 23
    torch.manual_seed(12345)  # resuming must not depend on the caller's RNG state
    resumed = pretrain(config, MODEL, *args, tmp_path / "split", split_lines.append)
    # the progress lines (mean training loss since the previous line) continue as if never stopped,
    # also the first line after the resume, whose interval straddles the interruption
    split_lines.remove(f"pretrain: resuming at step 23/{whole.steps}")
    assert split_lines == whole_lines and len(whole_lines) > 10
    assert not any(line.startswith("pretrain: step 23/") for line in whole_lines)
    assert resumed.completed and resumed.steps == whole.steps
    a, b = read_checkpoint(whole.checkpoint)["model"], read_checkpoint(resumed.checkpoint)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.pretrain_loss_before == whole.pretrain_loss_before
    assert resumed.init_loss == whole.init_loss
    # a finished run is returned, not retrained
    again = pretrain(config, MODEL, *args, tmp_path / "whole")
    assert again.pretrain_loss_before == whole.pretrain_loss_before and again.wall_s == whole.wall_s


def test_other_config_in_same_dir_is_refused(tmp_path, corpora):
    args = (corpora["pretrain_train"], corpora["pretrain_val"])
    pretrain(pretrain_config(tokens_per_param=1), MODEL, *args, tmp_path, max_steps=2)
    with pytest.raises(UserError, match="another config"):
        pretrain(pretrain_config(tokens_per_param=1, lr=1e-3), MODEL, *args, tmp_path)


def test_bad_requests(tmp_path, corpora):
    with pytest.raises(UserError, match="seq_len"):
        pretrain(pretrain_config(seq_len=64), MODEL, corpora["pretrain_train"], corpora["pretrain_val"], tmp_path)
    with pytest.raises(UserError, match="tokens_per_param"):
        pretrain_config(tokens_per_param=0)
    with pytest.raises(UserError, match="not a forgetlaw checkpoint|does not exist"):
        read_checkpoint(tmp_path / "missing.pt")
