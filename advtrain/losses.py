"""Task losses and divergences between model outputs, for the four kinds of task advtrain trains.

- ``"classification"``: logits ``(batch, num_labels)``; the task loss is cross-entropy, a divergence is taken
  between the softmax distributions.
- ``"regression"`` (``num_labels == 1``): outputs ``(batch, 1)``; the task loss is MSE, a "divergence" is the
  mean squared difference of the outputs.
- ``"masked_lm"``: logits ``(batch, seq_len, vocab)`` and labels with ``-100`` at positions that are not
  predicted; losses and divergences are means over the predicted positions.
- ``"causal_lm"``: logits ``(batch, seq_len, vocab)`` and labels ``(batch, seq_len)`` aligned with ``input_ids``
  (``-100`` where nothing is predicted), as a causal LM's own ``forward(labels=...)`` takes them. The logits at
  position ``t`` predict the label at ``t + 1``: the shift (``logits[:, :-1]`` against ``labels[:, 1:]``) is applied
  here, once, in `predicted_positions`; losses and divergences are means over the shifted positions whose label is not
  ``-100``, so at ``δ = 0`` `task_loss` is the model's own ``outputs.loss``.

Every divergence here is a mean over examples (torch's ``batchmean``) or over predicted positions, so that the
value of a batch of ``n`` examples is the mean of the values of its examples. Logits are promoted to float32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

TASKS = ("classification", "regression", "masked_lm", "causal_lm")
TOKEN_TASKS = ("masked_lm", "causal_lm")
IGNORE_INDEX = -100


def predicted_positions(logits: torch.Tensor, labels: torch.Tensor, task: str) -> tuple[torch.Tensor, torch.Tensor]:
    """For a token-level task, the logits and labels of the predicted positions, flattened to ``(n, vocab)`` and
    ``(n,)``: for ``"causal_lm"`` after the shift (the logits at ``t`` against the label at ``t + 1``), for
    ``"masked_lm"`` as they are; positions labelled ``-100`` are left out."""
    if task == "causal_lm":
        if labels.shape != logits.shape[:-1]:
            raise ValueError(
                f"A causal LM's labels must be shaped like its input_ids, {tuple(logits.shape[:-1])}, with -100 where "
                f"nothing is predicted; got {tuple(labels.shape)}. Use DataCollatorForLanguageModeling(mlm=False) or "
                "copy input_ids into labels (the shift is applied by advtrain, as by the model's own loss)."
            )
        logits, labels = logits[:, :-1], labels[:, 1:]
    keep = labels.reshape(-1) != IGNORE_INDEX
    return logits.reshape(-1, logits.shape[-1])[keep], labels.reshape(-1)[keep]


def count_predicted(labels: torch.Tensor, task: str) -> torch.Tensor:
    """The number of terms a mean of `task` runs over: predicted positions (shifted for ``"causal_lm"``) for a
    token-level task, examples otherwise."""
    if task == "causal_lm":
        return (labels[:, 1:] != IGNORE_INDEX).sum()
    if task == "masked_lm":
        return (labels != IGNORE_INDEX).sum()
    return torch.tensor(labels.shape[0], device=labels.device)


def task_loss(logits: torch.Tensor, labels: torch.Tensor, task: str, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy (classification; masked and causal LM over the predicted positions) or MSE (regression) in
    float32. A token-level batch with no predicted position has a loss of 0 (still part of the graph)."""
    if task == "regression":
        return F.mse_loss(logits.float().view(-1), labels.float().view(-1), reduction=reduction)
    if task in TOKEN_TASKS:
        logits, labels = predicted_positions(logits, labels, task)
        if labels.numel() == 0:
            return logits.float().sum()
    return F.cross_entropy(logits.float(), labels.long(), reduction=reduction)


def kl_divergence(
    p_logits: torch.Tensor, q_logits: torch.Tensor, task: str, labels: torch.Tensor | None = None, reduction="mean"
) -> torch.Tensor:
    """``KL(p ‖ q)`` between the distributions of two logit tensors, summed over classes and averaged over
    examples (or over the predicted positions of a masked or causal LM, given its `labels`: for a causal LM the
    next-token distributions at the positions whose shifted label is not ``-100``).

    For regression it is the mean squared difference of the two outputs. Neither side is detached here: detach
    the side that is a target before calling.
    """
    if task in TOKEN_TASKS:
        if labels is None:
            raise ValueError(f"A {task} divergence needs the labels to find the predicted positions.")
        p_logits, _ = predicted_positions(p_logits, labels, task)
        q_logits, _ = predicted_positions(q_logits, labels, task)
    if task == "regression":
        return F.mse_loss(q_logits.float().view(-1), p_logits.float().view(-1), reduction=reduction)
    p_log = F.log_softmax(p_logits.float(), dim=-1)
    q_log = F.log_softmax(q_logits.float(), dim=-1)
    per_example = (p_log.exp() * (p_log - q_log)).sum(dim=-1)
    if reduction == "sum":
        return per_example.sum()
    if per_example.numel() == 0:  # a token-level batch with no predicted position
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
