"""Continued masked-LM pre-training of the real MiniLM encoder on MR text, plain vs ALUM; prints held-out MLM loss.

This is ALUM's own use case (continued pre-training on in-domain text, α = 10, plain steps first). all-MiniLM-L6-v2
ships without an MLM head, so `AutoModelForMaskedLM` adds a fresh one (its decoder tied to the word embeddings); both
methods start from the same weights and see the same batches. Paste (from the repository root):

    python examples/alum_continued_pretraining.py
    python examples/alum_continued_pretraining.py --max_steps 400 --adv_weight 10 --adv_start_step 100

Every `TrainingArguments` field can be given. Results go to `<output_dir>/results.json` and a Markdown table.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field

import torch
from datasets import load_dataset
from transformers import (
    AutoModelForMaskedLM,
    AutoTokenizer,
    DataCollatorForLanguageModeling,
    HfArgumentParser,
    Trainer,
    TrainingArguments,
    set_seed,
)

from advtrain import ALUMConfig, ALUMTrainer
from advtrain.compat import warmup_fraction
from advtrain.resources import packaged_encoder_path


@dataclass
class ScriptArguments:
    data_dir: str = field(default="../shared/data/mr", metadata={"help": "Folder with train.jsonl and dev.jsonl."})
    model_path: str | None = field(default=None, metadata={"help": "Local model folder (default: packaged MiniLM)."})
    methods: str = field(default="plain,alum", metadata={"help": "Comma-separated: plain, alum."})
    train_size: int = field(default=4000, metadata={"help": "Training sentences (0: all)."})
    eval_size: int = field(default=512, metadata={"help": "Held-out sentences for the MLM loss."})
    max_length: int = field(default=48, metadata={"help": "Tokens per sentence."})
    mlm_probability: float = field(default=0.15, metadata={"help": "Share of tokens masked."})
    adv_weight: float = field(default=10.0, metadata={"help": "ALUM α (paper: 10 for pre-training)."})
    adv_start_step: int = field(default=50, metadata={"help": "Plain steps before ALUM's term is switched on."})


def main() -> None:
    parser = HfArgumentParser((ScriptArguments, TrainingArguments))
    parser.set_defaults(
        output_dir="outputs/alum_mlm", per_device_train_batch_size=16, max_steps=250, learning_rate=1e-4,
        **warmup_fraction(0.1), logging_steps=25, save_strategy="no", report_to="none", seed=42,
    )
    script, base_args = parser.parse_args_into_dataclasses()
    model_path = script.model_path or packaged_encoder_path()
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    files = {split: os.path.join(script.data_dir, f"{split}.jsonl") for split in ("train", "dev")}
    data = load_dataset("json", data_files=files)
    train = data["train"].shuffle(seed=base_args.seed)
    if script.train_size:
        train = train.select(range(min(script.train_size, len(train))))
    dev = data["dev"].select(range(min(script.eval_size, len(data["dev"]))))

    def encode(ds):
        return ds.map(lambda b: tokenizer(b["text"], truncation=True, max_length=script.max_length), batched=True,
                      remove_columns=ds.column_names)

    train, dev = encode(train), encode(dev)
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=script.mlm_probability)
    torch.manual_seed(0)  # fixed masks: every method is scored on the same masked positions
    heldout = [collator([dev[i] for i in range(s, min(s + 32, len(dev)))]) for s in range(0, len(dev), 32)]

    def heldout_loss(model) -> float:
        model.eval()
        device = next(model.parameters()).device
        with torch.no_grad():
            losses = [model(**{k: v.to(device) for k, v in b.items()}).loss.item() for b in heldout]
        return sum(losses) / len(losses)

    results = {}
    for method in [m.strip() for m in script.methods.split(",") if m.strip()]:
        set_seed(base_args.seed)
        model = AutoModelForMaskedLM.from_pretrained(model_path)
        before = heldout_loss(model)
        values = {f: getattr(base_args, f) for f in TrainingArguments.__dataclass_fields__ if
                  TrainingArguments.__dataclass_fields__[f].init}
        values["output_dir"] = os.path.join(base_args.output_dir, method)
        if method == "alum":
            args = ALUMConfig(**values, adv_weight=script.adv_weight, adv_start_step=script.adv_start_step)
            trainer_cls = ALUMTrainer
        elif method == "plain":
            args, trainer_cls = TrainingArguments(**values), Trainer
        else:
            raise SystemExit(f"unknown method {method!r}: use plain or alum")
        trainer = trainer_cls(model=model, args=args, train_dataset=train, data_collator=collator)
        start = time.time()
        trainer.train()
        seconds = time.time() - start
        after = heldout_loss(model)
        results[method] = {"heldout_mlm_loss_before": before, "heldout_mlm_loss_after": after,
                           "heldout_perplexity_after": float(torch.tensor(after).exp()), "train_seconds": seconds,
                           "steps": trainer.state.global_step}
        print(f"{method}: held-out MLM loss {before:.3f} -> {after:.3f} ({seconds:.0f} s)")

    os.makedirs(base_args.output_dir, exist_ok=True)
    with open(os.path.join(base_args.output_dir, "results.json"), "w") as f:
        json.dump({"model": model_path, "data": script.data_dir, "results": results}, f, indent=2)
    print("\n| method | held-out MLM loss before | after | perplexity after | train s |\n|---|---|---|---|---|")
    for method, r in results.items():
        print(f"| {method} | {r['heldout_mlm_loss_before']:.3f} | {r['heldout_mlm_loss_after']:.3f} | "
              f"{r['heldout_perplexity_after']:.1f} | {r['train_seconds']:.0f} |")


if __name__ == "__main__":
    main()
