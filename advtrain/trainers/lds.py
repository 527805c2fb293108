"""LDS: local distributional smoothness, the virtual-adversarial regulariser of Miyato et al.

Comparison paper (``../papers``), Algorithm 1, "LDS" lines::

    δ ~ N(0, σ²)
    repeat S times:  g = ∇δ KL(p(e) ‖ p(e+δ));   δ = Π(δ + μ·normalize(g))      (p(e) detached)
    loss = CE(f(e), y) + α · KL(p(e) ‖ p(e+δ))

As in virtual adversarial training the clean distribution is a constant target in both places: the regulariser
pulls the perturbed prediction toward the clean one and does not move the clean one.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import torch

from ..losses import kl_divergence
from ..perturbation import NORMS, STEP_NORMS
from .base import AdversarialConfig, AdversarialTrainer, CleanPass


@dataclass
class LDSConfig(AdversarialConfig):
    r"""
    Configuration of [`LDSTrainer`]: [`AdversarialConfig`] with the comparison paper's defaults (as PGD-AT).

    Parameters that control the perturbation:
        adv_steps (`int`, defaults to `3`): ``S`` (paper: 3).
        adv_step_size (`float`, defaults to `1e-3`): ``μ``.
        adv_epsilon (`float`, defaults to `0.003`): ``ε``, L2 radius (paper: 0.003).
        adv_init_std (`float`, defaults to `1e-5`): ``σ``; must be > 0 in practice, because the divergence's
            gradient at ``δ = 0`` is zero (a warning is given for 0).
        adv_norm (`str`, defaults to `"l2"`): the ball (paper: L2).
        adv_step_norm (`str`, defaults to `"l2"`): normalisation of each step.
        adv_weight (`float`, defaults to `1.0`): ``α``.
    """

    adv_steps: int = field(default=3, metadata={"help": "S: number of ascent steps (paper: 3)."})
    adv_step_size: float = field(default=1e-3, metadata={"help": "μ: size of each ascent step."})
    adv_epsilon: float = field(default=3e-3, metadata={"help": "ε: radius of the perturbation ball (paper: L2, 0.003)."})
    adv_init_std: float = field(
        default=1e-5,
        metadata={"help": "σ: std of the initial noise; keep it > 0, the KL's gradient at δ = 0 is zero."},
    )
    adv_norm: str = field(default="l2", metadata={"help": "The ball: 'l2' (paper) or 'linf'.", "choices": NORMS})
    adv_step_norm: str = field(
        default="l2",
        metadata={"help": "Step normalisation: 'l2', 'linf', 'sign' or 'none'.", "choices": STEP_NORMS},
    )
    adv_weight: float = field(default=1.0, metadata={"help": "α: weight of KL(p(e) ‖ p(e+δ)) in the loss."})

    def __post_init__(self):
        super().__post_init__()
        if self.adv_init_std == 0:
            warnings.warn(
                "LDSConfig(adv_init_std=0): the KL's gradient at δ = 0 is zero, so without dropout δ stays 0 and the "
                "regulariser vanishes. Set adv_init_std > 0 (default 1e-5).",
                stacklevel=2,
            )


class LDSTrainer(AdversarialTrainer):
    """Trains on ``CE(f(e), y) + α · KL(p(e) ‖ p(e+δ))`` with ``δ`` found by ``S`` steps of projected gradient
    ascent on the same KL (mean squared difference of the outputs for regression; masked positions for an MLM)."""

    config_class = LDSConfig

    def perturbation_objective(self, adv_logits: torch.Tensor, clean: CleanPass) -> torch.Tensor:
        return kl_divergence(clean.logits.detach(), adv_logits, clean.task, clean.labels, reduction="sum")

    def adversarial_loss(self, adv_logits: torch.Tensor, clean: CleanPass) -> torch.Tensor:
        return kl_divergence(clean.logits.detach(), adv_logits, clean.task, clean.labels)
