"""The GPU check script runs end to end (on the CPU, smallest shapes) and prints its JSON, so that a
GPU is never spent on a script that fails."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "gpu_smoke.py"


def test_gpu_smoke_cpu_mode_prints_its_json():
    done = subprocess.run([sys.executable, str(SCRIPT), "--cpu-smoke", "--json"],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert {"device", "torch", "peak_tflops", "cpu_smoke", "flop_formula", "pretrain", "vectorized",
            "total_s"} <= set(result)
    assert result["device"] == "cpu" and result["cpu_smoke"] is True
    assert len(result["pretrain"]) == 2 and len(result["vectorized"]) == 1
    for row in result["pretrain"]:
        assert {"shape", "non_embedding_params", "tokens_per_s", "achieved_tflops", "mfu", "step_ms"} <= set(row)
        assert row["tokens_per_s"] > 0 and 0 < row["mfu"] < 1
    for row in result["vectorized"]:
        assert {"shape", "runs", "steps_per_run", "sequential_s", "vectorized_s", "vectorized_ratio"} <= set(row)
        assert row["runs"] == 2 and row["steps_per_run"] > 0
        assert math.isfinite(row["vectorized_ratio"]) and row["vectorized_ratio"] > 0
    study = result["ladder_study"]
    assert study["failed"] == [] and len(study["runs"]) == 2 * 1 * 2  # 2 models x 1 D x 2 p
    for row in study["runs"]:
        assert row["status"] == "done" and row["steps"] > 0 and row["tokens_per_s"] > 0 and 0 < row["mfu"] < 1
