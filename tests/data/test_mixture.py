"""D-limited views, fixed validation windows and the exact injection stream."""

from __future__ import annotations

import numpy as np
import pytest

from forgetlaw.data.mixture import (
    InjectionStream,
    PretrainStream,
    limit_unique_tokens,
    validation_windows,
)
from forgetlaw.errors import UserError

SEQ = 16


def _domain(n: int = 5_000) -> np.ndarray:
    # Target tokens are their own positions (< 10,000), pretraining tokens 10,000 + position: a
    # window's origin and place are visible in its ids.
    return np.arange(n, dtype=np.uint16)


def _pretrain(n: int = 20_000) -> np.ndarray:
    return (10_000 + np.arange(n)).astype(np.uint16)


def test_limit_is_nested_prefix_and_a_view(tmp_path):
    path = tmp_path / "train.bin"
    _domain().tofile(path)
    tokens = np.memmap(path, dtype=np.uint16, mode="r")
    small, large = limit_unique_tokens(tokens, 300), limit_unique_tokens(tokens, 1_000)
    assert len(small) == 300 and len(large) == 1_000
    np.testing.assert_array_equal(large[:300], small)
    assert isinstance(large, np.memmap)


def test_limit_too_many_names_both_numbers():
    with pytest.raises(UserError) as err:
        limit_unique_tokens(_domain(5_000), 6_000, domain="code")
    message = str(err.value)
    assert "6,000" in message and "5,000" in message and "code" in message and "\n" not in message
    with pytest.raises(UserError, match="unique_tokens"):
        limit_unique_tokens(_domain(), 0)


def test_validation_windows_fixed_spaced_non_overlapping():
    tokens = np.arange(10_000, dtype=np.uint16)
    windows = validation_windows(tokens, SEQ, max_tokens=SEQ * 20)
    assert windows.shape == (20, SEQ + 1) and windows.dtype == np.int64
    starts = windows[:, 0]
    assert np.all(np.diff(starts) >= SEQ + 1)  # no overlap
    assert starts[0] == 0 and windows[-1, -1] == len(tokens) - 1  # spread over the whole split
    np.testing.assert_array_equal(windows, validation_windows(tokens, SEQ, max_tokens=SEQ * 20))
    # capped by what the split holds
    assert validation_windows(tokens[:100], SEQ, 10_000).shape[0] == 100 // (SEQ + 1)
    with pytest.raises(UserError, match="seq_len"):
        validation_windows(tokens[:10], SEQ, 100)


def test_pretrain_stream_pure_in_step_and_no_repeats_within_a_pass():
    tokens = np.arange(4_000, dtype=np.uint16)
    stream, again = PretrainStream(tokens, SEQ, 8, seed=3), PretrainStream(tokens, SEQ, 8, seed=3)
    np.testing.assert_array_equal(stream.batch(5), again.batch(5))
    np.testing.assert_array_equal(stream.batch(7), PretrainStream(tokens, SEQ, 8, seed=3).batch(7))
    assert not np.array_equal(stream.batch(5), PretrainStream(tokens, SEQ, 8, seed=4).batch(5))
    per_epoch = stream.windows_per_epoch
    n_batches = per_epoch // 8
    starts = np.concatenate([stream.batch(s)[:, 0] for s in range(n_batches)])
    assert len(np.unique(starts)) == len(starts)
    # windows are contiguous text
    batch = stream.batch(1)
    np.testing.assert_array_equal(np.diff(batch, axis=1), 1)


@pytest.mark.parametrize("p", [0.0, 0.01, 0.05, 0.1, 0.2, 1 / 3, 0.5, 0.9])
def test_injection_count_exact_at_every_sequence(p):
    stream = InjectionStream(_domain(), _pretrain(), p, SEQ, batch_size=7, seed=1)
    flags = []
    for _ in range(60):
        batch = stream.next_batch()
        # the flag tells the truth about where each sequence came from
        np.testing.assert_array_equal(batch.tokens[:, 0] >= 10_000, batch.is_pretrain)
        flags.append(batch.is_pretrain)
    injected = np.cumsum(np.concatenate(flags))
    k = np.arange(1, len(injected) + 1)
    assert np.all(np.abs(injected - p * k) < 1.0)
    # exactly the running floor, not merely within 1 (ceil or random rounding would fail this)
    np.testing.assert_array_equal(injected, np.floor(p * k + 1e-9))
    assert stream.n_pretrain == injected[-1] and stream.n_target == len(k) - injected[-1]


def test_p_zero_is_pure_domain_and_epochs_count_target_only():
    domain = _domain(5_000)
    stream = InjectionStream(domain, None, 0.0, SEQ, batch_size=8, seed=0)
    per_epoch = stream.target_windows_per_epoch
    assert per_epoch == (5_000 - 1) // SEQ
    seen = []
    while stream.n_target < per_epoch:
        seen.append(stream.next_batch().tokens)
    assert stream.n_pretrain == 0
    starts = np.concatenate(seen)[:per_epoch, 0]
    # one pass visits every window once, at one phase
    assert len(np.unique(starts)) == per_epoch
    assert stream.epochs == pytest.approx(stream.n_target / per_epoch)

    injected = InjectionStream(domain, _pretrain(), 0.5, SEQ, batch_size=8, seed=0)
    for _ in range(10):
        injected.next_batch()
    assert injected.epochs == pytest.approx(40 / per_epoch)


def test_injected_windows_do_not_repeat_while_corpus_allows():
    stream = InjectionStream(_domain(), _pretrain(20_000), 0.5, SEQ, batch_size=8, seed=2)
    injected = []
    for _ in range(100):
        batch = stream.next_batch()
        injected.append(batch.tokens[batch.is_pretrain])
    rows = np.concatenate(injected)
    assert len(rows) == 400
    assert len({tuple(r) for r in rows}) == 400


def test_injection_stream_is_deterministic_and_seed_sensitive():
    def draw(seed):
        stream = InjectionStream(_domain(), _pretrain(), 0.2, SEQ, batch_size=8, seed=seed)
        return np.concatenate([stream.next_batch().tokens for _ in range(20)])

    np.testing.assert_array_equal(draw(0), draw(0))
    assert not np.array_equal(draw(0), draw(1))


def test_bad_requests():
    with pytest.raises(UserError, match="injection_fraction"):
        InjectionStream(_domain(), _pretrain(), 1.0, SEQ, 8)
    with pytest.raises(UserError, match="pretrain_tokens"):
        InjectionStream(_domain(), None, 0.1, SEQ, 8)
    with pytest.raises(UserError, match="target domain"):
        InjectionStream(_domain(10), None, 0.0, SEQ, 8)
    with pytest.raises(UserError, match="1-D"):
        PretrainStream(np.zeros((4, 4), dtype=np.uint16), SEQ, 8)
