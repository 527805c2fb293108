"""Where ``δ`` enters the model: a forward hook on the module named by the config's `adv_site`.

- ``"embeddings"`` (the default): the output of ``model.get_input_embeddings()``, the word-embedding lookup ``e``;
- ``"layer:N"``: the hidden states output by transformer block ``N`` (0-based; negative counts from the end, as in
  Python), for latent adversarial training. The blocks are the model's one list of encoder or decoder layers
  (`transformer_blocks`).

The model is always called with its own ``input_ids``; the hook adds ``δ`` to the site's output inside the model's
forward. Compared with feeding ``e + δ`` back as ``inputs_embeds`` this

- keeps everything the model derives from ``input_ids`` (a decoder classifier finds its last real token from them,
  with right or left padding; feeding ``inputs_embeds`` makes it pool the last position, padding included);
- serves models whose ``forward`` takes no ``inputs_embeds``;
- runs the lookup inside the forward of a wrapped or sharded model (DDP, FSDP2), where a lookup outside it fails.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn
from transformers.modeling_layers import GradientCheckpointingLayer

from ..validation import check_value

EMBEDDINGS_SITE = "embeddings"
_LAYER_SITE = re.compile(r"layer:(-?\d+)")
SITE_FORMS = (
    "'embeddings' or 'layer:N' with N an integer block index (0-based; negative counts from the end), e.g. 'layer:4' "
    "or 'layer:-1'"
)


def parse_site(site: Any) -> int | None:
    """The block index an `adv_site` value names: ``None`` for ``"embeddings"``, ``N`` for ``"layer:N"``; any other
    value raises a `ValueError` that lists the accepted forms."""
    if site == EMBEDDINGS_SITE:
        return None
    match = _LAYER_SITE.fullmatch(site) if isinstance(site, str) else None
    check_value(match is not None, "adv_site", SITE_FORMS, site)
    return int(match.group(1))


class SiteCall:
    """What the hook saw during one forward: ``output`` is the site's clean output as the model computed it (``e``, or
    the hidden states of block ``N``) before ``δ`` is added, ``delta`` the ``δ`` that was added (``None``: nothing)."""

    def __init__(self) -> None:
        self.output: torch.Tensor | None = None
        self.delta: torch.Tensor | None = None
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


def transformer_blocks(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The model's transformer blocks and their path: the one outermost, non-empty `nn.ModuleList` of its base model
    (the bare encoder or decoder under a task head, and under a PEFT wrapper): ``bert.encoder.layer`` (BERT-likes),
    ``model.layers`` (Llama, Qwen2, ModernBERT), ``transformer.h`` (GPT-2), ``distilbert.transformer.layer``...

    A model with no such list, or with several (an encoder-decoder's two stacks), is refused by name."""
    get_base_model = getattr(model, "get_base_model", None)  # a PEFT wrapper
    inner = get_base_model() if callable(get_base_model) else model
    base = getattr(inner, "base_model", inner)  # transformers: the model under the task head
    prefix = next((f"{n}." for n, m in inner.named_modules() if m is base and n), "")
    lists = [(name, m) for name, m in base.named_modules() if isinstance(m, nn.ModuleList) and len(m) > 0]
    outermost = [(name, m) for name, m in lists if not any(name.startswith(f"{other}.") for other, _ in lists)]
    if len(outermost) != 1:
        found = ", ".join(prefix + name for name, _ in outermost) or "none"
        raise ValueError(
            f"{type(inner).__name__} cannot be perturbed at a latent site: advtrain counts the `adv_site='layer:N'` "
            "blocks in the one nn.ModuleList of the model's encoder or decoder layers (e.g. `model.layers`, "
            f"`encoder.layer`, `h`), and found {'several' if outermost else 'no such list'} ({found}). Use "
            "adv_site='embeddings'."
        )
    name, blocks = outermost[0]
    return prefix + name, blocks


def site_module(model: nn.Module, site: str) -> tuple[nn.Module, str]:
    """The module whose output `site` perturbs and its description for messages; refuses a block index outside the
    model's blocks with a message that gives the model's number of blocks."""
    index = parse_site(site)
    if index is None:
        return input_embedding_module(model), "input embeddings"
    path, blocks = transformer_blocks(model)
    count = len(blocks)
    if not -count <= index < count:
        raise ValueError(
            f"`adv_site={site!r}` names block {index}, but {type(model).__name__} has {count} transformer blocks "
            f"({path}): use 'layer:0' to 'layer:{count - 1}' (or 'layer:-{count}' to 'layer:-1', from the end)."
        )
    index %= count
    return blocks[index], f"block {index} ({path}.{index})"


def check_site(model: nn.Module, site: str, gradient_checkpointing: bool = False) -> None:
    """Refuses a `site` that `model` cannot be perturbed at (see `site_module`). With `gradient_checkpointing`, a
    latent site also needs block ``N`` to be its own checkpoint, as a transformers ``GradientCheckpointingLayer`` is:
    then the recomputation of block ``N`` never involves ``δ``, which is added after its last operation, and the blocks
    above take ``h + δ`` as their checkpointed input. A checkpoint spanning block ``N`` and the blocks above it would
    recompute them from the unperturbed ``h`` once the hook is gone, so any other block is refused."""
    module, where = site_module(model, site)
    if gradient_checkpointing and parse_site(site) is not None:
        if not isinstance(module, GradientCheckpointingLayer):
            raise ValueError(
                f"`gradient_checkpointing=True` with `adv_site={site!r}`: {type(model).__name__}'s {where} is a "
                f"{type(module).__name__}, not a transformers GradientCheckpointingLayer, so advtrain cannot tell that "
                "each block is its own checkpoint (a checkpoint over several blocks would recompute the blocks above "
                "the site without δ). Turn gradient_checkpointing off or use adv_site='embeddings'."
            )


@contextlib.contextmanager
def perturbed_site(
    model: nn.Module,
    site: str,
    input_ids: torch.Tensor,
    delta: torch.Tensor | Callable[[torch.Tensor], torch.Tensor] | None = None,
    *,
    detach: bool = False,
    input_gradient: bool = False,
) -> Iterator[SiteCall]:
    """Within the block, every forward of `model` adds `delta` to the output of the module `site` names.

    Args:
        model (`nn.Module`): the unwrapped model (the hook sits on one of its modules, so forwards through a DDP or
            FSDP wrapper of it see it too).
        site (`str`): ``"embeddings"`` or ``"layer:N"`` (see the module docstring).
        input_ids (`torch.Tensor`): the batch's token ids. At the embedding site only the lookup of these ids is
            perturbed: a model may pass other ids through the same module (GPT-2 embeds `token_type_ids` with its
            word embeddings). At a block, its output must be shaped ``(*input_ids.shape, hidden)``.
        delta (`torch.Tensor` or `Callable`, *optional*): ``δ``, shaped like the site's output; ``None`` adds nothing.
            A callable is called once, with the site's clean output, and returns ``δ`` (a start drawn in the shape
            of a hidden state no one knows before the forward); the ``δ`` used is then `SiteCall.delta`.
        detach (`bool`): cut the site's output out of the graph (the inner loop differentiates w.r.t. ``δ`` only, so
            at ``"layer:N"`` its gradient flows through the blocks above ``N`` alone).
        input_gradient (`bool`): make the site's output keep its gradient after a backward (``.grad``), also when
            nothing below it is trained (frozen embeddings, LoRA): then it becomes a leaf of the graph.

    A block returning a tuple is perturbed in its first element. The block must run exactly one forward of the site's
    module; a model that looks the batch's ids up (or runs block ``N``) more than once per forward is refused, since
    ``δ`` would be added more than once.
    """
    module, where = site_module(model, site)
    latent = parse_site(site) is not None
    call = SiteCall()

    def perturb(value: torch.Tensor) -> torch.Tensor:
        call.calls += 1
        value = value.detach() if detach else value
        if input_gradient:
            if value.requires_grad:
                value.retain_grad()
            else:
                value = value.detach().requires_grad_(True)
        call.output = value
        call.delta = delta(value) if callable(delta) else delta
        if call.delta is None:
            return value
        return value + call.delta.to(value.dtype)

    def is_the_batch(ids: Any) -> bool:
        if not isinstance(ids, torch.Tensor) or ids.numel() != input_ids.numel():
            return False
        if ids.untyped_storage().data_ptr() == input_ids.untyped_storage().data_ptr():
            return True  # the ids themselves or a view of them (models reshape them)
        return bool(torch.equal(ids.reshape(input_ids.shape).to(input_ids.device), input_ids))

    def refuse_output(output: Any) -> None:
        found = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        expected = f"a tensor of shape (batch, seq_len, hidden) with (batch, seq_len) = {tuple(input_ids.shape)}"
        if latent:
            expected += " (or a tuple starting with one)"
        raise ValueError(
            f"{type(model).__name__}'s {where} returns {found}, not {expected}; advtrain cannot add δ to it at "
            f"adv_site={site!r}."
        )

    def embedding_hook(module: nn.Module, args, output: Any) -> torch.Tensor:
        if not args or not is_the_batch(args[0]):
            return output
        if not isinstance(output, torch.Tensor):
            refuse_output(output)
        return perturb(output)

    def block_hook(module: nn.Module, args, output: Any) -> Any:
        hidden = output[0] if isinstance(output, tuple) and output else output
        # An unpadded or packed layout would not line up with the padding mask either.
        if not isinstance(hidden, torch.Tensor) or tuple(hidden.shape[:-1]) != tuple(input_ids.shape):
            refuse_output(hidden)
        hidden = perturb(hidden)
        return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

    handle = module.register_forward_hook(block_hook if latent else embedding_hook)
    try:
        yield call
    finally:
        handle.remove()
    if call.calls != 1 and latent:
        raise ValueError(
            f"{type(model).__name__} ran its {where} {call.calls} times in one forward; advtrain adds δ to that block's "
            f"output once per forward and cannot perturb this model at adv_site={site!r}. Use another block or "
            "adv_site='embeddings'."
        )
    if call.calls != 1:
        raise ValueError(
            f"{type(model).__name__} looked the batch's input_ids up in its input embeddings {call.calls} times in one "
            "forward; advtrain adds δ to the word embeddings once per forward and cannot perturb this model."
        )


def perturbed_embeddings(
    model: nn.Module,
    input_ids: torch.Tensor,
    delta: torch.Tensor | None = None,
    *,
    detach: bool = False,
    input_gradient: bool = False,
):
    """`perturbed_site` at ``"embeddings"``: every forward of `model` adds `delta` to its word-embedding output."""
    return perturbed_site(model, EMBEDDINGS_SITE, input_ids, delta, detach=detach, input_gradient=input_gradient)
