"""How far each domain is from the generic corpus: n-gram models of generic/train scored on a domain.

Token-level unigram and bigram models (add-one/interpolated smoothing) of the generic training
tokens, evaluated on each corpus's validation tokens and reported in bits per byte of text, so the
number does not depend on the tokenizer's compression. Higher = farther from pretraining.
"""

from __future__ import annotations

import numpy as np

from forgetlaw.data.store import DataStore

MAX_TOKENS = 2_000_000  # enough for stable estimates; keeps this a few seconds


def _counts(tokens: np.ndarray, vocab: int) -> tuple[np.ndarray, np.ndarray]:
    tokens = np.asarray(tokens[:MAX_TOKENS], dtype=np.int64)
    unigram = np.bincount(tokens, minlength=vocab).astype(np.float64)
    bigram = np.bincount(tokens[:-1] * vocab + tokens[1:], minlength=vocab * vocab).astype(np.float64)
    return unigram, bigram.reshape(vocab, vocab)


def ngram_distances(store: DataStore, corpora: list[str] | None = None) -> list[dict]:
    """Rows {corpus, unigram_bpb, bigram_bpb}, sorted near to far by the bigram number."""
    vocab = store.vocab_size
    unigram, bigram = _counts(store.tokens(store.pretrain_corpus, "train"), vocab)
    p_uni = (unigram + 1.0) / (unigram.sum() + vocab)
    # Interpolate the bigram with the unigram so unseen pairs keep a sensible probability.
    row_totals = bigram.sum(axis=1, keepdims=True)
    lam = row_totals / (row_totals + 50.0)
    p_bi = lam * bigram / np.maximum(row_totals, 1.0) + (1.0 - lam) * p_uni[None, :]
    rows = []
    names = corpora or [store.pretrain_corpus, *store.domains]
    for name in names:
        tokens = np.asarray(store.tokens(name, "val")[:MAX_TOKENS], dtype=np.int64)
        entry = store.manifest["corpora"][name]["splits"]["val"]
        n_bytes = entry["mb"] * 1e6 * len(tokens) / max(entry["tokens"], 1)
        uni_nats = -np.log(p_uni[tokens]).sum()
        bi_nats = -np.log(p_uni[tokens[0]]) - np.log(p_bi[tokens[:-1], tokens[1:]]).sum()
        rows.append({"corpus": name, "unigram_bpb": float(uni_nats / np.log(2) / n_bytes),
                     "bigram_bpb": float(bi_nats / np.log(2) / n_bytes)})
    return sorted(rows, key=lambda r: r["bigram_bpb"])
