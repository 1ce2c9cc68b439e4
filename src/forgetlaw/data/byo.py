"""Bring your own data: local text files, folders, JSONL, or Hugging Face `datasets`.

A spec is one of
  * a text file: one document per form-feed-separated part, else per blank-line-separated block;
  * a folder: every text file below it is one document (.jsonl files inside are read as JSONL);
  * a .jsonl / .jsonl.gz file: one document per line, from the `text` field;
  * a folder written by `datasets.Dataset.save_to_disk` (or a DatasetDict: its `train` split);
  * ``hf:NAME[:CONFIG][@SPLIT]``: a hub dataset, streamed (needs the network and `datasets`).
"""

from __future__ import annotations

import gzip
import itertools
import json
import re
from collections.abc import Iterator
from pathlib import Path

from forgetlaw.errors import UserError

TEXT_FIELD = "text"
TEXT_SUFFIXES = {".txt", ".md", ".rst", ".py", ".c", ".h", ".tex", ".html", ".htm", ".xml", ".json",
                 ".yaml", ".yml", ".csv", ".tsv", ".js", ".ts", ".java", ".go", ".rs", ".sh", ""}


def describe(spec: str | Path) -> dict:
    """What the manifest records about a user source."""
    text = str(spec)
    if text.startswith("hf:"):
        return {"manager": "hf-hub", "dataset": text[3:]}
    return {"manager": "local", "path": str(Path(text).expanduser().resolve())}


def documents(spec: str | Path, field: str, max_bytes: int | None = None) -> Iterator[str]:
    text = str(spec)
    if text.startswith("hf:"):
        yield from _hub(text[3:], field, max_bytes)
        return
    path = Path(text).expanduser()
    if not path.exists():
        raise UserError(f"source_dirs['{field}']: {path} does not exist; give a file, a folder, a "
                        "JSONL file, a save_to_disk folder or hf:NAME")
    if path.is_dir() and _is_saved_dataset(path):
        yield from _saved_dataset(path, field)
    elif path.is_dir():
        for file in sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")):
            if file.name.endswith((".jsonl", ".jsonl.gz")):
                yield from _jsonl(file, field)
            elif file.suffix.lower() in TEXT_SUFFIXES:
                data = file.read_bytes()
                if b"\0" not in data[:4096]:  # skip binaries
                    yield data.decode("utf-8", errors="replace")
    elif path.name.endswith((".jsonl", ".jsonl.gz")):
        yield from _jsonl(path, field)
    else:
        yield from _split_text(path.read_text(encoding="utf-8", errors="replace"))


def _split_text(text: str) -> Iterator[str]:
    parts = text.split("\f") if "\f" in text else re.split(r"\n\s*\n", text)
    yield from (p for p in parts if p.strip())


def _jsonl(path: Path, corpus: str) -> Iterator[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                raise UserError(f"source_dirs['{corpus}']: {path} line {number} is not JSON; "
                                f"give one JSON object with a '{TEXT_FIELD}' field per line") from None
            if not isinstance(record, dict) or not isinstance(record.get(TEXT_FIELD), str):
                raise UserError(f"source_dirs['{corpus}']: {path} line {number} has no string "
                                f"'{TEXT_FIELD}' field; add it")
            yield record[TEXT_FIELD]


def _is_saved_dataset(path: Path) -> bool:
    return any((path / name).exists() for name in ("dataset_info.json", "state.json", "dataset_dict.json"))


def _require_datasets(corpus: str):
    try:
        import datasets
    except ImportError:
        raise UserError(f"source_dirs['{corpus}']: reading a Hugging Face dataset needs the "
                        "'datasets' package; pip install 'forgetlaw[hf]'") from None
    return datasets


def _text_column(column_names: list[str], corpus: str, where: str) -> str:
    if TEXT_FIELD in column_names:
        return TEXT_FIELD
    if "content" in column_names:  # RedPajama-V2's raw_content / the Stack's content
        return "content"
    if "raw_content" in column_names:
        return "raw_content"
    raise UserError(f"source_dirs['{corpus}']: {where} has columns {column_names} and no "
                    f"'{TEXT_FIELD}' column; rename the text column to '{TEXT_FIELD}'")


def _saved_dataset(path: Path, corpus: str) -> Iterator[str]:
    datasets = _require_datasets(corpus)
    loaded = datasets.load_from_disk(str(path))
    if isinstance(loaded, datasets.DatasetDict):
        if "train" not in loaded:
            raise UserError(f"source_dirs['{corpus}']: {path} has splits {list(loaded)} and no "
                            "'train'; save the split you want with save_to_disk")
        loaded = loaded["train"]
    column = _text_column(loaded.column_names, corpus, str(path))
    for start in range(0, len(loaded), 4096):
        yield from loaded[start:start + 4096][column]


def _hub(name: str, corpus: str, max_bytes: int | None) -> Iterator[str]:
    datasets = _require_datasets(corpus)
    split = "train"
    if "@" in name:
        name, split = name.rsplit("@", 1)
    config = None
    if ":" in name:
        name, config = name.split(":", 1)
    stream = datasets.load_dataset(name, config, split=split, streaming=True)
    budget = max_bytes if max_bytes is not None else float("inf")
    records = iter(stream)
    first = next(records, None)
    if first is None:
        return
    column = _text_column(list(first), corpus, f"hf:{name}")
    produced = 0
    for record in itertools.chain([first], records):
        text = record[column]
        produced += len(text.encode())
        yield text
        if produced >= budget:
            break
