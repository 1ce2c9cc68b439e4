"""Training: pretraining with resumable checkpoints, finetuning with injection and U-curve reading,
and many finetuning runs at once."""

from forgetlaw.training.common import TrainingDiverged
from forgetlaw.training.finetune import CURVE_KEYS, FinetuneConfig, FinetuneResult, finetune
from forgetlaw.training.pretrain import PretrainConfig, PretrainResult, pretrain
from forgetlaw.training.vectorized import finetune_many

__all__ = [
    "CURVE_KEYS", "FinetuneConfig", "FinetuneResult", "PretrainConfig", "PretrainResult",
    "TrainingDiverged", "finetune", "finetune_many", "pretrain",
]
