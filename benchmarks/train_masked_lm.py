"""Builds the offline masked LM that SSMBA and BAE need in `reproduce_comparison.py`: no masked LM ships in a pip
package (see ``../shared/docs/RESOURCES.md``), so this continues the packaged all-MiniLM-L6-v2 encoder's training
with an MLM head (its decoder tied to the word embeddings) on movie-review text, then reports held-out perplexity.

Paste from the repository root. Best on a GPU: on this project's 2-core CPU (shared with another job) the first 50
steps of batch 32 took about 18 minutes (held-out MLM loss 10.78 before, training loss 7.99 at step 50), because
the tied vocabulary projection and its gradient cost about as much as the encoder itself.

    python benchmarks/train_masked_lm.py --output_dir /tmp/advtrain-minilm-mlm
    NLTK_DATA=../shared/nltk_data python benchmarks/reproduce_comparison.py --masked_lm /tmp/advtrain-minilm-mlm

Training text: MR train sentences (the comparison's training split; MR test and CR, which are evaluated, are left
out). Held out: MR dev. The model is small and briefly trained, so its substitutions are weaker than BERT-base's:
the comparison's notes say which masked LM and perplexity its BAE and SSMBA figures come from.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field

import torch.nn.functional as F
from datasets import load_dataset
from transformers import (
    AutoModelForMaskedLM,
    AutoTokenizer,
    DataCollatorForLanguageModeling,
    HfArgumentParser,
    Trainer,
    TrainingArguments,
    set_seed,
)

from advtrain.resources import packaged_encoder_path

RECORD_NAME = "advtrain_masked_lm.json"  # written next to the model; `reproduce_comparison.py` reads it back


class MaskedPositionsTrainer(Trainer):
    """Scores the vocabulary only at the masked positions (about 15% of the tokens) instead of at every position, as
    `BertForMaskedLM` does: the loss is the same, and the tied vocabulary projection, which costs about as much as
    the whole MiniLM encoder when applied everywhere, shrinks about 7-fold. Models without a BERT-style ``cls`` head
    keep the model's own loss."""

    # The loss below is a per-batch mean, so the Trainer must divide it by the gradient-accumulation steps (it would
    # not for a model that accepts `num_items_in_batch`, such as BertForMaskedLM).
    loss_is_scaled_for_ga = False

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        head = getattr(model, "cls", None)
        if head is None or return_outputs:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        inputs = dict(inputs)
        labels = inputs.pop("labels")
        hidden = model.base_model(**inputs)[0]
        picked = labels != -100
        logits = head(hidden[picked])
        return F.cross_entropy(logits.float(), labels[picked])


@dataclass
class MaskedLMArguments:
    data_dir: str = field(default="../shared/data/mr", metadata={"help": "Folder with train.jsonl and dev.jsonl."})
    model_path: str | None = field(default=None, metadata={"help": "Encoder folder (default: the packaged MiniLM)."})
    max_length: int = field(default=40, metadata={"help": "Tokens per sentence."})
    eval_size: int = field(default=500, metadata={"help": "Held-out dev sentences for the perplexity."})


def main() -> None:
    parser = HfArgumentParser((MaskedLMArguments, TrainingArguments))
    parser.set_defaults(
        output_dir="advtrain-minilm-mlm", max_steps=300, per_device_train_batch_size=32, per_device_eval_batch_size=64,
        learning_rate=1e-4, warmup_steps=30, weight_decay=0.01, logging_steps=50, save_strategy="no",
        report_to="none", seed=42,
    )
    script, args = parser.parse_args_into_dataclasses()
    set_seed(args.seed)
    model_path = script.model_path or packaged_encoder_path()
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForMaskedLM.from_pretrained(model_path)
    files = {split: os.path.join(script.data_dir, f"{split}.jsonl") for split in ("train", "dev")}
    data = load_dataset("json", data_files=files)
    data["dev"] = data["dev"].select(range(min(script.eval_size, len(data["dev"]))))
    data = data.map(lambda b: tokenizer(b["text"], truncation=True, max_length=script.max_length), batched=True,
                    remove_columns=data["train"].column_names)
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15)
    trainer = MaskedPositionsTrainer(model=model, args=args, train_dataset=data["train"], eval_dataset=data["dev"],
                      data_collator=collator, processing_class=tokenizer)
    set_seed(args.seed)
    before = trainer.evaluate()["eval_loss"]
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    set_seed(args.seed)  # the same masks for the held-out loss before and after
    after = trainer.evaluate()["eval_loss"]
    trainer.save_model(args.output_dir)
    record = {
        "base_model": model_path, "data_dir": script.data_dir, "max_steps": args.max_steps,
        "batch_size": args.per_device_train_batch_size, "learning_rate": args.learning_rate,
        "max_length": script.max_length, "seed": args.seed, "train_seconds": round(seconds, 1),
        "dev_perplexity_before": round(math.exp(before), 1), "dev_perplexity_after": round(math.exp(after), 1),
    }
    with open(os.path.join(args.output_dir, RECORD_NAME), "w") as f:
        json.dump(record, f, indent=2)
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
