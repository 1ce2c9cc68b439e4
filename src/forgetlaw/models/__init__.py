"""Models: the GPT, its size ladders, and the Hugging Face adapter (`forgetlaw.models.hf`)."""

from forgetlaw.models.gpt import GPT, GPTConfig, non_embedding_params, total_params
from forgetlaw.models.ladder import LADDERS, TOKENS_PER_PARAM, ModelShape, find_shape, ladder

__all__ = [
    "GPT", "GPTConfig", "LADDERS", "ModelShape", "TOKENS_PER_PARAM", "find_shape", "ladder",
    "non_embedding_params", "total_params",
]
