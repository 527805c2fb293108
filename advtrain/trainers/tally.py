"""TAT's running tally of the model's mistakes: its counts, the target distribution drawn from them, its update rule
(per epoch, or an exponential moving average per step), regression bins, its sum across processes, and its state.

`TATTrainer` holds one `ConfusionTally` and keeps only its objective; the tally knows nothing of the Trainer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

TALLY_UPDATES = ("epoch", "ema")


def target_distribution_from_counts(counts: torch.Tensor, prior: float = 0.0) -> torch.Tensor:
    """Rows ``P(y_t | y)``: the off-diagonal counts plus `prior`, normalised; a row with no mass is uniform over
    the wrong labels. The diagonal (the gold label) is always 0."""
    num_classes = counts.shape[0]
    off_diagonal = 1.0 - torch.eye(num_classes, dtype=torch.float64, device=counts.device)
    weights = (counts.double() + prior) * off_diagonal
    totals = weights.sum(dim=1, keepdim=True)
    uniform = off_diagonal / (num_classes - 1)
    return torch.where(totals > 0, weights / totals.clamp(min=1e-300), uniform)


def bin_of(values: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """Index of the bin of each value; values outside the range go to the first or last bin."""
    return torch.bucketize(values, edges[1:-1].to(values.dtype), right=True).clamp(0, edges.numel() - 2)


class ConfusionTally:
    """Counts ``e(gold, predicted)`` and the distribution ``P(y_t | gold)`` targets are drawn from.

    Args:
        update (`str`): ``"epoch"`` (the distribution is rebuilt from all counts at each epoch start) or ``"ema"``
            (it moves after every batch toward that batch's confusions).
        prior (`float`): pseudo-count of every off-diagonal cell under ``"epoch"`` updates.
        ema_decay (`float`): decay of the ``"ema"`` update.
        fixed (`list[list[float]]`, *optional*): a fixed matrix used instead of the counts (oracle mode).
    """

    def __init__(self, update: str = "epoch", prior: float = 1.0, ema_decay: float = 0.99, fixed: Any = None):
        self.update_rule, self.prior, self.ema_decay, self.fixed = update, prior, ema_decay, fixed
        self.counts: torch.Tensor | None = None  # (C, C) int64, summed over processes
        self.probs: torch.Tensor | None = None  # (C, C) float64, the target distribution in use
        self.refreshed_epochs = 0
        self.bin_edges: torch.Tensor | None = None  # regression: (num_bins + 1,)

    def ensure(self, num_classes: int, device: torch.device) -> None:
        """Creates the counts and the starting distribution (uniform, or the fixed matrix) on first use."""
        if self.counts is not None and self.counts.shape[0] != num_classes:
            raise ValueError(
                f"The tally has {self.counts.shape[0]} classes but the model now predicts {num_classes}; a resumed "
                "checkpoint must come from the same task."
            )
        if self.counts is None:
            self.counts = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)
        if self.probs is None:
            if self.fixed is not None:
                self.check_fixed_size(num_classes)
                fixed = torch.tensor(self.fixed, dtype=torch.float64, device=device)
                self.probs = target_distribution_from_counts(fixed)
            else:
                self.probs = target_distribution_from_counts(self.counts, self.prior)
        self.counts, self.probs = self.counts.to(device), self.probs.to(device)

    def check_fixed_size(self, num_classes: int) -> None:
        """Refuses a fixed (oracle) matrix whose size is not the model's number of classes (bins for regression)."""
        if self.fixed is not None and len(self.fixed) != num_classes:
            size = len(self.fixed)
            raise ValueError(
                f"`tat_fixed_tally` is {size}×{size}, but the model has {num_classes} classes (bins for regression): "
                f"give a {num_classes}×{num_classes} matrix."
            )

    def sample(self, gold: torch.Tensor) -> torch.Tensor:
        """One target class per example, drawn from the row of its gold class (never the gold class itself)."""
        return torch.multinomial(self.probs[gold].float(), 1).squeeze(1)

    def update(self, gold: torch.Tensor, predicted: torch.Tensor, reduce: Callable[[torch.Tensor], torch.Tensor]):
        """Adds a batch's (gold, predicted) pairs; `reduce` sums a tensor over processes (identity for one)."""
        num_classes = self.counts.shape[0]
        batch = torch.bincount(gold * num_classes + predicted, minlength=num_classes**2).view(num_classes, num_classes)
        batch = reduce(batch)
        self.counts += batch
        if self.fixed is None and self.update_rule == "ema":
            step = target_distribution_from_counts(batch, 0.0)
            off_diagonal = 1 - torch.eye(num_classes, dtype=batch.dtype, device=batch.device)
            has_errors = (batch * off_diagonal).sum(1) > 0
            decay = self.ema_decay
            self.probs = torch.where(has_errors.unsqueeze(1), decay * self.probs + (1 - decay) * step, self.probs)

    def start_epoch(self, completed_epochs: int) -> None:
        """Rebuilds the distribution from the counts so far, once per epoch (``"epoch"`` updates)."""
        if completed_epochs <= self.refreshed_epochs:
            return
        self.refreshed_epochs = completed_epochs
        if self.counts is not None and self.fixed is None and self.update_rule == "epoch":
            self.probs = target_distribution_from_counts(self.counts, self.prior)

    def mean_row_entropy(self) -> torch.Tensor:
        probs = self.probs.float()
        return -(probs * probs.clamp(min=1e-30).log()).sum(dim=1).mean()

    def state_dict(self) -> dict[str, Any]:
        """Tensors, numbers and ``None`` only (read back with ``torch.load(weights_only=True)``)."""
        if self.counts is None:
            return {"refreshed_epochs": self.refreshed_epochs}
        return {
            "tally_counts": self.counts.cpu(),
            "target_distribution": self.probs.cpu(),
            "refreshed_epochs": self.refreshed_epochs,
            "bin_edges": None if self.bin_edges is None else self.bin_edges.cpu(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.refreshed_epochs = int(state.get("refreshed_epochs", 0))
        self.counts = state.get("tally_counts")
        self.probs = state.get("target_distribution")
        self.bin_edges = state.get("bin_edges")
