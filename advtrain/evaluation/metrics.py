"""Robustness metrics: per-attack summaries of `AttackResult` lists and the report that holds them.

Conventions (TextAttack's, made exact; ``docs/evaluation.md`` has the formulas):

- *skipped*: the model already misclassified the original example, so it was not attacked;
- *attacked* = successful + failed + budget + timeout: correctly classified examples whose attack ended with a known
  outcome (``budget`` and ``timeout`` are failed attacks that ran out of queries or time);
- *error*: the attack raised on the example; its outcome is unknown, so it is left out of every rate below and only
  counted (``num_errors``). The rates are over the ``known = num_examples - num_errors`` examples.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from ..attacks.results import STATUSES, AttackResult


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

    @property
    def num_attacked(self) -> int:
        """successful + failed + budget + timeout."""
        return self.num_successful + self.num_failed + self.num_budget + self.num_timeout

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

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
    results: Sequence[AttackResult], attack: str, seconds: float | None = None, notes: Sequence[str] = ()
) -> AttackSummary:
    """Summarises one attack's results. A pure function of its arguments.

    With ``n`` results of which ``S`` successful, ``F`` failed, ``K`` skipped, ``B`` budget, ``T`` timeout and ``E``
    error, ``A = S + F + B + T`` attacked and ``N = n - E`` with a known outcome:

    - ``clean_accuracy = (N - K) / N`` — errors are left out (a native attack only errs after finding the original
      correctly classified, but TextAttack's can err before predicting, so the error rows are not counted either way);
    - ``accuracy_under_attack = (F + B + T) / N`` — still correct after the attack;
    - ``attack_success_rate = S / A`` — so that ``accuracy_under_attack = clean_accuracy * (1 - attack_success_rate)``;
    - ``avg_words_perturbed`` = mean of ``words_changed / num_words`` over the ``S`` successful results;
    - ``avg_queries`` = mean of ``num_queries`` over the ``A`` attacked results (skipped and error rows excluded).

    Each rate is `None` when its denominator is zero.

    Args:
        results (`Sequence[AttackResult]`): one result per attacked example.
        attack (`str`): the attack's name.
        seconds (`float`, *optional*): wall time of the whole attack (per-example times of batched attacks overlap, so
            they are not summed here).
        notes (`Sequence[str]`, *optional*): caveats carried into the summary.
    """
    counts = dict.fromkeys(STATUSES, 0)
    for r in results:
        counts[r.status] += 1  # AttackResult validates its status
    attacked = [r for r in results if r.status in ("successful", "failed", "budget", "timeout")]
    successful = [r for r in results if r.status == "successful"]
    known = len(results) - counts["error"]
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
    )


def _percent(value: float | None) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.1f}"


def _number(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


@dataclass
class RobustnessReport:
    """What `evaluate_robustness` returns: clean accuracy, one `AttackSummary` per attack, out-of-distribution accuracy.

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

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["attacks"] = [a.to_dict() for a in self.attacks]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RobustnessReport:
        data = dict(data)
        data["attacks"] = [AttackSummary.from_dict(a) for a in data.get("attacks", [])]
        return cls(**data)

    def save(self, path: str | os.PathLike) -> None:
        """Writes the report as JSON."""
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, indent=2, ensure_ascii=False)
            f.write("\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> RobustnessReport:
        with open(path, encoding="utf-8") as f:
            return cls.from_dict(json.load(f))

    def to_markdown(self) -> str:
        """A Markdown table with one row per attack (percentages), then the OOD accuracies and the notes."""
        lines = [
            f"**Model** {self.model} · **dataset** {self.dataset} ({self.num_examples} examples) · "
            f"**clean accuracy** {_percent(self.clean_accuracy)}%"
            + (f" · **temperature** {self.temperature:.3g}" if self.temperature is not None else ""),
            "",
            (
                "| attack | examples | clean acc. % | acc. under attack % | attack success % | words perturbed % "
                "| avg queries | skipped | budget | timeout | errors | seconds |"
            ),
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for a in self.attacks:
            lines.append(
                f"| {a.attack} | {a.num_examples} | {_percent(a.clean_accuracy)} | {_percent(a.accuracy_under_attack)} "
                f"| {_percent(a.attack_success_rate)} | {_percent(a.avg_words_perturbed)} | {_number(a.avg_queries)} "
                f"| {a.num_skipped} | {a.num_budget} | {a.num_timeout} | {a.num_errors} | {_number(a.seconds)} |"
            )
        if self.ood_accuracy:
            lines.append("")
            lines += [f"- OOD clean accuracy on {name}: {_percent(acc)}%" for name, acc in self.ood_accuracy.items()]
        notes = list(self.notes) + [f"{a.attack}: {note}" for a in self.attacks for note in a.notes]
        if notes:
            lines.append("")
            lines += [f"- Note: {note}" for note in notes]
        return "\n".join(lines) + "\n"
