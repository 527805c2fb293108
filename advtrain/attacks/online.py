"""Moved to `advtrain.training.online` (online augmentation is a training component); kept for compatibility."""

from ..training.online import ONLINE_STATE_NAME, STATE_VERSION, AugmentedDataset, OnlineAttackAugmentation, RoundReport

__all__ = ["ONLINE_STATE_NAME", "STATE_VERSION", "AugmentedDataset", "OnlineAttackAugmentation", "RoundReport"]
