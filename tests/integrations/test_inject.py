"""`inject`: forgetlaw's exact injection rule on Hugging Face datasets; `forgetlaw export-mix`."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import yaml
from datasets import Dataset, IterableDataset, load_from_disk

from forgetlaw.cli import main
from forgetlaw.data.mixture import InjectionStream
from forgetlaw.errors import UserError
from forgetlaw.integrations.datasets import inject, inject_dataset

TARGET = [{"text": f"target {i}"} for i in range(37)]
PRETRAIN = [{"text": f"pretrain {i}", "meta": i} for i in range(11)]


def flags_of(rows) -> np.ndarray:
    return np.array([r["injected"] for r in rows])


@pytest.mark.parametrize("p", [0.0, 0.01, 0.05, 0.1, 1 / 3, 0.2, 0.5, 0.95])
def test_after_k_rows_exactly_floor_pk_were_injected(p):
    rows = list(inject(TARGET, PRETRAIN, p, seed=4, num_sequences=2000, mark="injected"))
    assert len(rows) == 2000
    counts = np.cumsum(flags_of(rows))
    for k in range(1, 2001):
        assert counts[k - 1] == math.floor(p * k + 1e-9), k
    # the flag says where a row came from
    assert all(r["text"].startswith("pretrain" if r["injected"] else "target") for r in rows)


def test_token_arrays_give_forgetlaws_own_stream_sequence_for_sequence():
    rng = np.random.default_rng(0)
    target, pretrain = rng.integers(0, 90, 3000), rng.integers(0, 90, 9000)
    rows = list(inject(target, pretrain, 0.07, seed=5, seq_len=24, num_sequences=333, mark="injected"))
    stream = InjectionStream(target, pretrain, 0.07, 24, 333, 5).next_batch()
    assert np.array_equal(np.array([r["input_ids"] for r in rows]), stream.tokens)
    assert np.array_equal(flags_of(rows), stream.is_pretrain)
    assert rows[0]["labels"] == rows[0]["input_ids"]


def test_target_passes_are_reshuffled_and_pretraining_rows_do_not_repeat_before_all_were_used():
    rows = list(inject(TARGET, PRETRAIN, 0.2, seed=1, epochs=2, mark="injected"))
    target = [r["text"] for r in rows if not r["injected"]]
    assert len(target) == 74 and rows[-1]["injected"] is False  # two passes, ending on the target
    first, second = target[:37], target[37:]
    assert sorted(first) == sorted(second) == sorted(t["text"] for t in TARGET) and first != second
    injected = [r["text"] for r in rows if r["injected"]]
    assert len(injected) == math.floor(0.2 * len(rows) + 1e-9)
    assert len(set(injected[:11])) == 11  # a permutation of the 11 before any repeats
    # deterministic for a seed, different for another
    assert rows == list(inject(TARGET, PRETRAIN, 0.2, seed=1, epochs=2, mark="injected"))
    assert rows != list(inject(TARGET, PRETRAIN, 0.2, seed=2, epochs=2, mark="injected"))


def test_map_style_variant_and_iterable_sources(tmp_path):
    fixed = inject_dataset(Dataset.from_list(TARGET), Dataset.from_list(PRETRAIN), 0.1, seed=3,
                           num_sequences=150, mark="injected", cache_dir=str(tmp_path))
    assert isinstance(fixed, Dataset) and len(fixed) == 150
    assert fixed.to_list() == list(inject(TARGET, PRETRAIN, 0.1, seed=3, num_sequences=150, mark="injected"))
    streamed = IterableDataset.from_generator(lambda: iter(PRETRAIN))
    rows = list(inject(TARGET, streamed, 0.25, seed=0, num_sequences=60, mark="injected"))
    injected = [r["text"] for r in rows if r["injected"]]
    assert injected[:11] == [f"pretrain {i}" for i in range(11)]  # a stream keeps its order
    assert len(injected) == 15


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5, "0.05", True])
def test_p_outside_the_unit_interval_is_one_line(p):
    with pytest.raises(UserError, match=r"p must be a fraction in \[0, 1\)"):
        inject(TARGET, PRETRAIN, p)


def test_a_pretraining_dataset_without_the_text_column_names_the_fix():
    no_text = Dataset.from_list([{"content": "x"}, {"content": "y"}])
    with pytest.raises(UserError, match=r"pretraining dataset has columns \['content'\] and no 'text'.*pretrain_column"):
        inject(TARGET, no_text, 0.1)
    rows = list(inject(TARGET, no_text, 0.5, num_sequences=4, pretrain_column="content", mark="injected"))
    assert [r["text"] for r in rows if r["injected"]] in (["x", "y"], ["y", "x"])


def test_other_mistakes_are_one_line():
    with pytest.raises(UserError, match="needs a pretraining dataset"):
        inject(TARGET, None, 0.1)
    with pytest.raises(UserError, match="seq_len"):
        inject(np.arange(100), np.arange(100), 0.1)
    with pytest.raises(UserError, match="both be token arrays"):
        inject(np.arange(100), PRETRAIN, 0.1, seq_len=8)
    with pytest.raises(UserError, match="budget"):
        inject_dataset(TARGET, PRETRAIN, 0.1)
    assert len(list(inject(TARGET, None, 0.0, num_sequences=5))) == 5  # p = 0 needs no pretraining set


# ---- export-mix ----------------------------------------------------------------------------------

@pytest.fixture
def sources(tmp_path):
    with open(tmp_path / "target.jsonl", "w") as out:
        for i in range(40):
            out.write(json.dumps({"text": f"target document {i} " * 3}) + "\n")
    folder = tmp_path / "pretrain_saved"
    Dataset.from_list([{"text": f"a longer pretraining document {i} " * 8} for i in range(30)]).save_to_disk(str(folder))
    return tmp_path


def write_spec(path, **fields):
    path.write_text(yaml.safe_dump({"target": "target.jsonl", "pretrain": "pretrain_saved", "p": 0.05,
                                    "seed": 0, **fields}))
    return path


def test_export_mix_writes_jsonl_and_prints_the_weights(sources, capsys):
    spec = write_spec(sources / "mix.yaml", epochs=3, mark="injected")
    out = sources / "out"
    assert main(["export-mix", str(spec), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    rows = [json.loads(line) for line in (out / "mix.jsonl").read_text().splitlines()]
    assert sum(not r["injected"] for r in rows) == 120  # 3 passes over 40 target rows
    counts = np.cumsum([r["injected"] for r in rows])
    assert all(counts[k - 1] == math.floor(0.05 * k + 1e-9) for k in range(1, len(rows) + 1))
    manifest = json.loads((out / "mix.json").read_text())
    assert manifest["sequences"] == len(rows) and manifest["injected"] == counts[-1] and manifest["exact"]
    assert "interleave_probs: 0.95,0.05" in printed and "--data-path 0.95 TARGET_PREFIX 0.05 PRETRAIN_PREFIX" in printed
    # packed trainers sample examples, not tokens: longer pretraining examples need a smaller probability
    packed = manifest["weights"]["llamafactory"]["interleave_probs_packed"][1]
    lt, lp = manifest["mean_length"]["target"], manifest["mean_length"]["pretrain"]
    assert packed < 0.05 and packed * lp / (packed * lp + (1 - packed) * lt) == pytest.approx(0.05, abs=1e-5)


def test_export_mix_save_to_disk_and_token_arrays(sources, capsys):
    rng = np.random.default_rng(0)
    np.save(sources / "t.npy", rng.integers(0, 50, 2000).astype(np.uint16))
    np.save(sources / "p.npy", rng.integers(0, 50, 5000).astype(np.uint16))
    spec = write_spec(sources / "tok.yaml", target="t.npy", pretrain="p.npy", p=0.1, seq_len=16,
                      sequences=200, format="save_to_disk")
    assert main(["export-mix", str(spec), "--out", str(sources / "tok")]) == 0
    saved = load_from_disk(str(sources / "tok" / "dataset"))
    stream = InjectionStream(np.load(sources / "t.npy"), np.load(sources / "p.npy"), 0.1, 16, 200, 0).next_batch()
    assert np.array_equal(np.array(saved["input_ids"]), stream.tokens)
    assert "interleave_probs: 0.9,0.1 " in capsys.readouterr().out


@pytest.mark.parametrize("fields, match", [
    ({"p": 1.0, "sequences": 10}, r"field 'p': p must be a fraction in \[0, 1\)"),
    ({"sequences": 10, "epochs": 2}, "exactly one budget"),
    ({"sequences": 10, "pretrain": "nowhere.jsonl"}, "pretrain: .*nowhere.jsonl does not exist"),
    ({"sequences": 10, "colour": "red"}, "field 'colour': unknown key"),
])
def test_bad_mix_specs_are_one_line_and_write_nothing(sources, capsys, fields, match):
    spec = write_spec(sources / "bad.yaml", **fields)
    out = sources / "never"
    assert main(["export-mix", str(spec), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    import re

    assert re.search(match, err[0]), err[0]
    assert not out.exists() and not list(sources.glob(".never.partial-*"))


def test_export_mix_pretraining_set_without_text_column(sources, capsys):
    Dataset.from_list([{"body": "x"}] * 5).save_to_disk(str(sources / "no_text"))
    spec = write_spec(sources / "nt.yaml", pretrain="no_text", sequences=50)
    assert main(["export-mix", str(spec), "--out", str(sources / "never")]) == 2
    err = capsys.readouterr().err
    assert "no 'text' column" in err and "pretrain_column" in err and not (sources / "never").exists()
