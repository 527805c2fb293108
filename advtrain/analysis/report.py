"""Side-by-side reports of several models' neuron analyses: Markdown tables and a plot (matplotlib, imported lazily)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from .neurons import NeuronAnalysis, _escape


def _common_tags(analyses: Mapping[str, NeuronAnalysis], tags: Sequence[str] | None) -> list[str]:
    if tags is not None:
        return list(tags)
    ordered = []
    for analysis in analyses.values():
        ordered.extend(row.tag for row in analysis.tags if row.tag not in ordered)
    return [t for t in ordered if all(any(row.tag == t for row in a.tags) for a in analyses.values())]


def association_table(analyses: Mapping[str, NeuronAnalysis], tags: Sequence[str] | None = None) -> str:
    """The comparison paper's Table 5: per tag and model, how many of the words that fire the tag's top neurons
    carry the tag (`match` of `total`, in the sentence where they fired) and the share; `% (type)` is the share of
    words that carry the tag anywhere in the evaluation data (the paper's word-list intersection)."""
    tags = _common_tags(analyses, tags)
    names = list(analyses)
    columns = (f"{_escape(n)} match / total | {_escape(n)} % | {_escape(n)} % (type)" for n in names)
    header = "| tag | " + " | ".join(columns) + " |"
    lines = [header, "|---|" + "---|---|---|" * len(names)]
    for tag in tags:
        cells = []
        for name in names:
            row = analyses[name].tag(tag)
            cells.append(f"{row.match} / {row.total} | {row.share:.1%} | {row.type_share:.1%}")
        lines.append(f"| {_escape(tag)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def accuracy_table(analyses: Mapping[str, NeuronAnalysis]) -> str:
    """The comparison paper's Table 7: probe accuracy with all neurons and with each ablation subset, per model."""
    labels = []
    for analysis in analyses.values():
        labels.extend(row.label for row in analysis.ablation if row.label not in labels)
    lines = ["| model | " + " | ".join(f"{label} neurons" for label in labels) + " |", "|---|" + "---|" * len(labels)]
    for name, analysis in analyses.items():
        by_label = {row.label: row.accuracy for row in analysis.ablation}
        cells = [f"{by_label[label]:.2%}" if label in by_label else "–" for label in labels]
        lines.append(f"| {_escape(name)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def comparison_markdown(analyses: Mapping[str, NeuronAnalysis], tags: Sequence[str] | None = None, *,
                        details: bool = True) -> str:
    """Both tables, then (with `details`) each model's own report with its neurons and words."""
    first = next(iter(analyses.values()))
    top = first.settings.get("top_k")
    if top is not None:
        selection = f"top {top} neurons"
    else:
        selection = f"neurons holding {first.settings.get('mass'):.0%} of the weight mass"
    parts = [
        "## Association strength between tags and neurons (cf. Table 5)",
        "",
        f"Per tag: the {selection}, and the {first.settings.get('words_per_neuron')} words that fire each most on the "
        f"evaluation sentences.",
        "",
        association_table(analyses, tags),
        "## Probe accuracy by neuron subset (cf. Table 7)",
        "",
        accuracy_table(analyses),
    ]
    if details:
        parts += ["## Per model", ""] + [analysis.to_markdown() for analysis in analyses.values()]
    return "\n".join(parts)


def plot_neuron_analysis(
    analyses: Mapping[str, NeuronAnalysis],
    path: str | os.PathLike | None = None,
    *,
    tags: Sequence[str] | None = None,
    title: str | None = None,
):
    """Two panels: the match share of each tag's top neurons per model (grouped bars), and the probe accuracy of
    every ablation subset per model. Needs matplotlib (`pip install "advtrain[plot]"`).

    Returns:
        The matplotlib `Figure` (closed once written to `path`).
    """
    try:
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise ImportError("plot_neuron_analysis needs matplotlib: `pip install \"advtrain[plot]\"`.") from err

    tags = _common_tags(analyses, tags)
    names = list(analyses)
    labels = []
    for analysis in analyses.values():
        labels.extend(row.label for row in analysis.ablation if row.label not in labels)
    figure, (left, right) = plt.subplots(1, 2, figsize=(min(18.0, 2.0 + 0.9 * len(tags) + 1.1 * len(labels)), 4.5),
                                         gridspec_kw={"width_ratios": [max(2, len(tags)), max(2, len(labels))]})
    width = 0.8 / len(names)
    for m, name in enumerate(names):
        shares = [100 * analyses[name].tag(tag).share for tag in tags]
        left.bar([i + (m - (len(names) - 1) / 2) * width for i in range(len(tags))], shares, width, label=name)
        by_label = {row.label: 100 * row.accuracy for row in analyses[name].ablation}
        right.bar([i + (m - (len(names) - 1) / 2) * width for i in range(len(labels))],
                  [by_label.get(label, 0.0) for label in labels], width, label=name)
    left.set_xticks(range(len(tags)), tags)
    left.set_ylim(0, 100)
    left.set_ylabel("words with the tag (%)")
    left.set_title("Top neurons' words that carry the tag")
    right.set_xticks(range(len(labels)), labels, rotation=20, ha="right")
    right.set_ylim(0, 100)
    right.set_ylabel("probe accuracy (%)")
    right.set_title("Probe accuracy by neuron subset")
    left.legend(fontsize=8)
    if title:
        figure.suptitle(title)
    from ..plotting import save_figure

    return save_figure(figure, path)
