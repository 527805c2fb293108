"""The robustness-recipe search (issue 18, item 3): which advtrain configuration, trained on MR with MiniLM, lowers
A2T's attack success rate by at least 10 points against plain fine-tuning, at no more than 2 points of clean accuracy
and within 3× the plain training time?

Every candidate is one entry of `CANDIDATES` (a method and the config fields it changes). One run = one candidate ×
one seed: fine-tune all-MiniLM-L6-v2 on a seeded sample of MR train (`advtrain.pipeline.train_classifier`), then
`evaluate_model` — clean accuracy on the whole MR test split and A2T (counter-fitted GloVe neighbours, the default)
on a seeded sample of MR test sentences, the same sample for every candidate of a seed, so each candidate pairs with
plain sentence by sentence. Each run writes ``<output_dir>/runs/<candidate>_s<seed>.json`` (and its report with the
adversarial examples beside it) as soon as it ends, and a run whose file exists is not redone: stop the script at any
time and start it again with the same arguments to resume. ``--summarize`` (also run at the end) writes
``<output_dir>/recipe.{json,md}``: per candidate, means over seeds with intervals, the A2T success rate pooled over
seeds with its Wilson interval, its difference to plain with a paired bootstrap interval over the attacked sentences
(resampled within each seed) and the exact McNemar test of accuracy under attack, and the training-time ratio.

From the repository root, with ../shared beside it (the data and WordNet):

    NLTK_DATA=../shared/nltk_data python benchmarks/robustness_recipe.py --candidates plain,pgd_l2 --seeds 1,2,3

The search that was run, and what it found, is in ``benchmarks/results/recipe/recipe.md`` and ``docs/results.md``.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field

import torch
from transformers import HfArgumentParser

from advtrain.compat import warmup_fraction
from advtrain.evaluation import (
    AttackSummary,
    RobustnessReport,
    mean_interval,
    pooled_attack_comparison,
    wilson_interval,
)
from advtrain.pipeline import TrainScriptArguments, evaluate_model, train_classifier
from advtrain.resources import packaged_encoder_path
from advtrain.trainers.registry import method_classes

# name: (method, config fields). A word swap moves one token's MiniLM word embedding by L2 ≈ 1.0–1.4 (e.g. good →
# great 1.14, boring → dull 1.26; the mean row norm is 1.07), while the papers' balls are far smaller (PGD-AT's L2
# radius 0.003 per example): the "_l2" candidates use a per-example L2 radius of the size of one swap, which the
# ascent can concentrate on the tokens that matter.
CANDIDATES: dict[str, tuple[str, dict]] = {
    "plain": ("plain", {}),
    # PGD-AT, one ascent step whose direction is the clean backward's input gradient (no extra pass): ≈ 2× plain.
    "pgd_l2_fast": ("pgd_at", {"adv_norm": "l2", "adv_step_norm": "l2", "adv_epsilon": 1.0, "adv_step_size": 1.0,
                               "adv_steps": 1, "adv_fast_first_step": True}),
    "pgd_l2_fast_half": ("pgd_at", {"adv_norm": "l2", "adv_step_norm": "l2", "adv_epsilon": 0.5, "adv_step_size": 0.5,
                                    "adv_steps": 1, "adv_fast_first_step": True}),
    # PGD-AT at the comparison paper's defaults (3 steps, L2 ε = 0.003): ≈ 4× plain.
    "pgd_at": ("pgd_at", {}),
    # FreeLB, two ascent steps (≈ 2× plain), a radius of one swap.
    "freelb_l2": ("freelb", {"adv_steps": 2, "adv_step_size": 0.5, "adv_init_mag": 0.5, "adv_epsilon": 1.0,
                             "adv_norm": "l2"}),
    # FreeLB at its reference defaults but 2 steps (K = 3 is ≈ 3× plain).
    "freelb_k2": ("freelb", {"adv_steps": 2}),
    "freelb": ("freelb", {}),
    # ALUM / TAT at their code-faithful defaults (one ascent step, δ = η · per-token direction).
    "alum": ("alum", {}),
    # Online A2T augmentation (the attack trained against; 10% of the sentences attacked per epoch).
    "a2t_online": ("a2t", {}),
    # The second screen: between FreeLB K = 2 (ε 0.6, which held clean accuracy) and the radius-1 runs (which
    # collapsed to chance), and smaller fast PGD / L∞ FGSM steps that move every token a little.
    "freelb_k2_s03": ("freelb", {"adv_steps": 2, "adv_step_size": 0.3}),
    "freelb_k2_e08": ("freelb", {"adv_steps": 2, "adv_step_size": 0.2, "adv_epsilon": 0.8}),
    "pgd_l2_fast_02": ("pgd_at", {"adv_norm": "l2", "adv_step_norm": "l2", "adv_epsilon": 0.2, "adv_step_size": 0.2,
                                  "adv_steps": 1, "adv_fast_first_step": True}),
    "pgd_linf_fgsm": ("pgd_at", {"adv_norm": "linf", "adv_step_norm": "sign", "adv_epsilon": 0.01,
                                 "adv_step_size": 0.01, "adv_steps": 1, "adv_fast_first_step": True}),
    # The third screen, around the two best of the second: a larger fast-PGD radius, and FreeLB K = 2 from δ₀ = 0
    # (its first forward is then the clean loss: ½ CE(f(e)) + ½ CE(f(e + δ)) with ‖δ‖ = 0.4 per sentence).
    "pgd_l2_fast_03": ("pgd_at", {"adv_norm": "l2", "adv_step_norm": "l2", "adv_epsilon": 0.3, "adv_step_size": 0.3,
                                  "adv_steps": 1, "adv_fast_first_step": True}),
    "freelb_k2_i0_s04": ("freelb", {"adv_steps": 2, "adv_step_size": 0.4, "adv_init_mag": 0.0}),
    # Online A2T with 30% of the sentences attacked per epoch ("_online_examples" is the recipe's, not a config field).
    "a2t_online_30": ("a2t", {"_online_examples": 0.3}),
    # Third screen (the seed-1 runs of freelb_k2_s03 and pgd_l2_fast_03 reach +9.7): a third ascent point at the same
    # bound, and a slightly larger step and bound.
    "freelb_k3_s03": ("freelb", {"adv_steps": 3, "adv_step_size": 0.3}),
    "freelb_k2_s035_e07": ("freelb", {"adv_steps": 2, "adv_step_size": 0.35, "adv_epsilon": 0.7}),
    # Fourth screen: the recipe with δ kept at 0 on [CLS] and [SEP], which word swaps never change, so the whole
    # budget lands on the words.
    "freelb_k2_s03_nosp": ("freelb", {"adv_steps": 2, "adv_step_size": 0.3, "adv_skip_special_tokens": True}),
}


@dataclass
class RecipeArguments:
    candidates: str = field(default="plain,pgd_l2_fast,freelb_l2", metadata={
        "help": f"Comma-separated candidates from {sorted(CANDIDATES)}."})
    seeds: str = field(default="1", metadata={"help": "Comma-separated seeds (training, data order, attacked sample)."})
    data_dir: str = field(default="../shared/data", metadata={"help": "Folder holding mr/ (train, test)."})
    train_size: int = field(default=2000, metadata={"help": "MR training sentences (seeded shuffle of train)."})
    num_train_epochs: float = field(default=2.0, metadata={"help": "Epochs of fine-tuning."})
    learning_rate: float = field(default=1e-4, metadata={"help": "AdamW learning rate."})
    batch_size: int = field(default=16, metadata={"help": "Per-device training batch size."})
    max_length: int = field(default=40, metadata={"help": "Tokens per sentence."})
    attack: str = field(default="a2t", metadata={"help": "The evaluation attack."})
    attack_examples: int = field(default=300, metadata={"help": "MR test sentences in each seed's attacked sample."})
    query_budget: int | None = field(default=2000, metadata={"help": "Model queries per attacked sentence."})
    time_limit_s: float | None = field(default=60.0, metadata={"help": "Seconds per attacked sentence."})
    online_examples: float = field(default=0.1, metadata={"help": "a2t_online: share of sentences attacked per epoch."})
    nltk_data: str | None = field(default=None, metadata={"help": "WordNet and stop words (default: NLTK_DATA)."})
    output_dir: str = field(default="benchmarks/results/recipe", metadata={"help": "Where runs/ and recipe.* go."})
    work_dir: str = field(default="/tmp/advtrain-recipe", metadata={"help": "Where the trained models are saved."})
    keep_models: bool = field(default=False, metadata={"help": "Keep each trained model in work_dir."})
    summarize: bool = field(default=False, metadata={"help": "Only write recipe.{json,md} from the finished runs."})
    bootstrap: int = field(default=10_000, metadata={"help": "Resamples of the paired bootstrap."})
    note: str = field(default="", metadata={"help": "Text added to the summary's description (e.g. how the runs "
                                                    "shared the machine)."})


def _split(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _augmentation(args: RecipeArguments, method: str, model_path: str, seed: int, share: float):
    if method != "a2t":
        return None
    from advtrain.attacks.recipes import a2t
    from advtrain.training import OnlineAttackAugmentation

    def online(train, tokenizer):
        attack = a2t(None, model_path, stopwords=args.nltk_data, wordnet=args.nltk_data, progress=False)
        return OnlineAttackAugmentation(
            train, tokenizer, attack, tokenizer_kwargs={"truncation": True, "max_length": args.max_length},
            every_n_epochs=1, num_examples=share, seed=seed,
        )

    return online


def run(args: RecipeArguments, name: str, seed: int) -> dict:
    path = os.path.join(args.output_dir, "runs", f"{name}_s{seed}.json")
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    method, fields = CANDIDATES[name]
    online_examples = fields.get("_online_examples", args.online_examples)
    fields = {k: v for k, v in fields.items() if not k.startswith("_")}
    model_path = packaged_encoder_path()
    model_dir = os.path.join(args.work_dir, f"{name}_s{seed}")
    trainer_method = "plain" if method == "a2t" else method
    config = method_classes(trainer_method)[1](
        output_dir=model_dir, num_train_epochs=args.num_train_epochs, learning_rate=args.learning_rate,
        per_device_train_batch_size=args.batch_size, per_device_eval_batch_size=64, seed=seed, **warmup_fraction(0.1),
        save_strategy="no", report_to="none", logging_steps=50, disable_tqdm=True, **fields,
    )
    script = TrainScriptArguments(method=trainer_method, dataset=os.path.join(args.data_dir, "mr"),
                                  model_name_or_path=model_path, train_size=args.train_size,
                                  max_length=args.max_length, eval_split="none")
    print(f"[recipe] {name} seed {seed}: training", file=sys.stderr, flush=True)
    record = train_classifier(script, config, quiet=True, augment=_augmentation(args, method, model_path, seed, online_examples))
    print(f"[recipe] {name} seed {seed}: {record['global_step']} steps in {record['train_seconds']:.0f} s; attacking",
          file=sys.stderr, flush=True)
    start = time.perf_counter()
    report = evaluate_model(
        model_dir, os.path.join(args.data_dir, "mr"), split="test", attacks=[args.attack],
        num_examples=args.attack_examples, query_budget=args.query_budget, time_limit_s=args.time_limit_s,
        nltk_data=args.nltk_data, seed=seed, model_name=name, progress=False,
    )
    result = {
        "candidate": name, "method": method, "fields": CANDIDATES[name][1], "seed": seed,
        "train_seconds": record["train_seconds"], "augment_seconds": record["augment_seconds"],
        "global_step": record["global_step"], "evaluate_seconds": round(time.perf_counter() - start, 1),
        "load": os.getloadavg(), "report": report.to_dict(),
    }
    os.makedirs(os.path.dirname(path), exist_ok=True)
    report.save(path.replace(".json", ".report.json"))
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(result, f, indent=1, default=str)
    os.replace(tmp, path)
    if not args.keep_models:
        import shutil

        shutil.rmtree(model_dir, ignore_errors=True)
    summary = report.attacks[0]
    print(f"[recipe] {name} seed {seed}: clean {report.clean_accuracy:.3f}, {args.attack} ASR "
          f"{summary.attack_success_rate:.3f} ({summary.num_successful}/{summary.num_successful + summary.num_failed + summary.num_budget + summary.num_timeout})",
          file=sys.stderr, flush=True)
    return result


# ------------------------------------------------------------------------------------------------------ summary


def _summary(result: dict) -> AttackSummary:
    return RobustnessReport.from_dict(result["report"]).attacks[0]


def _asr_counts(summary: AttackSummary) -> tuple[int, int]:
    attacked = [s for s in summary.example_statuses if s not in ("skipped", "error")]
    return sum(s == "successful" for s in attacked), len(attacked)


def summarize(args: RecipeArguments) -> dict:
    runs_dir = os.path.join(args.output_dir, "runs")
    results: dict[str, dict[int, dict]] = {}
    for name in sorted(os.listdir(runs_dir)) if os.path.isdir(runs_dir) else []:
        if name.endswith(".json") and not name.endswith(".report.json"):
            with open(os.path.join(runs_dir, name)) as f:
                result = json.load(f)
            results.setdefault(result["candidate"], {})[result["seed"]] = result
    plain = results.get("plain", {})
    rows = []
    for name, by_seed in results.items():
        seeds = sorted(by_seed)
        row = {"candidate": name, "method": by_seed[seeds[0]]["method"], "fields": by_seed[seeds[0]]["fields"],
               "seeds": seeds}
        clean = [100 * by_seed[s]["report"]["clean_accuracy"] for s in seeds]
        row["clean_accuracy"], row["clean_accuracy_halfwidth"] = mean_interval(clean)
        summaries = [_summary(by_seed[s]) for s in seeds]
        successes = sum(k for k, _ in map(_asr_counts, summaries))
        attacked = sum(n for _, n in map(_asr_counts, summaries))
        row["asr"] = 100 * successes / attacked if attacked else None
        row["asr_interval"] = [100 * x for x in wilson_interval(successes, attacked)] if attacked else None
        row["asr_per_seed"] = [100 * by_seed[s]["report"]["attacks"][0]["attack_success_rate"] for s in seeds]
        row["attacked"] = attacked
        seconds = [by_seed[s]["train_seconds"] + by_seed[s]["augment_seconds"] for s in seeds]
        row["train_seconds"] = sum(seconds) / len(seconds)
        paired = [s for s in seeds if s in plain]
        if paired and name != "plain":
            row["paired_seeds"] = paired
            row["clean_difference"] = mean_interval(
                [100 * (by_seed[s]["report"]["clean_accuracy"] - plain[s]["report"]["clean_accuracy"]) for s in paired])
            pooled = pooled_attack_comparison([_summary(plain[s]) for s in paired],
                                              [_summary(by_seed[s]) for s in paired], bootstrap=args.bootstrap)
            row["asr_drop"] = 100 * pooled["asr_drop"]
            row["asr_drop_interval"] = [100 * x for x in pooled["asr_drop_interval"]]
            # Exact McNemar on accuracy under attack, all seeds' sentences pooled (each sentence paired once).
            row["mcnemar"] = {"only_plain_robust": pooled["only_baseline_robust"],
                              "only_candidate_robust": pooled["only_candidate_robust"], "p_value": pooled["mcnemar_p"]}
            plain_seconds = [plain[s]["train_seconds"] + plain[s]["augment_seconds"] for s in paired]
            cand_seconds = [by_seed[s]["train_seconds"] + by_seed[s]["augment_seconds"] for s in paired]
            row["time_ratio"] = sum(cand_seconds) / sum(plain_seconds)
            row["meets_target"] = bool(
                row["asr_drop"] >= 10 and row["asr_drop_interval"][0] > 0 and row["clean_difference"][0] >= -2
                and row["time_ratio"] <= 3 and len(paired) >= 3)
        rows.append(row)
    rows.sort(key=lambda r: (r["candidate"] != "plain", -(r.get("asr_drop") or 0)))
    summary = {"arguments": asdict(args), "machine": f"{platform.machine()}, torch {torch.__version__}, "
               f"{os.cpu_count()} CPUs", "rows": rows}
    with open(os.path.join(args.output_dir, "recipe.json"), "w") as f:
        json.dump(summary, f, indent=1, default=str)
    with open(os.path.join(args.output_dir, "recipe.md"), "w") as f:
        f.write(markdown(summary))
    return summary


def _fmt(value, digits=1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def markdown(summary: dict) -> str:
    a = summary["arguments"]
    lines = [
        "# Robustness recipe search: MiniLM on MR, A2T",
        "",
        f"all-MiniLM-L6-v2 fine-tuned on {a['train_size']} MR training sentences, {a['num_train_epochs']} epochs, batch "
        f"{a['batch_size']}, learning rate {a['learning_rate']}, max length {a['max_length']}; {a['attack']} "
        f"(counter-fitted GloVe 50-d neighbours, MiniLM sentence encoder, no POS constraint) on {a['attack_examples']} "
        f"MR test sentences per seed (a seeded sample, the same for every candidate of a seed), query budget "
        f"{a['query_budget']}; clean accuracy on all 1,066 MR test sentences. {summary['machine']}."
        + (f" {a['note']}" if a.get("note") else ""),
        "",
        "ASR pooled over seeds with its 95% Wilson interval; *ASR drop* = plain − candidate on the same sentences, with a "
        "95% paired bootstrap interval (sentences resampled within each seed); McNemar = exact test of accuracy under "
        "attack, sentences of all seeds pooled; clean Δ = mean over seeds ± 95% t half-width; time = training seconds "
        "(with online attacks) relative to plain on the same seeds, as recorded by each run: runs shared the machine "
        "(two at a time, tests beside them), so this column is only a rough guide; the per-step cost measured in one "
        "process is in benchmarks/results/recipe_r3f.md.",
        "",
        "| candidate | method | seeds | clean acc. % | clean Δ | A2T ASR % [95% CI] | ASR drop [95% CI] | McNemar p | "
        "time × plain | target met |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in summary["rows"]:
        clean = _fmt(r["clean_accuracy"]) + (f" ± {_fmt(r['clean_accuracy_halfwidth'])}"
                                             if r["clean_accuracy_halfwidth"] is not None else "")
        asr = f"{_fmt(r['asr'])} [{_fmt(r['asr_interval'][0])}, {_fmt(r['asr_interval'][1])}]" if r["asr_interval"] else "–"
        if "asr_drop" in r:
            cd, hw = r["clean_difference"]
            delta = f"{cd:+.1f}" + (f" ± {hw:.1f}" if hw is not None else "")
            drop = f"{r['asr_drop']:+.1f} [{r['asr_drop_interval'][0]:+.1f}, {r['asr_drop_interval'][1]:+.1f}]"
            p = f"{r['mcnemar']['p_value']:.3g}"
            ratio = f"{r['time_ratio']:.2f}"
            met = "yes" if r["meets_target"] else "no"
        else:
            delta = drop = p = ratio = met = "–"
        seeds = ",".join(str(s) for s in r["seeds"])
        lines.append(f"| {r['candidate']} | {r['method']} | {seeds} | {clean} | {delta} | {asr} | {drop} | {p} | "
                     f"{ratio} | {met} |")
    lines += ["", "Candidates (config fields changed from the method's defaults):", ""]
    for r in summary["rows"]:
        lines.append(f"- `{r['candidate']}`: {r['method']} {json.dumps(r['fields']) if r['fields'] else '(defaults)'}")
    lines += ["", "Target (issue 18): ASR drop ≥ 10 points with its interval above 0, clean Δ ≥ −2 points, time ≤ 3× "
              "plain, ≥ 3 seeds.", ""]
    return "\n".join(lines)


def main() -> None:
    (args,) = HfArgumentParser(RecipeArguments).parse_args_into_dataclasses()
    args.nltk_data = args.nltk_data or os.environ.get("NLTK_DATA")
    unknown = [c for c in _split(args.candidates) if c not in CANDIDATES]
    if unknown:
        raise SystemExit(f"unknown candidates {unknown}; choose from {sorted(CANDIDATES)}")
    if not args.summarize:
        for seed in [int(s) for s in _split(args.seeds)]:
            for name in _split(args.candidates):
                run(args, name, seed)
                summarize(args)
    print(markdown(summarize(args)))


if __name__ == "__main__":
    main()
