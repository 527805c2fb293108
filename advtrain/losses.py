"""Task losses and divergences between model outputs, for the three kinds of task advtrain trains.

- ``"classification"``: logits ``(batch, num_labels)``; the task loss is cross-entropy, a divergence is taken
  between the softmax distributions.
- ``"regression"`` (``num_labels == 1``): outputs ``(batch, 1)``; the task loss is MSE, a "divergence" is the
  mean squared difference of the outputs.
- ``"masked_lm"``: logits ``(batch, seq_len, vocab)`` and labels with ``-100`` at positions that are not
  predicted; losses and divergences are means over the predicted positions.

Every divergence here is a mean over examples (torch's ``batchmean``) or over predicted positions, so that the
value of a batch of ``n`` examples is the mean of the values of its examples. Logits are promoted to float32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

TASKS = ("classification", "regression", "masked_lm")
IGNORE_INDEX = -100


def _select(logits: torch.Tensor, labels: torch.Tensor, task: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Flattens masked-LM logits/labels to the predicted positions; other tasks are returned as they are."""
    if task != "masked_lm":
        return logits, labels
    keep = labels.reshape(-1) != IGNORE_INDEX
    return logits.reshape(-1, logits.shape[-1])[keep], labels.reshape(-1)[keep]


def task_loss(logits: torch.Tensor, labels: torch.Tensor, task: str, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy (classification, masked LM over predicted positions) or MSE (regression) in float32."""
    logits, labels = _select(logits, labels, task)
    if task == "regression":
        return F.mse_loss(logits.float().view(-1), labels.float().view(-1), reduction=reduction)
    return F.cross_entropy(logits.float(), labels.long(), reduction=reduction)


def kl_divergence(
    p_logits: torch.Tensor, q_logits: torch.Tensor, task: str, labels: torch.Tensor | None = None, reduction="mean"
) -> torch.Tensor:
    """``KL(p ‖ q)`` between the distributions of two logit tensors, summed over classes and averaged over
    examples (or over the predicted positions of a masked LM, given its `labels`).

    For regression it is the mean squared difference of the two outputs. Neither side is detached here: detach
    the side that is a target before calling.
    """
    if task == "masked_lm":
        if labels is None:
            raise ValueError("A masked-LM divergence needs the labels to find the predicted positions.")
        keep = labels.reshape(-1) != IGNORE_INDEX
        p_logits = p_logits.reshape(-1, p_logits.shape[-1])[keep]
        q_logits = q_logits.reshape(-1, q_logits.shape[-1])[keep]
    if task == "regression":
        return F.mse_loss(q_logits.float().view(-1), p_logits.float().view(-1), reduction=reduction)
    p_log = F.log_softmax(p_logits.float(), dim=-1)
    q_log = F.log_softmax(q_logits.float(), dim=-1)
    per_example = (p_log.exp() * (p_log - q_log)).sum(dim=-1)
    if reduction == "sum":
        return per_example.sum()
    if per_example.numel() == 0:  # a masked-LM batch with no predicted position
        return per_example.sum()
    return per_example.mean()


def symmetric_kl(
    clean_logits: torch.Tensor,
    adv_logits: torch.Tensor,
    task: str,
    labels: torch.Tensor | None = None,
    reduction: str = "mean",
    detach_targets: bool = False,
) -> torch.Tensor:
    """``SKL(p, q) = KL(p ‖ q) + KL(q ‖ p)``; for regression, the mean squared difference (counted once).

    With `detach_targets` each direction treats its first distribution as a constant target, as MT-DNN's
    ``SymKlCriterion`` (the code of SMART, ALUM and TAT) does: ``KL(sg(p) ‖ q) + KL(sg(q) ‖ p)``. The value is the
    same; the gradient pulls each side toward the other instead of also reshaping the targets.
    """
    if task == "regression":
        return kl_divergence(clean_logits, adv_logits, task, labels, reduction)
    if detach_targets:
        return kl_divergence(clean_logits.detach(), adv_logits, task, labels, reduction) + kl_divergence(
            adv_logits.detach(), clean_logits, task, labels, reduction
        )
    return kl_divergence(clean_logits, adv_logits, task, labels, reduction) + kl_divergence(
        adv_logits, clean_logits, task, labels, reduction
    )
