"""Trains every advtrain method for three steps under FSDP2 on two CPU processes, or unsharded in one process with
the same global batch, and saves each cell's final (full) weights and logs.

    torchrun --nproc_per_node 2 fsdp_train.py OUT 2 [CELL ...]     (FSDP2: fully_shard through accelerate's plugin)
    python fsdp_train.py OUT 4 [CELL ...]                           (one process, no sharding)

Accelerate turns its FSDP plugin on only for accelerator devices; `conftest.allow_fsdp_on_cpu` lets it do on CPU
(gloo) what it does on GPUs, so the rest is accelerate's and transformers' own FSDP2 path: `fully_shard` of every
`_no_split_modules` block and of the root, `set_requires_gradient_sync` for `no_sync`, the sharded optimizer step.
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(__file__))

from pathlib import Path  # noqa: E402

import torch  # noqa: E402
import transformers  # noqa: E402
from ddp_train import SMOOTH, TRAINERS, deterministic_init  # noqa: E402
from transformers import DataCollatorWithPadding  # noqa: E402

import advtrain  # noqa: E402
from conftest import allow_fsdp_on_cpu, build_tokenizer, exit_distributed_script, make_model, tokenized  # noqa: E402

TRANSFORMERS_5 = int(transformers.__version__.split(".")[0]) >= 5
if not TRANSFORMERS_5:
    os.environ.setdefault("FSDP_VERSION", "2")


def deterministic_uniform(embeds, mask, magnitude, norm, generator=None):
    """FreeLB's and R3F's start, the same for one process and two (a random one is drawn in each shard's shape)."""
    return magnitude * torch.cos(5 * embeds.detach().float()) * mask


CELLS = dict(TRAINERS)
CELLS["freelb"] = (advtrain.FreeLBTrainer, advtrain.FreeLBConfig, {"adv_steps": 3, "adv_step_size": 0.3})
CELLS["r3f"] = (advtrain.R3FTrainer, advtrain.R3FConfig, {"r3f_noise": "uniform", "adv_init_std": 0.05})
CELLS["pgd_at_layer1"] = (advtrain.PGDATTrainer, advtrain.PGDATConfig, {"adv_site": "layer:1", "adv_init_std": 0.0})
CELLS["llama_pgd_at"] = (advtrain.PGDATTrainer, advtrain.PGDATConfig, {})
CELLS["llama_alum"] = (advtrain.ALUMTrainer, advtrain.ALUMConfig, SMOOTH)
CELLS["llama_freelb"] = (advtrain.FreeLBTrainer, advtrain.FreeLBConfig, {"adv_steps": 2, "adv_step_size": 0.3})


def nan_on_rank_zero(trainer_cls):
    class NaNOnRankZero(trainer_cls):
        def adversarial_loss(self, adv_logits, clean):
            term = super().adversarial_loss(adv_logits, clean)
            return term * float("nan") if self.args.process_index == 0 else term

    return NaNOnRankZero


# A NaN term on rank 0 only: its backward still runs (so the reduce-scatter lines up) and adds nothing.
CELLS["nan_split"] = (nan_on_rank_zero(advtrain.PGDATTrainer), advtrain.PGDATConfig, {})
CELLS["nan_joint"] = (nan_on_rank_zero(advtrain.PGDATTrainer), advtrain.PGDATConfig, {"adv_backward": "joint"})


def train_cell(cell: str, out: str, per_device_batch: int, world_size: int) -> dict:
    trainer_cls, config_cls, extra = CELLS[cell]
    tokenizer = build_tokenizer(Path(out) / f"tok{os.environ.get('RANK', '0')}")
    if cell.startswith("llama"):
        from test_causal_lm import lm_dataset, make_causal_lm, pad_collator

        data, collator, model = lm_dataset(tokenizer, 12), pad_collator, make_causal_lm("llama")
    else:
        data = tokenized(tokenizer, "mr", "train", 16, max_length=16)
        collator, model = DataCollatorWithPadding(tokenizer), make_model("bert", 2, seed=0)
    fields = {"adv_init_std": 0.0, **extra} if config_cls in (advtrain.PGDATConfig, advtrain.LDSConfig) else extra
    if world_size > 1:
        # BERT lists BertEmbeddings in `_no_split_modules`, and accelerate then shards the word embeddings inside it a
        # second time (a TypeError in fully_shard): name the block class, as for any model whose default fails.
        layer = "LlamaDecoderLayer" if cell.startswith("llama") else "BertLayer"
        fsdp_config = {"version": 2, "transformer_layer_cls_to_wrap": [layer]}
        # transformers 5 reads the version off fsdp_config; on 4.x accelerate's plugin reads FSDP_VERSION (what
        # `accelerate launch --fsdp_version 2` sets) and the block class needs the auto_wrap option.
        fsdp = True if TRANSFORMERS_5 else "full_shard auto_wrap"
        fields = {**fields, "fsdp": fsdp, "fsdp_config": fsdp_config, "ddp_backend": "gloo"}
    args = config_cls(
        output_dir=os.path.join(out, cell), use_cpu=True, report_to=[], save_strategy="no", max_steps=3,
        learning_rate=1e-2, optim="sgd", per_device_train_batch_size=per_device_batch, logging_steps=1, seed=0,
        dataloader_drop_last=True, disable_tqdm=True, **fields,
    )
    initial = {k: v.detach().clone() for k, v in model.state_dict().items()}
    trainer = trainer_cls(model=model, args=args, train_dataset=data, data_collator=collator, processing_class=tokenizer)
    trainer.train()
    sharded = trainer.accelerator.is_fsdp2
    assert sharded == (world_size > 1), (cell, trainer.accelerator.distributed_type)
    # Every rank takes part in gathering the shards.
    state = {k: (v.full_tensor() if hasattr(v, "full_tensor") else v).detach().clone()
             for k, v in trainer.model.state_dict().items()}
    return {"state": state, "initial": initial, "logs": trainer.state.log_history, "fsdp2": sharded,
            "model_class": type(trainer.model).__name__}


def main(out: str, per_device_batch: int, cells: list[str]) -> None:
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size > 1:
        allow_fsdp_on_cpu()
    advtrain.perturbation.init_delta = deterministic_init
    advtrain.perturbation.uniform_delta = deterministic_uniform
    results = {cell: train_cell(cell, out, per_device_batch, world_size) for cell in cells or CELLS}
    if int(os.environ.get("RANK", "0")) == 0:
        torch.save({"world_size": world_size, "cells": results}, os.path.join(out, f"fsdp_ws{world_size}.pt"))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3:])
    exit_distributed_script()
