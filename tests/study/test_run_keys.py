"""Run keys are a study's memory: a code change that adds an option must not change the keys of
specs that do not use it, or every finished run of every existing study would be redone."""

from __future__ import annotations

import hashlib

from forgetlaw.study import plan_study, spec_from_dict

# The `quick` preset as it was when this test was written (2026-12-01), inlined so that later
# preset changes do not move it.
QUICK = {
    "name": "quick", "description": "Smoke study (2 sizes x 2 domains x 2 D x 3 p = 24 finetuning runs)",
    "seq_len": 128,
    "ladder": {"shapes": [{"name": "d32", "n_layer": 2, "d_model": 32, "n_head": 1},
                          {"name": "d48", "n_layer": 2, "d_model": 48, "n_head": 1}]},
    "data": {"vocab_size": 512},
    "domains": ["wikipedia", "python"], "unique_tokens": [4096, 8192], "injection": [0.0, 0.05, 0.2],
    "seeds": [0],
    "pretrain": {"tokens_per_param": 40, "lr": 3.0e-3, "batch_size": 32, "eval_tokens": 4096},
    "finetune": {"lr": 3.0e-4, "warmup_steps": 5, "batch_size": 8, "eval_tokens": 4096,
                 "eval_every_epochs": 1.0, "min_eval_interval_steps": 8, "patience": 4, "max_epochs": 10},
}
# sha256 of the comma-joined run keys of QUICK's plan (vocab 512, manifest hash "manifest-0"),
# computed with forgetlaw at commit 62a4c61.
GOLDEN = "7e7e729e47944a28448071a68761fba0695a100f44d5a1411c09cc8833661a0c"


def test_keys_of_an_unchanged_spec_do_not_move():
    keys = [run.key for run in plan_study(spec_from_dict(QUICK), 512, "manifest-0")]
    assert len(keys) == 26
    assert hashlib.sha256(",".join(keys).encode()).hexdigest() == GOLDEN


def test_new_options_enter_the_key_only_when_set():
    import dataclasses

    from forgetlaw.provenance import IF_SET, KEY, NEVER, keyed_fields

    @dataclasses.dataclass
    class Config:
        lr: float = 1e-3
        added: int | None = dataclasses.field(default=None, metadata={KEY: IF_SET})
        timing: float = dataclasses.field(default=60.0, metadata={KEY: NEVER})

    assert keyed_fields(Config()) == {"lr": 1e-3}
    assert keyed_fields(Config(added=4, timing=5.0)) == {"lr": 1e-3, "added": 4}


def test_execution_settings_reach_the_workers_but_not_the_keys():
    plain = plan_study(spec_from_dict(QUICK), 512, "manifest-0")
    tuned = plan_study(spec_from_dict({
        **QUICK, "pretrain": {**QUICK["pretrain"], "micro_batch_size": 8, "checkpoint_every_s": 5},
        "finetune": {**QUICK["finetune"], "micro_batch_size": 2, "activation_checkpointing": True}}),
        512, "manifest-0")
    assert [r.key for r in tuned] == [r.key for r in plain]
    assert tuned[0].config["pretrain"]["micro_batch_size"] == 8
    assert tuned[0].config["pretrain"]["checkpoint_every_s"] == 5
    assert tuned[-1].config["finetune"]["micro_batch_size"] == 2
    assert tuned[-1].config["finetune"]["activation_checkpointing"] is True
    # an option that changes what is computed gets keys of its own
    bf16 = plan_study(spec_from_dict({**QUICK, "finetune": {**QUICK["finetune"], "weights_dtype": "bfloat16"}}),
                      512, "manifest-0")
    assert bf16[0].key == plain[0].key and bf16[-1].key != plain[-1].key
