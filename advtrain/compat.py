"""What differs between the transformers versions advtrain supports (4.56+ and 5.x)."""

from __future__ import annotations

import dataclasses

from transformers import TrainingArguments


def warmup_fraction(fraction: float) -> dict[str, float]:
    """The `TrainingArguments` keyword for a linear learning-rate warm-up over `fraction` of the training steps:
    ``warmup_ratio`` on transformers 4 (whose ``warmup_steps`` takes only an integer), ``warmup_steps`` on transformers
    5 (which removed ``warmup_ratio`` and reads a ``warmup_steps`` below 1 as a ratio).

    Example: ``TrainingArguments(output_dir="out", **warmup_fraction(0.1))``.
    """
    names = {f.name for f in dataclasses.fields(TrainingArguments)}
    return {"warmup_ratio": fraction} if "warmup_ratio" in names else {"warmup_steps": fraction}
