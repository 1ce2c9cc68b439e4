"""Your own model: a local Hugging Face causal LM through the same finetuning loop (no download)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from forgetlaw.errors import UserError
from forgetlaw.models.hf import load_hf_causal_lm
from forgetlaw.training import FinetuneConfig, finetune

PROSE = "the cat sat on the mat and the dog ran to the park while the sun was warm . "
CODE = "def add(a, b):\n    return a + b\n\nfor i in range(10):\n    print(add(i, 2))\n"


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    """A tiny random GPT-2 and a byte-level BPE tokenizer, saved with save_pretrained."""
    path = tmp_path_factory.mktemp("tiny-gpt2")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.train_from_iterator([PROSE * 20, CODE * 20],
                            trainers.BpeTrainer(vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>")
    tokenizer.add_special_tokens({"eos_token": "<|endoftext|>"})
    tokenizer.save_pretrained(path)
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=64, n_embd=32, n_layer=1, n_head=2)
    GPT2LMHeadModel(config).save_pretrained(path)
    return path


def _tokens(tokenizer, text: str, repeat: int) -> np.ndarray:
    return np.asarray(tokenizer(text * repeat)["input_ids"], dtype=np.uint16)


def test_loads_and_maps_ids_to_logits(hf_dir):
    module, tokenizer = load_hf_causal_lm(hf_dir)
    reference = GPT2LMHeadModel.from_pretrained(hf_dir).eval()
    idx = torch.tensor([tokenizer("the cat sat")["input_ids"]])
    torch.testing.assert_close(module.eval()(idx), reference(idx).logits)
    assert module.max_seq_len == 64


def test_user_model_through_the_finetune_loop(hf_dir):
    module, tokenizer = load_hf_causal_lm(hf_dir)
    domain, prose = _tokens(tokenizer, CODE, 60), _tokens(tokenizer, PROSE, 120)
    config = FinetuneConfig(unique_tokens=len(domain) - 200, injection_fraction=0.1, lr=3e-3,
                            batch_size=4, seq_len=32, eval_tokens=256, min_eval_interval_steps=4,
                            patience=3, max_epochs=4, device="cpu")
    result = finetune(config, module, domain, domain[-200:], prose, prose[-300:])
    summary = result.summary
    assert summary["finetune_loss"] < summary["finetune_loss_before"] - 1.0
    assert summary["injected_sequences"] > 0 and np.isfinite(summary["pretrain_loss"])
    # the caller's module is left as it was (the loop trains a copy)
    reference = GPT2LMHeadModel.from_pretrained(hf_dir)
    assert torch.equal(module.model.transformer.h[0].mlp.c_fc.weight, reference.transformer.h[0].mlp.c_fc.weight)
    with pytest.raises(UserError, match="context"):
        finetune(FinetuneConfig(**{**config.__dict__, "seq_len": 128}), module, domain, domain[-200:],
                 prose, prose[-300:])


def test_missing_model_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_hf_causal_lm(tmp_path / "nothing")
    with pytest.raises(UserError, match="gguf_file"):
        load_hf_causal_lm(tmp_path, gguf_file="model.gguf")


def test_activation_checkpointing_keeps_the_gradients(hf_dir):
    module, tokenizer = load_hf_causal_lm(hf_dir)
    idx = torch.tensor([tokenizer(PROSE)["input_ids"][:32]] * 2)
    grads = []
    for enabled in (False, True):
        module.zero_grad(set_to_none=True)
        module.set_activation_checkpointing(enabled)
        module.train()
        torch.manual_seed(0)  # the same dropout masks (GPT-2 drops 10%); recomputation replays them
        module(idx).float().logsumexp(-1).mean().backward()
        grads.append({n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, rtol=1e-5, atol=1e-7)
