"""Drop-ins for the tools people already train with (docs/integrations.md).

- `forgetlaw.integrations.hf`: a `transformers.TrainerCallback` that follows the pretraining loss on
  fixed windows, reads the run at its best target step and writes a row of forgetlaw's results table;
- `forgetlaw.integrations.datasets`: `inject(...)`, forgetlaw's exact injection rule on Hugging Face
  datasets, for any trainer that takes one;
- `forgetlaw.integrations.export`: `forgetlaw export-mix`, the mixed training set on disk and the
  weights to give trainers that mix on their own (LLaMA-Factory, Megatron-LM);
- `forgetlaw.integrations.trackers`: MLflow and W&B for `execution.tracker` in a study spec.

A leaf: it may import every stage, and no stage imports it (the study stage finds the trackers through
the `forgetlaw.trackers` entry points). Each module imports its third-party library itself, so
importing this package needs none of them.
"""
