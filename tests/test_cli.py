"""The CLI dispatcher and shared helpers."""

from __future__ import annotations

import subprocess
import sys

from forgetlaw.cli import main
from forgetlaw.provenance import canonical_json, config_hash, provenance


def test_unknown_verb_is_one_line_exit_2(capsys):
    try:
        code = main(["no-such-verb"])
    except SystemExit as exc:
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("forgetlaw: error:")


def test_version_via_module():
    out = subprocess.run([sys.executable, "-m", "forgetlaw", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("forgetlaw ")


def test_config_hash_is_stable_and_sensitive():
    a = {"b": 1.0, "a": [1, 2], "p": 0.01}
    assert config_hash(a) == config_hash({"a": [1, 2], "p": 0.01, "b": 1})
    assert config_hash(a) != config_hash({**a, "p": 0.05})
    assert canonical_json(a) == '{"a":[1,2],"b":1,"p":0.01}'
    assert provenance(a, seed=3)["config_hash"] == config_hash(a)
