"""The two data mechanisms the paper is about, as views over 1-D token arrays.

- `limit_unique_tokens`: a target domain limited to D unique tokens (the first D of its train split,
  so the D = 1M set contains the D = 300k set).
- `InjectionStream`: the finetuning stream in which a fraction p of the sequences comes from the
  pretraining corpus, exactly and not only in expectation.

Plus the two plain readers the trainers use: `validation_windows` (fixed evaluation windows) and
`PretrainStream` (pretraining batches as a pure function of (seed, step), so a run resumes exactly).

Everything here is numpy indexing on (memmapped) arrays: no Python work per token. The functions know
nothing of how the tokens were built; they take any 1-D integer array.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from forgetlaw.errors import UserError

# Tags that keep the random streams of the different samplers apart for the same user seed.
_PRETRAIN_TAG = 0
_INJECT_TAG = 1
_TARGET_TAG = 2


def _check_tokens(tokens: np.ndarray, name: str) -> None:
    if not isinstance(tokens, np.ndarray) or tokens.ndim != 1:
        raise UserError(f"{name} must be a 1-D numpy token array; got {type(tokens).__name__}")
    if not np.issubdtype(tokens.dtype, np.integer):
        raise UserError(f"{name} must hold integer token ids; got dtype {tokens.dtype}")


def limit_unique_tokens(train_tokens: np.ndarray, unique_tokens: int, domain: str = "") -> np.ndarray:
    """The first `unique_tokens` tokens of a domain's train split (fixed document order, nested in D).

    A view, not a copy: a memmap stays a memmap.
    """
    _check_tokens(train_tokens, "train_tokens")
    label = f"domain '{domain}'" if domain else "the domain"
    if int(unique_tokens) != unique_tokens or unique_tokens <= 0:
        raise UserError(f"unique_tokens must be a positive integer; got {unique_tokens}")
    available = int(train_tokens.shape[0])
    if unique_tokens > available:
        raise UserError(
            f"unique_tokens={int(unique_tokens):,} is more than {label} holds ({available:,} train "
            f"tokens); ask for at most {available:,} or build the domain with more text"
        )
    return train_tokens[: int(unique_tokens)]


def validation_windows(tokens: np.ndarray, seq_len: int, max_tokens: int) -> np.ndarray:
    """Fixed evaluation windows: [n, seq_len + 1] int64, evenly spaced and non-overlapping.

    n = max_tokens // seq_len (predicted tokens per window is seq_len), capped by what the split holds.
    The same arrays in give the same windows out, so every evaluation of a run uses the same set.
    """
    _check_tokens(tokens, "validation tokens")
    if seq_len <= 0:
        raise UserError(f"seq_len must be positive; got {seq_len}")
    width = seq_len + 1
    available = int(tokens.shape[0]) // width
    if available == 0:
        raise UserError(
            f"the validation split holds {tokens.shape[0]:,} tokens, fewer than one window of "
            f"seq_len + 1 = {width}; use a shorter seq_len or more validation text"
        )
    wanted = max(1, int(max_tokens) // seq_len)
    n = min(wanted, available)
    # Spacing (len - width) / (n - 1) >= width when n * width <= len, so floored starts never overlap.
    starts = np.floor(np.linspace(0, tokens.shape[0] - width, n)).astype(np.int64)
    return _gather(tokens, starts, width)


def _gather(tokens: np.ndarray, starts: np.ndarray, width: int) -> np.ndarray:
    # Fancy indexing on a memmap reads only the touched pages.
    index = starts[:, None] + np.arange(width, dtype=np.int64)[None, :]
    return np.asarray(tokens[index], dtype=np.int64)


class _EpochWindows:
    """Windows of seq_len + 1 tokens (sharing one boundary token) over a token array, visited in
    passes ("epochs"): each pass draws a random phase and a random order of its windows, so a pass
    never repeats a window and different passes cut the text at different places.

    The window number of the g-th sequence ever drawn is a pure function of (seed, tag, g).
    """

    def __init__(self, tokens: np.ndarray, seq_len: int, seed: int, tag: int, name: str):
        self.tokens = tokens
        self.seq_len = seq_len
        self.seed = seed
        self.tag = tag
        # A fixed number of windows per pass keeps epochs exact; the slack (< seq_len tokens) is the
        # room the random phase moves in.
        self.per_epoch = (int(tokens.shape[0]) - 1) // seq_len
        if self.per_epoch <= 0:
            raise UserError(
                f"{name} holds {tokens.shape[0]:,} tokens, fewer than one sequence of seq_len + 1 = "
                f"{seq_len + 1}; use more tokens or a shorter seq_len"
            )
        self.slack = int(tokens.shape[0]) - 1 - self.per_epoch * seq_len
        self._cached_epoch = -1
        self._cached_starts = np.empty(0, dtype=np.int64)

    def _epoch_starts(self, epoch: int) -> np.ndarray:
        if epoch != self._cached_epoch:
            rng = np.random.default_rng([self.seed, self.tag, epoch])
            phase = int(rng.integers(0, self.slack + 1))
            order = rng.permutation(self.per_epoch).astype(np.int64)
            self._cached_starts = phase + order * self.seq_len
            self._cached_epoch = epoch
        return self._cached_starts

    def take(self, indices: np.ndarray) -> np.ndarray:
        """Sequences number `indices` (global draw counts) as [len(indices), seq_len + 1] int64."""
        indices = np.asarray(indices, dtype=np.int64)
        starts = np.empty(indices.shape[0], dtype=np.int64)
        epochs = indices // self.per_epoch
        for epoch in np.unique(epochs):  # at most a few epochs per batch
            mask = epochs == epoch
            starts[mask] = self._epoch_starts(int(epoch))[indices[mask] % self.per_epoch]
        return _gather(self.tokens, starts, self.seq_len + 1)


class PretrainStream:
    """Pretraining batches [batch_size, seq_len + 1]; batch(step) is a pure function of (seed, step).

    Windows are drawn without repetition until the corpus is exhausted, then a new pass starts.
    """

    def __init__(self, tokens: np.ndarray, seq_len: int, batch_size: int, seed: int = 0):
        _check_tokens(tokens, "pretraining tokens")
        if batch_size <= 0:
            raise UserError(f"batch_size must be positive; got {batch_size}")
        self.seq_len = seq_len
        self.batch_size = batch_size
        self.seed = seed
        self._windows = _EpochWindows(tokens, seq_len, seed, _PRETRAIN_TAG, "the pretraining corpus")

    @property
    def windows_per_epoch(self) -> int:
        return self._windows.per_epoch

    def batch(self, step: int) -> np.ndarray:
        first = int(step) * self.batch_size
        return self._windows.take(np.arange(first, first + self.batch_size))


def injected_count(injection_fraction: float, k) -> np.ndarray:
    """Pretraining sequences among the first k of an injection stream: floor(p * k), the rule of
    `InjectionStream` (sequence j is injected exactly when the count grows from j to j + 1). Public so
    that other mixers (forgetlaw.integrations.datasets) follow the same rule."""
    # The tiny epsilon keeps p * k that is an integer in exact arithmetic (0.05 * 20) from
    # flooring one below it through rounding.
    return np.floor(injection_fraction * np.asarray(k, dtype=np.float64) + 1e-9).astype(np.int64)


@dataclass
class Batch:
    tokens: np.ndarray  # [B, seq_len + 1] int64
    is_pretrain: np.ndarray  # [B] bool: the sequence was injected from the pretraining corpus


class InjectionStream:
    """The finetuning stream: target-domain sequences with a fraction p of pretraining sequences.

    Sequence number j (counting from 0 over the whole run) is a pretraining sequence exactly when
    floor(p * (j + 1)) > floor(p * j). So after k sequences exactly floor(p * k) were injected: the
    count is within 1 of p * k at every k, not only in expectation, and spread evenly over the run.

    Target sequences are epochs over the D tokens cut into seq_len + 1 windows at a random phase and
    reshuffled every pass; injected sequences are pretraining windows drawn without repetition as long
    as the corpus allows. `epochs` counts target sequences only. Deterministic given the seed.
    """

    def __init__(
        self,
        domain_tokens: np.ndarray,
        pretrain_tokens: np.ndarray | None,
        injection_fraction: float,
        seq_len: int,
        batch_size: int,
        seed: int = 0,
    ):
        _check_tokens(domain_tokens, "domain_tokens")
        if not 0.0 <= injection_fraction < 1.0:
            raise UserError(
                f"injection_fraction must be in [0, 1); got {injection_fraction} (use e.g. 0.05 for 5%)"
            )
        if batch_size <= 0:
            raise UserError(f"batch_size must be positive; got {batch_size}")
        self.injection_fraction = float(injection_fraction)
        self.seq_len = seq_len
        self.batch_size = batch_size
        self.seed = seed
        self._target = _EpochWindows(domain_tokens, seq_len, seed, _TARGET_TAG, "the target domain (D)")
        self._pretrain: _EpochWindows | None = None
        if self.injection_fraction > 0:
            if pretrain_tokens is None:
                raise UserError("injection_fraction > 0 needs pretrain_tokens; pass the pretraining train split")
            _check_tokens(pretrain_tokens, "pretrain_tokens")
            self._pretrain = _EpochWindows(
                pretrain_tokens, seq_len, seed, _INJECT_TAG, "the pretraining corpus"
            )
        self.n_pretrain = 0
        self.n_target = 0

    @property
    def target_windows_per_epoch(self) -> int:
        return self._target.per_epoch

    @property
    def epochs(self) -> float:
        """Target-domain epochs consumed so far (injected sequences do not count)."""
        return self.n_target / self._target.per_epoch

    @property
    def steps_per_epoch(self) -> float:
        """Average optimizer steps per target epoch at this batch size and injection fraction."""
        return self._target.per_epoch / (self.batch_size * (1.0 - self.injection_fraction))

    def _injected_so_far(self, k: np.ndarray) -> np.ndarray:
        return injected_count(self.injection_fraction, k)

    def next_batch(self) -> Batch:
        first = self.n_pretrain + self.n_target
        j = np.arange(first, first + self.batch_size, dtype=np.int64)
        is_pretrain = self._injected_so_far(j + 1) > self._injected_so_far(j)
        n_inject = int(is_pretrain.sum())
        tokens = np.empty((self.batch_size, self.seq_len + 1), dtype=np.int64)
        if n_inject:
            assert self._pretrain is not None
            tokens[is_pretrain] = self._pretrain.take(np.arange(self.n_pretrain, self.n_pretrain + n_inject))
        n_target = self.batch_size - n_inject
        if n_target:
            tokens[~is_pretrain] = self._target.take(np.arange(self.n_target, self.n_target + n_target))
        self.n_pretrain += n_inject
        self.n_target += n_target
        return Batch(tokens=tokens, is_pretrain=is_pretrain)
