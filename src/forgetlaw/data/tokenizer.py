"""Byte-level BPE (Hugging Face `tokenizers`), trained on the generic train split, or the user's own.

Saved with `PreTrainedTokenizerFast.save_pretrained`, so `transformers.AutoTokenizer` loads it.
Encoding goes through the Rust `encode_batch`, which uses all cores (RAYON_NUM_THREADS to limit).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from forgetlaw.data.documents import EOS_TEXT
from forgetlaw.errors import UserError

ENCODE_BATCH = 512  # documents per encode_batch call: large enough to keep all cores busy


@dataclass
class LoadedTokenizer:
    backend: object  # tokenizers.Tokenizer
    eos_id: int
    vocab_size: int


def train_bpe(texts: Iterable[str], vocab_size: int, out_dir: Path) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=[EOS_TEXT], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), min_frequency=2)
    tok.train_from_iterator(texts, trainer=trainer)
    _save(PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS_TEXT, bos_token=EOS_TEXT,
                                  unk_token=EOS_TEXT, pad_token=EOS_TEXT), out_dir)
    return out_dir


def copy_user_tokenizer(source: Path, out_dir: Path) -> Path:
    """A user's HF tokenizer folder, re-saved into the build (so the build is self-contained)."""
    from transformers import AutoTokenizer

    source = Path(source).expanduser()
    if not source.is_dir():
        raise UserError(f"tokenizer: {source} is not a folder; give a Hugging Face tokenizer folder "
                        "(tokenizer.json + tokenizer_config.json), or leave it out to train BPE")
    try:
        hf = AutoTokenizer.from_pretrained(str(source))
    except (OSError, ValueError) as exc:
        raise UserError(f"tokenizer: {source} does not load with AutoTokenizer ({exc}); "
                        "give a tokenizer saved with save_pretrained") from None
    if not getattr(hf, "is_fast", False):
        raise UserError(f"tokenizer: {source} is a slow (Python) tokenizer; give a fast one "
                        "(with tokenizer.json)")
    if _eos_id(hf) is None:
        raise UserError(f"tokenizer: {source} has no eos_token or sep_token to mark document "
                        "boundaries; set eos_token in its tokenizer_config.json")
    _save(hf, out_dir)
    return out_dir


def _save(hf, out_dir: Path) -> None:
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    hf.save_pretrained(str(tmp))
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)


def _eos_id(hf) -> int | None:
    for candidate in (hf.eos_token_id, hf.sep_token_id):
        if candidate is not None:
            return int(candidate)
    return None


def load(out_dir: Path) -> LoadedTokenizer:
    from transformers import PreTrainedTokenizerFast

    hf = PreTrainedTokenizerFast.from_pretrained(str(out_dir))
    return LoadedTokenizer(backend=hf.backend_tokenizer, eos_id=_eos_id(hf), vocab_size=len(hf))


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.uint32)


def encode_to_file(tok: LoadedTokenizer, documents: Sequence[str], path: Path) -> tuple[int, np.ndarray]:
    """Write doc0 EOS doc1 EOS ... as one flat array; return token count and document start offsets."""
    dtype = token_dtype(tok.vocab_size)
    encode = getattr(tok.backend, "encode_batch_fast", tok.backend.encode_batch)
    starts = np.empty(len(documents), dtype=np.int64)
    total = 0
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as out:
        for begin in range(0, len(documents), ENCODE_BATCH):
            batch = documents[begin:begin + ENCODE_BATCH]
            encodings = encode(list(batch), add_special_tokens=False)
            for i, enc in enumerate(encodings):
                ids = np.asarray(enc.ids, dtype=dtype)
                starts[begin + i] = total
                out.write(ids.tobytes())
                out.write(np.asarray([tok.eos_id], dtype=dtype).tobytes())
                total += len(ids) + 1
    os.replace(tmp, path)
    return total, starts
