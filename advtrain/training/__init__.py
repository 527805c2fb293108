"""Training components that work with any `transformers.Trainer` (the plain one and advtrain's): online attack-based
augmentation (`OnlineAttackAugmentation`, a `TrainerCallback` with its fixed-length dataset)."""

from .online import ONLINE_STATE_NAME, AugmentedDataset, OnlineAttackAugmentation, RoundReport

__all__ = ["ONLINE_STATE_NAME", "AugmentedDataset", "OnlineAttackAugmentation", "RoundReport"]
