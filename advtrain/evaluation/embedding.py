"""An embedding-space robust-accuracy curve: accuracy under PGD on the word embeddings at several radii.

A cheap white-box check that adversarial training in embedding space (PGD-AT, FreeLB, ALUM, TAT, ...) moved what it
claims to move: the model's accuracy when every example's word embeddings ``e`` may be shifted by any ``δ`` with
``‖δ‖ ≤ ε`` (found by projected gradient ascent on the cross-entropy), for a few radii ``ε``. It runs the shared
perturbation engine, `advtrain.perturbation.find_perturbation`, exactly as the trainers do, on ``inputs_embeds``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from ..attacks.batching import eval_mode, length_sorted_batches, model_device
from ..perturbation import find_perturbation, token_mask_like
from .stats import wilson_interval


@dataclass
class EmbeddingRobustnessCurve:
    """Accuracy under an embedding-space PGD attack at each radius.

    Args:
        radii (`list[float]`): the radii ``ε`` (0 is clean accuracy).
        accuracy (`list[float]`): accuracy at each radius.
        intervals (`list[tuple[float, float]]`): 95% Wilson score interval of each accuracy.
        num_examples (`int`): examples evaluated.
        norm (`str`): the ball, ``"l2"`` (per example, over all its real tokens) or ``"linf"``.
        steps (`int`): PGD steps per radius.
        step_size (`float`, *optional*): the step ``η`` as a multiple of ``ε`` (``η = step_size · ε``).
    """

    radii: list[float]
    accuracy: list[float]
    intervals: list[tuple[float, float]] = field(default_factory=list)
    num_examples: int = 0
    norm: str = "l2"
    steps: int = 10
    step_size: float = 0.25

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["intervals"] = [list(i) for i in self.intervals]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EmbeddingRobustnessCurve:
        data = dict(data)
        data["intervals"] = [tuple(i) for i in data.get("intervals", [])]
        return cls(**data)

    def to_markdown(self) -> str:
        """One Markdown table row: accuracy % [95% interval] per radius."""
        head = " | ".join(f"ε = {r:g}" for r in self.radii)
        cells = " | ".join(
            f"{100 * a:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]" for a, (lo, hi) in zip(self.accuracy, self.intervals)
        )
        return (
            f"Embedding-space robust accuracy % ({self.norm} PGD on the word embeddings, {self.steps} steps of "
            f"{self.step_size:g}·ε, {self.num_examples} examples):\n\n| {head} |\n|{'---:|' * len(self.radii)}\n"
            f"| {cells} |"
        )


def embedding_robustness_curve(
    model: torch.nn.Module,
    tokenizer: Any,
    texts: Sequence[Any],
    labels: Sequence[int],
    radii: Sequence[float] = (0.0, 0.5, 1.0, 2.0),
    *,
    steps: int = 10,
    step_size: float = 0.25,
    norm: str = "l2",
    batch_size: int = 32,
    max_length: int = 128,
) -> EmbeddingRobustnessCurve:
    """Accuracy of `model` when PGD may shift each example's word embeddings by ``δ`` with ``‖δ‖ ≤ ε``, per radius.

    For each batch and radius ``ε``, ``δ`` starts at 0 and takes `steps` steps ``δ ← Π_ε(δ + η · normalize(∇δ L))``
    with ``L`` the summed cross-entropy of ``model(inputs_embeds=e + δ)`` against the gold labels, ``η = step_size · ε``
    and the step normalised in the ball's own norm (``"l2"``: per example; ``"linf"``: sign) — the shared engine
    `advtrain.perturbation.find_perturbation`, nothing re-implemented. Padding gets no perturbation. The radius is in
    the units of the model's embedding output (an L2 ball over all of an example's tokens: compare models with the
    same embedding scale, e.g. fine-tuned from the same encoder). An example counts as robust at ``ε`` if the
    perturbation after the last step leaves it correctly classified.

    The model runs in eval mode (restored afterwards); gradients are taken w.r.t. ``δ`` alone, so no parameter's
    ``.grad`` is touched.

    Args:
        model (`PreTrainedModel`): a sequence classifier accepting ``inputs_embeds``.
        tokenizer: its fast tokenizer.
        texts (`Sequence[str | tuple[str, str]]`): inputs (pairs for sentence-pair tasks).
        labels (`Sequence[int]`): gold labels.
        radii (`Sequence[float]`, *optional*, defaults to ``(0, 0.5, 1, 2)``): the radii ``ε ≥ 0``.
        steps (`int`, *optional*, defaults to 10): PGD steps per radius.
        step_size (`float`, *optional*, defaults to 0.25): ``η / ε``.
        norm (`str`, *optional*, defaults to ``"l2"``): ``"l2"`` or ``"linf"``.
        batch_size (`int`, *optional*, defaults to 32): examples per forward.
        max_length (`int`, *optional*, defaults to 128): truncation length.
    """
    if norm not in ("l2", "linf"):
        raise ValueError(f"norm must be 'l2' or 'linf', got {norm!r}")
    if any(r < 0 for r in radii) or not len(radii):
        raise ValueError(f"radii must be non-negative and at least one, got {list(radii)}")
    if len(texts) != len(labels) or not len(texts):
        raise ValueError(f"need as many labels as texts (at least one), got {len(texts)} and {len(labels)}")
    pairs = not isinstance(texts[0], str)
    columns = list(zip(*texts)) if pairs else [list(texts)]
    enc = tokenizer(*[list(c) for c in columns], truncation=True, max_length=max_length)
    device = model_device(model)
    embeddings = model.get_input_embeddings()
    correct = [0] * len(radii)
    with eval_mode(model):
        for rows, batch in length_sorted_batches(enc, batch_size, tokenizer, device):
            gold = torch.tensor([int(labels[r]) for r in rows], device=device)
            with torch.no_grad():
                embeds = embeddings(batch.pop("input_ids")).detach()
            mask = token_mask_like(embeds, batch.get("attention_mask"))

            def logits_at(delta: torch.Tensor, embeds=embeds, batch=batch) -> torch.Tensor:
                return model(inputs_embeds=embeds + delta.to(embeds.dtype), **batch).logits.float()

            def objective(delta: torch.Tensor, gold=gold) -> torch.Tensor:
                # Summed, not averaged: each example's step is that of its own loss (the step is normalised per example).
                return F.cross_entropy(logits_at(delta), gold, reduction="sum")

            for k, radius in enumerate(radii):
                if radius == 0 or steps == 0:
                    delta = torch.zeros(embeds.shape, dtype=torch.float32, device=device)
                else:
                    with torch.enable_grad():
                        delta = find_perturbation(
                            objective, embeds, mask, steps=steps, step_size=step_size * radius, epsilon=radius,
                            init_std=0.0, norm=norm, step_norm="l2" if norm == "l2" else "sign",
                        ).delta
                with torch.no_grad():
                    correct[k] += int((logits_at(delta).argmax(-1) == gold).sum())
    n = len(texts)
    return EmbeddingRobustnessCurve(
        radii=[float(r) for r in radii],
        accuracy=[c / n for c in correct],
        intervals=[wilson_interval(c, n) for c in correct],
        num_examples=n,
        norm=norm,
        steps=steps,
        step_size=step_size,
    )
