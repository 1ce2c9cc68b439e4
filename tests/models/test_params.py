"""N counted from a loaded module agrees with the closed form, for ours and for Hugging Face models."""

from __future__ import annotations

from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from forgetlaw.models import GPT, GPTConfig, non_embedding_params, total_params
from forgetlaw.models.params import count_parameters


def test_our_gpt_tied_and_untied():
    for tie in (True, False):
        cfg = GPTConfig(vocab_size=300, n_layer=2, n_head=2, d_model=32, seq_len=64, tie_embeddings=tie)
        count = count_parameters(GPT(cfg))
        assert (count.non_embedding, count.total) == (non_embedding_params(cfg), total_params(cfg))


def test_gpt2_leaves_out_token_and_position_embeddings():
    config = GPT2Config(vocab_size=300, n_positions=64, n_embd=32, n_layer=2, n_head=2)
    model = GPT2LMHeadModel(config)
    count = count_parameters(model)
    embeddings = 300 * 32 + 64 * 32
    assert count.total == sum(p.numel() for p in model.parameters())  # the tied head counted once
    assert count.non_embedding == count.total - embeddings


def test_llama_with_an_untied_head_leaves_out_the_head():
    config = LlamaConfig(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=False)
    model = LlamaForCausalLM(config)
    count = count_parameters(model)
    assert count.total == sum(p.numel() for p in model.parameters())
    assert count.non_embedding == count.total - 2 * 300 * 32
