"""``advtrain train``: fine-tune a classifier with one method (`advtrain.pipeline.train_classifier`).

The arguments are parsed in two stages: ``--method`` picks the config class, then ``HfArgumentParser((
TrainScriptArguments, <config class>))`` parses the rest, so every field of the method's config is an option with the
help text of its dataclass (nothing is re-declared here).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from ..pipeline import DEFAULT_MODEL, TRAINING_RECORD, TrainScriptArguments, train_classifier
from ..trainers.registry import METHODS, method_classes
from . import plain_output_unless_terminal


def train_defaults() -> dict[str, Any]:
    """The `TrainingArguments` defaults changed for the command line: no checkpoints (the final model is saved to
    --output_dir), no reporting integrations; a log line every tenth of the run (``logging_steps=0.1``, a ratio of
    the run's steps), so that short runs show the ``adv/*`` metrics too (the Trainer's 500 steps would hide them);
    no progress bars when stderr is not a terminal (tqdm's cursor-movement escapes would litter a log file)."""
    return {"save_strategy": "no", "report_to": "none", "logging_steps": 0.1, "disable_tqdm": not sys.stderr.isatty()}


def _example() -> str:
    from ..data import mr_sample_path

    try:
        dataset = mr_sample_path()
    except FileNotFoundError:
        dataset = "../shared/data/mr"
    return f"advtrain train --method pgd_at --dataset {dataset} --output_dir out/pgd_at --adv_epsilon 0.01 --max_steps 40"


def train_parser(method: str | None):
    """The `HfArgumentParser` of ``advtrain train --method <method>`` (`method=None`: the plain `TrainingArguments`)."""
    from transformers import HfArgumentParser

    config_class = method_classes(method or "plain")[1]
    parser = HfArgumentParser(
        (TrainScriptArguments, config_class),
        prog="advtrain train",
        usage=(
            "advtrain train --method {" + ",".join(METHODS) + "} --dataset PATH_OR_HUB_NAME --output_dir DIR "
            "[--model_name_or_path PATH_OR_HUB_NAME] [--max_length N] [... any option below]"
        ),
        description=(
            f"Fine-tunes a sequence classifier (by default the packaged encoder, {DEFAULT_MODEL}) with one method and "
            f"saves the model, its tokenizer and {TRAINING_RECORD} (the arguments, the method's config and the final "
            f"accuracy) in --output_dir. Every field of the method's config ({config_class.__name__}) is an option below."
        ),
        epilog=(
            "Each method lists its own fields: `advtrain train --method pgd_at --help` (methods: "
            + ", ".join(METHODS) + "). Example (the bundled MR sample, the packaged MiniLM): " + _example()
        ),
    )
    parser.set_defaults(**train_defaults())
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


def make_parser(subparsers) -> None:
    # The options are parsed by `parse_train_arguments` (they depend on --method), so this parser takes none itself.
    parser = subparsers.add_parser(
        "train",
        help="Fine-tune a classifier plainly or with an adversarial method (every config field is an option).",
        description="See `advtrain train --help`.",
        add_help=False,
    )
    parser.set_defaults(handler=main, takes_extra=True)


def main(args: argparse.Namespace) -> int:
    script, config = parse_train_arguments(args.extra)
    plain_output_unless_terminal()
    train_classifier(script, config)
    return 0
