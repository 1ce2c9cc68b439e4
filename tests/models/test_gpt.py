"""The GPT, its parameter counts, the ladders and the stacked forward."""

from __future__ import annotations

import pytest
import torch

from forgetlaw.errors import UserError
from forgetlaw.models import (
    GPT,
    LADDERS,
    GPTConfig,
    find_shape,
    ladder,
    non_embedding_params,
    total_params,
)
from forgetlaw.models.stacked import stacked_forward


@pytest.mark.parametrize("tie", [True, False])
def test_param_counts_match_the_module(tie):
    cfg = GPTConfig(vocab_size=100, n_layer=3, n_head=2, d_model=32, seq_len=16, tie_embeddings=tie)
    model = GPT(cfg)
    assert sum(p.numel() for p in model.parameters()) == total_params(cfg)
    embedding = {"tok_emb.weight", "pos_emb.weight", "lm_head.weight"}
    counted = sum(p.numel() for n, p in model.named_parameters() if n not in embedding)
    assert counted == non_embedding_params(cfg) == 3 * (12 * 32 * 32 + 13 * 32) + 2 * 32


def test_forward_shape_and_causality():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=50, n_layer=2, n_head=2, d_model=16, seq_len=12)).eval()
    idx = torch.randint(0, 50, (3, 10))
    logits = model(idx)
    assert logits.shape == (3, 10, 50)
    changed = idx.clone()
    changed[:, 6] = (changed[:, 6] + 1) % 50
    other = model(changed)
    assert torch.allclose(logits[:, :6], other[:, :6], atol=1e-6)  # the past does not see the future
    assert not torch.allclose(logits[:, 6:], other[:, 6:])
    with pytest.raises(ValueError, match="seq_len"):
        model(torch.zeros(1, 13, dtype=torch.long))


def test_ladders():
    tiny = [s.non_embedding_params() for s in ladder("cpu-tiny")]
    assert len(tiny) >= 5 and tiny == sorted(tiny)
    assert 40_000 <= tiny[0] <= 70_000 and 1_000_000 <= tiny[-1] <= 1_600_000
    paper = {s.name: s.non_embedding_params() for s in ladder("paper")}
    targets = {"41M": 41e6, "109M": 109e6, "334M": 334e6, "665M": 665e6, "1.27B": 1.27e9}
    for name, target in targets.items():
        assert abs(paper[name] / target - 1) < 0.06, name
    for shapes in LADDERS.values():
        for shape in shapes:
            assert shape.d_model % shape.n_head == 0
    cfg = find_shape("d64").to_config(vocab_size=512, seq_len=128)
    assert (cfg.n_layer, cfg.d_model, cfg.n_head) == (2, 64, 2)


def test_bad_configs():
    with pytest.raises(UserError, match="n_head"):
        GPTConfig(vocab_size=10, n_layer=1, n_head=3, d_model=16)
    with pytest.raises(UserError, match="vocab_size"):
        GPTConfig(vocab_size=0, n_layer=1, n_head=1, d_model=16)
    with pytest.raises(UserError, match="ladder"):
        ladder("huge")
    with pytest.raises(UserError, match="shape"):
        find_shape("d999")


@pytest.mark.parametrize("tie", [True, False])
def test_stacked_forward_equals_each_model(tie):
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=40, n_layer=2, n_head=2, d_model=16, seq_len=12, tie_embeddings=tie)
    models = [GPT(cfg).eval() for _ in range(3)]
    params = {name: torch.stack([dict(m.named_parameters())[name].detach() for m in models])
              for name, _ in models[0].named_parameters()}
    idx = torch.randint(0, 40, (3, 4, 10))
    expected = torch.stack([m(idx[i]) for i, m in enumerate(models)])
    torch.testing.assert_close(stacked_forward(params, cfg, idx), expected, rtol=1e-5, atol=1e-5)
