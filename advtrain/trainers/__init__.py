from .base import AdversarialConfig, AdversarialTrainer, CleanPass, check_model_supports_perturbation
from .lds import LDSConfig, LDSTrainer
from .pgd_at import PGDATConfig, PGDATTrainer

__all__ = [
    "AdversarialConfig",
    "AdversarialTrainer",
    "CleanPass",
    "LDSConfig",
    "LDSTrainer",
    "PGDATConfig",
    "PGDATTrainer",
    "check_model_supports_perturbation",
]
