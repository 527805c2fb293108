"""The comparison of evaluated models: a Markdown table (one row per model × attack) and a plot of clean accuracy
against attack success rate, from `RobustnessReport`s (what ``advtrain report`` writes)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

__all__ = ["plot_reports", "report_markdown", "write_report"]


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def report_markdown(reports: Sequence[Any]) -> str:
    """One Markdown row per model × attack (`RobustnessReport`s): every rate with its 95% interval, the attacked
    sample's own clean accuracy beside its accuracy under attack, the WordNet-synonym share of the substitutions and
    the exact McNemar test of each model against the first (`advtrain.evaluation.compare.comparison_markdown`),
    then each report's notes."""
    from .compare import comparison_markdown

    lines = [comparison_markdown(reports, baseline=0).rstrip("\n")]
    # A note shared by every model is listed once; otherwise it names the models it applies to.
    owners: dict[str, list[str]] = {}
    for r in reports:
        for note in [*r.notes, *(f"{a.attack}: {note}" for a in r.attacks for note in a.notes)]:
            owners.setdefault(note, []).append(r.model)
    everyone = [r.model for r in reports]
    notes = [note if models == everyone else f"{note} ({', '.join(dict.fromkeys(models))})"
             for note, models in owners.items()]
    ood = [f"{r.model}: OOD clean accuracy on {name} {_pct(acc)}%" for r in reports for name, acc in r.ood_accuracy.items()]
    extra = [f"- {line}" for line in ood] + [f"- Note: {note}" for note in notes]
    return "\n".join(lines + ([""] + extra if extra else [])) + "\n"


def plot_reports(reports: Sequence[Any], path: str) -> None:
    """Clean accuracy (y) against attack success rate (x): one point per model, one marker per attack."""
    import matplotlib.pyplot as plt

    from ..plotting import save_figure

    figure, ax = plt.subplots(figsize=(6, 4.5))
    markers = "os^Dv<>px*"
    attacks = list(dict.fromkeys(a.attack for r in reports for a in r.attacks))
    plotted = False
    for k, attack in enumerate(attacks):
        points = [(r.model, a.attack_success_rate, r.clean_accuracy) for r in reports for a in r.attacks
                  if a.attack == attack and a.attack_success_rate is not None]
        if not points:
            continue
        ax.scatter([100 * x for _, x, _ in points], [100 * y for _, _, y in points], marker=markers[k % len(markers)],
                   s=60, label=attack)
        for model, x, y in points:
            ax.annotate(model, (100 * x, 100 * y), textcoords="offset points", xytext=(5, 5), fontsize=9)
        plotted = True
    ax.margins(0.2)  # room for the labels
    ax.set_xlabel("attack success rate (%) — lower is more robust")
    ax.set_ylabel("clean accuracy (%)")
    ax.set_title("Clean accuracy vs attack success rate")
    ax.grid(alpha=0.3)
    if plotted:
        ax.legend(title="attack")
    else:
        ax.text(0.5, 0.5, "no attacked example (every one was misclassified or errored)", ha="center",
                transform=ax.transAxes)
    figure.tight_layout()
    save_figure(figure, path)


def write_report(paths: Sequence[str], output_dir: str, *, plot: bool = True) -> tuple[str, str | None]:
    """Reads `RobustnessReport` JSON files and writes ``report.md`` (and ``report.png`` when `plot`) to `output_dir`.
    Returns the Markdown and the PNG's path (`None` without a plot). Raises `FileNotFoundError` for a missing report,
    `ValueError` for a file that is not one, and `ImportError` when matplotlib is missing, after the Markdown was
    written."""
    from .metrics import RobustnessReport

    reports = []
    for path in paths:
        try:
            reports.append(RobustnessReport.load(path))
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: no such file (a JSON report from `advtrain evaluate`).") from None
        except (ValueError, TypeError, KeyError) as err:
            raise ValueError(f"{path}: not a robustness report ({err}).") from None
    os.makedirs(output_dir, exist_ok=True)
    markdown = report_markdown(reports)
    with open(os.path.join(output_dir, "report.md"), "w") as f:
        f.write(markdown)
    if not plot:
        return markdown, None
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ImportError(
            "report.png needs matplotlib: `pip install \"advtrain[plot]\"` (report.md was written; pass --no_plot to "
            "skip the plot)."
        ) from None
    png = os.path.join(output_dir, "report.png")
    plot_reports(reports, png)
    return markdown, png
