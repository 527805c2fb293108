"""advtrain: adversarial training of language models inside the Hugging Face Trainer."""

from .perturbation import Perturbation, delta_norm, find_perturbation, init_delta, normalize_direction, project
from .trainers import (
    ALUMConfig,
    ALUMTrainer,
    AdversarialConfig,
    AdversarialTrainer,
    LDSConfig,
    LDSTrainer,
    PGDATConfig,
    PGDATTrainer,
    TATConfig,
    TATTrainer,
)

__version__ = "0.1.0"

__all__ = [
    "ALUMConfig",
    "ALUMTrainer",
    "AdversarialConfig",
    "AdversarialTrainer",
    "LDSConfig",
    "LDSTrainer",
    "PGDATConfig",
    "PGDATTrainer",
    "TATConfig",
    "TATTrainer",
    "Perturbation",
    "delta_norm",
    "find_perturbation",
    "init_delta",
    "normalize_direction",
    "project",
]
