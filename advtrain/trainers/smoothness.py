"""The symmetric-KL smoothness regulariser shared by TAT and ALUM (both run on MT-DNN's ``SymKlCriterion``)."""

from __future__ import annotations

import warnings
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
            Deprecated spelling of ``adv_backward="recompute"``: with `adv_clean_gradient`, keep the exact gradient
            without keeping the clean graph (the clean pass is recomputed with the same dropout masks for its
            backward). Peak memory about that of plain training instead of about twice, for one more forward pass
            (K=1: 9 forwards instead of 8, 3.0× plain instead of 2.67×). CPU and CUDA only.

    With ``adv_clean_gradient=True`` the default `adv_backward` is ``"joint"`` (``"recompute"`` is the low-memory
    alternative); with ``False`` it is ``"split"``.
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
            "help": "Deprecated: use adv_backward='recompute' (free the clean graph and recompute the clean pass, "
            "same dropout masks, for its backward: same gradient, about half the memory, one more forward)."
        },
    )

    @property
    def term_reads_clean_graph(self) -> bool:
        return bool(self.adv_clean_gradient)

    def validate_adversarial(self) -> None:
        if self.adv_recompute_clean:
            if not self.adv_clean_gradient:
                raise ValueError(
                    "`adv_recompute_clean=True` only applies with `adv_clean_gradient=True`: with a constant clean side "
                    "the clean graph is already freed before the perturbation search. Set one of them to its default."
                )
            if self.adv_backward not in (None, "recompute"):
                raise ValueError(
                    f"`adv_recompute_clean=True` (deprecated) asks for adv_backward='recompute', but adv_backward="
                    f"{self.adv_backward!r}. Drop adv_recompute_clean and keep adv_backward."
                )
            warnings.warn(
                "`adv_recompute_clean=True` is deprecated; use `adv_backward='recompute'`.", FutureWarning, stacklevel=3
            )
            self.adv_backward, self.adv_recompute_clean = "recompute", False
        super().validate_adversarial()


class SymmetricKLTrainer(AdversarialTrainer):
    """An [`AdversarialTrainer`] whose adversarial term is the symmetric KL between clean and perturbed outputs
    (mean squared difference for regression, masked positions for a masked LM)."""

    config_class = SymmetricKLConfig

    def adversarial_loss(self, adv_logits: torch.Tensor, clean: CleanPass) -> torch.Tensor:
        if self.args.adv_clean_gradient:
            return symmetric_kl(clean.logits, adv_logits, clean.task, clean.labels, detach_targets=True)
        return symmetric_kl(clean.logits.detach(), adv_logits, clean.task, clean.labels)
