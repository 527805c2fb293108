"""ALUM: adversarial training for large neural language models (Liu et al., 2020), for fine-tuning and for
masked-LM pre-training or continued pre-training.

ALUM paper (``../papers``) and its code in the MT-DNN toolkit (``mt_dnn/perturbation.py``, ``SmartPerturbation``)::

    noise ~ N(0, σ²)
    g = ∇δ SKL(f(e), f(e+δ)) at δ = noise;   δ = η·normalize_linf(g)      (f(e) detached; the noise is not kept)
    (K > 1: repeat  g = ∇δ SKL at δ;  δ = δ + η·normalize_linf(g))
    loss = L_task(f(e)) + α · SKL(f(e), f(e+δ))

These are the defaults (``adv_keep_init=False``, ``adv_epsilon=0``: no ball), so each real token moves by ``η``
in L∞. The paper's text instead writes ``δ = Π_ε(noise + η·normalize(g))`` with ``ε = 1e-5``, which makes the
perturbation (and the regulariser) about 1,500× weaker; it is [`ALUMConfig.paper_text`].

For a masked LM (``AutoModelForMaskedLM`` with ``DataCollatorForLanguageModeling``) ``L_task`` is the MLM loss and
the divergences are taken between the vocabulary distributions at the masked positions (labels ≠ -100).

The paper writes the initial noise as ``N(0, σ²I)`` with ``σ² = 1e-5``; the MT-DNN code it was run with uses 1e-5 as
the standard deviation. ``adv_init_std`` follows the code (1e-5); set ``adv_init_std=0.00316`` for ``σ² = 1e-5``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..losses import symmetric_kl
from ..perturbation import NORMS, STEP_NORMS
from .base import CleanPass
from .smoothness import SymmetricKLConfig, SymmetricKLTrainer


@dataclass
class ALUMConfig(SymmetricKLConfig):
    r"""
    Configuration of [`ALUMTrainer`]: [`SymmetricKLConfig`] with the ALUM paper's defaults for fine-tuning.

    Parameters that control the perturbation (defaults: the MT-DNN code, ``δ = η · normalize_linf(∇ at noise)``):
        adv_steps (`int`, defaults to `1`): ``K`` (paper: 1).
        adv_step_size (`float`, defaults to `1e-3`): ``η`` (paper: 1e-3); every real token moves by ``η`` in L∞.
        adv_epsilon (`float`, defaults to `0.0`): ``ε``; ``0`` is no ball, as in the MT-DNN code (the paper's text:
            ``linf``, 1e-5; see [`ALUMConfig.paper_text`]).
        adv_keep_init (`bool`, defaults to `False`): the initial noise only marks where the gradient is taken, as in
            the MT-DNN code (the paper's text keeps it: ``True``).
        adv_init_std (`float`, defaults to `1e-5`): ``σ``, std of the initial noise (MT-DNN code; the paper's
            ``σ² = 1e-5`` is a std of about 3.2e-3).
        adv_norm (`str`, defaults to `"linf"`): the ball, the paper's choice.
        adv_step_norm (`str`, defaults to `"linf"`): per-token normalisation of each step, the paper's choice.
        adv_weight (`float`, defaults to `1.0`): ``α``; the paper uses 1 for fine-tuning and 10 for (continued)
            masked-LM pre-training, where it also trains plainly first (`adv_start_step`).
        adv_clean_gradient (`bool`, defaults to `True`): see [`SymmetricKLConfig`].
        adv_recompute_clean (`bool`, defaults to `False`): see [`SymmetricKLConfig`].
    """

    adv_steps: int = field(default=1, metadata={"help": "K: number of ascent steps (paper: 1)."})
    adv_step_size: float = field(default=1e-3, metadata={"help": "η: size of each ascent step (paper: 1e-3)."})
    adv_epsilon: float = field(
        default=0.0,
        metadata={"help": "ε: radius of the perturbation ball; 0 (default, MT-DNN code) is no ball (paper text: 1e-5)."},
    )
    adv_keep_init: bool = field(
        default=False,
        metadata={"help": "Keep the initial noise in δ (paper text: True); False (default, MT-DNN code): δ = η·dir."},
    )
    adv_init_std: float = field(
        default=1e-5,
        metadata={"help": "σ: std of the initial noise (MT-DNN code: 1e-5; the paper's σ² = 1e-5 is std 0.00316)."},
    )
    adv_norm: str = field(default="linf", metadata={"help": "The ball: 'linf' (paper) or 'l2'.", "choices": NORMS})
    adv_step_norm: str = field(
        default="linf",
        metadata={"help": "Step normalisation: 'linf' (per token, paper's code), 'l2', 'sign' or 'none'.", "choices": STEP_NORMS},
    )
    adv_weight: float = field(
        default=1.0,
        metadata={"help": "α: weight of SKL(f(e), f(e+δ)); paper: 1 for fine-tuning, 10 for masked-LM pre-training."},
    )

    @classmethod
    def paper_text(cls, **kwargs) -> ALUMConfig:
        """The ALUM paper's text read literally: ``δ = Π_linf(noise + η·normalize_linf(g))`` with ``ε = 1e-5``
        (``adv_epsilon=1e-5, adv_keep_init=True``). Every step saturates at ``1e-5``, so ``η`` no longer matters and
        the regulariser is about 1,500× smaller than at the defaults (docs/alum.md). `kwargs` set any other field."""
        return cls(**{"adv_epsilon": 1e-5, "adv_keep_init": True, **kwargs})


class ALUMTrainer(SymmetricKLTrainer):
    """Trains on ``L_task(f(e)) + α · SKL(f(e), f(e+δ))``, with ``δ`` found by ``K`` steps of normalised gradient
    ascent on the same symmetric KL (clean side constant). Sequence classification, regression (the divergence is
    then the mean squared difference) and masked LMs (divergence at the masked positions).

    The regulariser is MT-DNN's ``SymKlCriterion``: ``KL(sg(p_clean) ‖ p_adv) + KL(sg(p_adv) ‖ p_clean)``, so the
    clean prediction is pulled toward the perturbed one as well (``adv_clean_gradient=False``: the clean side is a
    constant and the clean graph is freed before the perturbation is searched).
    """

    config_class = ALUMConfig

    def perturbation_objective(self, adv_logits: torch.Tensor, clean: CleanPass) -> torch.Tensor:
        return symmetric_kl(clean.logits.detach(), adv_logits, clean.task, clean.labels, reduction="sum")
