"""Regenerates the bundled MR sample (`advtrain/data/mr_sample/{train,test}.jsonl`) from a full copy of MR.

From the repository root (the shared data folder holds MR's seeded 80/10/10 split, one ``{"text", "label"}`` a line):

    python -m advtrain.data.make_mr_sample --source ../shared/data/mr

The sample is class-balanced and seeded: a shuffle of each split with `random.Random(seed)`, then the first
``n // 2`` sentences of each label, interleaved negative, positive, negative, ... Training sentences come only from
MR's train split and test sentences only from its test split, so the two never overlap.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from . import MR_SAMPLE

TRAIN_SIZE = 500
TEST_SIZE = 100
SEED = 0


def balanced_sample(rows: list[dict], n: int, seed: int) -> list[dict]:
    """`n` rows, half of each label (0 and 1), in a seeded order, alternating labels."""
    shuffled = list(rows)
    random.Random(seed).shuffle(shuffled)
    by_label = {label: [r for r in shuffled if r["label"] == label][: n // 2] for label in (0, 1)}
    if any(len(v) < n // 2 for v in by_label.values()):
        raise ValueError(f"fewer than {n // 2} sentences of some label in the source split")
    return [row for pair in zip(by_label[0], by_label[1]) for row in pair]


def _read(path: Path) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", required=True, help="MR folder with train.jsonl and test.jsonl.")
    parser.add_argument("--output_dir", default=str(MR_SAMPLE))
    parser.add_argument("--train_size", type=int, default=TRAIN_SIZE)
    parser.add_argument("--test_size", type=int, default=TEST_SIZE)
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", args.train_size), ("test", args.test_size)):
        rows = balanced_sample(_read(Path(args.source) / f"{split}.jsonl"), n, args.seed)
        with open(out / f"{split}.jsonl", "w") as f:
            f.writelines(json.dumps({"text": r["text"], "label": r["label"]}, ensure_ascii=False) + "\n" for r in rows)
        print(f"{out / f'{split}.jsonl'}: {len(rows)} sentences")


if __name__ == "__main__":
    main()
