"""Named model-size ladders. Each is one knob mapped to a shape, so sizes differ in one direction.

- `cpu-tiny`: the knob is the width d (multiples of 16); depth L = max(2, d // 32) and heads
  max(1, d // 32) follow from it (head size ~32). d = 48, 64, 80 at L = 2 are the shapes the tiny
  pilot found to behave; d = 32 at 20 tokens/param was undertrained there, so the ladder starts at 48.
  It stops at d = 160 (1.55M non-embedding parameters): larger models are too slow on this CPU.
- `paper`: GPT-2-style shapes (head size 64) whose non-embedding parameter counts are near the
  paper's 41M, 109M, 334M, 665M and 1.27B. The knob is the row of the table: GPT-2-like shapes do not
  follow one closed-form rule at these targets, so they are listed.
"""

from __future__ import annotations

from dataclasses import dataclass

from forgetlaw.errors import UserError
from forgetlaw.models.gpt import GPTConfig, non_embedding_params


@dataclass(frozen=True)
class ModelShape:
    name: str
    n_layer: int
    d_model: int
    n_head: int

    def to_config(self, vocab_size: int, seq_len: int = 128, **kwargs) -> GPTConfig:
        return GPTConfig(
            vocab_size=vocab_size, seq_len=seq_len, n_layer=self.n_layer, n_head=self.n_head,
            d_model=self.d_model, **kwargs,
        )

    def non_embedding_params(self) -> int:
        return non_embedding_params(self.to_config(vocab_size=1, seq_len=1))


def tiny_shape(width: int) -> ModelShape:
    """The cpu-tiny rule: width -> (depth, heads)."""
    return ModelShape(f"d{width}", n_layer=max(2, width // 32), d_model=width, n_head=max(1, width // 32))


LADDERS: dict[str, list[ModelShape]] = {
    "cpu-tiny": [tiny_shape(d) for d in (48, 64, 80, 96, 128, 160)],
    "paper": [
        ModelShape("41M", n_layer=6, d_model=768, n_head=12),
        ModelShape("109M", n_layer=16, d_model=768, n_head=12),
        ModelShape("334M", n_layer=26, d_model=1024, n_head=16),
        ModelShape("665M", n_layer=24, d_model=1536, n_head=24),
        ModelShape("1.27B", n_layer=25, d_model=2048, n_head=32),
    ],
}

# Default pretraining tokens per (non-embedding) parameter for each ladder (see docs/training.md).
TOKENS_PER_PARAM: dict[str, float] = {"cpu-tiny": 20.0, "paper": 100.0}


def ladder(name: str) -> list[ModelShape]:
    if name not in LADDERS:
        raise UserError(f"unknown ladder '{name}'; choose one of {', '.join(sorted(LADDERS))}")
    return list(LADDERS[name])


def find_shape(name: str) -> ModelShape:
    """A shape by name from any ladder ('d64', '109M')."""
    for shapes in LADDERS.values():
        for shape in shapes:
            if shape.name == name:
                return shape
    names = ", ".join(s.name for shapes in LADDERS.values() for s in shapes)
    raise UserError(f"unknown model shape '{name}'; choose one of {names}")
