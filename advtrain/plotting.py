"""Pictures of training state. Needs matplotlib (``pip install "advtrain[plot]"``)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch


def plot_confusion_tally(
    tally: Any,
    path: str | os.PathLike | None = None,
    *,
    labels: Sequence[str] | None = None,
    normalize: bool = True,
    title: str | None = None,
    annotate: bool | None = None,
):
    """Draws a ``C × C`` tally (rows: gold labels, columns: predicted labels) as a labelled heat-map.

    Args:
        tally (`torch.Tensor`, `numpy.ndarray` or nested list): e.g. `TATTrainer.confusion_tally` or
            `TATTrainer.target_distribution`.
        path (`str`, *optional*): where to write the PNG (folders are created); without it nothing is written.
        labels (`Sequence[str]`, *optional*): class names, in label order (default ``0 … C-1``).
        normalize (`bool`, defaults to `True`): colour each row by its share of the row's total (the raw counts
            are still written in the cells).
        title (`str`, *optional*): the figure's title.
        annotate (`bool`, *optional*): write the value in every cell (default: when ``C ≤ 12``).

    Returns:
        The matplotlib `Figure` (closed if it was written to `path`).
    """
    try:
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise ImportError("plot_confusion_tally needs matplotlib: `pip install \"advtrain[plot]\"`.") from err

    counts = torch.as_tensor(tally, dtype=torch.float64).cpu()
    if counts.dim() != 2 or counts.shape[0] != counts.shape[1]:
        raise ValueError(f"A tally must be a square C×C matrix, got shape {tuple(counts.shape)}.")
    num_classes = counts.shape[0]
    names = [str(i) for i in range(num_classes)] if labels is None else [str(name) for name in labels]
    if len(names) != num_classes:
        raise ValueError(f"`labels` has {len(names)} names for a {num_classes}×{num_classes} tally.")
    shown = counts / counts.sum(dim=1, keepdim=True).clamp(min=1e-12) if normalize else counts

    size = max(4.0, 0.6 * num_classes + 2.0)
    figure, axes = plt.subplots(figsize=(size + 1.0, size))
    image = axes.imshow(shown.numpy(), cmap="viridis", vmin=0.0, vmax=1.0 if normalize else None)
    figure.colorbar(image, ax=axes, label="share of the gold label's row" if normalize else "count")
    axes.set_xticks(range(num_classes), names, rotation=45, ha="right")
    axes.set_yticks(range(num_classes), names)
    axes.set_xlabel("predicted label")
    axes.set_ylabel("gold label")
    axes.set_title(title or "Confusion tally")
    if annotate if annotate is not None else num_classes <= 12:
        integral = bool(torch.all(counts == counts.round()))
        for row in range(num_classes):
            for col in range(num_classes):
                value = counts[row, col].item()
                text = f"{int(value)}" if integral else f"{value:.2f}"
                colour = "black" if shown[row, col] > 0.6 else "white"
                axes.text(col, row, text, ha="center", va="center", color=colour, fontsize=8)
    return save_figure(figure, path)


def save_figure(figure, path: str | os.PathLike | None):
    """Lays `figure` out and, given a `path`, writes it as a PNG (folders created) and closes it; returns it."""
    figure.tight_layout()
    if path is not None:
        import matplotlib.pyplot as plt

        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        figure.savefig(path, dpi=150)
        plt.close(figure)
    return figure
