"""Robustness metrics: per-attack summaries of `AttackResult` lists and the report that holds them.

Conventions (TextAttack's, made exact; ``docs/evaluation.md`` has the formulas):

- *skipped*: the model already misclassified the original example, so it was not attacked;
- *attacked* = successful + failed + budget + timeout: correctly classified examples whose attack ended with a known
  outcome (``budget`` and ``timeout`` are failed attacks that ran out of queries or time);
- *error*: the attack raised on the example; its outcome is unknown, so it is left out of every rate below and only
  counted (``num_errors``). The rates are over the ``known = num_examples - num_errors`` examples.
"""

from __future__ import annotations

import copy
import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from ..attacks.results import STATUSES, AttackResult
from .examples import AdversarialExample, SynonymCheck, load_examples, save_examples, synonym_counts
from .stats import wilson_interval


def _plain(value: Any) -> Any:
    """A deep copy with tuples as lists: the shape the data has after a JSON round trip."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return copy.deepcopy(value)


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


@dataclass
class AttackSummary:
    """The outcome of one attack on a sample of examples (see `summarize_attack` for how each number is computed).

    Rates are fractions in ``[0, 1]``, or `None` when their denominator is zero (e.g. no example was attacked).

    Args:
        attack (`str`): the attack's name.
        num_examples (`int`): examples in the sample (every status, errors included).
        num_successful, num_failed, num_skipped, num_budget, num_timeout, num_errors (`int`): examples per status.
        clean_accuracy (`float`, *optional*): accuracy on the sample before the attack, errors left out.
        accuracy_under_attack (`float`, *optional*): accuracy after the attack, errors left out.
        attack_success_rate (`float`, *optional*): successful / attacked.
        avg_words_perturbed (`float`, *optional*): mean share of the words changed, over successful attacks.
        avg_queries (`float`, *optional*): mean model queries, over attacked examples.
        seconds (`float`, *optional*): wall time of the attack on the whole sample.
        notes (`list[str]`): substitutions of resources and other caveats (e.g. the sentence encoder used offline).
        clean_accuracy_interval (`tuple[float, float]`, *optional*): 95% Wilson score interval of `clean_accuracy`
            (`advtrain.evaluation.wilson_interval`).
        accuracy_under_attack_interval (`tuple[float, float]`, *optional*): the same for `accuracy_under_attack`.
        attack_success_rate_interval (`tuple[float, float]`, *optional*): the same for `attack_success_rate`.
        num_substitutions (`int`): words swapped by the successful attacks.
        num_synonym_substitutions (`int`, *optional*): of those, how many WordNet lists as synonyms of the word they
            replaced (`advtrain.lexicon.WordNetSynonymy`); `None` when not judged (no WordNet).
        synonym_share (`float`, *optional*): ``num_synonym_substitutions / num_substitutions``.
        example_indices (`list[int]`): each attacked example's dataset row, in order: what `compare_attacks` pairs
            two models' outcomes by.
        example_statuses (`list[str]`): each attacked example's status, in the same order.
    """

    attack: str
    num_examples: int
    num_successful: int
    num_failed: int
    num_skipped: int
    num_budget: int
    num_timeout: int
    num_errors: int
    clean_accuracy: float | None
    accuracy_under_attack: float | None
    attack_success_rate: float | None
    avg_words_perturbed: float | None
    avg_queries: float | None
    seconds: float | None = None
    notes: list[str] = field(default_factory=list)
    clean_accuracy_interval: tuple[float, float] | None = None
    accuracy_under_attack_interval: tuple[float, float] | None = None
    attack_success_rate_interval: tuple[float, float] | None = None
    num_substitutions: int = 0
    num_synonym_substitutions: int | None = None
    synonym_share: float | None = None
    example_indices: list[int] = field(default_factory=list)
    example_statuses: list[str] = field(default_factory=list)

    def __post_init__(self):
        for name in ("clean_accuracy_interval", "accuracy_under_attack_interval", "attack_success_rate_interval"):
            value = getattr(self, name)
            if value is not None:  # JSON gives lists
                setattr(self, name, (float(value[0]), float(value[1])))

    @property
    def num_known(self) -> int:
        """Examples with a known outcome: all but the errors."""
        return self.num_examples - self.num_errors

    @property
    def num_attacked(self) -> int:
        """successful + failed + budget + timeout."""
        return self.num_successful + self.num_failed + self.num_budget + self.num_timeout

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON-shaped data (intervals as lists)."""
        return _plain(asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AttackSummary:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown AttackSummary fields {sorted(unknown)}; expected {sorted(known)}")
        return cls(**{**data, "notes": list(data.get("notes", []))})


def compute_accuracy(eval_pred) -> dict[str, float]:
    """`compute_metrics` for a `Trainer` of a classifier: ``{"accuracy": ...}`` from its `EvalPrediction` (logits or a
    tuple whose first element is the logits). A plain function, where `evaluate.load("accuracy")` would reach for the
    Hub."""
    import numpy as np

    logits, labels = eval_pred
    logits = logits[0] if isinstance(logits, tuple) else logits
    return {"accuracy": float((np.argmax(logits, axis=-1) == labels).mean())}


def summarize_attack(
    results: Sequence[AttackResult],
    attack: str,
    seconds: float | None = None,
    notes: Sequence[str] = (),
    *,
    is_synonym: SynonymCheck | None = None,
    confidence: float = 0.95,
) -> AttackSummary:
    """Summarises one attack's results. A pure function of its arguments.

    With ``n`` results of which ``S`` successful, ``F`` failed, ``K`` skipped, ``B`` budget, ``T`` timeout and ``E``
    error, ``A = S + F + B + T`` attacked and ``N = n - E`` with a known outcome:

    - ``clean_accuracy = (N - K) / N`` — errors are left out (a native attack only errs after finding the original
      correctly classified, but TextAttack's can err before predicting, so the error rows are not counted either way);
    - ``accuracy_under_attack = (F + B + T) / N`` — still correct after the attack;
    - ``attack_success_rate = S / A`` — so that ``accuracy_under_attack = clean_accuracy * (1 - attack_success_rate)``;
    - ``avg_words_perturbed`` = mean of ``words_changed / num_words`` over the ``S`` successful results;
    - ``avg_queries`` = mean of ``num_queries`` over the ``A`` attacked results (skipped and error rows excluded);
    - each rate's Wilson score interval at `confidence` (over ``N``, ``N`` and ``A`` examples);
    - ``synonym_share`` = the share of the successful results' word substitutions that `is_synonym` accepts.

    Each rate is `None` when its denominator is zero.

    Args:
        results (`Sequence[AttackResult]`): one result per attacked example.
        attack (`str`): the attack's name.
        seconds (`float`, *optional*): wall time of the whole attack (per-example times of batched attacks overlap, so
            they are not summed here).
        notes (`Sequence[str]`, *optional*): caveats carried into the summary.
        is_synonym (`Callable[[str, str], bool]`, *optional*): judges each substitution (e.g.
            `advtrain.lexicon.WordNetSynonymy()`); without it `num_synonym_substitutions` and `synonym_share` are `None`.
        confidence (`float`, *optional*, defaults to 0.95): the intervals' coverage.
    """
    counts = dict.fromkeys(STATUSES, 0)
    for r in results:
        counts[r.status] += 1  # AttackResult validates its status
    attacked = [r for r in results if r.status in ("successful", "failed", "budget", "timeout")]
    successful = [r for r in results if r.status == "successful"]
    known = len(results) - counts["error"]
    still_correct = counts["failed"] + counts["budget"] + counts["timeout"]
    num_synonyms, num_substitutions = synonym_counts(results, is_synonym or (lambda a, b: False))
    if is_synonym is None:
        num_synonyms = None
    return AttackSummary(
        attack=attack,
        num_examples=len(results),
        num_successful=counts["successful"],
        num_failed=counts["failed"],
        num_skipped=counts["skipped"],
        num_budget=counts["budget"],
        num_timeout=counts["timeout"],
        num_errors=counts["error"],
        clean_accuracy=_ratio(known - counts["skipped"], known),
        accuracy_under_attack=_ratio(counts["failed"] + counts["budget"] + counts["timeout"], known),
        attack_success_rate=_ratio(counts["successful"], len(attacked)),
        avg_words_perturbed=_ratio(sum(r.perturbed_share for r in successful), len(successful)),
        avg_queries=_ratio(sum(r.num_queries for r in attacked), len(attacked)),
        seconds=seconds,
        notes=list(notes),
        clean_accuracy_interval=wilson_interval(known - counts["skipped"], known, confidence),
        accuracy_under_attack_interval=wilson_interval(still_correct, known, confidence),
        attack_success_rate_interval=wilson_interval(counts["successful"], len(attacked), confidence),
        num_substitutions=num_substitutions,
        num_synonym_substitutions=num_synonyms,
        synonym_share=None if num_synonyms is None else _ratio(num_synonyms, num_substitutions),
        example_indices=[r.index for r in results],
        example_statuses=[r.status for r in results],
    )


def _percent(value: float | None) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.1f}"


def _number(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def format_interval(value: float | None, interval: tuple[float, float] | None) -> str:
    """``"46.7 [34.6, 59.1]"``: a rate and its interval in percent (``"–"`` for a missing rate)."""
    if value is None:
        return "–"
    if interval is None:
        return _percent(value)
    return f"{_percent(value)} [{_percent(interval[0])}, {_percent(interval[1])}]"


def _synonyms(a: AttackSummary) -> str:
    if a.num_synonym_substitutions is None:
        return "–"
    return f"{_percent(a.synonym_share)} ({a.num_synonym_substitutions}/{a.num_substitutions})"


@dataclass
class RobustnessReport:
    """What `evaluate_robustness` returns: clean accuracy, one `AttackSummary` per attack, out-of-distribution accuracy,
    the adversarial examples and, optionally, an embedding-space robust-accuracy curve.

    Args:
        model (`str`): the model's name or folder.
        dataset (`str`): the evaluated dataset's name.
        num_examples (`int`): examples in the dataset (clean accuracy is over all of them; attacks may use a sample).
        clean_accuracy (`float`): accuracy on the whole dataset.
        attacks (`list[AttackSummary]`): one per attack, in the order run.
        ood_accuracy (`dict[str, float]`): clean accuracy on each extra (out-of-distribution) dataset.
        temperature (`float`, *optional*): the temperature the model was calibrated with before attacking.
        notes (`list[str]`): caveats of the whole run.
        config (`dict`): the settings of the run (sample size, seed, lengths, ...).
        clean_accuracy_interval (`tuple[float, float]`, *optional*): 95% Wilson interval of `clean_accuracy` (computed
            from it and `num_examples` when not given).
        examples (`list[AdversarialExample]`): every attacked example whose text an attack changed. Not part of the
            JSON: `save` writes them next to it as JSON Lines (``<name>.examples.jsonl``, named in `examples_file`), and
            `load` reads them back.
        examples_file (`str`, *optional*): that file's name, relative to the JSON report's folder.
        embedding_curve (`EmbeddingRobustnessCurve` or `dict`, *optional*): accuracy under PGD on the word embeddings
            at several radii (`embedding_robustness_curve`).
    """

    model: str
    dataset: str
    num_examples: int
    clean_accuracy: float
    attacks: list[AttackSummary] = field(default_factory=list)
    ood_accuracy: dict[str, float] = field(default_factory=dict)
    temperature: float | None = None
    notes: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    clean_accuracy_interval: tuple[float, float] | None = None
    examples: list[AdversarialExample] = field(default_factory=list)
    examples_file: str | None = None
    embedding_curve: Any = None

    def __post_init__(self):
        if self.clean_accuracy_interval is None and self.clean_accuracy is not None and self.num_examples:
            self.clean_accuracy_interval = wilson_interval(
                round(self.clean_accuracy * self.num_examples), self.num_examples
            )
        elif self.clean_accuracy_interval is not None:
            self.clean_accuracy_interval = tuple(map(float, self.clean_accuracy_interval))
        if isinstance(self.embedding_curve, dict):
            from .embedding import EmbeddingRobustnessCurve

            self.embedding_curve = EmbeddingRobustnessCurve.from_dict(self.embedding_curve)

    def to_dict(self) -> dict[str, Any]:
        """Everything but `examples` (saved as JSON Lines by `save`), as JSON-shaped data (tuples as lists)."""
        skip = ("examples", "attacks", "embedding_curve")
        data = {f.name: _plain(getattr(self, f.name)) for f in fields(self) if f.name not in skip}
        data["attacks"] = [a.to_dict() for a in self.attacks]
        data["embedding_curve"] = None if self.embedding_curve is None else self.embedding_curve.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RobustnessReport:
        data = dict(data)
        data["attacks"] = [AttackSummary.from_dict(a) for a in data.get("attacks", [])]
        data["examples"] = [e if isinstance(e, AdversarialExample) else AdversarialExample.from_dict(e)
                            for e in data.get("examples", [])]
        return cls(**data)

    def save(self, path: str | os.PathLike) -> None:
        """Writes the report as JSON and, when there are any, its adversarial examples as JSON Lines beside it
        (``robustness.json`` → ``robustness.examples.jsonl``)."""
        path = os.fspath(path)
        if self.examples:
            stem = path[: -len(".json")] if path.endswith(".json") else path
            examples_path = stem + ".examples.jsonl"
            save_examples(self.examples, examples_path)
            self.examples_file = os.path.basename(examples_path)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, indent=2, ensure_ascii=False)
            f.write("\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> RobustnessReport:
        """Reads a report written by `save`, with its adversarial examples when their file is there."""
        with open(path, encoding="utf-8") as f:
            report = cls.from_dict(json.load(f))
        if report.examples_file:
            examples_path = os.path.join(os.path.dirname(os.fspath(path)), report.examples_file)
            if os.path.exists(examples_path):
                report.examples = load_examples(examples_path)
        return report

    def to_markdown(self, max_examples: int = 3) -> str:
        """A Markdown table with one row per attack (percentages with their 95% intervals; the sample's own clean
        accuracy next to its accuracy under attack), the embedding-space curve, the OOD accuracies, up to
        `max_examples` successful adversarial examples per attack with the changed words marked, then the notes."""
        lines = [
            f"**Model** {self.model} · **dataset** {self.dataset} ({self.num_examples} examples) · "
            f"**clean accuracy** {format_interval(self.clean_accuracy, self.clean_accuracy_interval)}%"
            + (f" · **temperature** {self.temperature:.3g}" if self.temperature is not None else ""),
            "",
            "Rates in %, with 95% Wilson score intervals in brackets. *Sample clean acc.* is the accuracy on the "
            "attacked sample itself, the baseline of *acc. under attack*.",
            "",
            (
                "| attack | examples | sample clean acc. % | acc. under attack % | attack success % | words perturbed % "
                "| WordNet synonyms % | avg queries | skipped | budget | timeout | errors | seconds |"
            ),
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for a in self.attacks:
            lines.append(
                f"| {a.attack} | {a.num_examples} | {format_interval(a.clean_accuracy, a.clean_accuracy_interval)} "
                f"| {format_interval(a.accuracy_under_attack, a.accuracy_under_attack_interval)} "
                f"| {format_interval(a.attack_success_rate, a.attack_success_rate_interval)} "
                f"| {_percent(a.avg_words_perturbed)} | {_synonyms(a)} | {_number(a.avg_queries)} "
                f"| {a.num_skipped} | {a.num_budget} | {a.num_timeout} | {a.num_errors} | {_number(a.seconds)} |"
            )
        if self.embedding_curve is not None:
            lines += ["", self.embedding_curve.to_markdown()]
        if self.ood_accuracy:
            lines.append("")
            lines += [f"- OOD clean accuracy on {name}: {_percent(acc)}%" for name, acc in self.ood_accuracy.items()]
        shown = []
        for a in self.attacks:
            successful = [e for e in self.examples if e.attack == a.attack and e.status == "successful"]
            for e in successful[:max_examples]:
                shown.append(f"- *{a.attack}*, row {e.index} (gold {e.gold}, {e.original_prediction} → "
                             f"{e.perturbed_prediction}): {e.marked()}")
        if shown:
            lines += ["", "Adversarial examples (changed words: **~~original~~ → substitute**):", "", *shown]
        notes = list(self.notes) + [f"{a.attack}: {note}" for a in self.attacks for note in a.notes]
        if notes:
            lines.append("")
            lines += [f"- Note: {note}" for note in notes]
        return "\n".join(lines) + "\n"
