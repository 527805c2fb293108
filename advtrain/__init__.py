"""advtrain: adversarial training of language models inside the Hugging Face Trainer.

Names are imported on first use, so that ``import advtrain`` (and the ``advtrain`` command's ``--help``) does not
pay for importing torch and transformers until a trainer or the engine is needed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "AdversarialConfig": "advtrain.trainers",
    "AdversarialTrainer": "advtrain.trainers",
    "ALUMConfig": "advtrain.trainers",
    "ALUMTrainer": "advtrain.trainers",
    "FreeLBConfig": "advtrain.trainers",
    "FreeLBTrainer": "advtrain.trainers",
    "LDSConfig": "advtrain.trainers",
    "LDSTrainer": "advtrain.trainers",
    "PGDATConfig": "advtrain.trainers",
    "PGDATTrainer": "advtrain.trainers",
    "R3FConfig": "advtrain.trainers",
    "R3FTrainer": "advtrain.trainers",
    "SymmetricKLConfig": "advtrain.trainers",
    "SymmetricKLTrainer": "advtrain.trainers",
    "TATConfig": "advtrain.trainers",
    "TATTrainer": "advtrain.trainers",
    "Perturbation": "advtrain.perturbation",
    "delta_norm": "advtrain.perturbation",
    "find_perturbation": "advtrain.perturbation",
    "init_delta": "advtrain.perturbation",
    "normalize_direction": "advtrain.perturbation",
    "project": "advtrain.perturbation",
    "uniform_delta": "advtrain.perturbation",
    "MissingResourceError": "advtrain.resources",
    # Offline augmenters.
    "AugmentationReport": "advtrain.augment",
    "Augmenter": "advtrain.augment",
    "BackTranslation": "advtrain.augment",
    "EDA": "advtrain.augment",
    "FastTranslateBackend": "advtrain.augment",
    "SSMBA": "advtrain.augment",
    # Attacks and online attack-based augmentation.
    "ATTACK_RECIPES": "advtrain.attacks",
    "Attack": "advtrain.attacks",
    "AttackResult": "advtrain.attacks",
    "OnlineAttackAugmentation": "advtrain.training",
    "SentenceEncoder": "advtrain.attacks",
    "TextAttackAttack": "advtrain.attacks",
    "WordSubstitutionAttack": "advtrain.attacks",
    "WordVectors": "advtrain.attacks",
    "a2t": "advtrain.attacks",
    "a2t_mlm": "advtrain.attacks",
    "bert_attack": "advtrain.attacks",
    "build_attack": "advtrain.attacks",
    "bae": "advtrain.attacks",
    "pwws": "advtrain.attacks",
    "textfooler": "advtrain.attacks",
    # Robustness evaluation.
    "EVALUATION_ATTACKS": "advtrain.evaluation",
    "AttackSummary": "advtrain.evaluation",
    "RobustnessReport": "advtrain.evaluation",
    "TemperatureScaledModel": "advtrain.evaluation",
    "build_evaluation_attack": "advtrain.evaluation",
    "clean_accuracy": "advtrain.evaluation",
    "evaluate_robustness": "advtrain.evaluation",
    "fit_temperature": "advtrain.evaluation",
    "summarize_attack": "advtrain.evaluation",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:  # pragma: no cover
    from .attacks import (
        ATTACK_RECIPES,
        Attack,
        AttackResult,
        SentenceEncoder,
        TextAttackAttack,
        WordSubstitutionAttack,
        WordVectors,
        a2t,
        a2t_mlm,
        bae,
        bert_attack,
        build_attack,
        pwws,
        textfooler,
    )
    from .augment import EDA, SSMBA, AugmentationReport, Augmenter, BackTranslation, FastTranslateBackend
    from .evaluation import (
        EVALUATION_ATTACKS,
        AttackSummary,
        RobustnessReport,
        TemperatureScaledModel,
        build_evaluation_attack,
        clean_accuracy,
        evaluate_robustness,
        fit_temperature,
        summarize_attack,
    )
    from .perturbation import (
        Perturbation,
        delta_norm,
        find_perturbation,
        init_delta,
        normalize_direction,
        project,
        uniform_delta,
    )
    from .resources import MissingResourceError
    from .trainers import (
        AdversarialConfig,
        AdversarialTrainer,
        ALUMConfig,
        ALUMTrainer,
        FreeLBConfig,
        FreeLBTrainer,
        LDSConfig,
        LDSTrainer,
        PGDATConfig,
        PGDATTrainer,
        R3FConfig,
        R3FTrainer,
        SymmetricKLConfig,
        SymmetricKLTrainer,
        TATConfig,
        TATTrainer,
    )
    from .training import OnlineAttackAugmentation


_SUBMODULES = (
    "analysis", "attacks", "augment", "checkpoints", "cli", "commands", "compat", "data", "demo", "evaluation", "lexicon",
    "losses", "perturbation", "pipeline", "plotting", "resources", "trainers", "training", "validation",
)


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"advtrain.{name}")
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'advtrain' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
