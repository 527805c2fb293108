"""The training methods by name: ``plain`` (the Hugging Face `Trainer`) and advtrain's four trainers, each with its
config class. The command line, the fine-tuning pipeline, the demo and the benchmarks read this one table."""

from __future__ import annotations

METHODS = ("plain", "pgd_at", "lds", "tat", "alum", "freelb", "r3f")


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
