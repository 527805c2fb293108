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
    """

    adv_clean_gradient: bool = field(
        default=True,
        metadata={
            "help": "Let SKL(f(e), f(e+δ)) move the clean prediction too (the papers' code). False treats f(e) as a "
            "constant target: about half the activation memory, a different gradient."
        },
    )


class SymmetricKLTrainer(AdversarialTrainer):
    """An [`AdversarialTrainer`] whose adversarial term is the symmetric KL between clean and perturbed outputs
    (mean squared difference for regression, masked positions for a masked LM)."""

    config_class = SymmetricKLConfig

    @property
    def regulariser_detaches_clean(self) -> bool:
        return not self.args.adv_clean_gradient

    def adversarial_loss(self, adv_logits: torch.Tensor, clean: CleanPass) -> torch.Tensor:
        if self.args.adv_clean_gradient:
            return symmetric_kl(clean.logits, adv_logits, clean.task, clean.labels, detach_targets=True)
        return symmetric_kl(clean.logits.detach(), adv_logits, clean.task, clean.labels)
