"""The demo: preset study -> results -> fits -> report, resumable, with progress and a final summary.

`run_demo` is what `forgetlaw demo` runs. Every stage is resumable or cheap to redo: the data build is
cached, the sweep skips finished runs (its SQLite store is the single source of truth), and the
exported table, fits and report are rebuilt from the store each time.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from forgetlaw.report.build import Budget, ReportOptions, build_report
from forgetlaw.report.derive import format_p, split_unimproved
from forgetlaw.report.fits import fit_study
from forgetlaw.report.study_io import load_study_tables, study_provenance

Progress = Callable[[str], None]


@dataclass
class DemoSummary:
    study_dir: Path
    report: Path
    results_csv: Path
    runs: int
    wall_s: float
    data: dict          # report.json's content: claims, fits, headline numbers

    def lines(self) -> list[str]:
        left_out = self.data["grid"].get("runs_left_out", 0)
        out = [f"report: {self.report}", f"results table: {self.results_csv} ({self.runs} runs"
               + (f"; {left_out} never improved the target and are left out of the report)" if left_out else ")"),
               f"wall time: {self.wall_s:.0f} s"]
        for f in self.data["fits"]:
            group = ", ".join(str(v) for v in (f["group"] or {}).values()) or "all"
            held = "–" if f["holdout_mre"] is None else f"{100 * f['holdout_mre']:.2f}%"
            out.append(f"{f['law']} law [{group}]: MRE {100 * f['mre']:.2f}%, held-out largest model {held}")
        if self.data.get("fits_note"):
            out.append(self.data["fits_note"])
        second = self.data.get("second_injection")
        for row in self.data["headline_forgetting"]:
            text = f"N = {row['model_size']:,}: forgetting {row['forgetting_p0']:.3f} nats at p = 0"
            if second is not None and row.get("forgetting_second") is not None:
                text += f", {row['forgetting_second']:.3f} at p = {format_p(second)}"
            out.append(text)
        for claim in self.data["claims"]:
            out.append(f"[{claim['verdict']}] {claim['statement']}")
        return out


def report_study(study_dir: Path, out_dir: Path | None = None, bootstrap: int = 200,
                 budget: Budget | None = None, progress: Progress | None = None,
                 spec=None) -> tuple[Path, dict]:
    """Fit and report an existing study folder; returns the HTML path and report.json's content."""
    say = progress or (lambda _m: None)
    study_dir = Path(study_dir)
    out_dir = Path(out_dir) if out_dir is not None else study_dir / "report"
    say(f"reading results from {study_dir}")
    results, curves = load_study_tables(study_dir)
    say(f"fitting the forgetting and finetuning laws per domain ({bootstrap} bootstrap resamples, "
        "largest model held out)")
    t0 = time.perf_counter()
    # the report leaves out runs that never improved the target; the fits must see the same runs
    fits = fit_study(split_unimproved(results)[0], bootstrap=bootstrap)
    say(f"fits done in {time.perf_counter() - t0:.1f} s; drawing the report")
    provenance = study_provenance(study_dir, spec)
    path = build_report(results, curves, out_dir, provenance, fits=fits,
                        options=ReportOptions(budget=budget or Budget()))
    return path, json.loads((out_dir / "report.json").read_text())


def run_demo(preset="cpu", out_dir: Path | None = None, *, workers: int | None = None,
             executor: str = "local", address: str | None = None, bootstrap: int = 200,
             progress: Progress | None = print) -> DemoSummary:
    """Run the preset study (or a given StudySpec) end to end; an interrupted demo resumes."""
    from forgetlaw.study import load_preset, run_study

    say = progress or (lambda _m: None)
    spec = load_preset(preset) if isinstance(preset, str) else preset
    out_dir = Path(out_dir) if out_dir is not None else Path(f"forgetlaw-demo-{spec.name}")
    started = time.perf_counter()
    say(f"[1/3] study '{spec.name}' in {out_dir} (finished runs are kept: rerun to resume)")
    run_study(spec, out_dir, executor=executor, workers=workers, address=address)
    say("[2/3] exporting the results table")
    results, _ = load_study_tables(out_dir)
    csv_path = out_dir / "results.csv"
    results.to_csv(csv_path, index=False)
    say("[3/3] fits and report")
    report, data = report_study(out_dir, out_dir / "report", bootstrap=bootstrap, progress=say, spec=spec)
    summary = DemoSummary(out_dir, report, csv_path, len(results), time.perf_counter() - started, data)
    say("")
    for line in summary.lines():
        say(line)
    return summary
