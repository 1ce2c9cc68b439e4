"""A study on pretrained Hugging Face models: three tiny GPTs pretrained here, exported with
`forgetlaw export-hf`, then used as a `ladder.models` ladder end to end (sweep, kill -9 and resume,
report, plan); and the one-line refusals of a ladder that cannot run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import sysconfig
import time
import warnings
from pathlib import Path

import pytest
import yaml

from forgetlaw.cli import main
from forgetlaw.study import ResultsStore, load_results

STDLIB = Path(sysconfig.get_paths()["stdlib"])
WIDTHS = (8, 16, 24)


def _topics(folder: Path) -> Path:
    from pydoc_data.topics import topics

    folder.mkdir(parents=True, exist_ok=True)
    for name, text in sorted(topics.items()):
        (folder / f"{name}.txt").write_text(text)
    return folder


def _data_section(root: Path) -> dict:
    return {"vocab_size": 300, "pretrain_max_mb": 0.3, "domain_max_mb": 0.1, "cache_dir": str(root / "cache"),
            "source_dirs": {"generic": str(_topics(root / "topics")), "jsoncode": str(STDLIB / "json")}}


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict:
    """Three tiny GPTs pretrained on the generic text of a small build, exported as HF folders."""
    from forgetlaw.data import DataConfig, build_data
    from forgetlaw.models import ModelShape
    from forgetlaw.training import PretrainConfig, pretrain

    if not (STDLIB / "pydoc_data").is_dir():
        pytest.skip("this Python lacks the stdlib texts the test uses")
    root = tmp_path_factory.mktemp("pretrained")
    section = _data_section(root)
    store = build_data(DataConfig(domains=("jsoncode",), vocab_size=300, pretrain_max_mb=0.3, domain_max_mb=0.1,
                                  cache_dir=root / "cache", source_dirs=section["source_dirs"]))
    train, val = store.tokens("generic", "train"), store.tokens("generic", "val")
    paths = {}
    for width in WIDTHS:
        cfg = ModelShape(f"t{width}", 1, width, 1).to_config(store.vocab_size, 32)
        result = pretrain(PretrainConfig(tokens_per_param=10, batch_size=8, seq_len=32, eval_tokens=512,
                                         device="cpu"), cfg, train, val, root / "bases" / f"t{width}")
        paths[f"t{width}"] = root / "models" / f"t{width}"
        assert main(["export-hf", str(result.checkpoint), str(paths[f"t{width}"]), "--data", str(store.root)]) == 0
    return {"root": root, "paths": paths, "data": section}


def _spec(exported: dict, **changes) -> dict:
    spec = {
        "name": "pretrained-ladder", "seq_len": 32,
        "ladder": {"models": [{"name": name, "path": str(path)} for name, path in exported["paths"].items()]},
        "data": {**exported["data"], "pretrain_corpus": "generic"},
        "domains": ["jsoncode"], "unique_tokens": [512, 1024], "injection": [0.0, 0.2], "seeds": [0],
        "pretrain": {"eval_tokens": 512},
        "finetune": {"batch_size": 4, "eval_tokens": 256, "pretrain_eval_tokens": 256, "min_eval_interval_steps": 2,
                     "patience": 2, "max_epochs": 3, "warmup_steps": 2},
        "execution": {"device": "cpu", "progress_every_s": 60},
    }
    spec.update(changes)
    return spec


def _write(path: Path, spec: dict) -> Path:
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _done(db: Path) -> dict[str, float]:
    import sqlite3

    if not db.exists():
        return {}
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return dict(conn.execute("SELECT key, finished_at FROM runs WHERE status='done' AND kind='finetune'"))
    except sqlite3.OperationalError:
        return {}
    finally:
        conn.close()


def _sweep(spec: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "forgetlaw", "sweep", str(spec), "--out", str(out), "--workers", "2"],
                            env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def _export(out: Path) -> str:
    csv = out / "export.csv"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no failed runs
        assert main(["results", "export", str(out), "--csv", str(csv)]) == 0
    return csv.read_text()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_study_of_exported_models_resumes_after_kill_9_and_reports(tmp_path, exported):
    from forgetlaw.models.hf import load_hf_causal_lm
    from forgetlaw.models.params import count_parameters

    spec = _write(tmp_path / "spec.yaml", _spec(exported))
    reference = tmp_path / "reference"
    proc = _sweep(spec, reference)
    assert proc.wait(timeout=300) == 0, proc.stderr.read()

    resumed = tmp_path / "resumed"
    proc = _sweep(spec, resumed)
    deadline = time.monotonic() + 300
    while len(_done(resumed / "results.sqlite")) < 3 and proc.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    before = _done(resumed / "results.sqlite")
    assert 3 <= len(before) < 12, "the kill came too late to test anything"
    time.sleep(0.5)
    proc = _sweep(spec, resumed)
    assert proc.wait(timeout=300) == 0, proc.stderr.read()
    after = _done(resumed / "results.sqlite")
    assert len(after) == 12 and all(after[k] == t for k, t in before.items())  # nothing done twice
    assert _export(resumed) == _export(reference)

    # N is counted from the loaded module; L0 on the stand-in's windows; the LR the export recorded
    table = load_results(resumed)
    for name, path in exported["paths"].items():
        module, _ = load_hf_causal_lm(path)
        rows = table[table["model_name"] == name]
        assert (rows["model_size"] == count_parameters(module.model).non_embedding).all()
        assert (rows["pretrain_loss_before"] < rows["pretrain_loss_init"]).all()
    store = ResultsStore.open_existing(resumed)
    base = store.runs(kind="pretrain")[0]
    summary = store.summary(base["key"])
    finetune = store.runs(kind="finetune")[0]
    store.close()
    assert set(summary["corpus_losses"]) == {"generic", "jsoncode"} and summary["pretrain_corpus"] == "generic"
    assert finetune["config"]["finetune"]["lr"] == pytest.approx(3e-4)  # exported: 3e-3 peak x 0.1

    # the report names the stand-in; plan reads the saved fits
    assert main(["report", str(resumed), "--bootstrap", "10"]) == 0
    report = json.loads((resumed / "report" / "report.json").read_text())
    assert report["provenance"]["pretrain_corpus"] == "generic"
    assert "pretraining stand-in: generic" in (resumed / "report" / "report.html").read_text().lower()
    n = int(table["model_size"].max())
    assert main(["plan", str(resumed / "report" / "fits.json"), "--model-size", str(n), "--unique-tokens", "1024",
                 "--max-forgetting", "0.05", "--relative", "--domain", "jsoncode", "--json"]) == 0


def _refused(tmp_path: Path, spec: dict, capsys, *words: str) -> None:
    out = tmp_path / "never"
    capsys.readouterr()  # what the test itself printed before
    assert main(["sweep", str(_write(tmp_path / "bad.yaml", spec)), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for word in words:
        assert word in err, err
    assert not out.exists()  # nothing written


def test_a_ladder_that_cannot_run_is_refused_in_one_line(tmp_path, exported, capsys):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    paths = exported["paths"]
    first = {"name": "t8", "path": str(paths["t8"])}
    # a folder holding no causal LM
    _refused(tmp_path, _spec(exported, ladder={"models": [first, {"name": "x", "path": str(tmp_path)}]}),
             capsys, "ladder.models 'x'", "config.json")
    # a GGUF file transformers cannot read
    (tmp_path / "bad.gguf").write_bytes(b"not a gguf file at all")
    _refused(tmp_path, _spec(exported, ladder={"models": [{"name": "g", "path": str(tmp_path), "gguf_file": "bad.gguf"}]}),
             capsys, "ladder.models 'g'")
    # a context shorter than seq_len
    _refused(tmp_path, _spec(exported, seq_len=64), capsys, "seq_len 64", "context")
    # two tokenizers in one ladder
    other = tmp_path / "other"
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.train_from_iterator(["something else entirely " * 30], trainers.BpeTrainer(
        vocab_size=270, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>").save_pretrained(other)
    GPT2LMHeadModel(GPT2Config(vocab_size=300, n_positions=64, n_embd=8, n_layer=1, n_head=1,
                                      bos_token_id=0, eos_token_id=0)).save_pretrained(other)
    _refused(tmp_path, _spec(exported, ladder={"models": [first, {"name": "o", "path": str(other)}]}),
             capsys, "another tokenizer")
    # a model with no recorded LR and no finetune.lr
    _refused(tmp_path, _spec(exported, ladder={"models": [{"name": "o", "path": str(other)}]}), capsys,
             "finetune.lr")


def test_hub_models_load_through_the_same_code(tmp_path, exported):
    """A hub id resolves from the HF cache as it would from the network: a cache filled by hand
    stands in for the download (huggingface_hub reads HF_HUB_CACHE at import: a fresh process)."""
    import shutil

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--forgetlaw--t8"
    shutil.copytree(exported["paths"]["t8"], repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "step1").write_text(commit)
    spec = _spec(exported, ladder={"models": [{"name": "t8", "hub": "forgetlaw/t8", "revision": "step1", "lr": 3e-4}]})
    code = (
        "import json, sys\n"
        "from forgetlaw.study.spec import spec_from_dict\n"
        "from forgetlaw.study.preflight import check_pretrained_ladder, model_source\n"
        "from forgetlaw.models.pretrained import identity\n"
        "from forgetlaw.models.hf import load_hf_causal_lm\n"
        "spec = spec_from_dict(json.loads(sys.argv[1]))\n"
        "entry = spec.ladder.models[0]\n"
        "check = check_pretrained_ladder(spec, [entry])\n"
        "module, _ = load_hf_causal_lm(**model_source(entry).load_kwargs())\n"
        "print(json.dumps({'contexts': check.contexts, 'identity': identity(model_source(entry)),\n"
        "                  'vocab': module.vocab_size}))\n"
    )
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", code, json.dumps(spec)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found == {"contexts": {"t8": 32}, "identity": {"hub": "forgetlaw/t8", "revision": "step1"}, "vocab": 300}
