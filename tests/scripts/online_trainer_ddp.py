"""Trains a tiny BERT for 5 steps with TATTrainer and online attack-based augmentation (rounds after steps 2 and 4) and writes what
this process holds at the end.

Run with two processes (``accelerate launch --multi_gpu --num_processes 2 online_trainer_ddp.py OUT``): the run must
finish (no rank waits on another), every rank must hold the same adversarial set and the same weights, and the
rounds' metrics must reach the log history.
"""

import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from pathlib import Path  # noqa: E402

import torch  # noqa: E402
from datasets import Dataset  # noqa: E402
from transformers import DataCollatorWithPadding  # noqa: E402

from advtrain import TATConfig, TATTrainer  # noqa: E402
from advtrain.training import OnlineAttackAugmentation  # noqa: E402
from conftest import build_tokenizer, exit_distributed_script, read_jsonl  # noqa: E402
from test_online import MAX_LENGTH, GreedySwapAttack, sensitive_model  # noqa: E402


def main(out: str) -> None:
    rank = int(os.environ.get("RANK", "0"))
    tokenizer = build_tokenizer(Path(out) / f"tok{rank}")
    online = OnlineAttackAugmentation(
        Dataset.from_list(read_jsonl("mr", "train", 16)), tokenizer, GreedySwapAttack(), num_examples=8,
        every_n_steps=2, tokenizer_kwargs={"truncation": True, "max_length": MAX_LENGTH}, seed=1,
    )
    args = TATConfig(
        output_dir=out, use_cpu=True, report_to=[], save_strategy="no", max_steps=5, learning_rate=1e-2, optim="sgd",
        per_device_train_batch_size=2, logging_steps=1, seed=0, dataloader_drop_last=True, ddp_backend="gloo",
    )
    trainer = TATTrainer(
        model=sensitive_model(), args=args, train_dataset=online.train_dataset, callbacks=[online],
        data_collator=DataCollatorWithPadding(tokenizer),
    )
    online.attach(trainer)
    trainer.train()
    weights = torch.cat([p.detach().flatten() for p in trainer.model.parameters()])
    with open(os.path.join(out, f"rank{trainer.args.process_index}.json"), "w") as f:
        json.dump({
            "world_size": trainer.args.world_size,
            "rounds": [r.to_dict() for r in online.history],
            "successful": [r.perturbed_text for r in online.adversarial_results],
            "slots": online.train_dataset.slots,
            "weights_sum": float(weights.double().sum()),
            "weights_abs_sum": float(weights.double().abs().sum()),
            "online_logs": [log for log in trainer.state.log_history if "online/round" in log],
        }, f)


if __name__ == "__main__":
    main(sys.argv[1])
    exit_distributed_script()
