"""How large must δ be to survive mixed precision? Measured on all-MiniLM-L6-v2 (the packaged encoder).

For each autocast dtype: the rounding of the clean forward (how far the logits move from float32 with no δ at all),
and, for δ of L∞ size s (random signs on every real token), how far δ moves the logits in float32 and how well the
autocast forward reproduces that move. Below the size where δ's effect exceeds the rounding, an adversarial term
computed under autocast is mostly rounding noise; `advtrain.trainers.base.AUTOCAST_MIN_DELTA` holds those sizes and
the trainers warn once when the first step's δ is below it.

    python benchmarks/mixed_precision.py            # writes benchmarks/results/mixed_precision.{json,md}
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from advtrain.resources import packaged_encoder_path
from advtrain.trainers.site import perturbed_embeddings

HERE = Path(__file__).resolve().parent
DATA = Path(os.environ.get("ADVTRAIN_DATA", HERE.parents[1] / "shared" / "data"))
SIZES = (1e-6, 1e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2)
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def logits(model, batch, delta=None, dtype=None):
    context = torch.autocast("cpu", dtype=dtype) if dtype is not None else torch.autocast("cpu", enabled=False)
    with torch.no_grad(), context, perturbed_embeddings(model, batch["input_ids"], delta):
        return model(**batch).logits.float()


def main(n: int = 64) -> dict:
    torch.manual_seed(0)
    path = packaged_encoder_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2).eval()
    texts = [json.loads(line)["text"] for line in open(DATA / "mr" / "test.jsonl")][:n]
    batch = dict(tokenizer(texts, padding=True, truncation=True, max_length=40, return_tensors="pt"))
    hidden = model.get_input_embeddings().embedding_dim
    mask = batch["attention_mask"].unsqueeze(-1).float()
    signs = torch.randint(0, 2, (*batch["input_ids"].shape, hidden)).float().mul_(2).sub_(1) * mask
    clean32 = logits(model, batch)
    rows, result = [], {"model": "all-MiniLM-L6-v2", "sentences": n, "sizes": list(SIZES), "dtypes": {}}
    effect32 = {s: float((logits(model, batch, s * signs) - clean32).abs().mean()) for s in SIZES}
    result["float32_effect"] = effect32
    for name, dtype in DTYPES.items():
        clean = logits(model, batch, dtype=dtype)
        rounding = float((clean - clean32).abs().mean())
        errors = {}
        for s in SIZES:
            moved = logits(model, batch, s * signs, dtype=dtype) - clean
            moved32 = logits(model, batch, s * signs) - clean32
            errors[s] = float((moved - moved32).abs().mean() / moved32.abs().mean())
        threshold = next((s for s in SIZES if effect32[s] >= rounding and errors[s] < 0.5), None)
        result["dtypes"][name] = {"rounding": rounding, "relative_error": errors, "min_delta": threshold}
    rows.append("| δ (L∞) | float32 effect on logits | " + " | ".join(f"{d} error of that effect" for d in DTYPES) + " |")
    rows.append("|---|---|" + "---|" * len(DTYPES))
    for s in SIZES:
        cells = " | ".join(f"{result['dtypes'][d]['relative_error'][s]:.2f}" for d in DTYPES)
        rows.append(f"| {s:g} | {effect32[s]:.2e} | {cells} |")
    rows.append("")
    for name in DTYPES:
        info = result["dtypes"][name]
        rows.append(f"- {name}: rounding of the clean forward {info['rounding']:.2e} (mean |Δlogit|); smallest δ whose "
                    f"effect exceeds it with < 50% error: {info['min_delta']}")
    markdown = (f"# Mixed precision and the size of δ\n\n{result['model']}, {n} MR test sentences, δ = s · random "
                "signs on every real token, mean absolute change of the logits; 'error' is |autocast change − float32 "
                "change| / |float32 change|.\n\n" + "\n".join(rows) + "\n")
    out = HERE / "results"
    (out / "mixed_precision.json").write_text(json.dumps(result, indent=2))
    (out / "mixed_precision.md").write_text(markdown)
    print(markdown)
    return result


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 64)
