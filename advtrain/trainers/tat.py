"""TAT: targeted adversarial training (Pereira et al., NAACL 2021), built on virtual adversarial training.

TAT paper (``../papers``), Algorithm 1, with the running tally of the model's mistakes::

    e(y, y') counts how often the model predicts y' for gold label y       (starts uniform)
    y_t ~ e(y, ·) over C \\ {y}, in proportion to the tally
    δ ~ N(0, σ²)
    repeat K times:  g = ∇δ CE(f(e+δ), y_t);   δ = Π_linf(δ − η·normalize(g))      (descend toward y_t)
    loss = CE(f(e), y) + α · SKL(f(e), f(e+δ))

The tally is filled from the clean forward of every training batch (no extra forward), summed across processes,
and turned into the sampling distribution at the start of every epoch (or, with ``tat_tally_update="ema"``, after
every step). For regression the label range is cut into ``tat_num_bins`` bins and the tally is kept over bins.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import TrainerCallback

from ..losses import task_loss
from ..perturbation import NORMS, STEP_NORMS
from ..validation import check_field, is_int, is_number
from .base import CleanPass, is_causal_lm
from .smoothness import SymmetricKLConfig, SymmetricKLTrainer
from .tally import TALLY_UPDATES, ConfusionTally, bin_of, target_distribution_from_counts  # noqa: F401

CAUSAL_LM_REFUSAL = (
    "TATTrainer cannot train {}, a causal LM: its targeted step descends toward a wrong label drawn from a tally of "
    "(gold, predicted) label counts, one label per example, but a causal LM predicts a distribution over its whole "
    "vocabulary at every position, where a vocabulary × vocabulary tally can neither be estimated from the training "
    "batches nor sampled into meaningful targets. Use ALUMTrainer (the same symmetric-KL term with an untargeted "
    "step), LDSTrainer or PGDATTrainer."
)


@dataclass
class TATConfig(SymmetricKLConfig):
    r"""
    Configuration of [`TATTrainer`]: [`SymmetricKLConfig`] with the TAT paper's defaults, plus the tally.

    Parameters that control the perturbation (defaults: the MT-DNN SMART code TAT is built on, ``δ = −η ·
    normalize_linf(∇ CE(f(e+noise), y_t))``, so every real token moves by ``η`` toward the target):
        adv_steps (`int`, defaults to `1`): ``K`` (paper: 1).
        adv_step_size (`float`, defaults to `1e-4`): ``η`` (paper: 1e-4).
        adv_epsilon (`float`, defaults to `0.0`): ``ε``; ``0`` is no ball, as in the MT-DNN code (the paper's text:
            ``linf``, 1e-5, which makes ``η`` irrelevant; see [`TATConfig.paper_text`]).
        adv_keep_init (`bool`, defaults to `False`): the initial noise only marks where the gradient is taken, as in
            the MT-DNN code (the paper's text keeps it: ``True``).
        adv_init_std (`float`, defaults to `1e-5`): ``σ``, std of the initial noise (MT-DNN default).
        adv_norm (`str`, defaults to `"linf"`): the ball, as the paper's code.
        adv_step_norm (`str`, defaults to `"linf"`): per-token normalisation of each step, as the paper's code.
        adv_weight (`float`, defaults to `1.0`): ``α`` (paper: 1).
        adv_clean_gradient (`bool`, defaults to `True`): see [`SymmetricKLConfig`].
        adv_recompute_clean (`bool`, defaults to `False`): see [`SymmetricKLConfig`].

    Parameters that control the tally ``e(y, y')``:
        tat_tally_update (`str`, defaults to `"epoch"`):
            ``"epoch"``: the sampling distribution is rebuilt at the start of each epoch from all counts so far
            (the paper); ``"ema"``: it moves after every training batch toward that batch's confusions, with
            `tat_ema_decay` (a row moves only when the batch holds a mistake on its gold label).
        tat_ema_decay (`float`, defaults to `0.99`): decay of the ``"ema"`` update, in ``[0, 1)``.
        tat_tally_prior (`float`, defaults to `1.0`):
            Pseudo-count added to every off-diagonal cell under ``"epoch"`` updates: the uniform start, and the floor
            that keeps every wrong label reachable. ``0`` samples only labels the model has confused (uniform for a row
            with none). Under ``"ema"`` the distribution starts uniform and this is not used.
        tat_fixed_tally (`list[list[float]]` or `str`, *optional*):
            A fixed ``C × C`` matrix (or the path of a JSON file holding one) used instead of the running tally: the
            paper's "oracle" mode (e.g. the confusion matrix of a plain fine-tune). Rows are gold labels.
        tat_num_bins (`int`, defaults to `10`): regression only, number of bins of the label range (paper: 10).
        tat_label_range (`list[float]`, *optional*):
            Regression only, ``[low, high]`` of the bins; by default the range of the training dataset's labels.
    """

    adv_steps: int = field(default=1, metadata={"help": "K: number of targeted steps (paper: 1)."})
    adv_step_size: float = field(default=1e-4, metadata={"help": "η: size of each targeted step (paper: 1e-4)."})
    adv_epsilon: float = field(
        default=0.0,
        metadata={"help": "ε: radius of the perturbation ball; 0 (default, MT-DNN code) is no ball (paper text: 1e-5)."},
    )
    adv_keep_init: bool = field(
        default=False,
        metadata={"help": "Keep the initial noise in δ (paper text: True); False (default, MT-DNN code): δ = −η·dir."},
    )
    adv_init_std: float = field(default=1e-5, metadata={"help": "σ: std of the initial noise (MT-DNN default 1e-5)."})
    adv_norm: str = field(default="linf", metadata={"help": "The ball: 'linf' (paper) or 'l2'.", "choices": NORMS})
    adv_step_norm: str = field(
        default="linf",
        metadata={"help": "Step normalisation: 'linf' (per token, paper's code), 'l2', 'sign' or 'none'.", "choices": STEP_NORMS},
    )
    adv_weight: float = field(default=1.0, metadata={"help": "α: weight of SKL(f(e), f(e+δ)) in the loss (paper: 1)."})
    tat_tally_update: str = field(
        default="epoch",
        metadata={
            "help": "'epoch': rebuild the target distribution from all counts at each epoch start (paper); 'ema': "
            "move it after every training batch toward that batch's confusions.",
            "choices": TALLY_UPDATES,
        },
    )
    tat_ema_decay: float = field(
        default=0.99, metadata={"help": "Decay of the 'ema' tally update, in [0, 1); ignored with 'epoch'."}
    )
    tat_tally_prior: float = field(
        default=1.0,
        metadata={"help": "'epoch' updates: pseudo-count in every off-diagonal tally cell (the uniform start); 0 targets "
                  "only seen errors."},
    )
    tat_fixed_tally: list | str | None = field(
        default=None,
        metadata={
            "help": "Oracle mode: a fixed C×C matrix (nested list, or path of a JSON file with one) used instead of "
            "the running tally; rows are gold labels, columns predicted labels."
        },
    )
    tat_num_bins: int = field(default=10, metadata={"help": "Regression: number of bins of the label range (paper: 10)."})
    tat_label_range: list[float] | None = field(
        default=None,
        metadata={"help": "Regression: [low, high] of the bins; default: the range of the training labels."},
    )

    @classmethod
    def paper_text(cls, **kwargs) -> TATConfig:
        """The TAT paper's text read literally: ``δ = Π_linf(noise − η·normalize_linf(g))`` with ``ε = 1e-5``
        (``adv_epsilon=1e-5, adv_keep_init=True``); every step saturates at ``1e-5``, so ``η`` no longer matters
        (docs/tat.md). `kwargs` set any other field."""
        return cls(**{"adv_epsilon": 1e-5, "adv_keep_init": True, **kwargs})

    def validate_adversarial(self) -> None:
        super().validate_adversarial()
        check_field(self, self.tat_tally_update in TALLY_UPDATES, "tat_tally_update", f"one of {TALLY_UPDATES}")
        check_field(self, is_number(self.tat_ema_decay) and 0 <= self.tat_ema_decay < 1, "tat_ema_decay",
                    "a number in [0, 1)")
        check_field(self, is_number(self.tat_tally_prior) and self.tat_tally_prior >= 0, "tat_tally_prior",
                    "a number ≥ 0")
        check_field(self, is_int(self.tat_num_bins) and self.tat_num_bins >= 2, "tat_num_bins", "an integer ≥ 2")
        if self.tat_label_range is not None:
            bounds = list(self.tat_label_range)
            valid = len(bounds) == 2 and all(is_number(b) and math.isfinite(b) for b in bounds) and bounds[0] < bounds[1]
            check_field(self, valid, "tat_label_range", "[low, high] with low < high")
            self.tat_label_range = [float(b) for b in bounds]
        if self.tat_fixed_tally is not None:
            self.tat_fixed_tally = _read_matrix(self.tat_fixed_tally)


def _read_matrix(value: Any) -> list[list[float]]:
    """Validates a square, non-negative, finite matrix (or a JSON file holding one) and returns it as lists."""
    if isinstance(value, str):
        try:
            with open(value) as f:
                value = json.load(f)
        except (OSError, ValueError) as err:
            raise ValueError(f"`tat_fixed_tally` is a path, but {value!r} is not a readable JSON file: {err}") from err
    try:
        matrix = torch.as_tensor(value, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"`tat_fixed_tally` must be a C×C matrix of numbers, got {value!r}.") from err
    if matrix.dim() != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] < 2:
        raise ValueError(f"`tat_fixed_tally` must be a square C×C matrix with C ≥ 2, got shape {tuple(matrix.shape)}.")
    if not bool(torch.isfinite(matrix).all()) or bool((matrix < 0).any()):
        raise ValueError("`tat_fixed_tally` must hold finite counts ≥ 0.")
    return matrix.tolist()


class _TallyEpochCallback(TrainerCallback):
    def __init__(self, trainer: TATTrainer):
        self.trainer = trainer

    def on_epoch_begin(self, args, state, control, **kwargs):
        # state.epoch counts the epochs completed so far (also after resuming from a mid-epoch checkpoint).
        self.trainer.tally.start_epoch(int(state.epoch + 1e-6))


class TATTrainer(SymmetricKLTrainer):
    """Trains on ``CE(f(e), y) + α · SKL(f(e), f(e+δ))``, with ``δ`` found by ``K`` steps of projected gradient
    descent on ``CE(f(e+δ), y_t)`` toward a target label ``y_t`` drawn from the tally of the model's own mistakes.

    The tally (a [`~advtrain.trainers.tally.ConfusionTally`], `tally`) is read through `confusion_tally` (counts,
    rows = gold, columns = predicted) and `target_distribution` (the rows the targets are drawn from); draw it with
    [`advtrain.plotting.plot_confusion_tally`]. It is saved with every checkpoint and restored on resume.
    """

    config_class = TATConfig
    descend = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.model is not None and is_causal_lm(self.model):
            raise ValueError(CAUSAL_LM_REFUSAL.format(type(self.model).__name__))
        self.tally = ConfusionTally(
            self.args.tat_tally_update, self.args.tat_tally_prior, self.args.tat_ema_decay, self.args.tat_fixed_tally
        )
        self.add_callback(_TallyEpochCallback(self))
        num_labels = getattr(getattr(self.model, "config", None), "num_labels", None)
        if isinstance(num_labels, int):
            self.tally.check_fixed_size(self.args.tat_num_bins if num_labels == 1 else num_labels)

    # ----------------------------------------------------------------------------------------------------------
    # The objective.

    def perturbation_objective(self, adv_logits: torch.Tensor, clean: CleanPass) -> torch.Tensor:
        return task_loss(adv_logits, clean.extras["targets"], clean.task, reduction="sum")

    def prepare_clean_pass(self, clean: CleanPass) -> None:
        if clean.task == "causal_lm":
            raise ValueError(CAUSAL_LM_REFUSAL.format(type(self.model).__name__))
        if clean.task == "masked_lm":
            raise ValueError("TATTrainer trains classifiers and regressors; for masked-LM training use ALUMTrainer.")
        gold, predicted = self._classes_of(clean)
        num_classes = self.args.tat_num_bins if clean.task == "regression" else clean.logits.shape[-1]
        self.tally.ensure(num_classes, clean.logits.device)
        target_classes = self.tally.sample(gold)
        if clean.task == "regression":
            edges = self.tally.bin_edges
            low, width = edges[target_classes], edges[1] - edges[0]
            targets = low + width * torch.rand(target_classes.shape, device=low.device, dtype=low.dtype)
            clean.extras["targets"] = targets.to(clean.labels.dtype if clean.labels.is_floating_point() else torch.float32)
        else:
            clean.extras["targets"] = target_classes
        clean.extras["target_classes"] = target_classes
        self._record("tat/target_entropy", self.tally.mean_row_entropy())  # of the distribution the targets came from
        self.tally.update(gold, predicted, self._sum_over_processes)

    def _sum_over_processes(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.accelerator.num_processes > 1:
            return self.accelerator.reduce(tensor, reduction="sum")
        return tensor

    def _classes_of(self, clean: CleanPass) -> tuple[torch.Tensor, torch.Tensor]:
        """Gold and predicted classes of the batch (bins for regression)."""
        if clean.task == "regression":
            if self.tally.bin_edges is None:
                low, high = self._label_range()
                self.tally.bin_edges = torch.linspace(low, high, self.args.tat_num_bins + 1, dtype=torch.float64)
            self.tally.bin_edges = edges = self.tally.bin_edges.to(clean.logits.device)
            return bin_of(clean.labels.double().view(-1), edges), bin_of(clean.logits.detach().double().view(-1), edges)
        return clean.labels.long(), clean.logits.detach().argmax(dim=-1)

    def _label_range(self) -> tuple[float, float]:
        if self.args.tat_label_range is not None:
            return tuple(self.args.tat_label_range)
        dataset = self.train_dataset
        columns = getattr(dataset, "column_names", None) or []
        for name in ("labels", "label"):
            if name in columns:
                values = torch.as_tensor(list(dataset[name]), dtype=torch.float64)
                low, high = float(values.min()), float(values.max())
                if low < high:
                    return low, high
                raise ValueError(f"All training labels equal {low}: set `tat_label_range=[low, high]` for the bins.")
        raise ValueError(
            "TATTrainer bins regression labels over the range seen in training, but it cannot read a 'label' or "
            "'labels' column from the training dataset. Set `tat_label_range=[low, high]` in the TATConfig."
        )

    # ----------------------------------------------------------------------------------------------------------
    # Reading the tally, and its checkpoint state.

    bin_of = staticmethod(bin_of)

    @property
    def confusion_tally(self) -> torch.Tensor | None:
        """``(C, C)`` counts of (gold, predicted) over the training batches seen so far, summed over processes
        (the fixed matrix in oracle mode); ``None`` before the first training step."""
        if self.args.tat_fixed_tally is not None:
            return torch.tensor(self.args.tat_fixed_tally, dtype=torch.float64)
        return None if self.tally.counts is None else self.tally.counts.detach().cpu().double()

    @property
    def target_distribution(self) -> torch.Tensor | None:
        """``(C, C)`` rows ``P(y_t | gold)`` the targets are drawn from now (diagonal 0)."""
        return None if self.tally.probs is None else self.tally.probs.detach().cpu().clone()

    @property
    def bin_edges(self) -> torch.Tensor | None:
        """Regression: the ``num_bins + 1`` edges of the label bins (``None`` for classification)."""
        return None if self.tally.bin_edges is None else self.tally.bin_edges.detach().cpu().clone()

    def adversarial_state(self) -> dict[str, Any]:
        return self.tally.state_dict()

    def load_adversarial_state(self, state: dict[str, Any]) -> None:
        self.tally.load_state_dict(state)
