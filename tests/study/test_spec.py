"""Study specs: presets, validation errors that name the field, YAML and TOML."""

from __future__ import annotations

import pytest
from study_helpers import tiny_spec_dict, write_spec

from forgetlaw.cli import main
from forgetlaw.errors import UserError
from forgetlaw.study import PRESETS, load_preset, load_spec, plan_study, spec_from_dict
from forgetlaw.study.plan import grid_cells, resolve_ladder


def _non_embedding(shape) -> int:
    return shape.n_layer * (12 * shape.d_model**2 + 13 * shape.d_model) + 2 * shape.d_model


def test_presets_have_the_promised_grids():
    specs = {name: load_preset(name) for name in PRESETS}
    quick, cpu, full, paper = (specs[n] for n in ("quick", "cpu", "cpu-full", "paper"))
    assert 2 <= len(resolve_ladder(quick)) <= 3 and len(quick.unique_tokens) == 2
    assert sorted(quick.injection) == [0.0, 0.05, 0.2]
    # cpu: >= 4 sizes, a near and a far domain, >= 3 D with D <= N, p in {0, 1, 5, 20}%, replicates.
    shapes = resolve_ladder(cpu)
    assert len(shapes) >= 4 and {"wikipedia", "python"} <= set(cpu.domains)
    assert len(cpu.unique_tokens) >= 3 and sorted(cpu.injection) == [0.0, 0.01, 0.05, 0.2]
    assert max(cpu.unique_tokens) <= min(_non_embedding(s) for s in shapes)
    assert cpu.replicates is not None and len(cpu.replicates.seeds) >= 1
    # finetuning continues at the LR pretraining ended at (docs/training.md), batch 8, patience 5
    assert cpu.finetune.lr == pytest.approx(cpu.pretrain.lr * cpu.pretrain.min_lr_frac)
    assert (cpu.finetune.batch_size, cpu.finetune.patience) == (8, 5)
    # one pretraining budget for every size, so that L0 falls with N
    assert all(getattr(s, 'tokens_per_param', None) in (None, cpu.pretrain.tokens_per_param)
               for s in cpu.ladder.shapes)
    assert sorted(full.injection) == [0.0, 0.001, 0.005, 0.01, 0.05, 0.1, 0.2]
    assert len(full.domains) == 3 and len(full.unique_tokens) == 4
    sizes = [_non_embedding(s) for s in resolve_ladder(paper)]
    assert len(sizes) == 5 and 35e6 < sizes[0] < 50e6 and 1.1e9 < sizes[-1] < 1.4e9
    assert sorted(paper.injection) == [0.0, 0.001, 0.005, 0.01, 0.05]
    assert min(paper.unique_tokens) == 300_000 and max(paper.unique_tokens) == 30_000_000
    assert paper.pretrain.tokens_per_param == 100
    # the cpu study: replicate seeds add runs on one cell only (one size, domain, D; all p)
    main_grid = len(shapes) * len(cpu.domains) * len(cpu.unique_tokens) * len(cpu.injection)
    assert len(grid_cells(cpu, shapes)) == main_grid + len(cpu.replicates.seeds) * len(cpu.injection)


@pytest.mark.parametrize("change, field", [
    ({"finetune": {"patiense": 3}}, "finetune.patiense"),
    ({"finetune": {"lr": "fast"}}, "finetune.lr"),
    ({"injection": [0.0, 5]}, "injection"),
    ({"seeds": "zero"}, "seeds"),
    ({"ladder": {"shapes": [{"name": "a", "n_layer": 1, "d_model": 10, "n_head": 3}]}}, "ladder.shapes.0"),
    ({"colour": "blue"}, "colour"),
])
def test_invalid_specs_name_the_field(change, field):
    spec = tiny_spec_dict()
    for key, value in change.items():
        spec[key] = {**spec[key], **value} if isinstance(spec.get(key), dict) and key != "ladder" else value
    with pytest.raises(UserError) as info:
        spec_from_dict(spec, "my.yaml")
    message = str(info.value)
    assert f"'{field}'" in message and "\n" not in message and message.startswith("my.yaml")


def test_yaml_and_toml_give_the_same_plan(tmp_path, tiny_files):
    yaml_spec = load_spec(write_spec(tmp_path / "s.yaml", tiny_spec_dict(tiny_files)))
    toml_path = tmp_path / "s.toml"
    toml_path.write_text(
        'name = "tiny"\nseq_len = 32\ndomains = ["code"]\nunique_tokens = [1024, 2048]\n'
        'injection = [0, 0.2]\nseeds = [0]\n'
        '[ladder]\nshapes = [{name = "t16", n_layer = 1, d_model = 16, n_head = 1}]\n'
        '[pretrain]\ntokens_per_param = 8\nbatch_size = 8\neval_tokens = 512\nlr = 3e-3\n'
        '[finetune]\nbatch_size = 4\neval_tokens = 256\nmin_eval_interval_steps = 2\npatience = 2\n'
        'max_epochs = 3\nwarmup_steps = 2\n[execution]\ndevice = "cpu"\nprogress_every_s = 60\n')
    toml_spec = load_spec(toml_path)
    keys = [r.key for r in plan_study(yaml_spec, 256, "m")]
    assert keys == [r.key for r in plan_study(toml_spec, 256, "m")]
    assert len(set(keys)) == len(keys) == 5
    # a changed setting changes every finetuning key, and only those
    other = spec_from_dict({**tiny_spec_dict(), "finetune": {**tiny_spec_dict()["finetune"], "patience": 3}})
    changed = [r.key for r in plan_study(other, 256, "m")]
    assert changed[0] == keys[0] and not set(changed[1:]) & set(keys[1:])


def test_overrides_and_replicates_select_cells():
    spec = spec_from_dict({**tiny_spec_dict(), "seeds": [0],
                           "replicates": {"seeds": [1, 2], "unique_tokens": [1024]},
                           "overrides": [{"injection": [0.2], "finetune": {"lr": 1.0}}]})
    runs = [r for r in plan_study(spec, 256, "m") if r.kind == "finetune"]
    assert len(runs) == 4 + 2 * 2
    assert {r.seed for r in runs if r.unique_tokens == 2048} == {0}
    assert all((r.config["finetune"]["lr"] == 1.0) == (r.injection == 0.2) for r in runs)
    with pytest.raises(UserError, match="replicates.sizes"):
        plan_study(spec_from_dict({**tiny_spec_dict(), "replicates": {"seeds": [1], "sizes": ["nope"]}}), 256, "m")


def test_cli_bad_spec_is_one_line_exit_2(tmp_path, capsys):
    bad = write_spec(tmp_path / "bad.yaml", {**tiny_spec_dict(), "unique_tokens": [-5]})
    assert main(["sweep", str(bad), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unique_tokens" in err[0]
    assert main(["sweep", "--preset", "nope", "--out", str(tmp_path / "out")]) == 2
    assert main(["sweep", "--preset", "quick", "--out", str(tmp_path / "o"), "--dry-run"]) == 0
    assert "24 finetuning runs" in capsys.readouterr().out
