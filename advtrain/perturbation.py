"""The shared perturbation engine: one implementation of the inner maximisation used by every trainer.

Notation follows ``docs/engine.md``: ``e`` is the word-embedding output (``model.get_input_embeddings()(input_ids)``),
``δ`` (delta) a perturbation of ``e`` that is exactly zero wherever ``attention_mask == 0``, ``σ`` the std of its
initial noise, ``η`` the step size and ``ε`` the radius of the ball it is projected onto (``ε = 0``: no ball).

All norms and divisions are computed in float32, whatever the autocast dtype of the model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

NORMS = ("l2", "linf")
STEP_NORMS = ("l2", "linf", "linf_example", "sign", "none")

# Guards the divisions in the step normalisation and the L2 projection. Small enough not to change a step whose
# gradient is in any sensible range, large enough to keep a zero gradient at zero instead of producing NaN.
_TINY = 1e-12


def token_mask_like(embeds: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """Returns a float32 mask of shape ``(batch, seq_len, 1)``: 1 on real tokens, 0 on padding."""
    if attention_mask is None:
        return torch.ones(embeds.shape[:-1] + (1,), dtype=torch.float32, device=embeds.device)
    return attention_mask.to(device=embeds.device, dtype=torch.float32).unsqueeze(-1)


def init_delta(
    embeds: torch.Tensor, mask: torch.Tensor, init_std: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Draws ``δ ~ N(0, σ²)`` (float32, shape of ``embeds``), zeroed on padding. ``σ = 0`` gives ``δ = 0``."""
    if init_std == 0:
        return torch.zeros(embeds.shape, dtype=torch.float32, device=embeds.device)
    noise = torch.randn(embeds.shape, dtype=torch.float32, device=embeds.device, generator=generator)
    return noise.mul_(init_std).mul_(mask)


def uniform_delta(
    embeds: torch.Tensor, mask: torch.Tensor, magnitude: float, norm: str, generator: torch.Generator | None = None
) -> torch.Tensor:
    """FreeLB's random start (float32, shape of ``embeds``, zero on padding). ``magnitude = 0`` gives ``δ = 0``.

    - ``"l2"``: ``U(-1, 1)`` on every real token, scaled per example by ``magnitude / √(tokens · hidden)`` (its
      L2 norm is then about ``magnitude / √3``);
    - ``"linf"``: ``U(-magnitude, magnitude)`` on every real token.
    """
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}.")
    if magnitude == 0:
        return torch.zeros(embeds.shape, dtype=torch.float32, device=embeds.device)
    noise = torch.rand(embeds.shape, dtype=torch.float32, device=embeds.device, generator=generator)
    noise = (noise * 2 - 1) * mask
    if norm == "linf":
        return noise * magnitude
    dims = mask.flatten(1).sum(dim=1).clamp(min=1) * embeds.shape[-1]
    return noise * (magnitude / dims.sqrt()).view(-1, *([1] * (embeds.dim() - 1)))


def _example_l2(x: torch.Tensor) -> torch.Tensor:
    """L2 norm of each example over all its tokens and hidden units, shaped ``(batch, 1, 1)`` for broadcasting."""
    return x.flatten(1).norm(dim=1).view(-1, *([1] * (x.dim() - 1)))


def normalize_direction(grad: torch.Tensor, mask: torch.Tensor, step_norm: str) -> torch.Tensor:
    """Normalises an inner gradient into a step direction (float32, zero on padding).

    - ``"l2"``: ``g / ‖g_i‖₂`` with the norm over all real tokens and hidden units of example ``i``.
    - ``"linf"``: ``g / max|g|`` taken per token over the hidden units (as in the SMART/ALUM code).
    - ``"linf_example"``: ``g / max|g_i|`` taken per example over all its tokens and hidden units (as in the FreeLB
      code's ``linf`` steps).
    - ``"sign"``: ``sign(g)`` (FGSM).
    - ``"none"``: ``g`` unchanged.
    """
    g = grad.float() * mask
    if step_norm == "l2":
        return g / (_example_l2(g) + _TINY)
    if step_norm == "linf":
        return g / (g.abs().amax(dim=-1, keepdim=True) + _TINY)
    if step_norm == "linf_example":
        return g / (g.abs().flatten(1).amax(dim=1).view(-1, *([1] * (g.dim() - 1))) + _TINY)
    if step_norm == "sign":
        return g.sign()
    if step_norm == "none":
        return g
    raise ValueError(f"step_norm must be one of {STEP_NORMS}, got {step_norm!r}.")


def project(delta: torch.Tensor, mask: torch.Tensor, norm: str, epsilon: float) -> torch.Tensor:
    """Projects ``δ`` onto the ball ``‖δ‖ ≤ ε`` and zeroes it on padding.

    ``"l2"`` rescales each example's ``δ`` (over its real tokens) down to norm ``ε`` when it is larger;
    ``"linf"`` clamps every element to ``[-ε, ε]``. ``ε = 0`` means no ball: ``δ`` is only zeroed on padding.
    """
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}.")
    delta = delta * mask
    if epsilon == 0:
        return delta
    if norm == "l2":
        scale = (epsilon / (_example_l2(delta) + _TINY)).clamp(max=1.0)
        return delta * scale
    if norm == "linf":
        return delta.clamp(-epsilon, epsilon)
    raise ValueError(f"norm must be one of {NORMS}, got {norm!r}.")


def delta_norm(delta: torch.Tensor, norm: str) -> torch.Tensor:
    """The size of each example's ``δ`` in the ball's own norm, shape ``(batch,)``."""
    flat = delta.float().flatten(1)
    return flat.norm(dim=1) if norm == "l2" else flat.abs().amax(dim=1)


@dataclass
class Perturbation:
    """What the inner loop found.

    Args:
        delta (`torch.Tensor`): the final perturbation (float32, detached, zero on padding, inside the ball).
            Zero when `skipped`.
        skipped (`bool`): whether a non-finite inner objective or gradient was met; the adversarial term must
            then be left out for this batch.
    """

    delta: torch.Tensor
    skipped: bool


def find_perturbation(
    objective: Callable[[torch.Tensor], torch.Tensor],
    embeds: torch.Tensor,
    mask: torch.Tensor,
    *,
    steps: int,
    step_size: float,
    epsilon: float,
    init_std: float,
    norm: str,
    step_norm: str,
    descend: bool = False,
    generator: torch.Generator | None = None,
    first_grad: torch.Tensor | None = None,
    keep_init: bool = True,
    stop_early: bool = True,
) -> Perturbation:
    """Runs the inner loop ``δ ← Π(δ ± η · normalize(∇δ objective(δ)))`` for `steps` steps.

    With ``keep_init=False`` the initial noise only marks the point where the first gradient is taken and is not
    part of ``δ``: ``δ₁ = Π(± η · normalize(∇δ objective(noise)))`` (MT-DNN's ``SmartPerturbation``); later steps
    are as above. With ``ε = 0`` (no ball) and the per-token ``"linf"`` step, one step moves every real token by
    exactly ``η`` in L∞.

    Args:
        objective (`Callable[[torch.Tensor], torch.Tensor]`):
            Maps a perturbation ``δ`` (float32, requires grad) to the scalar the step climbs (or descends when
            `descend`). It runs the forward pass on ``e + δ``; the gradient is taken w.r.t. ``δ`` alone with
            `torch.autograd.grad`, so nothing is accumulated into the parameters' ``.grad``.
        embeds (`torch.Tensor`): the word-embedding output ``e``; only its shape, dtype and device are used.
        mask (`torch.Tensor`): the ``(batch, seq_len, 1)`` float mask of real tokens.
        steps (`int`): ``K`` (or ``S``), the number of ascent steps.
        step_size (`float`): ``η`` (or ``μ``).
        epsilon (`float`): ``ε``, the radius of the ball; ``0`` means no ball (only the padding is zeroed).
        init_std (`float`): ``σ``, the std of the initial noise.
        norm (`str`): the ball, ``"l2"`` (per example) or ``"linf"``.
        step_norm (`str`): the step normalisation, see [`normalize_direction`].
        descend (`bool`): step against the gradient (targeted attacks) instead of along it.
        generator (`torch.Generator`, *optional*): the source of the initial noise.
        first_grad (`torch.Tensor`, *optional*):
            ``∇δ objective`` at the initial ``δ``, when the caller already has it (e.g. from the clean backward
            with ``σ = 0``); saves one forward and one input backward.
        keep_init (`bool`): whether the initial noise stays part of ``δ`` (the papers' text) or is dropped after
            the first gradient is taken at it (the MT-DNN code the ALUM and TAT numbers came from).
        stop_early (`bool`): whether a non-finite objective or gradient ends the loop at once. With ``False`` the
            result is still marked skipped, but every remaining forward and backward runs (from ``δ = 0``): a model
            sharded with FSDP2 gathers its parameters in every pass, so every process must run the same passes.
    """
    delta = init_delta(embeds, mask, init_std, generator)
    skipped = False
    sign = -1.0 if descend else 1.0
    for step in range(steps):
        if step == 0 and first_grad is not None:
            grad = first_grad
        else:
            delta.requires_grad_(True)
            value = objective(delta)
            if not torch.isfinite(value.detach()).all():
                if stop_early:
                    return Perturbation(torch.zeros_like(delta).detach(), skipped=True)
                skipped = True
            (grad,) = torch.autograd.grad(value, delta)
        if skipped or not torch.isfinite(grad).all():
            if stop_early:
                return Perturbation(torch.zeros_like(delta).detach(), skipped=True)
            skipped = True
            delta = torch.zeros_like(delta).detach()
            continue
        direction = normalize_direction(grad, mask, step_norm)
        start = delta.detach() if keep_init or step > 0 else torch.zeros_like(delta, dtype=torch.float32)
        delta = project(start + sign * step_size * direction, mask, norm, epsilon)
    return Perturbation(torch.zeros_like(delta).detach() if skipped else delta.detach(), skipped=skipped)
