"""advtrain: adversarial training of language models inside the Hugging Face Trainer."""

from .perturbation import Perturbation, delta_norm, find_perturbation, init_delta, normalize_direction, project
from .trainers import (
    AdversarialConfig,
    AdversarialTrainer,
    LDSConfig,
    LDSTrainer,
    PGDATConfig,
    PGDATTrainer,
)

__version__ = "0.1.0"

__all__ = [
    "AdversarialConfig",
    "AdversarialTrainer",
    "LDSConfig",
    "LDSTrainer",
    "PGDATConfig",
    "PGDATTrainer",
    "Perturbation",
    "delta_norm",
    "find_perturbation",
    "init_delta",
    "normalize_direction",
    "project",
]
