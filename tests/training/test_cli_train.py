"""`forgetlaw pretrain` / `finetune` on raw token files, end to end (tiny)."""

from __future__ import annotations

import json

from forgetlaw.cli import main

from .conftest import synthetic_text


def test_pretrain_then_finetune_from_token_files(tmp_path, capsys):
    files = {
        "pt-train": synthetic_text(40_000, 0, 1, 32, word_seed=100),
        "pt-val": synthetic_text(4_000, 1, 1, 32, word_seed=100),
        "dom-train": synthetic_text(5_000, 2, 32, 64, word_seed=200),
        "dom-val": synthetic_text(2_000, 3, 32, 64, word_seed=200),
    }
    for name, tokens in files.items():
        tokens.tofile(tmp_path / f"{name}.bin")
    code = main(["pretrain", "--shape", "d48", "--train-tokens", str(tmp_path / "pt-train.bin"),
                 "--val-tokens", str(tmp_path / "pt-val.bin"), "--out", str(tmp_path / "base"),
                 "--tokens-per-param", "0.5", "--vocab-size", "64", "--seq-len", "32", "--eval-tokens", "512",
                 "--device", "cpu", "--quiet"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["non_embedding_params"] == 56_640 and result["completed"]
    code = main(["finetune", "--base", str(tmp_path / "base" / "checkpoint.pt"),
                 "--domain-train-tokens", str(tmp_path / "dom-train.bin"),
                 "--domain-val-tokens", str(tmp_path / "dom-val.bin"),
                 "--pretrain-train-tokens", str(tmp_path / "pt-train.bin"),
                 "--pretrain-val-tokens", str(tmp_path / "pt-val.bin"),
                 "--unique-tokens", "2000", "--injection", "0.1", "--seq-len", "32",
                 "--eval-tokens", "512", "--max-epochs", "2", "--device", "cpu", "--quiet",
                 "--out", str(tmp_path / "ft.json")])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["stop_reason"] in ("patience", "max_epochs") and summary["injected_sequences"] > 0
    assert json.loads((tmp_path / "ft.json").read_text())["curve"]


def test_user_errors_are_one_line(tmp_path, capsys):
    code = main(["finetune", "--base", str(tmp_path / "none.pt"), "--unique-tokens", "10"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--domain-train-tokens" in err[0]
    code = main(["pretrain", "--shape", "d7", "--out", str(tmp_path)])
    assert code == 2 and "d7" in capsys.readouterr().err


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("forgetlaw: error:"), err
    return err[0]


def test_bad_paths_and_token_files_fail_before_training(tmp_path, capsys):
    tokens = synthetic_text(8_000, 0, 1, 32, word_seed=100)
    tokens.tofile(tmp_path / "pt.bin")
    (tmp_path / "odd.bin").write_bytes(b"\x01\x02\x03")
    (tmp_path / "not-a-folder").write_text("x")
    (tmp_path / "notes.pt").write_text("not a checkpoint")
    pretrain = ["pretrain", "--shape", "d48", "--train-tokens", str(tmp_path / "pt.bin"),
                "--val-tokens", str(tmp_path / "pt.bin"), "--tokens-per-param", "0.1", "--seq-len", "32",
                "--eval-tokens", "256", "--device", "cpu", "--quiet"]
    # an out folder that is a file: refused at once, not after training at the final save
    assert main([*pretrain, "--vocab-size", "64", "--out", str(tmp_path / "not-a-folder")]) == 2
    assert "is a file" in _one_line_error(capsys)
    # a vocabulary smaller than the data's ids
    assert main([*pretrain, "--vocab-size", "16", "--out", str(tmp_path / "base")]) == 2
    assert "vocab_size is 16" in _one_line_error(capsys)
    # a token file that is not a whole number of uint16 tokens
    assert main([*pretrain[:4], str(tmp_path / "odd.bin"), *pretrain[5:], "--vocab-size", "64",
                 "--out", str(tmp_path / "b2")]) == 2
    assert "3 bytes" in _one_line_error(capsys)
    finetune = ["finetune", "--domain-train-tokens", str(tmp_path / "pt.bin"),
                "--domain-val-tokens", str(tmp_path / "pt.bin"), "--pretrain-train-tokens", str(tmp_path / "pt.bin"),
                "--pretrain-val-tokens", str(tmp_path / "pt.bin"), "--unique-tokens", "1000", "--quiet"]
    # a base that is not a checkpoint
    assert main([*finetune, "--base", str(tmp_path / "notes.pt")]) == 2
    assert "not a forgetlaw checkpoint" in _one_line_error(capsys)
    # --out that is a folder: refused before the run, whose results would otherwise be lost
    assert main([*finetune, "--base", str(tmp_path / "notes.pt"), "--out", str(tmp_path)]) == 2
    assert "is a folder" in _one_line_error(capsys)
