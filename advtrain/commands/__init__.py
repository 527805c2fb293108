"""The sub-commands of the `advtrain` command line, one module each (as TRL's ``trl/scripts/<name>.py``): every module
has ``make_parser(subparsers)``, which adds its parser and sets ``handler=main``, and ``main(args) -> int``. They parse
arguments, call the library (`advtrain.pipeline`, `advtrain.evaluation`, `advtrain.demo`, `advtrain.analysis`) and print;
`advtrain.cli` only dispatches. Models and matplotlib are imported inside ``main``, never at module import."""

from __future__ import annotations

import argparse
import logging
import re
import sys

COMMANDS = ("train", "evaluate", "report", "demo", "neurons")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default unless it is `None` or `False` (the help then says what happens by default)."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False or action.default == []:
            return action.help
        return super()._get_help_string(action)


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class _StripAnsi(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = _ANSI.sub("", record.getMessage()), None
        return True


def plain_output_unless_terminal() -> None:
    """When stderr is not a terminal (a log file, CI): strips ANSI escapes from transformers' log lines (its model
    load report is bold whatever the stream) and turns off transformers' and datasets' progress bars (lines of
    carriage returns in a file). The Trainer's own bars follow ``disable_tqdm`` (see `advtrain.commands.train`)."""
    if sys.stderr.isatty():
        return
    import datasets
    from transformers.utils import logging as hf_logging

    for handler in hf_logging.get_logger("transformers").handlers:
        if not any(isinstance(f, _StripAnsi) for f in handler.filters):
            handler.addFilter(_StripAnsi())
    hf_logging.disable_progress_bar()
    datasets.disable_progress_bars()
