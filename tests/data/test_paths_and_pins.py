"""Local paths checked before anything is built, `data verify` on a build's --out folder, the
multilingual corpus read from pinned packages, and the manifest hash a build prints."""

from __future__ import annotations

import json
import struct
from pathlib import Path

from conftest import small_config
from forgetlaw.cli import main
from forgetlaw.cli.data import pinning
from forgetlaw.data import build_data, open_data, parsers
from forgetlaw.data.build import stale_domains
from forgetlaw.data.sources import DOMAINS, SOURCES


def _err_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("forgetlaw: error:"), err
    return err[0]


def test_a_missing_source_path_is_refused_before_anything_is_built(tmp_path, prose_dir, capsys):
    out = tmp_path / "data"
    # generic is fine and listed first; the bad path is the last one given
    assert main(["data", "build", "--out", str(out), "--quiet", "--domains", "python",
                 "--source-dir", f"generic={prose_dir}", "--source-dir", "python=/nonexistent/stdlib"]) == 2
    line = _err_line(capsys)
    assert "python=/nonexistent/stdlib" in line and "does not exist" in line and "nothing was built" in line
    assert not out.exists() or not list(out.iterdir())
    assert main(["data", "build", "--out", str(out), "--quiet", "--source-dir", f"generic={prose_dir}",
                 "--tokenizer", str(tmp_path / "no-tokenizer")]) == 2
    assert "tokenizer" in _err_line(capsys)
    assert not out.exists() or not list(out.iterdir())


def test_verify_and_distance_accept_the_out_folder_of_a_build(tmp_path, prose_dir, code_jsonl, capsys):
    out = tmp_path / "data"
    build = ["data", "build", "--out", str(out), "--quiet", "--source-dir", f"generic={prose_dir}",
             "--source-dir", f"code={code_jsonl}", "--domains", "code"]
    assert main([*build, "--vocab-size", "300"]) == 0
    printed = capsys.readouterr().out
    (root,) = out.glob("build-*")
    store = open_data(root)
    assert f"manifest {store.manifest_hash} (machine-dependent: code (code), generic (generic)" in printed
    assert main(["data", "verify", str(out)]) == 0
    assert capsys.readouterr().out.startswith(f"ok: {root} (2 corpora")
    assert main(["data", "distance", str(out)]) == 0
    capsys.readouterr()
    assert main([*build, "--vocab-size", "320"]) == 0  # a second build in the same folder
    capsys.readouterr()
    assert main(["data", "verify", str(out)]) == 2
    line = _err_line(capsys)
    assert "holds 2 builds" in line and root.name in line and "give one of them" in line
    assert main(["data", "verify", str(root)]) == 0


def test_the_printed_hash_is_called_pinned_only_when_every_source_is_a_pinned_package(small_store):
    assert pinning(small_store).startswith("machine-dependent: code (code), generic (generic)")
    manifest = json.loads(json.dumps(small_store.manifest))
    for entry in manifest["corpora"].values():
        entry["sources"] = [{"name": "gettext", "artefacts": [
            {"manager": "apt", "package": "iso-codes", "version": "4.15.0-1", "sha256": "0" * 64}]},
            {"name": "dm_math", "artefacts": [{"manager": "generated"}]}]
    pinned = type(small_store)(small_store.root, manifest)
    assert pinning(pinned).startswith("pinned: ")


def test_multilingual_comes_from_pinned_architecture_independent_debian_packages():
    source = SOURCES[DOMAINS["multilingual"].mix[0][0]]
    assert source.kind == "apt" and len(source.artefacts) >= 5 and source.disk_root is None
    for artefact in source.artefacts:
        assert artefact.version and len(artefact.sha256) == 64
    # every other built-in domain read from disk is named in docs/data.md as machine-dependent
    from_disk = sorted(name for name, c in DOMAINS.items() if SOURCES[c.mix[0][0]].kind == "disk")
    assert from_disk == ["python"]


def _mo(pairs: dict[str, str]) -> bytes:
    keys = sorted(pairs)
    ids = b"".join(k.encode() + b"\0" for k in keys)
    strs = b"".join(pairs[k].encode() + b"\0" for k in keys)
    n, start = len(keys), 28 + 16 * len(keys)
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


def test_gettext_catalogues_of_unpacked_packages_and_of_a_locale_folder(tmp_path):
    def package(name: str, pairs: dict[str, str], nested: bool = True) -> Path:
        root = tmp_path / name
        folder = (root / "usr/share/locale" if nested else root) / "de/LC_MESSAGES"
        folder.mkdir(parents=True)
        (folder / f"{name}.mo").write_bytes(_mo(pairs))
        return root

    one = package("one", {"Open": "Öffnen"})
    two = package("two", {"Close": "Schließen"})
    docs = list(parsers.gettext_catalogues([one, two, one], ("de", "fr")))
    assert docs == ["en: Open\nde: Öffnen", "en: Close\nde: Schließen"]  # a root given twice is read once
    flat = package("flat", {"Save": "Speichern"}, nested=False)  # --source-dir gettext=/usr/share/locale
    assert list(parsers.gettext_catalogues([flat], ("de",))) == ["en: Save\nde: Speichern"]


def test_a_domain_whose_recipe_changed_is_built_again(tmp_path, prose_dir, code_jsonl):
    config = small_config(tmp_path, prose_dir, domains=("math", "code"), domain_max_mb=0.02,
                          source_dirs={"code": code_jsonl})
    store = build_data(config)
    assert stale_domains(store.manifest, config) == []
    before = dict(store.manifest["corpora"])
    # as a build made when the source was read from this machine's disk would have recorded it
    manifest = json.loads((store.root / "manifest.json").read_text())
    manifest["corpora"]["math"]["sources"][0]["artefacts"] = [{"manager": "disk", "path": "/somewhere"}]
    (store.root / "manifest.json").write_text(json.dumps(manifest))
    assert stale_domains(manifest, config) == ["math"]
    lines: list[str] = []
    rebuilt = build_data(config, progress=lines.append)
    assert any(line.startswith("math: its recipe's sources changed") for line in lines)
    assert rebuilt.manifest["corpora"]["math"] == before["math"]  # the same recipe gives the same corpus
    assert rebuilt.manifest["corpora"]["code"] == before["code"]  # the user's domain was left alone
    assert stale_domains(rebuilt.manifest, config) == []
