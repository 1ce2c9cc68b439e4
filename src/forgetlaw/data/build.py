"""`build_data`: acquire, clean, split, tokenize and store the generic corpus and the chosen domains.

A build lives in ``<data_dir>/build-<key>/``, where the key hashes everything that changes the
tokens except the list of domains: domains are added to an existing build as they are requested,
so a demo that asks for two domains and a sweep that asks for six share the generic corpus and the
tokenizer. A second call with the same config finds everything and returns at once.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from forgetlaw.console import is_terminal, progress_bar
from forgetlaw.data import byo, documents, sources, tokenizer
from forgetlaw.data.acquire import file_lock, materialize
from forgetlaw.data.config import DataConfig
from forgetlaw.data.store import (
    PRETRAIN_CORPUS,
    SPLITS,
    DataStore,
    read_manifest,
    write_manifest,
)
from forgetlaw.errors import UserError
from forgetlaw.provenance import code_version, config_hash, file_sha256

FORMAT = 1
MB = 1_000_000
TOKENIZER_SAMPLE_MB = 20.0  # BPE is trained on this much of generic/train (a seeded sample)

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


def known_corpora(config: DataConfig) -> list[str]:
    return sorted(set(sources.DOMAINS) | {k for k in config.source_dirs if k not in sources.SOURCES})


def _check_request(config: DataConfig) -> None:
    for name in config.domains:
        if name not in sources.DOMAINS and name not in config.source_dirs:
            raise UserError(
                f"domains: unknown domain '{name}'; choose from {sorted(sources.DOMAINS)} or give "
                f"your own data with --source-dir {name}=PATH")
    for name in config.source_dirs:
        if name in sources.SOURCES and sources.SOURCES[name].kind == sources.GENERATED:
            raise UserError(f"source_dirs: '{name}' is generated, not read; to use your own text "
                            f"instead, give --source-dir math=PATH")
    # Every local path is checked before anything is built: a typo in the last one must not cost the
    # minutes of building the others first.
    for name, spec in sorted(config.source_dirs.items()):
        path = Path(str(spec)).expanduser()
        if not str(spec).startswith("hf:") and not path.exists():
            raise UserError(f"source dir {name}={spec} (--source-dir, data.source_dirs): {path} does not "
                            "exist; fix the path or leave it out (nothing was built)")
    if config.tokenizer is not None and not Path(config.tokenizer).expanduser().is_dir():
        raise UserError(f"tokenizer: {config.tokenizer} is not a folder; give a Hugging Face tokenizer "
                        "folder (save_pretrained output) or leave it out (nothing was built)")


def _fingerprint(spec: Path | str) -> str:
    """Cheap identity of local data (names, sizes, mtimes), so editing it gives a new build."""
    text = str(spec)
    if text.startswith("hf:"):
        return text
    path = Path(text).expanduser().resolve()
    if not path.exists():
        return f"missing:{path}"
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    stats = [(str(p.relative_to(path)) if p != path else p.name, p.stat().st_size, p.stat().st_mtime_ns)
             for p in files]
    return f"{path}:{config_hash(stats)}"


def build_key(config: DataConfig) -> str:
    return config_hash({
        "format": FORMAT, "vocab_size": config.vocab_size, "seed": config.seed,
        "val_fraction": config.val_fraction, "pretrain_max_mb": config.pretrain_max_mb,
        "domain_max_mb": config.domain_max_mb, "tokenizer_sample_mb": TOKENIZER_SAMPLE_MB,
        "tokenizer": _fingerprint(config.tokenizer) if config.tokenizer else None,
        "source_dirs": {k: _fingerprint(v) for k, v in sorted(config.source_dirs.items())},
    })


def build_root(config: DataConfig) -> Path:
    return config.data_dir / f"build-{build_key(config)}"


def build_data(config: DataConfig, progress: Progress | None = None, *, bar: bool = False) -> DataStore:
    """Build what is missing (generic corpus, tokenizer, requested domains) and return the store.

    bar: when stderr is a terminal, a progress bar with an ETA over the corpora to build, the
    progress messages shown as its postfix instead of going to `progress` (elsewhere: `progress`)."""
    progress = progress or _quiet
    _check_request(config)
    root = build_root(config)
    root.mkdir(parents=True, exist_ok=True)
    with file_lock(root / ".lock"):
        manifest = read_manifest(root)
        stale = stale_domains(manifest, config) if manifest is not None else []
        for name in stale:
            progress(f"{name}: its recipe's sources changed since this build made it; building it again")
        if manifest is not None and all(n in manifest["corpora"] and n not in stale for n in config.domains):
            return DataStore(root, manifest, list(config.domains))
        meter = _build_meter(config, manifest, bar)
        progress = meter.set_postfix_str if bar and is_terminal(sys.stderr) else progress
        if manifest is None:
            manifest = _build_pretrain(config, root, progress)
            write_manifest(root, manifest)
            meter.update()
        tok = tokenizer.load(root / manifest["tokenizer"]["path"])
        for name in config.domains:
            if name in manifest["corpora"] and name not in stale:
                continue
            started = time.perf_counter()
            train, val, records = collect(name, config, progress)
            manifest["corpora"][name] = _store_corpus(name, train, val, records, tok, root, progress)
            manifest["timings_s"][name] = round(time.perf_counter() - started, 2)
            write_manifest(root, manifest)  # after each domain: an interrupted build keeps its work
            meter.update()
        meter.close()
    return DataStore(root, manifest, list(config.domains))


def _build_meter(config: DataConfig, manifest: dict | None, bar: bool):
    """The bar of `build_data`: one unit per corpus still to build (the generic one first)."""
    todo = (manifest is None) + sum(manifest is None or n not in manifest["corpora"] for n in config.domains)
    return progress_bar(todo, "data build", enabled=bar and is_terminal(sys.stderr), unit="corpus")


def _made_of(artefacts: list[dict]) -> list:
    """What a source record says its documents came from: (package, version) per artefact, or the
    kind of source ("disk", "generated") for sources that are not packages."""
    out = []
    for artefact in artefacts:
        manager = artefact.get("manager")
        if manager in ("apt", "npm", "pip", "local"):
            out.append((artefact.get("package"), artefact.get("version", artefact.get("pinned_version"))))
        else:
            out.append(manager)
    return out


def _recipe_made_of(source: sources.Source) -> list:
    if source.artefacts:
        return [(a.package, a.version) for a in source.artefacts]
    return [sources.DISK if source.disk_root else "generated"]


def stale_domains(manifest: dict, config: DataConfig) -> list[str]:
    """Requested built-in domains whose stored sources are not those their recipe names now (a pin
    moved, or a source that was read from disk is now a pinned package): they are built again. The
    generic corpus is never rebuilt this way (the tokenizer is trained on it); a new build key is
    needed for that."""
    stale = []
    for name in config.domains:
        entry = manifest["corpora"].get(name)
        recipe = sources.DOMAINS.get(name)
        if entry is None or recipe is None or name in config.source_dirs:
            continue
        stored = [(r.get("name"), _made_of(r.get("artefacts", []))) for r in entry["sources"]]
        wanted = [(s, _recipe_made_of(sources.SOURCES[s])) for s, _ in recipe.mix]
        if stored != wanted:
            stale.append(name)
    return stale


def _build_pretrain(config: DataConfig, root: Path, progress: Progress) -> dict:
    started = time.perf_counter()
    train, val, records = collect(PRETRAIN_CORPUS, config, progress)
    tok_dir = root / "tokenizer"
    t0 = time.perf_counter()
    if config.tokenizer:
        progress(f"tokenizer: using {config.tokenizer}")
        tokenizer.copy_user_tokenizer(Path(config.tokenizer), tok_dir)
        kind = "user"
    else:
        sample = documents.cap_bytes(train, int(TOKENIZER_SAMPLE_MB * MB), config.seed)
        progress(f"tokenizer: training byte-level BPE, vocab {config.vocab_size}, on "
                 f"{sum(len(t) for t in sample) / MB:.1f} MB of generic/train")
        tokenizer.train_bpe(sample, config.vocab_size, tok_dir)
        kind = "bpe"
    tok_seconds = time.perf_counter() - t0
    tok = tokenizer.load(tok_dir)
    tok_files = [{"path": str(p.relative_to(root)), "bytes": p.stat().st_size, "sha256": file_sha256(p)}
                 for p in sorted(tok_dir.iterdir()) if p.is_file()]
    manifest = {
        "format": FORMAT,
        "build_key": root.name.removeprefix("build-"),
        "code_version": code_version(),
        "config": {"vocab_size": config.vocab_size, "seed": config.seed, "val_fraction": config.val_fraction,
                   "pretrain_max_mb": config.pretrain_max_mb, "domain_max_mb": config.domain_max_mb,
                   "tokenizer_sample_mb": TOKENIZER_SAMPLE_MB},
        "dtype": tokenizer.token_dtype(tok.vocab_size).name,
        "tokenizer": {
            "path": "tokenizer", "kind": kind, "vocab_size": tok.vocab_size, "eos_id": tok.eos_id,
            "trained_on": f"{PRETRAIN_CORPUS}/train" if kind == "bpe" else None,
            "sha256": next(f["sha256"] for f in tok_files if f["path"].endswith("tokenizer.json")),
            "files": tok_files,
        },
        "corpora": {},
        "timings_s": {"tokenizer_train": round(tok_seconds, 2)},
    }
    manifest["corpora"][PRETRAIN_CORPUS] = _store_corpus(PRETRAIN_CORPUS, train, val, records, tok,
                                                         root, progress)
    manifest["timings_s"][PRETRAIN_CORPUS] = round(time.perf_counter() - started, 2)
    return manifest


# ---- collecting documents ----------------------------------------------------------------------

def collect(name: str, config: DataConfig, progress: Progress) -> tuple[list[str], list[str], list[dict]]:
    """Train and val documents of one corpus and the provenance records of its sources."""
    cap_mb = config.pretrain_max_mb if name == PRETRAIN_CORPUS else config.domain_max_mb
    if name in config.source_dirs and name not in sources.SOURCES:  # the user's own corpus
        spec = config.source_dirs[name]
        progress(f"{name}: reading {spec}")
        max_bytes = int(cap_mb * MB) if cap_mb else None
        docs, dropped = documents.clean(byo.documents(spec, name, max_bytes))
        docs = documents.cap_bytes(docs, max_bytes, config.seed)
        records = [{"name": name, **byo.describe(spec), "documents": len(docs), "dropped": dropped,
                    "mb": round(_mb(docs), 3), "text_sha256": _text_sha(docs)}]
    else:
        recipe = sources.corpus(name)
        assert recipe is not None, name
        total = sum(mb for _, mb in recipe.mix)
        scale = min(1.0, cap_mb / total) if cap_mb else 1.0
        seen: set[bytes] = set()
        docs, records = [], []
        for source_name, budget_mb in recipe.mix:
            source = sources.SOURCES[source_name]
            max_bytes = int(budget_mb * scale * MB)
            t0 = time.perf_counter()
            raw, artefacts = source_documents(source, name, config, max_bytes, progress)
            kept, dropped = documents.clean(raw, seen)
            kept = documents.cap_bytes(kept, max_bytes, config.seed)
            progress(f"{name}: {source_name}: {len(kept)} documents, {_mb(kept):.2f} MB "
                     f"({time.perf_counter() - t0:.1f} s)")
            records.append({"name": source_name, "description": source.description,
                            "licence": source.licence, "kind": source.kind, "artefacts": artefacts,
                            "budget_mb": round(budget_mb * scale, 3), "documents": len(kept),
                            "dropped": dropped, "mb": round(_mb(kept), 3), "text_sha256": _text_sha(kept)})
            docs.extend(kept)
    if len(docs) < 2:
        raise UserError(f"corpus '{name}' has {len(docs)} usable document(s); it needs at least 2 "
                        "(one for train, one for val): give more text or a larger cap")
    train, val = documents.split(docs, config.val_fraction, config.seed)
    return train, val, records


def source_documents(source: sources.Source, corpus: str, config: DataConfig, max_bytes: int,
                     progress: Progress):
    """Documents of one built-in source (downloaded, on disk, or generated) and its artefact records."""
    override = config.source_dirs.get(source.name)
    users = [c.name for c in [sources.GENERIC, *sources.DOMAINS.values()]
             if any(s == source.name for s, _ in c.mix)]
    leave_out = ("it is part of the generic corpus, so give it locally"
                 if corpus == PRETRAIN_CORPUS else f"or leave the domain '{corpus}' out")
    way_around = (f"pass --source-dir {source.name}=PATH (the package file or its unpacked folder) "
                  f"{leave_out} (used by: {', '.join(users)})")
    if source.kind == sources.GENERATED:
        return sources.generated_documents(source, config.seed, max_bytes), [
            {"manager": "generated", "generator": f"forgetlaw.data.mathgen (seed {config.seed})"}]
    if source.kind == sources.DISK:
        root = Path(override).expanduser() if override else source.disk_root()
        if not root.exists():
            raise UserError(f"source '{source.name}': {root} does not exist on this machine; "
                            f"{way_around}")
        return source.parse([root]), [{"manager": "disk", "path": str(root)}]
    roots, records = [], []
    raw_dir = config.downloads_dir
    for artefact in source.artefacts:
        root, record = materialize(artefact, raw_dir, source.name, way_around,
                                   Path(override) if override else None, progress)
        roots.append(root)
        records.append(record)
    return source.parse(roots), records


def _mb(docs: list[str]) -> float:
    return sum(len(t.encode("utf-8", "surrogatepass")) for t in docs) / MB


def _text_sha(docs: list[str]) -> str:
    import hashlib

    digest = hashlib.sha256()
    for text in docs:
        digest.update(text.encode("utf-8", "surrogatepass"))
        digest.update(b"\0")
    return digest.hexdigest()


# ---- tokenizing and storing --------------------------------------------------------------------

def _store_corpus(name: str, train: list[str], val: list[str], records: list[dict],
                  tok: tokenizer.LoadedTokenizer, root: Path, progress: Progress) -> dict:
    folder = root / "corpora" / name
    shutil.rmtree(folder, ignore_errors=True)  # leftovers of an interrupted build
    folder.mkdir(parents=True)
    stands_in = sources.corpus(name).stands_in_for if sources.corpus(name) else "user data"
    entry = {"kind": "pretrain" if name == PRETRAIN_CORPUS else "domain", "stands_in_for": stands_in,
             "sources": records, "splits": {}}
    for split, docs in zip(SPLITS, (train, val), strict=True):
        t0 = time.perf_counter()
        path = folder / f"{split}.bin"
        n_tokens, starts = tokenizer.encode_to_file(tok, docs, path)
        starts_path = folder / f"{split}.starts.npy"
        np.save(starts_path, starts)
        seconds = time.perf_counter() - t0
        mb = _mb(docs)
        progress(f"{name}/{split}: {len(docs)} documents, {mb:.2f} MB -> {n_tokens} tokens "
                 f"({seconds:.1f} s, {mb / max(seconds, 1e-9):.1f} MB/s)")
        entry["splits"][split] = {
            "documents": len(docs), "mb": round(mb, 4), "tokens": int(n_tokens),
            "bytes_per_token": round(mb * MB / max(n_tokens, 1), 4),
            "file": str(path.relative_to(root)), "bytes": path.stat().st_size, "sha256": file_sha256(path),
            "starts_file": str(starts_path.relative_to(root)), "starts_bytes": starts_path.stat().st_size,
            "starts_sha256": file_sha256(starts_path), "text_sha256": _text_sha(docs),
        }
    return entry


def default_threads() -> None:
    """Let the Rust tokenizer use every core unless the user said otherwise."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
