"""`forgetlaw export-hf CHECKPOINT OUT`: a forgetlaw GPT as a Hugging Face model folder."""

from __future__ import annotations

from pathlib import Path

from forgetlaw.errors import UserError


def register(subparsers) -> None:
    export = subparsers.add_parser(
        "export-hf", help="write a pretrained forgetlaw GPT as a Hugging Face model folder",
        description="Write CHECKPOINT (a checkpoint.pt from pretrain or a study's bases/) as a folder "
                    "that AutoModelForCausalLM and AutoTokenizer load, with the tokenizer of its data.")
    export.add_argument("checkpoint", type=Path, metavar="CHECKPOINT")
    export.add_argument("out", type=Path, metavar="OUT", help="a new folder")
    export.add_argument("--tokenizer", type=Path, help="the tokenizer folder of the model's data")
    export.add_argument("--data", type=Path, help="or the data build the model was trained on")
    export.set_defaults(func=cmd_export_hf)


def _study_tokenizer(checkpoint: Path) -> Path | None:
    """The tokenizer a study recorded, when the checkpoint sits in its bases/ folder."""
    from forgetlaw.study.store import STORE_NAME, ResultsStore

    for parent in checkpoint.resolve().parents:
        if (parent / STORE_NAME).is_file():
            store = ResultsStore.open_existing(parent)
            try:
                recorded = (store.get_meta("data") or {}).get("tokenizer")
            finally:
                store.close()
            return Path(recorded) if recorded else None
    return None


def _tokenizer_dir(args) -> Path:
    if args.tokenizer is not None:
        return args.tokenizer
    if args.data is not None:
        from forgetlaw.data import open_data

        return open_data(args.data).tokenizer_path
    found = _study_tokenizer(args.checkpoint)
    if found is None:
        raise UserError("export-hf: no tokenizer known for this checkpoint; pass --tokenizer DIR or --data BUILD "
                        "(the data build it was pretrained on)")
    return found


def cmd_export_hf(args) -> int:
    from forgetlaw.models.export import export_gpt
    from forgetlaw.provenance import code_version
    from forgetlaw.training.checkpoint import load_model

    model, meta = load_model(args.checkpoint)
    if not meta.get("done", True):
        raise UserError(f"{args.checkpoint} is an unfinished pretraining run; finish it (run it again) first")
    pretrain = meta.get("pretrain_config", {})
    record = {
        "source_checkpoint": str(args.checkpoint.resolve()), "exported_by": code_version(),
        "pretrain_config": pretrain, "pretrain_loss_before": meta.get("pretrain_loss_before"),
        "data_manifest_hash": (meta.get("data") or {}).get("manifest_hash"),
        # the LR pretraining ended at: the default finetuning LR of forgetlaw's own bases
        "final_lr": pretrain["lr"] * pretrain.get("min_lr_frac", 1.0) if "lr" in pretrain else None,
    }
    out = export_gpt(model, args.out, _tokenizer_dir(args), record)
    print(f"exported {args.checkpoint} -> {out} (GPT2LMHeadModel; AutoModelForCausalLM.from_pretrained loads it)")
    return 0
