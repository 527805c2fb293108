"""Where ``δ`` enters the model: a forward hook on the input-embedding module.

The model is always called with its own ``input_ids``; the hook adds ``δ`` to the output of
``model.get_input_embeddings()`` inside the model's forward. Compared with feeding ``e + δ`` back as
``inputs_embeds`` this

- keeps everything the model derives from ``input_ids`` (a decoder classifier finds its last real token from them,
  with right or left padding; feeding ``inputs_embeds`` makes it pool the last position, padding included);
- serves models whose ``forward`` takes no ``inputs_embeds``;
- runs the lookup inside the forward of a wrapped or sharded model (DDP, FSDP2), where a lookup outside it fails.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn


class EmbeddingCall:
    """What the hook saw during one forward: ``output`` is ``e``, the word-embedding output as the model used it
    (before ``δ`` is added)."""

    def __init__(self) -> None:
        self.output: torch.Tensor | None = None
        self.calls = 0


def input_embedding_module(model: nn.Module) -> nn.Module:
    """``model.get_input_embeddings()``, refusing a model that does not expose its word embeddings that way."""
    name = type(model).__name__
    try:
        embeddings = model.get_input_embeddings()
    except (AttributeError, NotImplementedError):
        embeddings = None
    if not isinstance(embeddings, nn.Module):
        raise ValueError(
            f"{name} cannot be trained by advtrain: its input embeddings cannot be reached through "
            "`get_input_embeddings()`. Use a transformers model (e.g. AutoModelForSequenceClassification) or "
            "implement `get_input_embeddings()` on it."
        )
    return embeddings


@contextlib.contextmanager
def perturbed_embeddings(
    model: nn.Module,
    input_ids: torch.Tensor,
    delta: torch.Tensor | None = None,
    *,
    detach: bool = False,
    input_gradient: bool = False,
) -> Iterator[EmbeddingCall]:
    """Within the block, every forward of `model` adds `delta` to its word-embedding output.

    Args:
        model (`nn.Module`): the unwrapped model (the hook sits on its embedding module, so forwards through a
            DDP or FSDP wrapper of it see it too).
        input_ids (`torch.Tensor`): the batch's token ids. Only the lookup of these ids is perturbed: a model may
            pass other ids through the same module (GPT-2 embeds `token_type_ids` with its word embeddings).
        delta (`torch.Tensor`, *optional*): ``δ``, shaped like the embedding output; ``None`` adds nothing.
        detach (`bool`): cut the lookup out of the graph (the inner loop differentiates w.r.t. ``δ`` only).
        input_gradient (`bool`): make ``e`` keep its gradient after a backward (``e.grad``), also when the
            embeddings are frozen (LoRA): then ``e`` becomes a leaf of the graph.

    The block must run exactly one forward; a model that looks the batch's ids up more than once per forward is
    refused, since ``δ`` would be added more than once.
    """
    call = EmbeddingCall()

    def is_the_batch(ids: Any) -> bool:
        if not isinstance(ids, torch.Tensor) or ids.numel() != input_ids.numel():
            return False
        if ids.untyped_storage().data_ptr() == input_ids.untyped_storage().data_ptr():
            return True  # the ids themselves or a view of them (models reshape them)
        return bool(torch.equal(ids.reshape(input_ids.shape).to(input_ids.device), input_ids))

    def hook(module: nn.Module, args, output: torch.Tensor) -> torch.Tensor:
        if not args or not is_the_batch(args[0]):
            return output
        call.calls += 1
        if not isinstance(output, torch.Tensor):
            raise ValueError(
                f"{type(model).__name__}'s input embeddings return {type(output).__name__}, not a tensor; advtrain "
                "adds δ to a tensor of shape (batch, seq_len, hidden)."
            )
        embeds = output.detach() if detach else output
        if input_gradient:
            if embeds.requires_grad:
                embeds.retain_grad()
            else:
                embeds = embeds.detach().requires_grad_(True)
        call.output = embeds
        if delta is not None:
            embeds = embeds + delta.to(embeds.dtype)
        return embeds

    handle = input_embedding_module(model).register_forward_hook(hook)
    try:
        yield call
    finally:
        handle.remove()
    if call.calls != 1:
        raise ValueError(
            f"{type(model).__name__} looked the batch's input_ids up in its input embeddings {call.calls} times in one "
            "forward; advtrain adds δ to the word embeddings once per forward and cannot perturb this model."
        )
