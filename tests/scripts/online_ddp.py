"""Runs one online-augmentation round on a tiny BERT and writes what this process holds afterwards.

Run once with one process (``python online_ddp.py OUT``) and once with two
(``torchrun --nproc_per_node 2 online_ddp.py OUT``): every rank must hold the one-process round's adversarial set.
"""

import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from pathlib import Path  # noqa: E402

import torch.distributed as dist  # noqa: E402
from accelerate import PartialState  # noqa: E402
from datasets import Dataset  # noqa: E402

from advtrain.training import OnlineAttackAugmentation  # noqa: E402
from conftest import build_tokenizer, exit_distributed_script, read_jsonl  # noqa: E402
from test_online import MAX_LENGTH, GreedySwapAttack, sensitive_model  # noqa: E402


class CountingAttack(GreedySwapAttack):
    rows = 0

    def attack_batch(self, model, tokenizer, texts, labels, indices):
        self.rows += len(indices)
        return super().attack_batch(model, tokenizer, texts, labels, indices)


def main(out: str) -> None:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        # The processes the round is sharded over are accelerate's (what a Trainer sets up): join them its way.
        PartialState(cpu=True)
    rank = dist.get_rank() if world > 1 else 0
    tokenizer = build_tokenizer(Path(out) / f"tok{rank}")
    attack = CountingAttack()
    aug = OnlineAttackAugmentation(
        Dataset.from_list(read_jsonl("mr", "train", 16)), tokenizer, attack, num_examples=8, attack_batch_size=3,
        tokenizer_kwargs={"truncation": True, "max_length": MAX_LENGTH}, seed=1,
    )
    aug.run_round(sensitive_model())
    shard_sizes = [attack.rows]
    if world > 1:
        shard_sizes = [None] * world
        dist.all_gather_object(shard_sizes, attack.rows)
    with open(os.path.join(out, f"ws{world}_rank{rank}.json"), "w") as f:
        json.dump({
            "results": [r.to_dict() for r in aug.last_results],
            "successful": [r.perturbed_text for r in aug.adversarial_results],
            "slots": aug.train_dataset.slots,
            "items": [aug.train_dataset[i] for i in range(len(aug.train_dataset))],
            "shard_sizes": shard_sizes,
        }, f)


if __name__ == "__main__":
    main(sys.argv[1])
    exit_distributed_script()
