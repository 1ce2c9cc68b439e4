"""Reading a study folder for the report: the canonical tables and the provenance of its runs."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from forgetlaw.errors import UserError
from forgetlaw.provenance import code_version, config_hash


def load_study_tables(study_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    study_dir = Path(study_dir)
    if not study_dir.is_dir():
        raise UserError(f"STUDY_DIR {study_dir} is not a folder; give the --out folder of a sweep or demo")
    from forgetlaw.study import load_curves, load_results

    return load_results(study_dir), load_curves(study_dir)


def _distinct(values) -> list:
    return sorted({v for v in values if v is not None}, key=str)


def study_provenance(study_dir: Path, spec=None) -> dict:
    """Provenance of a report built from a study: the study spec, and what its finished runs recorded."""
    from forgetlaw.study import ResultsStore

    store = ResultsStore.open_existing(study_dir)
    try:
        runs = store.runs(status="done")
        stored_spec = store.get_meta("spec")
        data_meta = store.get_meta("data") or {}
        bases = [(r, store.summary(r["key"]) or {}) for r in runs if r.get("kind") == "pretrain"]
    finally:
        store.close()
    spec_data = spec if spec is not None else stored_spec
    if hasattr(spec_data, "model_dump"):
        spec_data = spec_data.model_dump(mode="json")
    finetunes = [r for r in runs if r.get("kind") == "finetune"]
    block = {
        "report_code_version": code_version(),
        "study_dir": str(Path(study_dir).resolve()),
        "study_code_versions": ", ".join(_distinct(r.get("code_version") for r in runs)),
        "data_manifest_hash": ", ".join(_distinct(r.get("data_manifest_hash") for r in runs)),
        "finetune_seeds": ", ".join(str(s) for s in _distinct(r.get("seed") for r in finetunes)),
        "pretrain_seeds": ", ".join(str(s) for s in _distinct(r.get("seed") for r in runs
                                                               if r.get("kind") == "pretrain")),
        "finished_runs": len(runs),
        # the corpus injected and on which L_pt is read; for pretrained models a stand-in
        "pretrain_corpus": data_meta.get("pretrain_corpus", "generic"),
        "pretrained_ladder": any("pretrained" in r["config"].get("model", {}) for r, _ in bases),
    }
    measured = [(s.get("model_size") or 0, r["model_name"], s["corpus_losses"]) for r, s in bases if s.get("corpus_losses")]
    if measured:
        _, name, losses = min(measured)
        block["corpus_losses"] = {"model": name, "losses": losses}
    if spec_data is not None:
        block["spec_hash"] = config_hash(spec_data)
        block["spec"] = spec_data
    return block
