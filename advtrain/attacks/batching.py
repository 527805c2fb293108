"""Length-sorted, dynamically padded micro-batches: the one way every model query in `advtrain.attacks` is run."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def length_sorted_batches(
    encoding: Any, batch_size: int, tokenizer: Any, device: torch.device
) -> Iterator[tuple[list[int], dict]]:
    """Yields ``(rows, batch)``: the rows of `encoding` (a tokenizer output without padding) in order of length,
    `batch_size` at a time, each padded only to its own longest row (never to ``max_length``)."""
    lengths = [len(ids) for ids in encoding["input_ids"]]
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    keys = [k for k in MODEL_INPUTS if k in encoding]
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        batch = tokenizer.pad([{k: encoding[k][i] for k in keys} for i in rows], return_tensors="pt")
        yield rows, {k: v.to(device) for k, v in batch.items()}


@contextmanager
def eval_mode(model: torch.nn.Module):
    """Puts `model` in eval mode (no dropout) for the block and restores its train/eval mode afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device
