"""forgetlaw's injection rule for any trainer that takes a Hugging Face dataset.

Sequence j of the mix (counting from 0) is a pretraining sequence exactly when
floor(p (j + 1)) > floor(p j): after k sequences exactly floor(p k) were injected, the rule of
`forgetlaw.data.mixture.InjectionStream` (`injected_count` there), not a draw in expectation.

What a source may be:
- a 1-D numpy token array: cut into windows of seq_len + 1 tokens exactly as forgetlaw's finetuning
  cuts them; with both sources token arrays the mix *is* `InjectionStream`'s, sequence for sequence.
  Rows are {"input_ids": window, "labels": window} (a causal LM shifts the labels itself);
- a `datasets.Dataset` or a list of rows (dicts, or plain strings): one row is one sequence. The
  target is reshuffled every pass with the seed; pretraining rows are drawn in a seeded permutation,
  without repetition until all were used;
- a `datasets.IterableDataset` (or any re-iterable): read in its own order, restarted for each pass
  (`set_epoch(pass)` is called when it has it, so a shuffled stream reshuffles).

The rule counts rows. A trainer that packs several rows into one sequence (TRL/axolotl packing)
counts tokens, not rows: give it rows of fixed length (e.g. the token-array form) to keep the
fraction of sequences exact (docs/integrations.md).
"""

from __future__ import annotations

import math
import numbers
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from forgetlaw.data.mixture import InjectionStream, injected_count
from forgetlaw.errors import UserError

# Keep the two row samplers' random streams apart for one user seed.
_TARGET_TAG = 2
_PRETRAIN_TAG = 1
_CHUNK = 256  # windows drawn from InjectionStream at a time (the order does not depend on it)


def require_datasets():
    try:
        import datasets
    except ImportError:
        raise UserError("forgetlaw.integrations.datasets needs the 'datasets' package; "
                        "pip install 'forgetlaw[hf]'") from None
    return datasets


def check_fraction(p: float, field: str = "p") -> float:
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0.0 <= float(p) < 1.0:
        raise UserError(f"{field} must be a fraction in [0, 1); got {p!r} (5% is 0.05)")
    return float(p)


@dataclass(frozen=True)
class MixPlan:
    """A validated mix: what `mixed_rows` generates."""

    target: Any
    pretrain: Any
    p: float
    seed: int
    num_sequences: int | None  # total rows (target + injected); None with epochs or unbounded
    epochs: float | None  # target passes (injected rows do not count), as forgetlaw's epochs
    seq_len: int | None
    text_column: str
    pretrain_column: str
    mark: str | None
    shuffle: bool

    @property
    def tokens(self) -> bool:
        return isinstance(self.target, np.ndarray)


def plan_mix(target, pretrain, p: float, seed: int = 0, *, num_sequences: int | None = None,
             epochs: float | None = None, seq_len: int | None = None, text_column: str = "text",
             pretrain_column: str | None = None, mark: str | None = None, shuffle: bool = True) -> MixPlan:
    """Check the arguments of `inject` (every mistake a one-line UserError) and return the plan."""
    p = check_fraction(p)
    if num_sequences is not None and epochs is not None:
        raise UserError("give num_sequences or epochs, not both")
    if num_sequences is not None and (int(num_sequences) != num_sequences or num_sequences <= 0):
        raise UserError(f"num_sequences must be a positive integer; got {num_sequences}")
    if epochs is not None and not epochs > 0:
        raise UserError(f"epochs must be positive; got {epochs}")
    if p > 0 and pretrain is None:
        raise UserError(f"p={p} needs a pretraining dataset; pass pretrain=... (or p=0)")
    pretrain_column = pretrain_column or text_column
    plan = MixPlan(target, pretrain if p > 0 else None, p, int(seed),
                   None if num_sequences is None else int(num_sequences), epochs, seq_len,
                   text_column, pretrain_column, mark, shuffle)
    if isinstance(target, np.ndarray) or isinstance(pretrain, np.ndarray):
        _check_token_sources(plan)
    else:
        _check_row_source(target, text_column, "target", "text_column")
        if plan.pretrain is not None:
            _check_row_source(plan.pretrain, pretrain_column, "pretraining", "pretrain_column")
        if epochs is not None and epochs != int(epochs) and _length(target) is None:
            raise UserError(f"epochs={epochs} is fractional but the target dataset has no length; "
                            "give whole epochs or num_sequences")
    return plan


def _check_token_sources(plan: MixPlan) -> None:
    if not isinstance(plan.target, np.ndarray) or not (plan.pretrain is None or isinstance(plan.pretrain, np.ndarray)):
        raise UserError("target and pretrain must both be token arrays or both be datasets; "
                        "tokenize the other one or pass both as datasets")
    if plan.seq_len is None or plan.seq_len <= 0:
        raise UserError("token arrays need seq_len=... (the tokens per sequence, e.g. 128)")


def _length(source) -> int | None:
    try:
        return len(source)
    except TypeError:
        return None


def _columns(source) -> list[str] | None:
    names = getattr(source, "column_names", None)
    if names:
        return list(names)
    if isinstance(source, (list, tuple)):
        if not source:
            return None
        first = source[0]
        return None if isinstance(first, str) else list(first) if isinstance(first, dict) else []
    if hasattr(source, "__iter__"):
        first = next(iter(source), None)
        return list(first) if isinstance(first, dict) else None
    return []


def _check_row_source(source, column: str, name: str, argument: str) -> None:
    if isinstance(source, (str, bytes)) or not hasattr(source, "__iter__"):
        raise UserError(f"the {name} dataset must be a datasets.Dataset, an IterableDataset, a list of "
                        f"rows or a 1-D token array; got {type(source).__name__}")
    if _length(source) == 0:
        raise UserError(f"the {name} dataset is empty; give it at least one row")
    columns = _columns(source)
    if columns is not None and column not in columns:
        raise UserError(f"the {name} dataset has columns {columns} and no '{column}' column; set "
                        f"{argument} to the column holding its text, or rename that column to '{column}'")


# ---- generating --------------------------------------------------------------------------------

def mixed_pairs(plan: MixPlan) -> Iterator[tuple[dict, bool]]:
    """(row, injected) pairs of the mix, bounded by the plan's budget, or endless."""
    rows = _token_rows(plan) if plan.tokens else _dataset_rows(plan)
    target_budget = None if plan.epochs is None else _target_budget(plan)
    targets = 0
    for made, (row, injected) in enumerate(rows, 1):
        yield row, injected
        targets += not injected
        # Ending on the budget's last row keeps floor(p k) exact for every prefix k of the set.
        if made == plan.num_sequences or (target_budget is not None and targets >= target_budget):
            return


def mixed_rows(plan: MixPlan) -> Iterator[dict]:
    """The rows of `inject`: `mixed_pairs` with the `mark` column added when asked for."""
    for row, injected in mixed_pairs(plan):
        if plan.mark:
            row[plan.mark] = bool(injected)
        yield row


def _target_budget(plan: MixPlan) -> int:
    if plan.tokens:
        per_pass = (int(plan.target.shape[0]) - 1) // plan.seq_len
    else:
        per_pass = _length(plan.target)
        if per_pass is None:  # a stream of unknown length: whole passes, counted as they end
            return math.inf
    return max(1, math.ceil(plan.epochs * per_pass - 1e-9))


def _token_rows(plan: MixPlan) -> Iterator[tuple[dict, bool]]:
    stream = InjectionStream(plan.target, plan.pretrain, plan.p, plan.seq_len, _CHUNK, plan.seed)
    while True:
        batch = stream.next_batch()
        for window, injected in zip(batch.tokens, batch.is_pretrain, strict=True):
            ids = window.tolist()
            yield {"input_ids": ids, "labels": list(ids)}, bool(injected)


def _passes(source, seed: int, tag: int, shuffle: bool, column: str, out_column: str,
            limit_passes: float | None) -> Iterator[dict]:
    """Rows of `source` pass after pass (a new seeded order each pass when it can be indexed)."""
    n = _length(source)
    indexable = n is not None and hasattr(source, "__getitem__")
    epoch = 0
    while limit_passes is None or epoch < limit_passes:
        if indexable:
            order = np.random.default_rng([seed, tag, epoch]).permutation(n) if shuffle else range(n)
            rows: Iterable = (source[int(i)] for i in order)
        else:
            if hasattr(source, "set_epoch"):
                source.set_epoch(epoch)
            rows = iter(source)
        empty = True
        for row in rows:
            empty = False
            yield {out_column: _value(row, column)}
        if empty:
            raise UserError("a dataset given to inject yielded no rows; give it at least one row")
        epoch += 1


def _value(row, column: str):
    if isinstance(row, str):
        return row
    if column not in row:
        raise UserError(f"a row has columns {sorted(row)} and no '{column}' column; give every row a "
                        f"'{column}' field or pass the column's name")
    return row[column]


def _dataset_rows(plan: MixPlan) -> Iterator[tuple[dict, bool]]:
    whole = None if plan.epochs is None or _length(plan.target) is not None else math.ceil(plan.epochs)
    target = _passes(plan.target, plan.seed, _TARGET_TAG, plan.shuffle, plan.text_column,
                     plan.text_column, whole)
    pretrain = None
    if plan.pretrain is not None:
        pretrain = _passes(plan.pretrain, plan.seed, _PRETRAIN_TAG, True, plan.pretrain_column,
                           plan.text_column, None)
    j = 0
    while True:
        injected = bool(injected_count(plan.p, j + 1) > injected_count(plan.p, j))
        source = pretrain if injected else target
        row = next(source, None)
        if row is None:  # the target's whole passes are used up
            return
        yield row, injected
        j += 1


# ---- the datasets ------------------------------------------------------------------------------

def inject(target, pretrain, p: float, seed: int = 0, *, num_sequences: int | None = None,
           epochs: float | None = None, seq_len: int | None = None, text_column: str = "text",
           pretrain_column: str | None = None, mark: str | None = None, shuffle: bool = True):
    """A `datasets.IterableDataset` of the target with a fraction p of pretraining rows, exactly.

    Endless unless `num_sequences` (rows in all) or `epochs` (target passes) is given; with an
    endless one, bound the run by the trainer's `max_steps`. `mark="injected"` adds a boolean column
    (True for a pretraining row). See the module docstring for the sources it takes."""
    datasets = require_datasets()
    plan = plan_mix(target, pretrain, p, seed, num_sequences=num_sequences, epochs=epochs, seq_len=seq_len,
                    text_column=text_column, pretrain_column=pretrain_column, mark=mark, shuffle=shuffle)
    return datasets.IterableDataset.from_generator(_generator(plan))


def inject_dataset(target, pretrain, p: float, seed: int = 0, *, num_sequences: int | None = None,
                   epochs: float | None = None, seq_len: int | None = None, text_column: str = "text",
                   pretrain_column: str | None = None, mark: str | None = None, shuffle: bool = True,
                   cache_dir: str | None = None):
    """The same mix for a fixed budget as a map-style `datasets.Dataset` (row i is sequence i).

    A map-style dataset is shuffled by the Trainer's default sampler: the count is then exact over
    the whole set and per batch only on average; transformers >= 5 keeps the order with
    `TrainingArguments(train_sampling_strategy="sequential")` (docs/integrations.md)."""
    datasets = require_datasets()
    if num_sequences is None and epochs is None:
        raise UserError("inject_dataset needs a budget: num_sequences=... or epochs=...")
    plan = plan_mix(target, pretrain, p, seed, num_sequences=num_sequences, epochs=epochs, seq_len=seq_len,
                    text_column=text_column, pretrain_column=pretrain_column, mark=mark, shuffle=shuffle)
    # A fresh fingerprint: datasets would otherwise hash the generator (and the sources inside it)
    # to name its cache, and could hand back a stale cache for equal-looking closures.
    return datasets.Dataset.from_generator(_generator(plan), cache_dir=cache_dir,
                                           fingerprint=uuid.uuid4().hex)


def _generator(plan: MixPlan):
    def generate():
        yield from mixed_rows(plan)

    return generate
