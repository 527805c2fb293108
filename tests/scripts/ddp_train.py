"""Trains a tiny BERT with an advtrain trainer for a few steps and saves its final weights.

Run once with one process (``python ddp_train.py METHOD OUT 4``) and once with two
(``torchrun --nproc_per_node 2 ddp_train.py METHOD OUT 2``): the same global batch must give the same weights.
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from pathlib import Path  # noqa: E402

import torch  # noqa: E402
from transformers import DataCollatorWithPadding  # noqa: E402

import advtrain  # noqa: E402
from conftest import build_tokenizer, exit_distributed_script, make_model, tokenized  # noqa: E402

TRAINERS = {
    "pgd_at": (advtrain.PGDATTrainer, advtrain.PGDATConfig, {}),
    "pgd_at_fast": (advtrain.PGDATTrainer, advtrain.PGDATConfig, {"adv_fast_first_step": True}),
    "lds": (advtrain.LDSTrainer, advtrain.LDSConfig, {"adv_init_std": 0.0, "adv_epsilon": 0.5, "adv_step_size": 0.2}),
}
# TAT and ALUM start from random noise drawn in the batch's shape (2 vs 4 rows), so one process and two would draw
# different δ: both use a deterministic per-token start instead. MR is binary, so TAT's target is the other label.
SMOOTH = {"adv_init_std": 0.05, "adv_epsilon": 0.1, "adv_step_size": 0.05}
TRAINERS["tat"] = (advtrain.TATTrainer, advtrain.TATConfig, SMOOTH)
TRAINERS["alum"] = (advtrain.ALUMTrainer, advtrain.ALUMConfig, SMOOTH)
# The term's backward under no_sync, then the recomputed clean pass through the DDP-wrapped model.
TRAINERS["alum_recompute"] = (advtrain.ALUMTrainer, advtrain.ALUMConfig, {**SMOOTH, "adv_backward": "recompute"})


def deterministic_init(embeds, mask, init_std, generator=None):
    return init_std * torch.sin(7 * embeds.detach().float()) * mask


def main(method: str, out: str, per_device_batch: int) -> None:
    trainer_cls, config_cls, extra = TRAINERS[method]
    if method.startswith(("tat", "alum")):
        advtrain.perturbation.init_delta = deterministic_init
    tokenizer = build_tokenizer(Path(out) / f"tok{os.environ.get('RANK', '0')}")
    data = tokenized(tokenizer, "mr", "train", 16, max_length=16)
    model = make_model("bert", 2, seed=0)
    args = config_cls(
        output_dir=out, use_cpu=True, report_to=[], save_strategy="no", max_steps=3, learning_rate=1e-2, optim="sgd",
        per_device_train_batch_size=per_device_batch, logging_steps=1, seed=0,
        dataloader_drop_last=True, **extra,
        **({"ddp_backend": "gloo"} if int(os.environ.get("WORLD_SIZE", "1")) > 1 else {}),
    )
    trainer = trainer_cls(model=model, args=args, train_dataset=data, data_collator=DataCollatorWithPadding(tokenizer))
    trainer.train()
    if method == "tat":  # every rank writes the tally it ended with
        torch.save({"tally": trainer.confusion_tally, "targets": trainer.target_distribution},
                   os.path.join(out, f"tally_ws{trainer.args.world_size}_rank{trainer.args.process_index}.pt"))
    if trainer.args.process_index == 0:
        torch.save(
            {"state": {k: v.detach().clone() for k, v in model.state_dict().items()},
             "world_size": trainer.args.world_size, "logs": trainer.state.log_history},
            os.path.join(out, f"weights_ws{trainer.args.world_size}.pt"),
        )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
    exit_distributed_script()
