"""LoRA fine-tuning of a causal LM with ALUM through TRL's `SFTTrainer` (`ALUMSFTTrainer`): supervised fine-tuning on a
local text file, one example a line, with ALUM's term ``α · SKL(f(e), f(e + δ))`` between the clean and the perturbed
next-token distributions added to the token cross-entropy. Only the LoRA adapters train.

Paste (from the repository root, after `pip install -e '.[trl]' peft`); first a smoke test that needs no model (a tiny
Llama built from a config, with a word-level tokenizer built from the text file):

    python examples/sft_alum_lora.py --tiny --output_dir outputs/sft_alum_lora_tiny --max_steps 20

then a local model folder (config, weights and tokenizer, loaded offline by `SFTTrainer`):

    python examples/sft_alum_lora.py --model_name_or_path path/to/causal-lm --output_dir outputs/sft_alum_lora

Defaults: `examples/data/mr_sentences.txt` (256 movie-review sentences), 1 epoch of batch 8, learning rate 2e-4, LoRA
r=8 on `q_proj,v_proj`, sequences cut at 64 tokens, float32 (ALUM's step, 1e-3 per token, is below what bfloat16
resolves: with `--bf16 true` raise `--adv_step_size`, see docs/trl.md). Every `SFTConfig` and `ALUMConfig` field can be
given (`--packing true` works with ALUM's per-token norms). Writes the adapter and `results.json` (steps, final loss,
the mean of each logged metric) to `--output_dir`.

For a TRL script the change is two lines: `from advtrain.integrations.trl import ALUMSFTConfig, ALUMSFTTrainer` and
those class names in place of `SFTConfig` and `SFTTrainer`.
"""

from __future__ import annotations

import collections
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from datasets import Dataset
from peft import LoraConfig
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import HfArgumentParser, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from advtrain.integrations.trl import ALUMSFTConfig, ALUMSFTTrainer

DEFAULT_TEXT = Path(__file__).resolve().parent / "data" / "mr_sentences.txt"
TRAINING_DEFAULTS = dict(
    output_dir="outputs/sft_alum_lora",
    num_train_epochs=1,
    per_device_train_batch_size=8,
    learning_rate=2e-4,
    max_length=64,
    bf16=False,
    logging_steps=10,
    save_strategy="no",
    report_to="none",
    seed=42,
)


@dataclass
class ScriptArguments:
    train_file: str = field(
        default=str(DEFAULT_TEXT), metadata={"help": "Local text file, one training example a line (blank lines skipped)."}
    )
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Local causal-LM folder (config, weights, tokenizer), loaded by SFTTrainer."}
    )
    tiny: bool = field(
        default=False,
        metadata={"help": "Build a tiny Llama from a config and a word-level tokenizer from the text file (a smoke test)."},
    )
    max_examples: int = field(default=0, metadata={"help": "Train on the first N lines only (0: all)."})
    lora_r: int = field(default=8, metadata={"help": "LoRA rank r."})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA scaling α (the update is scaled by α / r)."})
    lora_dropout: float = field(default=0.0, metadata={"help": "Dropout on the LoRA input."})
    lora_target_modules: str = field(default="q_proj,v_proj", metadata={"help": "Comma-separated module names to adapt."})


def read_lines(path: str, limit: int = 0) -> list[str]:
    with open(path, encoding="utf-8") as f:
        lines = [line.strip() for line in f if line.strip()]
    if not lines:
        raise ValueError(f"{path} holds no text: give a file with one training example a line.")
    return lines[:limit] if limit else lines


def tiny_llama(texts: list[str], vocab_size: int = 512) -> tuple[LlamaForCausalLM, PreTrainedTokenizerFast]:
    """A tiny Llama (2 blocks of width 64) and a word-level tokenizer over the texts' most frequent words, which starts
    every text with ``<s>`` (``</s>`` ends it, ``<pad>`` pads, ``<unk>`` stands for the other words)."""
    specials = ["<pad>", "<unk>", "<s>", "</s>"]
    counts = collections.Counter(word for text in texts for word in text.split())
    words = specials + [w for w, _ in counts.most_common(vocab_size - len(specials))]
    word_level = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    word_level.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    word_level.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 2)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=word_level, bos_token="<s>", eos_token="</s>",
                                        pad_token="<pad>", unk_token="<unk>")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(words), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, pad_token_id=0,
                         bos_token_id=2, eos_token_id=3, tie_word_embeddings=False)
    return LlamaForCausalLM(config), tokenizer


def main() -> None:
    parser = HfArgumentParser((ScriptArguments, ALUMSFTConfig))
    parser.set_defaults(**TRAINING_DEFAULTS)
    script, args = parser.parse_args_into_dataclasses()
    dataset = Dataset.from_dict({"text": read_lines(script.train_file, script.max_examples)})
    if script.tiny:
        model, tokenizer = tiny_llama(dataset["text"])
    elif script.model_name_or_path:
        model, tokenizer = script.model_name_or_path, None  # SFTTrainer loads both from the folder
    else:
        parser.error("give --model_name_or_path (a local causal-LM folder) or --tiny")
    lora = LoraConfig(task_type="CAUSAL_LM", r=script.lora_r, lora_alpha=script.lora_alpha,
                      lora_dropout=script.lora_dropout, target_modules=script.lora_target_modules.split(","))

    trainer = ALUMSFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                             peft_config=lora)
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in trainer.model.parameters())
    trainer.train()
    trainer.save_model()  # the adapter (adapter_config.json, adapter_model.safetensors)

    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    means = {name: sum(e[name] for e in logged if name in e) / max(1, sum(name in e for e in logged))
             for name in ("loss", "clean/loss", "adv/loss", "adv/delta_norm", "entropy", "mean_token_accuracy")}
    results = {
        "trainer": type(trainer).__name__,
        "steps": trainer.state.global_step,
        "final_loss": logged[-1]["loss"] if logged else math.nan,
        "logged_means": means,
        "trainable_parameters": trainable,
        "parameters": total,
        "examples": len(dataset),
    }
    os.makedirs(args.output_dir, exist_ok=True)
    with open(os.path.join(args.output_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    print(f"{results['trainer']}: {results['steps']} steps on {len(dataset)} lines, final loss "
          f"{results['final_loss']:.4f}, adv/loss {means['adv/loss']:.4g}, LoRA trains {trainable:,} of {total:,} "
          f"parameters; adapter and results.json in {args.output_dir}")


if __name__ == "__main__":
    main()
