"""Documents: normalize, deduplicate (exact), cap by bytes, and split train/val by document.

Every decision is a pure function of (seed, text) through a keyed hash, so two builds give the same
documents in the same order on any machine, and a document lands in train or val regardless of what
else is in the corpus (adding a source does not move existing documents across the split), except
that a very small corpus is given at least a few validation documents.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

EOS_TEXT = "<|endoftext|>"
MIN_VAL_DOCUMENTS = 8
MIN_CHARS = 16  # shorter fragments (empty fortunes, stub pages) carry no signal


def normalize(text: str) -> str:
    # The separator token must only ever come from document boundaries.
    return text.replace("\r\n", "\n").replace("\r", "\n").replace(EOS_TEXT, "").strip()


def key(text: str, seed: int, salt: str) -> int:
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8,
                             key=f"{salt}:{seed}".encode()[:64]).digest()
    return int.from_bytes(digest, "big")


def clean(documents: Iterable[str], seen: set[bytes] | None = None) -> tuple[list[str], int]:
    """Normalized, non-trivial, exactly deduplicated documents (first occurrence kept) and the drop count.

    `seen` is shared across the sources of a mix so that a text in two sources is kept once.
    """
    seen = set() if seen is None else seen
    kept, dropped = [], 0
    for raw in documents:
        text = normalize(raw)
        digest = hashlib.sha1(text.encode("utf-8", "surrogatepass")).digest()
        if len(text) < MIN_CHARS or digest in seen:
            dropped += 1
            continue
        seen.add(digest)
        kept.append(text)
    return kept, dropped


def in_seeded_order(documents: list[str], seed: int) -> list[str]:
    """The fixed document order: by keyed hash, so that the first D tokens sample the whole corpus."""
    return sorted(documents, key=lambda t: key(t, seed, "order"))


def cap_bytes(documents: list[str], max_bytes: int | None, seed: int) -> list[str]:
    """A deterministic random subset of at most `max_bytes` of UTF-8 (at least one document)."""
    ordered = in_seeded_order(documents, seed)
    if max_bytes is None:
        return ordered
    taken, total = [], 0
    for text in ordered:
        size = len(text.encode("utf-8", "surrogatepass"))
        if taken and total + size > max_bytes:
            continue  # a smaller later document may still fit
        taken.append(text)
        total += size
        if total >= max_bytes:
            break
    return taken


def split(documents: list[str], val_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Train and val by document; each in the fixed order. Both non-empty when there are >= 2 docs."""
    scale = float(1 << 64)
    keyed = [(key(t, seed, "split") / scale, t) for t in documents]
    keyed.sort(key=lambda kt: kt[0])
    n_val = sum(1 for k, _ in keyed if k < val_fraction)
    # Small corpora (a capped domain of a hundred long files) would get one or two validation
    # documents, too few for a stable loss: take at least MIN_VAL_DOCUMENTS, never over a quarter.
    n_val = max(n_val, min(MIN_VAL_DOCUMENTS, len(keyed) // 4), 1 if len(keyed) >= 2 else 0)
    n_val = min(n_val, max(len(keyed) - 1, 0))  # and never every document: train keeps one
    val = [t for _, t in keyed[:n_val]]
    train = [t for _, t in keyed[n_val:]]
    return in_seeded_order(train, seed), in_seeded_order(val, seed)
