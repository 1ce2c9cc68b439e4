"""Bring-your-own data (text, folders, JSONL, `datasets` saved to disk) and one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import small_config
from forgetlaw.cli import main
from forgetlaw.data import DataConfig, build_data, open_data
from forgetlaw.errors import UserError


def test_saved_hf_dataset_as_domain_and_single_text_file(tmp_path, prose_dir):
    datasets = pytest.importorskip("datasets")
    rows = [f"Question {i}: what is {i} times {i + 3}? Answer: {i * (i + 3)}." for i in range(60)]
    saved = tmp_path / "qa_dataset"
    datasets.Dataset.from_dict({"text": rows, "id": list(range(60))}).save_to_disk(str(saved))
    notes = tmp_path / "notes.txt"
    notes.write_text("\n\n".join(f"Note number {i} about the harbour and its boats." for i in range(20)))
    store = build_data(small_config(tmp_path, prose_dir, domains=("qa", "notes"),
                                    source_dirs={"qa": saved, "notes": notes}))
    qa = store.manifest["corpora"]["qa"]
    assert qa["sources"][0]["manager"] == "local"
    assert sum(s["documents"] for s in qa["splits"].values()) == 60
    assert sum(s["documents"] for s in store.manifest["corpora"]["notes"]["splits"].values()) == 20
    text = store.load_tokenizer().decode(np.asarray(store.tokens("qa", "train")).tolist())
    assert text.count("Question") == qa["splits"]["train"]["documents"]


@pytest.mark.parametrize("domain", ["wikipedia", "manpages"])
def test_source_dir_named_like_a_builtin_domain_replaces_that_domain(tmp_path, prose_dir, domain):
    mine = tmp_path / "mine.jsonl"
    mine.write_text("".join(json.dumps({"text": f"My own document {i}: a harbour, a boat, a tide."}) + "\n"
                            for i in range(30)))
    store = build_data(small_config(tmp_path, prose_dir, domains=(domain,), source_dirs={domain: mine}))
    corpus = store.manifest["corpora"][domain]
    assert corpus["sources"][0]["manager"] == "local"
    assert sum(s["documents"] for s in corpus["splits"].values()) == 30


def test_saved_dataset_dict_uses_train_split_and_needs_text_column(tmp_path, prose_dir):
    datasets = pytest.importorskip("datasets")
    dd = datasets.DatasetDict({"train": datasets.Dataset.from_dict({"body": ["x" * 40] * 3})})
    dd.save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(UserError, match=r"no 'text' column"):
        build_data(small_config(tmp_path, prose_dir, domains=("mine",), source_dirs={"mine": tmp_path / "dd"}))


def test_jsonl_without_text_field_is_a_user_error(tmp_path, prose_dir):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"body": "hello world, this is long enough"}) + "\n")
    with pytest.raises(UserError, match=r"line 1 has no string 'text' field"):
        build_data(small_config(tmp_path, prose_dir, domains=("mine",), source_dirs={"mine": bad}))


@pytest.mark.parametrize("kwargs, match", [
    ({"domains": ("no-such-domain",)}, r"unknown domain 'no-such-domain'.*--source-dir no-such-domain=PATH"),
    ({"domains": ("math", "math")}, r"lists a domain twice"),
    ({"domains": ("generic",)}, r"always built"),
    ({"vocab_size": 100}, r"vocab_size: 100 must be > 256"),
    ({"val_fraction": 0.0}, r"val_fraction"),
    ({"pretrain_max_mb": -1.0}, r"pretrain_max_mb"),
])
def test_bad_config_is_one_line(kwargs, match, tmp_path):
    with pytest.raises(UserError, match=match) as error:
        build_data(DataConfig(**{"cache_dir": tmp_path, "raw_dir": tmp_path, **kwargs}))
    assert "\n" not in str(error.value)


def test_missing_local_source_and_too_few_documents(tmp_path, prose_dir):
    with pytest.raises(UserError, match=r"does not exist"):
        build_data(small_config(tmp_path, prose_dir, domains=("mine",), source_dirs={"mine": tmp_path / "nope"}))
    one = tmp_path / "one.txt"
    one.write_text("a single document that is long enough to keep")
    with pytest.raises(UserError, match=r"'mine' has 1 usable document"):
        build_data(small_config(tmp_path, prose_dir, domains=("mine",), source_dirs={"mine": one}))
    with pytest.raises(UserError, match=r"user tokenizer|not a folder"):
        build_data(small_config(tmp_path / "t", prose_dir, tokenizer=tmp_path / "missing-tokenizer"))


def test_bad_corpus_or_split_request(small_store):
    with pytest.raises(UserError, match=r"'nope' is not in this build"):
        small_store.tokens("nope", "train")
    with pytest.raises(UserError, match=r"split: 'test'"):
        small_store.tokens("code", "test")
    with pytest.raises(UserError, match=r"'python' is not built"):
        open_data(small_store.root, domains=["python"])


def _copy_build(store, tmp_path):
    import shutil

    copy = tmp_path / store.root.name
    shutil.copytree(store.root, copy)
    return copy


def test_verify_catches_a_modified_shard(small_store, tmp_path, capsys):
    root = _copy_build(small_store, tmp_path)
    assert main(["data", "verify", str(root)]) == 0
    shard = root / "corpora/code/train.bin"
    data = bytearray(shard.read_bytes())
    data[10] ^= 0xFF  # same size, different content
    shard.write_bytes(bytes(data))
    open_data(root)  # the cheap size check passes ...
    capsys.readouterr()
    assert main(["data", "verify", str(root)]) == 2  # ... the hash does not
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "corpora/code/train.bin" in err[0] and "modified" in err[0]


def test_verify_catches_a_truncated_shard(small_store, tmp_path, capsys):
    root = _copy_build(small_store, tmp_path)
    shard = root / "corpora/generic/val.bin"
    shard.write_bytes(shard.read_bytes()[:-2])
    with pytest.raises(UserError, match=r"generic/val.bin has .* bytes.*truncated"):
        open_data(root)
    assert main(["data", "verify", str(root)]) == 2
    assert "generic/val.bin" in capsys.readouterr().err


def test_cli_build_list_and_distance(tmp_path, prose_dir, code_jsonl, capsys):
    args = ["data", "build", "--out", str(tmp_path / "d"), "--vocab-size", "300", "--quiet",
            "--domains", "code", "--source-dir", f"generic={prose_dir}", "--source-dir", f"code={code_jsonl}"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "generic" in out and "code" in out and "built in" in out
    assert main(["data", "list", "--out", str(tmp_path / "d")]) == 0
    listing = capsys.readouterr().out
    assert "multilingual" in listing and "code" in listing
    (root,) = (tmp_path / "d").glob("build-*")
    assert main(["data", "distance", str(root)]) == 0
    table = capsys.readouterr().out.splitlines()
    # generated English-like prose is nearer to itself than generated code is
    order = [line.split()[0] for line in table[2:]]
    assert order == ["generic", "code"]
    assert main(["data", "build", "--source-dir", "oops"]) == 2
    assert "NAME=PATH" in capsys.readouterr().err
