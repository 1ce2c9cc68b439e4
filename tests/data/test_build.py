"""Building the token store: split, dedupe, determinism, idempotence, incremental domains."""

from __future__ import annotations

import os
import time

import numpy as np

from conftest import small_config
from forgetlaw.data import DataConfig, build_data, open_data
from forgetlaw.data.store import PRETRAIN_CORPUS


def _documents(store, corpus: str, split: str) -> list[tuple[int, ...]]:
    tokens = np.asarray(store.tokens(corpus, split))
    starts = list(store.document_starts(corpus, split)) + [len(tokens)]
    # each document ends with the EOS separator
    return [tuple(tokens[a:b - 1]) for a, b in zip(starts[:-1], starts[1:], strict=True)]


def test_train_and_val_are_disjoint_documents(small_store):
    for corpus in (PRETRAIN_CORPUS, "code"):
        train = _documents(small_store, corpus, "train")
        val = _documents(small_store, corpus, "val")
        assert train and val
        assert not set(train) & set(val)
        split = small_store.manifest["corpora"][corpus]["splits"]
        assert (len(train), len(val)) == (split["train"]["documents"], split["val"]["documents"])


def test_exact_duplicates_are_dropped(small_store):
    generic = small_store.manifest["corpora"][PRETRAIN_CORPUS]
    # 120 documents and one byte-identical copy in the fixture
    assert generic["sources"][0]["documents"] == 120
    assert generic["sources"][0]["dropped"] == 1
    docs = _documents(small_store, PRETRAIN_CORPUS, "train") + _documents(small_store, PRETRAIN_CORPUS, "val")
    assert len(docs) == len(set(docs)) == 120


def test_documents_are_separated_by_eos_and_stored_compactly(small_store):
    tokens = small_store.tokens("code", "train")
    starts = small_store.document_starts("code", "train")
    assert isinstance(tokens, np.memmap) and tokens.ndim == 1 and tokens.dtype == np.uint16
    assert tokens[-1] == small_store.eos_id
    assert np.all(tokens[starts[1:] - 1] == small_store.eos_id)
    assert int((tokens == small_store.eos_id).sum()) == len(starts)
    assert tokens.max() < small_store.vocab_size == 300


def test_tokenizer_loads_in_transformers_and_round_trips(small_store, code_jsonl):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(small_store.tokenizer_path))
    assert len(tok) == small_store.vocab_size and tok.eos_token_id == small_store.eos_id
    first = _documents(small_store, "code", "train")[0]
    text = tok.decode(list(first))
    assert "def f" in text and "return x *" in text
    assert tuple(tok(text, add_special_tokens=False)["input_ids"]) == first


def test_two_builds_are_identical_and_a_rebuild_is_a_no_op(tmp_path, prose_dir, code_jsonl):
    stores = []
    for name in ("a", "b"):
        config = small_config(tmp_path / name, prose_dir, domains=("code",),
                              source_dirs={"code": code_jsonl})
        stores.append(build_data(config))
    a, b = stores
    assert a.root != b.root and a.root.name == b.root.name  # same key, different folders
    assert a.manifest_hash == b.manifest_hash
    for corpus in (PRETRAIN_CORPUS, "code"):
        for split in ("train", "val"):
            assert np.array_equal(a.tokens(corpus, split), b.tokens(corpus, split))
    mtime = os.stat(a.root / "manifest.json").st_mtime_ns
    started = time.perf_counter()
    again = build_data(small_config(tmp_path / "a", prose_dir, domains=("code",),
                                    source_dirs={"code": code_jsonl}))
    assert time.perf_counter() - started < 1.0
    assert again.manifest_hash == a.manifest_hash
    assert os.stat(a.root / "manifest.json").st_mtime_ns == mtime


def test_config_changes_give_another_build(tmp_path, prose_dir):
    base = build_data(small_config(tmp_path, prose_dir))
    other_seed = build_data(small_config(tmp_path, prose_dir, seed=1))
    assert other_seed.root != base.root and other_seed.manifest_hash != base.manifest_hash
    val_a = _documents(base, PRETRAIN_CORPUS, "val")
    val_b = _documents(other_seed, PRETRAIN_CORPUS, "val")
    assert set(val_a) != set(val_b)  # the seed moves documents across the split


def test_domains_are_added_to_an_existing_build(tmp_path, prose_dir, code_jsonl):
    generic_only = build_data(small_config(tmp_path, prose_dir, source_dirs={"code": code_jsonl}))
    assert generic_only.domains == []
    before = (generic_only.root / "corpora/generic/train.bin").read_bytes()
    with_code = build_data(small_config(tmp_path, prose_dir, domains=("code",),
                                        source_dirs={"code": code_jsonl}))
    assert with_code.root == generic_only.root and with_code.domains == ["code"]
    assert (with_code.root / "corpora/generic/train.bin").read_bytes() == before
    # a study that uses only the generic corpus keeps its data hash when a domain is added
    assert open_data(with_code.root, domains=[]).manifest_hash == generic_only.manifest_hash
    assert with_code.manifest_hash != generic_only.manifest_hash


def test_caps_limit_text_and_keep_the_mix(tmp_path, prose_dir, code_jsonl):
    store = build_data(small_config(tmp_path, prose_dir, domains=("code",), pretrain_max_mb=0.05,
                                    domain_max_mb=0.005, source_dirs={"code": code_jsonl}))
    for corpus, cap in ((PRETRAIN_CORPUS, 0.05), ("code", 0.005)):
        splits = store.manifest["corpora"][corpus]["splits"]
        assert sum(s["mb"] for s in splits.values()) <= cap + 1e-9


def test_pretrain_view_attributes(small_store):
    assert small_store.pretrain_corpus == "generic"
    assert small_store.domains == ["code"]
    assert small_store.manifest["tokenizer"]["kind"] == "bpe"
    assert len(small_store.manifest_hash) == 16
    reopened = open_data(small_store.root)
    assert reopened.manifest_hash == small_store.manifest_hash


def test_user_tokenizer_is_used(tmp_path, prose_dir, small_store):
    store = build_data(small_config(tmp_path, prose_dir, tokenizer=small_store.tokenizer_path))
    assert store.manifest["tokenizer"]["kind"] == "user"
    assert store.vocab_size == small_store.vocab_size
    assert np.array_equal(store.tokens(PRETRAIN_CORPUS, "train"), small_store.tokens(PRETRAIN_CORPUS, "train"))


def test_python_stdlib_domain_from_disk(tmp_path, prose_dir, monkeypatch):
    """Integration: a real built-in domain read from this interpreter's standard library."""
    # no apt-get/npm on PATH: building one domain must not touch the other domains' sources
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    domain_max_mb = 0.3
    store = build_data(small_config(tmp_path, prose_dir, domains=("python",), domain_max_mb=domain_max_mb))
    entry = store.manifest["corpora"]["python"]
    assert entry["sources"][0]["name"] == "python_stdlib"
    assert entry["sources"][0]["artefacts"][0]["manager"] == "disk"
    assert 0.1 < sum(s["mb"] for s in entry["splits"].values()) <= domain_max_mb + 1e-6
    assert entry["splits"]["val"]["documents"] >= 1
    text = store.load_tokenizer().decode(np.asarray(store.tokens("python", "train")[:4000]).tolist())
    assert "def " in text or "import " in text
    # code is far from English prose: the tokenizer trained on prose compresses it worse
    generic_bpt = store.manifest["corpora"]["generic"]["splits"]["train"]["bytes_per_token"]
    assert entry["splits"]["train"]["bytes_per_token"] < generic_bpt
    store.verify()


def test_dataconfig_accepts_lists():
    assert DataConfig(domains=["math", "python"]).domains == ("math", "python")
