"""Two processes; the adversarial term is NaN on rank 0 only. Every rank saves its final weights: they must be finite
and equal on both ranks (the step is taken consistently, nobody waits on a skipped backward).

    torchrun --nproc_per_node 2 ddp_nan.py PATH OUT      (PATH: split, joint or recompute)
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from pathlib import Path  # noqa: E402

import torch  # noqa: E402
from transformers import DataCollatorWithPadding  # noqa: E402

import advtrain  # noqa: E402
from conftest import build_tokenizer, exit_distributed_script, make_model, tokenized  # noqa: E402

CELLS = {
    "split": (advtrain.PGDATTrainer, advtrain.PGDATConfig, {}),
    "joint": (advtrain.PGDATTrainer, advtrain.PGDATConfig, {"adv_backward": "joint"}),
    "recompute": (advtrain.ALUMTrainer, advtrain.ALUMConfig, {"adv_backward": "recompute", "adv_step_size": 0.05,
                                                                "adv_epsilon": 0.1, "adv_init_std": 0.05}),
}


def main(path: str, out: str) -> None:
    trainer_cls, config_cls, extra = CELLS[path]

    class NaNOnRankZero(trainer_cls):
        def adversarial_loss(self, adv_logits, clean):
            term = super().adversarial_loss(adv_logits, clean)
            return term * float("nan") if self.args.process_index == 0 else term

    tokenizer = build_tokenizer(Path(out) / f"tok{os.environ.get('RANK', '0')}")
    data = tokenized(tokenizer, "mr", "train", 16, max_length=16)
    model = make_model("bert", 2, seed=0)
    args = config_cls(
        output_dir=out, use_cpu=True, report_to=[], save_strategy="no", max_steps=2, learning_rate=1e-2, optim="sgd",
        per_device_train_batch_size=2, logging_steps=2, seed=0, dataloader_drop_last=True, ddp_backend="gloo",
        **extra,
    )
    trainer = NaNOnRankZero(model=model, args=args, train_dataset=data, data_collator=DataCollatorWithPadding(tokenizer))
    trainer.train()
    torch.save({"state": {k: v.detach().clone() for k, v in model.state_dict().items()},
                "world_size": trainer.args.world_size, "logs": trainer.state.log_history},
               os.path.join(out, f"nan_rank{trainer.args.process_index}.pt"))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
    exit_distributed_script()
