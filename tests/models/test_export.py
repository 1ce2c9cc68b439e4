"""Our GPT leaves as a Hugging Face model: AutoModelForCausalLM / AutoTokenizer load the folder and
its logits equal ours."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast

from forgetlaw.cli import main
from forgetlaw.models import GPT, GPTConfig
from forgetlaw.models.params import count_parameters
from forgetlaw.models.pretrained import EXPORT_RECORD
from forgetlaw.training import PretrainConfig, pretrain

TEXT = "the cat sat on the mat and the dog ran to the park while the sun was warm . " * 40


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tok")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.train_from_iterator([TEXT], trainers.BpeTrainer(vocab_size=280, special_tokens=["<|endoftext|>"],
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>").save_pretrained(path)
    return path


@pytest.mark.parametrize("tie", [True, False])
def test_exported_logits_equal_ours(tmp_path, tokenizer_dir, tie):
    from forgetlaw.models.export import export_gpt

    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=288, n_layer=2, n_head=2, d_model=32, seq_len=48, tie_embeddings=tie)
    ours = GPT(cfg).eval()
    out = export_gpt(ours, tmp_path / "hf", tokenizer_dir, {"final_lr": 3e-4})
    theirs = AutoModelForCausalLM.from_pretrained(out).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    idx = torch.tensor([tokenizer(TEXT[:200])["input_ids"][:48]] * 2)
    with torch.no_grad():
        diff = (theirs(input_ids=idx).logits - ours(idx)).abs().max().item()
    assert diff < 1e-5
    assert count_parameters(theirs).non_embedding == count_parameters(ours).non_embedding
    assert json.loads((out / EXPORT_RECORD).read_text())["final_lr"] == 3e-4


def test_cli_exports_a_pretrained_checkpoint(tmp_path, tokenizer_dir):
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    ids = np.asarray(tokenizer(TEXT * 3)["input_ids"], dtype=np.uint16)
    cfg = GPTConfig(vocab_size=len(tokenizer), n_layer=1, n_head=1, d_model=16, seq_len=32)
    result = pretrain(PretrainConfig(tokens_per_param=2, batch_size=4, seq_len=32, eval_tokens=256,
                                     device="cpu"), cfg, ids[:-600], ids[-600:], tmp_path / "base")
    out = tmp_path / "exported"
    assert main(["export-hf", str(result.checkpoint), str(out), "--tokenizer", str(tokenizer_dir)]) == 0
    record = json.loads((out / EXPORT_RECORD).read_text())
    assert record["final_lr"] == pytest.approx(3e-3 * 0.1)  # PretrainConfig's peak x min_lr_frac
    assert record["pretrain_loss_before"] == pytest.approx(result.pretrain_loss_before)
    # a second export into the same folder is refused, nothing overwritten
    assert main(["export-hf", str(result.checkpoint), str(out), "--tokenizer", str(tokenizer_dir)]) == 2
    # without a tokenizer, outside a study: one line asking for one
    assert main(["export-hf", str(result.checkpoint), str(tmp_path / "x")]) == 2
