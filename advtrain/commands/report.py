"""``advtrain report``: compare evaluated models (`advtrain.evaluation.report_table.write_report`)."""

from __future__ import annotations

import argparse
import sys

from . import HelpFormatter


def make_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "report",
        help="Compare evaluated models: a Markdown table and a PNG of clean accuracy vs attack success rate.",
        description=(
            "Reads JSON reports written by `advtrain evaluate` and writes report.md (one row per model × attack) and "
            "report.png (clean accuracy against attack success rate, one point per model and attack; needs "
            "matplotlib, the `plot` extra) to --output_dir, and prints the table."
        ),
        formatter_class=HelpFormatter,
    )
    parser.add_argument("reports", nargs="+", metavar="REPORT.json", help="Reports from `advtrain evaluate`.")
    parser.add_argument("--output_dir", required=True, help="Where report.md and report.png go.")
    parser.add_argument("--no_plot", action="store_true", help="Write report.md only (no matplotlib needed).")
    parser.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    from ..evaluation.report_table import write_report

    try:
        markdown, png = write_report(args.reports, args.output_dir, plot=not args.no_plot)
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(f"advtrain report: {err}") from None
    except ImportError as err:
        print(f"advtrain report: {err}", file=sys.stderr)
        return 1
    print(markdown)
    print(f"[report] wrote report.md{', report.png' if png else ''} to {args.output_dir}", file=sys.stderr)
    return 0
