"""Offline data augmentation, generated once before training: EDA, SSMBA and back-translation.

Each augmenter is a seeded ``datasets.Dataset -> datasets.Dataset`` transform (``augmenter(dataset)``) that keeps
every column, adds ``source_index`` and records its counts in ``augmenter.last_report``. See docs/augment.md.
"""

from .back_translation import BackTranslation, FastTranslateBackend
from .base import AugmentationReport, Augmenter
from .eda import EDA, load_wordnet_and_stopwords
from .ssmba import SSMBA

__all__ = [
    "AugmentationReport",
    "Augmenter",
    "BackTranslation",
    "EDA",
    "FastTranslateBackend",
    "SSMBA",
    "load_wordnet_and_stopwords",
]
