"""Offline data augmentation, generated once before training: EDA, SSMBA and back-translation.

Each augmenter is a seeded ``datasets.Dataset -> datasets.Dataset`` transform (``augmenter(dataset)``) that keeps
every column, adds ``source_index`` and records its counts in ``augmenter.last_report``. See docs/augment.md.
"""

from ..validation import normalize_name
from .back_translation import BackTranslation, FastTranslateBackend
from .base import AugmentationReport, Augmenter
from .eda import EDA, load_wordnet_and_stopwords
from .ssmba import SSMBA

# Names the command line and configs use; `_` and `-` are interchangeable.
AUGMENTERS: dict[str, type[Augmenter]] = {"eda": EDA, "ssmba": SSMBA, "back-translation": BackTranslation}


def build_augmenter(name: str, *args, **kwargs) -> Augmenter:
    """Builds the augmenter called `name` (``"eda"``, ``"ssmba"``, ``"back-translation"``) with the given arguments."""
    key = normalize_name(name).replace("backtranslation", "back-translation")
    if key not in AUGMENTERS:
        raise ValueError(f"unknown augmenter {name!r}; known augmenters: {', '.join(sorted(AUGMENTERS))}")
    return AUGMENTERS[key](*args, **kwargs)

__all__ = [
    "AUGMENTERS",
    "AugmentationReport",
    "Augmenter",
    "BackTranslation",
    "EDA",
    "FastTranslateBackend",
    "SSMBA",
    "build_augmenter",
    "load_wordnet_and_stopwords",
]
