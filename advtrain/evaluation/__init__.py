"""Robustness evaluation: clean accuracy, accuracy under attack and attack success rate per attack (with 95% Wilson
intervals, the share of WordNet-synonym substitutions and the adversarial examples), paired tests between models,
an embedding-space robust-accuracy curve, out-of-distribution accuracy and optional temperature calibration, in one
`RobustnessReport` (see ``docs/evaluation.md``)."""

from .attacks import EVALUATION_ATTACKS, build_evaluation_attack
from .compare import (
    compare_attacks,
    comparison_markdown,
    comparison_rows,
    outcomes_under_attack,
    pooled_attack_comparison,
    statuses_by_row,
    success_rate_difference_interval,
)
from .embedding import EmbeddingRobustnessCurve, embedding_robustness_curve
from .examples import (
    AdversarialExample,
    adversarial_examples,
    load_examples,
    mark_changes,
    save_examples,
    synonym_counts,
    word_substitutions,
)
from .harness import evaluate_robustness, load_model, run_attack
from .metrics import AttackSummary, RobustnessReport, compute_accuracy, format_interval, summarize_attack
from .scoring import (
    TemperatureScaledModel,
    clean_accuracy,
    dataset_inputs,
    fit_temperature,
    predict_logits,
)
from .stats import (
    PairedComparison,
    mcnemar_exact_p,
    mean_interval,
    paired_bootstrap_interval,
    paired_comparison,
    wilson_interval,
)

__all__ = [
    "AdversarialExample",
    "EmbeddingRobustnessCurve",
    "PairedComparison",
    "adversarial_examples",
    "compare_attacks",
    "statuses_by_row",
    "success_rate_difference_interval",
    "comparison_markdown",
    "comparison_rows",
    "embedding_robustness_curve",
    "format_interval",
    "load_examples",
    "mark_changes",
    "mcnemar_exact_p",
    "mean_interval",
    "outcomes_under_attack",
    "pooled_attack_comparison",
    "paired_bootstrap_interval",
    "paired_comparison",
    "save_examples",
    "synonym_counts",
    "wilson_interval",
    "word_substitutions",
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
