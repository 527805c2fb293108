from .alum import ALUMConfig, ALUMTrainer
from .base import AdversarialConfig, AdversarialTrainer, CleanPass, check_model_supports_perturbation, is_causal_lm
from .freelb import FreeLBConfig, FreeLBTrainer
from .lds import LDSConfig, LDSTrainer
from .pgd_at import PGDATConfig, PGDATTrainer
from .r3f import R3FConfig, R3FTrainer
from .smoothness import SymmetricKLConfig, SymmetricKLTrainer
from .tat import TATConfig, TATTrainer

__all__ = [
    "ALUMConfig",
    "ALUMTrainer",
    "AdversarialConfig",
    "AdversarialTrainer",
    "CleanPass",
    "FreeLBConfig",
    "FreeLBTrainer",
    "LDSConfig",
    "LDSTrainer",
    "PGDATConfig",
    "PGDATTrainer",
    "R3FConfig",
    "R3FTrainer",
    "SymmetricKLConfig",
    "SymmetricKLTrainer",
    "TATConfig",
    "TATTrainer",
    "check_model_supports_perturbation",
    "is_causal_lm",
]
