"""A real `transformers.Trainer` on a tiny random GPT-2 with `inject` and the callback: the callback's
L0 and L_pt equal forgetlaw's own evaluation of the same weights on the same windows, the Trainer saw
exactly floor(p k) injected sequences after k, and `forgetlaw fit` reads the rows written."""

from __future__ import annotations

import copy
import math

import numpy as np
import pandas as pd
import pytest
import torch
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    Trainer,
    TrainingArguments,
    default_data_collator,
)

from forgetlaw.cli import main
from forgetlaw.data.mixture import validation_windows
from forgetlaw.errors import UserError
from forgetlaw.integrations.datasets import inject
from forgetlaw.integrations.hf import ForgettingCallback, attach
from forgetlaw.laws import get_law, read_table
from forgetlaw.laws.table import check_table
from forgetlaw.models.hf import HFCausalLM
from forgetlaw.models.params import count_parameters
from forgetlaw.study.results import RESULT_COLUMNS
from forgetlaw.training.common import evaluate

VOCAB, SEQ = 48, 16


def markov(n: int, seed: int, low: int, high: int) -> np.ndarray:
    """Tokens of a sparse random Markov chain on [low, high): learnable structure, fixed by the seed."""
    rng = np.random.default_rng(seed)
    size = high - low
    nxt = rng.integers(0, size, (size, 3))
    out = np.empty(n, dtype=np.int64)
    state = 0
    for i in range(n):
        state = int(nxt[state, rng.integers(0, 3)])
        out[i] = low + state
    return out


@pytest.fixture(scope="module")
def corpora():
    return {"pretrain_train": markov(6000, 1, 0, VOCAB), "pretrain_val": markov(1200, 2, 0, VOCAB),
            "target_train": markov(3000, 3, 16, VOCAB), "target_val": markov(800, 4, 16, VOCAB)}


def tiny_gpt2() -> GPT2LMHeadModel:
    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(vocab_size=VOCAB, n_positions=SEQ + 1, n_embd=32, n_layer=1, n_head=2,
                                      bos_token_id=0, eos_token_id=0))


class RecordingCollator:
    """Records the `injected` flag of every sequence the Trainer feeds, in order, then drops it."""

    def __init__(self):
        self.flags: list[bool] = []
        self.batch_ends: list[int] = []

    def __call__(self, features):
        features = [dict(f) for f in features]
        if "injected" in features[0]:  # a training batch (evaluation batches have no flag)
            self.flags.extend(bool(f.pop("injected")) for f in features)
            self.batch_ends.append(len(self.flags))
        return default_data_collator(features)


def train(tmp_path, corpora, p, *, at_best="evaluate", unique_tokens=2000, csv=None, max_steps=24,
          load_best=True):
    from datasets import Dataset

    model = tiny_gpt2()
    base = copy.deepcopy(model)
    d_tokens = corpora["target_train"][:unique_tokens]
    train_set = inject(d_tokens, corpora["pretrain_train"], p, seed=0, seq_len=SEQ, mark="injected")
    val = validation_windows(corpora["target_val"], SEQ, 512)
    eval_set = Dataset.from_dict({"input_ids": val.tolist(), "labels": val.tolist()})
    collator = RecordingCollator()
    args = TrainingArguments(
        output_dir=str(tmp_path / f"out-{p}-{at_best}-{unique_tokens}"), max_steps=max_steps,
        per_device_train_batch_size=4, learning_rate=3e-3, eval_strategy="steps", eval_steps=4,
        eval_on_start=True, save_strategy="steps" if load_best else "no", save_steps=4,
        load_best_model_at_end=load_best,
        metric_for_best_model="eval_loss", report_to=[], use_cpu=True, seed=0, disable_tqdm=True,
        remove_unused_columns=False, logging_steps=4, dataloader_num_workers=0)
    trainer = Trainer(model=model, args=args, train_dataset=train_set, eval_dataset=eval_set,
                      data_collator=collator)
    callback = attach(trainer, corpora["pretrain_val"], seq_len=SEQ, domain="markov",
                      unique_tokens=unique_tokens, injection=p, results_csv=csv, at_best=at_best)
    trainer.train()
    return trainer, callback, base, collator


def forgetlaw_eval(model, corpora) -> float:
    windows = validation_windows(corpora["pretrain_val"], SEQ, 4096)
    return evaluate(HFCausalLM(model), windows, torch.device("cpu"), "auto")


def test_callback_reads_like_forgetlaw_and_the_trainer_saw_the_exact_injection(tmp_path, corpora):
    p = 0.3
    trainer, callback, base, collator = train(tmp_path, corpora, p)
    row = callback.row
    # L0: forgetlaw's evaluation of the base weights on the same windows, bit for bit.
    assert row["pretrain_loss_before"] == forgetlaw_eval(base, corpora)
    # L_pt at the best target step: the Trainer reloaded that checkpoint (load_best_model_at_end).
    assert row["best_step"] == trainer.state.best_global_step
    assert row["pretrain_loss"] == forgetlaw_eval(trainer.model, corpora)
    assert row["finetune_loss"] == pytest.approx(trainer.state.best_metric)
    assert row["pretrain_loss"] != row["pretrain_loss_before"]  # it trained
    assert row["model_size"] == count_parameters(trainer.model).non_embedding
    # Every prefix of what the Trainer fed holds exactly floor(p k) injected sequences.
    # (the dataloader may collate a batch ahead of the last step: count the 24 x 4 trained on)
    assert collator.batch_ends[:24] == list(range(4, 97, 4))
    flags = np.array(collator.flags[:96])
    counts = np.cumsum(flags)
    assert all(counts[k - 1] == math.floor(p * k + 1e-9) for k in range(1, len(flags) + 1))
    logged = [e["pretrain_val_loss"] for e in trainer.state.log_history if "pretrain_val_loss" in e]
    assert logged[0] == row["pretrain_loss_before"] and len(logged) >= 4


def test_keeping_the_weights_reads_the_same_as_evaluating_at_each_improvement(tmp_path, corpora):
    # No load_best_model_at_end: the model ends at its last step, so the copy is what is read.
    _, evaluated, _, _ = train(tmp_path, corpora, 0.1, at_best="evaluate", max_steps=16, load_best=False)
    trainer, kept, _, _ = train(tmp_path, corpora, 0.1, at_best="copy", max_steps=16, load_best=False)
    assert kept.row["best_step"] == evaluated.row["best_step"] < 16
    assert kept.row["pretrain_loss"] == evaluated.row["pretrain_loss"]
    at_best = next(c for c in kept.curve if c["step"] == kept.row["best_step"])
    assert math.isnan(at_best["pretrain_val_loss"])  # so it was read from the kept copy
    # ... and the model is handed back with its last weights, not the kept ones
    assert forgetlaw_eval(trainer.model, corpora) != kept.row["pretrain_loss"]
    assert forgetlaw_eval(trainer.model, corpora) == kept.curve[-1]["pretrain_val_loss"] or \
        math.isnan(kept.curve[-1]["pretrain_val_loss"])
    # copy evaluates L_pt less often along the way: only every 2nd evaluation
    assert sum(not math.isnan(c["pretrain_val_loss"]) for c in kept.curve) <= \
        sum(not math.isnan(c["pretrain_val_loss"]) for c in evaluated.curve)


def test_rows_form_a_table_that_forgetlaw_fit_reads(tmp_path, corpora, capsys):
    csv = tmp_path / "runs.csv"
    for unique_tokens in (1000, 3000):
        for p in (0.0, 0.25):
            train(tmp_path, corpora, p, unique_tokens=unique_tokens, csv=csv, max_steps=12)
    table = read_table(csv)
    assert list(table.columns[: len(RESULT_COLUMNS)]) == list(RESULT_COLUMNS) and len(table) == 4
    assert sorted(table["injection"]) == [0.0, 0.0, 0.25, 0.25]
    checked = check_table(table, get_law("forgetting"), by=["domain"])
    assert len(checked) == 4 and (checked["pretrain_loss"] > 0).all()
    assert main(["fit", str(csv), "--law", "finetuning", "--bootstrap", "0", "--json"]) == 0
    assert '"finetuning"' in capsys.readouterr().out


def test_bad_settings_are_one_line_errors(corpora):
    with pytest.raises(UserError, match="unique_tokens"):
        ForgettingCallback(corpora["pretrain_val"], seq_len=SEQ, results_csv="x.csv")
    with pytest.raises(UserError, match=r"injection must be a fraction in \[0, 1\)"):
        ForgettingCallback(corpora["pretrain_val"], seq_len=SEQ, injection=1.5)
    with pytest.raises(UserError, match="at_best"):
        ForgettingCallback(corpora["pretrain_val"], seq_len=SEQ, at_best="sometimes")


def test_appending_to_a_foreign_csv_is_refused(tmp_path):
    from forgetlaw.integrations.hf import append_row

    other = tmp_path / "other.csv"
    pd.DataFrame({"a": [1]}).to_csv(other, index=False)
    with pytest.raises(UserError, match="not those of a results row"):
        append_row(other, {"domain": "x"})


def test_pretrain_val_loss_reaches_the_trainers_own_mlflow_callback(tmp_path, corpora, monkeypatch):
    pytest.importorskip("mlflow")
    from datasets import Dataset
    from mlflow import MlflowClient

    uri = f"file:{tmp_path / 'mlruns'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "hf")
    val = validation_windows(corpora["target_val"], SEQ, 512)
    args = TrainingArguments(output_dir=str(tmp_path / "out"), max_steps=8, per_device_train_batch_size=4,
                             eval_strategy="steps", eval_steps=4, report_to=["mlflow"], use_cpu=True,
                             save_strategy="no", disable_tqdm=True, logging_steps=4)
    trainer = Trainer(model=tiny_gpt2(), args=args,
                      train_dataset=inject(corpora["target_train"][:2000], corpora["pretrain_train"], 0.2,
                                           seq_len=SEQ),
                      eval_dataset=Dataset.from_dict({"input_ids": val.tolist(), "labels": val.tolist()}))
    callback = attach(trainer, corpora["pretrain_val"], seq_len=SEQ, injection=0.2)
    trainer.train()
    client = MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("hf").experiment_id])
    history = client.get_metric_history(run.info.run_id, "pretrain_val_loss")
    assert history[0].value == pytest.approx(callback.l0)  # MLflow stores what the Trainer logged
    assert len(history) == 1 + sum(not math.isnan(c["pretrain_val_loss"]) for c in callback.curve)
    assert run.data.metrics["pretrain_loss"] == pytest.approx(callback.row["pretrain_loss"])


def test_a_callback_without_its_trainer_says_how_to_attach_it(tmp_path, corpora):
    from datasets import Dataset

    val = validation_windows(corpora["target_val"], SEQ, 256)
    args = TrainingArguments(output_dir=str(tmp_path / "o"), max_steps=2, report_to=[], use_cpu=True,
                             save_strategy="no", disable_tqdm=True)
    callback = ForgettingCallback(corpora["pretrain_val"], seq_len=SEQ)
    trainer = Trainer(model=tiny_gpt2(), args=args, callbacks=[callback],
                      train_dataset=Dataset.from_dict({"input_ids": val.tolist(), "labels": val.tolist()}))
    with pytest.raises(UserError, match="attach"):
        trainer.train()
