"""The training methods by name: ``plain`` (the Hugging Face `Trainer`) and advtrain's four trainers, each with its
config class. The command line, the fine-tuning pipeline, the demo and the benchmarks read this one table."""

from __future__ import annotations

METHODS = ("plain", "pgd_at", "lds", "tat", "alum", "freelb", "r3f")

# The robustness recipe (issue 18): the configuration that lowered A2T's success rate the most against plain
# fine-tuning of all-MiniLM-L6-v2 on 2,000 MR sentences within 2 points of clean accuracy and 3× the training time,
# in the search of `benchmarks/robustness_recipe.py` (figures with intervals over 3 seeds: docs/results.md). The
# fields are those changed from the method's defaults. `advtrain demo` trains it beside plain fine-tuning.
ROBUSTNESS_RECIPE: tuple[str, dict] = ("freelb", {"adv_steps": 2, "adv_step_size": 0.3})


def method_classes(method: str) -> tuple[type, type]:
    """``(trainer class, config class)`` of a method name from `METHODS`."""
    from transformers import Trainer, TrainingArguments

    from .alum import ALUMConfig, ALUMTrainer
    from .freelb import FreeLBConfig, FreeLBTrainer
    from .lds import LDSConfig, LDSTrainer
    from .pgd_at import PGDATConfig, PGDATTrainer
    from .r3f import R3FConfig, R3FTrainer
    from .tat import TATConfig, TATTrainer

    classes = {
        "plain": (Trainer, TrainingArguments),
        "pgd_at": (PGDATTrainer, PGDATConfig),
        "lds": (LDSTrainer, LDSConfig),
        "tat": (TATTrainer, TATConfig),
        "alum": (ALUMTrainer, ALUMConfig),
        "freelb": (FreeLBTrainer, FreeLBConfig),
        "r3f": (R3FTrainer, R3FConfig),
    }
    if method not in classes:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    return classes[method]
