"""R3F: robust representations through regularised fine-tuning (Aghajanyan et al., ICLR 2021, "Better Fine-Tuning
by Reducing Representational Collapse").

The paper and its reference code (fairseq ``examples/rxf``, criterion ``sentence_prediction_r3f``)::

    z ~ U(−σ, σ)  or  N(0, σ²)        on the word embeddings e (here: real tokens only)      σ = adv_init_std
    loss = L_task(f(e)) + λ · SKL(f(e), f(e + z))                                             λ = adv_weight

No ascent step: the perturbation is the noise itself, so a step costs two forwards and one backward through both,
about 2× a plain step. Both sides of the symmetric KL are live, as in the reference code (neither distribution is
detached), so the term moves the clean prediction too: the default backward is ``"joint"``, and ``"recompute"``
gives the same gradient with one graph alive at a time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from .. import perturbation as engine
from ..losses import symmetric_kl
from ..perturbation import NORMS, Perturbation
from ..validation import check_field, is_number
from .base import AdversarialConfig, AdversarialTrainer, CleanPass

R3F_NOISES = ("uniform", "normal")


@dataclass
class R3FConfig(AdversarialConfig):
    r"""
    Configuration of [`R3FTrainer`]: [`AdversarialConfig`] with R3F's fields and the defaults of the R3F reference
    code (fairseq ``sentence_prediction_r3f``: ``--noise-type uniform --eps 1e-5 --r3f-lambda 1.0``).

    Parameters that control the noise and the term:
        r3f_noise (`str`, defaults to `"uniform"`):
            The distribution of ``z``: ``"uniform"``, ``U(−σ, σ)`` per element, or ``"normal"``, ``N(0, σ²)``
            (reference code: ``--noise-type``; ``uniform`` for sentence prediction, ``normal`` for its translation
            criterion). Zero on padding.
        adv_init_std (`float`, defaults to `1e-5`):
            ``σ``, the scale of the noise: the standard deviation for ``"normal"``, the half-width for ``"uniform"``
            (reference code: ``--eps``). Must be > 0.
        adv_weight (`float`, defaults to `1.0`):
            ``λ``, the weight of ``SKL(f(e), f(e + z))`` (reference code: ``--r3f-lambda``); ``0`` trains plainly.
        adv_norm (`str`, defaults to `"linf"`):
            Only the norm the logged ``adv/delta_norm`` is measured in (``"linf"``: ``max|z|`` per example, ``≤ σ``
            for uniform noise).
        adv_backward (`str`, *optional*):
            ``"joint"`` (the default: one backward through the clean and the noisy pass) or ``"recompute"`` (the same
            gradient, the clean pass recomputed with the same dropout masks for its backward: one more forward, about
            half the activation memory). ``"split"`` is refused: the term moves the clean prediction.

    R3F takes no ascent step: ``adv_steps`` must be ``1``, and ``adv_step_size``, ``adv_epsilon`` (the noise is not
    projected; fairseq's ``--eps`` is ``adv_init_std`` here), ``adv_keep_init`` and ``adv_step_norm`` are not used.
    ``adv_site="layer:N"`` puts ``z`` on the hidden states of block ``N`` instead of the word embeddings.
    """

    r3f_noise: str = field(
        default="uniform",
        metadata={
            "help": "Distribution of the noise z on the word embeddings: 'uniform' U(-σ, σ) (reference code's default "
            "for sentence prediction) or 'normal' N(0, σ²).",
            "choices": R3F_NOISES,
        },
    )
    adv_init_std: float = field(
        default=1e-5,
        metadata={
            "help": "σ: scale of the noise z, the std for 'normal' and the half-width for 'uniform' (reference code: "
            "--eps 1e-5); must be > 0."
        },
    )
    adv_weight: float = field(
        default=1.0,
        metadata={"help": "λ: weight of SKL(f(e), f(e + z)) (reference code: --r3f-lambda 1.0); 0 trains plainly."},
    )
    adv_norm: str = field(
        default="linf",
        metadata={"help": "Norm of the logged adv/delta_norm: 'linf' (max |z| per example) or 'l2'.", "choices": NORMS},
    )
    adv_backward: str | None = field(
        default=None,
        metadata={
            "help": "'joint' (default: one backward through both passes) or 'recompute' (same gradient, clean pass "
            "recomputed for its backward: one more forward, about half the memory).",
            "choices": ("joint", "recompute"),
        },
    )

    @property
    def term_reads_clean_graph(self) -> bool:
        return True  # SKL(f(e), f(e + z)) with both sides live, as in the reference code

    def validate_adversarial(self) -> None:
        check_field(self, self.r3f_noise in R3F_NOISES, "r3f_noise", f"one of {R3F_NOISES}")
        check_field(self, is_number(self.adv_init_std) and self.adv_init_std > 0, "adv_init_std",
                    "a number > 0 (σ, the noise scale; at 0 the term is zero: set adv_weight=0 to train plainly)")
        check_field(self, self.adv_steps == 1, "adv_steps",
                    "1: R3F adds noise and takes no ascent step (for ascent steps on a symmetric KL use ALUMTrainer)")
        check_field(self, self.adv_backward in (None, "joint", "recompute"), "adv_backward",
                    "None, 'joint' or 'recompute' (R3F's term moves the clean prediction, so 'split' would be inexact)")
        super().validate_adversarial()


class R3FTrainer(AdversarialTrainer):
    """Trains on ``L_task(f(e)) + λ · SKL(f(e), f(e + z))`` with ``z`` fresh noise on the word embeddings of every
    batch (zero on padding) and no ascent step. Sequence classification, regression (the divergence is then the mean
    squared difference of the outputs) and masked LMs (divergence at the masked positions).

    The term goes through the shared `AdversarialTrainer._adversarial_term`: a non-finite term is left out of the step
    (``adv/skipped``) on every backward path, and the metrics are those of every trainer.
    """

    config_class = R3FConfig

    def sample_noise(self, embeds: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``z``: float32, shaped like `embeds`, zero where `mask` is 0; ``U(−σ, σ)`` or ``N(0, σ²)`` elsewhere."""
        sigma = self.args.adv_init_std
        if self.args.r3f_noise == "normal":
            return engine.init_delta(embeds, mask, sigma)
        return engine.uniform_delta(embeds, mask, sigma, "linf")

    def _find_perturbation(self, model: nn.Module, clean: CleanPass, first_grad: torch.Tensor | None = None):
        # The perturbation is the noise itself: no inner loop, no forward pass.
        return Perturbation(self.sample_noise(clean.embeds, clean.mask), skipped=False)

    def adversarial_loss(self, adv_logits: torch.Tensor, clean: CleanPass) -> torch.Tensor:
        return symmetric_kl(clean.logits, adv_logits, clean.task, clean.labels)
