"""The symmetric-KL smoothness regulariser shared by TAT and ALUM (both run on MT-DNN's ``SymKlCriterion``)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..losses import symmetric_kl
from .base import AdversarialConfig, AdversarialTrainer, CleanPass


@dataclass
class SymmetricKLConfig(AdversarialConfig):
    r"""
    [`AdversarialConfig`] for methods whose adversarial term is ``α · SKL(f(e), f(e+δ))``.

    Parameters:
        adv_clean_gradient (`bool`, defaults to `True`):
            Whether the regulariser also moves the clean prediction: ``KL(sg(p) ‖ q) + KL(sg(q) ‖ p)``, as in the
            papers' code. ``False`` treats ``f(e)`` as a constant target (as LDS does), which lets the clean graph
            be freed before the perturbation is searched: peak memory about that of plain training instead of
            about twice, for a different gradient.
        adv_recompute_clean (`bool`, defaults to `False`):
            With `adv_clean_gradient`, keep the exact gradient without keeping the clean graph: the clean pass first
            runs without a graph, the adversarial term is back-propagated on its own, and the clean pass is then
            recomputed with the same dropout masks for its backward. Peak memory about that of plain training
            instead of about twice, for one more forward pass (K=1: 9 forwards instead of 8, 3.0× plain instead of
            2.67×). CPU and CUDA only.
    """

    adv_clean_gradient: bool = field(
        default=True,
        metadata={
            "help": "Let SKL(f(e), f(e+δ)) move the clean prediction too (the papers' code). False treats f(e) as a "
            "constant target: about half the activation memory, a different gradient."
        },
    )
    adv_recompute_clean: bool = field(
        default=False,
        metadata={
            "help": "With adv_clean_gradient: free the clean graph and recompute the clean pass (same dropout masks) "
            "for its backward. Same gradient, about half the activation memory, one more forward per step."
        },
    )

    def __post_init__(self):
        super().__post_init__()
        if self.adv_recompute_clean and not self.adv_clean_gradient:
            raise ValueError(
                "`adv_recompute_clean=True` only applies with `adv_clean_gradient=True`: with a constant clean side the "
                "clean graph is already freed before the perturbation search. Set one of them to its default."
            )


class SymmetricKLTrainer(AdversarialTrainer):
    """An [`AdversarialTrainer`] whose adversarial term is the symmetric KL between clean and perturbed outputs
    (mean squared difference for regression, masked positions for a masked LM)."""

    config_class = SymmetricKLConfig

    @property
    def regulariser_detaches_clean(self) -> bool:
        return not self.args.adv_clean_gradient

    def recompute_clean_pass(self) -> bool:
        return self.args.adv_clean_gradient and self.args.adv_recompute_clean

    def adversarial_loss(self, adv_logits: torch.Tensor, clean: CleanPass) -> torch.Tensor:
        if self.args.adv_clean_gradient:
            return symmetric_kl(clean.logits, adv_logits, clean.task, clean.labels, detach_targets=True)
        return symmetric_kl(clean.logits.detach(), adv_logits, clean.task, clean.labels)
