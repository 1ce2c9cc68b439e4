"""forgetlaw: scaling laws for forgetting during finetuning with pretraining-data injection.

The package is a pipeline; each stage is a subpackage with one job (see ARCHITECTURE.md):
data -> models -> training -> study (sweep + results store) -> laws -> report, with the CLI on top.
"""

__version__ = "0.1.0"
