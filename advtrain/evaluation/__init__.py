"""Robustness evaluation: clean accuracy, accuracy under attack and attack success rate per attack, out-of-distribution
accuracy and optional temperature calibration, in one `RobustnessReport` (see ``docs/evaluation.md``)."""

from .attacks import EVALUATION_ATTACKS, build_evaluation_attack
from .harness import evaluate_robustness, load_model, run_attack
from .metrics import AttackSummary, RobustnessReport, compute_accuracy, summarize_attack
from .scoring import (
    TemperatureScaledModel,
    clean_accuracy,
    dataset_inputs,
    fit_temperature,
    predict_logits,
)

__all__ = [
    "EVALUATION_ATTACKS",
    "AttackSummary",
    "RobustnessReport",
    "TemperatureScaledModel",
    "build_evaluation_attack",
    "clean_accuracy",
    "compute_accuracy",
    "dataset_inputs",
    "evaluate_robustness",
    "fit_temperature",
    "load_model",
    "predict_logits",
    "run_attack",
    "summarize_attack",
]
