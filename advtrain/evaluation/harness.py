"""`evaluate_robustness`: clean accuracy, attacks on a seeded sample, OOD accuracy and optional calibration, in one
report."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from tqdm.auto import tqdm

from ..attacks.results import Attack
from ..attacks.runner import run_attack  # the loop shared with online attack augmentation
from ..resources import MissingResourceError
from .embedding import embedding_robustness_curve
from .examples import adversarial_examples
from .metrics import RobustnessReport, summarize_attack
from .scoring import (
    TemperatureScaledModel,
    clean_accuracy,
    dataset_inputs,
    fit_temperature,
)


def load_model(path: str | os.PathLike) -> tuple[torch.nn.Module, Any]:
    """``(AutoModelForSequenceClassification, AutoTokenizer)`` from a folder written by ``save_pretrained``."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if not os.path.isdir(path):
        raise MissingResourceError(
            "saved model folder",
            "pass the folder that Trainer.save_model / save_pretrained wrote (config.json, the weights and the "
            "tokenizer files), or the model object and its tokenizer",
            os.fspath(path),
        )
    return AutoModelForSequenceClassification.from_pretrained(path), AutoTokenizer.from_pretrained(path)


def _attack_entries(attacks: Any) -> list[tuple[str, Attack, list[str]]]:
    """``(name, attack, notes)`` from a mapping name → attack or ``(attack, notes)``, or a sequence of attacks."""
    if isinstance(attacks, Mapping):
        items = list(attacks.items())
    else:
        items = [(getattr(a[0] if isinstance(a, tuple) else a, "name", None), a) for a in attacks]
    entries = []
    for name, value in items:
        attack, notes = (value[0], list(value[1])) if isinstance(value, tuple) else (value, [])
        if not callable(getattr(attack, "attack_batch", None)):
            raise TypeError(f"attack {name!r} does not implement the Attack protocol (attack_batch); got {attack!r}")
        if not name:
            raise ValueError(f"attack {attack!r} has no name: pass a mapping name → attack")
        entries.append((str(name), attack, notes))
    names = [n for n, _, _ in entries]
    if len(set(names)) != len(names):
        raise ValueError(f"attack names must be unique, got {names}")
    return entries


def _model_name(model: Any, path: Any) -> str:
    if path is not None:
        return os.fspath(path)
    config = getattr(model, "config", None)
    return getattr(config, "_name_or_path", "") or type(model).__name__


def evaluate_robustness(
    model: torch.nn.Module | str | os.PathLike,
    tokenizer: Any = None,
    dataset: Any = None,
    attacks: Mapping[str, Any] | Sequence[Attack] = (),
    *,
    num_examples: int | None = None,
    seed: int = 0,
    ood_datasets: Mapping[str, Any] | None = None,
    calibration_dataset: Any = None,
    text_column: str | Sequence[str] = "text",
    label_column: str = "label",
    batch_size: int = 32,
    max_length: int = 128,
    progress: bool = True,
    model_name: str | None = None,
    dataset_name: str | None = None,
    synonyms: Any = "wordnet",
    embedding_radii: Sequence[float] | None = None,
    embedding_steps: int = 10,
    embedding_norm: str = "l2",
) -> RobustnessReport:
    """Evaluates a classifier's robustness: clean accuracy on `dataset`, each attack on a fixed seeded sample of it,
    clean accuracy on extra (out-of-distribution) datasets, optionally after temperature calibration.

    The model is put in eval mode for the whole run and restored to its previous mode afterwards; its parameters are
    frozen (``requires_grad=False``) while the attacks run, so no attack can leave a ``.grad`` on them, and their
    ``requires_grad`` flags are restored. An attack that raises on an example records it with the ``error`` status and
    the run goes on; query budgets and time limits are the attacks' own (see `build_evaluation_attack`).

    Args:
        model (`PreTrainedModel`, `str` or `os.PathLike`): the classifier, or a folder saved with ``save_pretrained``
            (then `tokenizer` is loaded from it too).
        tokenizer: the model's fast tokenizer (required with a model object).
        dataset (``datasets.Dataset`` or `Sequence[dict]`): the evaluation set (see `clean_accuracy` for columns).
        attacks (`Mapping[str, Attack | tuple[Attack, list[str]]]` or `Sequence[Attack]`): name → attack, or name →
            the ``(attack, notes)`` pair `build_evaluation_attack` returns; or attacks with a ``name`` attribute.
        num_examples (`int`, *optional*): examples to attack, drawn without replacement with `seed` (all by default).
        seed (`int`, *optional*, defaults to 0): seed of the sample (the same for every attack).
        ood_datasets (`Mapping[str, Dataset]`, *optional*): name → extra dataset, for clean accuracy only.
        calibration_dataset (``Dataset``, *optional*): a dev set; if given, `fit_temperature` runs first and the
            attacks see `TemperatureScaledModel(model, T)` (predictions, hence accuracies, are unchanged).
        text_column, label_column, batch_size, max_length: as in `clean_accuracy`; `batch_size` is also the number of
            examples handed to an attack at a time.
        progress (`bool`, *optional*, defaults to `True`): a tqdm bar over the attacked examples of each attack.
        model_name, dataset_name (`str`, *optional*): names for the report.
        synonyms (`str`, WordNet reader or `Callable[[str, str], bool]`, *optional*, defaults to ``"wordnet"``): judges
            each word substitution of the successful attacks for the summaries' `synonym_share`: ``"wordnet"`` uses
            `advtrain.lexicon.WordNetSynonymy` under ``NLTK_DATA`` (without WordNet the share is left out, noted); a
            WordNet reader or folder, or any function ``(word, substitute) -> bool``; `None` skips the judgement.
        embedding_radii (`Sequence[float]`, *optional*): radii of an embedding-space PGD robust-accuracy curve on the
            attacked sample (`embedding_robustness_curve`; the report's `embedding_curve`); none by default.
        embedding_steps (`int`, *optional*, defaults to 10): PGD steps per radius.
        embedding_norm (`str`, *optional*, defaults to ``"l2"``): the curve's ball (``"l2"`` or ``"linf"``).

    Returns:
        `RobustnessReport`
    """
    path = None
    if isinstance(model, (str, os.PathLike)):
        path = model
        model, loaded_tokenizer = load_model(model)
        tokenizer = tokenizer if tokenizer is not None else loaded_tokenizer
    if tokenizer is None:
        raise ValueError("evaluate_robustness needs the tokenizer of a model object (or a saved model folder)")
    if dataset is None:
        raise ValueError("evaluate_robustness needs a dataset")
    entries = _attack_entries(attacks)
    texts, labels = dataset_inputs(dataset, text_column, label_column)
    if not texts:
        raise ValueError("evaluate_robustness got an empty dataset")
    if num_examples is not None and num_examples < 1:
        raise ValueError(f"num_examples must be at least 1, got {num_examples}")
    is_synonym, run_notes = _synonym_check(synonyms)
    columns = {"text_column": text_column, "label_column": label_column, "batch_size": batch_size, "max_length": max_length}

    was_training = model.training
    requires_grad = {name: p.requires_grad for name, p in model.named_parameters()}
    model.eval()
    try:
        temperature = None
        if calibration_dataset is not None:
            temperature = fit_temperature(model, tokenizer, calibration_dataset, **columns)
        accuracy = clean_accuracy(model, tokenizer, dataset, **columns)
        ood = {name: clean_accuracy(model, tokenizer, ds, **columns) for name, ds in (ood_datasets or {}).items()}

        rows = list(range(len(texts)))
        if num_examples is not None and num_examples < len(rows):
            rows = sorted(random.Random(seed).sample(rows, num_examples))
        victim = model if temperature is None else TemperatureScaledModel(model, temperature)
        for p in model.parameters():
            p.requires_grad_(False)
        summaries, examples = [], []
        for name, attack, notes in entries:
            with tqdm(total=len(rows), desc=f"attack {name}", unit="ex", disable=not progress) as bar:
                start = time.perf_counter()
                results = run_attack(
                    attack, victim, tokenizer, [texts[i] for i in rows], [labels[i] for i in rows], rows,
                    chunk_size=batch_size, bar=bar,
                )
                seconds = time.perf_counter() - start
            summaries.append(summarize_attack(results, name, seconds, notes, is_synonym=is_synonym))
            examples += adversarial_examples(results, name, is_synonym)
        curve = None
        if embedding_radii is not None:
            curve = embedding_robustness_curve(
                model, tokenizer, [texts[i] for i in rows], [labels[i] for i in rows], embedding_radii,
                steps=embedding_steps, norm=embedding_norm, batch_size=batch_size, max_length=max_length,
            )
    finally:
        for name, p in model.named_parameters():
            p.requires_grad_(requires_grad[name])
        model.train(was_training)

    return RobustnessReport(
        model=model_name or _model_name(model, path),
        dataset=dataset_name or "dataset",
        num_examples=len(texts),
        clean_accuracy=accuracy,
        attacks=summaries,
        ood_accuracy=ood,
        temperature=temperature,
        notes=run_notes
        + ([] if temperature is None else [f"attacks ran on logits / T with T = {temperature:.4g} fitted on a dev set"]),
        config={
            **{k: (list(v) if isinstance(v, tuple) else v) for k, v in columns.items()},
            "num_examples": num_examples,
            "num_attacked_examples": len(rows),
            "seed": seed,
            "attacks": [name for name, _, _ in entries],
            "ood_datasets": list(ood),
            "calibrated": temperature is not None,
            "embedding_radii": None if embedding_radii is None else [float(r) for r in embedding_radii],
        },
        examples=examples,
        embedding_curve=curve,
    )


def _synonym_check(synonyms: Any) -> tuple[Any, list[str]]:
    """The ``(word, substitute) -> bool`` judge of `evaluate_robustness`'s `synonyms`, and a note when WordNet is
    missing."""
    from ..lexicon import WordNetSynonymy

    if synonyms is None:
        return None, []
    if callable(synonyms) and not hasattr(synonyms, "synsets"):
        return synonyms, []
    try:
        return WordNetSynonymy(None if synonyms == "wordnet" else synonyms), []
    except (MissingResourceError, ImportError) as err:  # no WordNet data, or no nltk (the `augment` extra)
        return None, [f"WordNet synonym share not measured: {err}"]
