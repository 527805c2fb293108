"""Comparing robustness reports: paired tests between two models attacked on the same examples, and the rows of a
comparison table (every rate with its interval, the paired test against a baseline report) for ``advtrain report``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .metrics import AttackSummary, RobustnessReport, format_interval
from .stats import PairedComparison, mcnemar_exact_p, paired_comparison, wilson_interval

# Statuses after which the model is still right on the (perturbed) example; `skipped`: wrong before the attack.
_CORRECT_UNDER_ATTACK = ("failed", "budget", "timeout")


def outcomes_under_attack(summary: AttackSummary) -> dict[int, bool]:
    """Dataset row → whether the model was still right after the attack (``failed``, ``budget``, ``timeout``) or not
    (``successful``, ``skipped``); ``error`` rows have no known outcome and are left out."""
    if len(summary.example_indices) != len(summary.example_statuses):
        raise ValueError(f"{summary.attack}: example_indices and example_statuses differ in length")
    return {i: s in _CORRECT_UNDER_ATTACK for i, s in zip(summary.example_indices, summary.example_statuses)
            if s != "error"}


def compare_attacks(
    a: AttackSummary, b: AttackSummary, *, bootstrap: int = 0, seed: int = 0
) -> PairedComparison:
    """Paired comparison of accuracy under attack between two models attacked on the same examples: the exact McNemar
    test on the examples where one model resisted and the other did not (`paired_comparison`), over the dataset rows
    both summaries attacked with a known outcome.

    Args:
        a, b (`AttackSummary`): the same attack on two models (`example_indices` and `example_statuses` filled, as
            `summarize_attack` does).
        bootstrap (`int`, *optional*, defaults to 0): paired-bootstrap resamples for an interval of the difference.
        seed (`int`, *optional*, defaults to 0): the bootstrap's seed.

    Raises:
        ValueError: when the two summaries share no attacked example (e.g. saved before per-example outcomes were
            recorded, or drawn from different samples).
    """
    left, right = outcomes_under_attack(a), outcomes_under_attack(b)
    shared = sorted(set(left) & set(right))
    if not shared:
        raise ValueError(
            f"{a.attack} / {b.attack}: no attacked example in common (attack both models on the same seeded sample; "
            "reports saved before per-example outcomes were recorded cannot be paired)"
        )
    return paired_comparison([left[i] for i in shared], [right[i] for i in shared], bootstrap=bootstrap, seed=seed)


def success_rate_difference_interval(
    strata: Sequence[tuple[dict[int, str], dict[int, str]]],
    *,
    num_resamples: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float] | None:
    """Paired-bootstrap percentile interval of ``ASR(a) − ASR(b)``, each attack success rate pooled over the strata
    as a ratio of sums (successful / attacked).

    Each stratum is one pair of status maps (dataset row → status, as `AttackSummary.example_indices` and
    `example_statuses` give them) of two models attacked on the same sample, e.g. one seed of a comparison. The rows
    both maps hold are resampled with replacement within each stratum, each row keeping both models' outcomes, so the
    interval accounts for the pairing (the same sentence is hard for both models). ``skipped`` and ``error`` rows are
    not attacked: they count in neither rate, and a resample in which one model has no attacked row is left out.
    `None` when the strata share no row (or no resample has an attacked row on both sides).
    """
    import numpy as np

    from .stats import _z

    _z(confidence)
    rng = np.random.default_rng(seed)
    totals = np.zeros((num_resamples, 4))
    shared_any = False
    for a, b in strata:
        shared = sorted(set(a) & set(b))
        if not shared:
            continue
        shared_any = True
        rows = np.array([[a[i] == "successful", a[i] not in ("skipped", "error"),
                          b[i] == "successful", b[i] not in ("skipped", "error")] for i in shared], dtype=np.float64)
        picks = rng.integers(0, len(rows), size=(num_resamples, len(rows)))
        totals += rows[picks].sum(axis=1)
    if not shared_any:
        return None
    # A resample that attacks no row of one model has no rate for it (0/0): it is left out, not read as 0.
    defined = (totals[:, 1] > 0) & (totals[:, 3] > 0)
    if not defined.any():
        return None
    totals = totals[defined]
    diff = totals[:, 0] / totals[:, 1] - totals[:, 2] / totals[:, 3]
    alpha = (1 - confidence) / 2
    low, high = np.quantile(diff, [alpha, 1 - alpha])
    return float(low), float(high)


def statuses_by_row(summary: AttackSummary) -> dict[int, str]:
    """Dataset row → attack status of an `AttackSummary` (for `success_rate_difference_interval`)."""
    return dict(zip(summary.example_indices, summary.example_statuses))


def pooled_attack_comparison(
    baseline: Sequence[AttackSummary],
    candidate: Sequence[AttackSummary],
    *,
    bootstrap: int = 10_000,
    seed: int = 0,
) -> dict[str, Any]:
    """One attack on two models over several seeds (one summary per seed, in the same order, each pair attacked on
    the same seeded sample): attack success rates pooled over the seeds as ratios of sums, the drop ``ASR(baseline) −
    ASR(candidate)`` with its paired-bootstrap interval (rows resampled within each seed,
    `success_rate_difference_interval`), and the exact McNemar test of accuracy under attack, the rows of all seeds
    pooled (each row paired once, `compare_attacks`).

    Returns a dict of fractions: ``attacked`` / ``successful`` (candidate), ``asr`` and its Wilson ``asr_interval``,
    ``baseline_attacked`` / ``baseline_successful`` / ``baseline_asr``, ``asr_drop`` and ``asr_drop_interval`` (`None`
    with ``bootstrap=0``), ``only_baseline_robust`` / ``only_candidate_robust`` (the discordant rows) and
    ``mcnemar_p``. Raises `ValueError` when the sequences differ in length or a pair shares no attacked row.
    """
    if len(baseline) != len(candidate) or not len(baseline):
        raise ValueError(f"need one baseline summary per candidate summary, got {len(baseline)} and {len(candidate)}")

    def counts(summaries):
        statuses = [s for summary in summaries for s in summary.example_statuses if s not in ("skipped", "error")]
        return sum(s == "successful" for s in statuses), len(statuses)

    k, n = counts(candidate)
    bk, bn = counts(baseline)
    strata = [(statuses_by_row(b), statuses_by_row(c)) for b, c in zip(baseline, candidate)]
    interval = success_rate_difference_interval(strata, num_resamples=bootstrap, seed=seed) if bootstrap else None
    only_baseline = only_candidate = 0
    for b, c in zip(baseline, candidate):
        paired = compare_attacks(b, c)
        only_baseline, only_candidate = only_baseline + paired.only_a_correct, only_candidate + paired.only_b_correct
    return {
        "attacked": n, "successful": k, "asr": k / n if n else None, "asr_interval": wilson_interval(k, n),
        "baseline_attacked": bn, "baseline_successful": bk, "baseline_asr": bk / bn if bn else None,
        "asr_drop": bk / bn - k / n if n and bn else None, "asr_drop_interval": interval,
        "only_baseline_robust": only_baseline, "only_candidate_robust": only_candidate,
        "mcnemar_p": mcnemar_exact_p(only_baseline, only_candidate),
    }


def comparison_rows(
    reports: Sequence[RobustnessReport], *, baseline: int | None = 0, bootstrap: int = 0
) -> list[dict[str, Any]]:
    """One row per report × attack for a comparison table, with every rate's 95% interval and the paired test of
    accuracy under attack against the baseline report's same attack.

    Each row holds: ``model``, ``dataset``, ``attack`` (`None` for a report without attacks), ``clean_accuracy`` and
    ``clean_accuracy_interval`` (the whole dataset), ``num_attacked_examples``, ``sample_clean_accuracy`` and its
    interval (the attacked sample: the baseline of the next two), ``accuracy_under_attack``, ``attack_success_rate``
    (each with ``..._interval``), ``avg_words_perturbed``, ``synonym_share``, ``num_synonym_substitutions``,
    ``num_substitutions``, ``avg_queries``, ``seconds``, and ``paired``: the `PairedComparison` (as a dict; model A =
    this row, B = the baseline) against ``reports[baseline]``'s summary of the same attack, or `None` for the baseline
    itself, without a baseline, or when the two share no attacked example (``paired_note`` says why).

    Args:
        reports (`Sequence[RobustnessReport]`): the reports, in table order.
        baseline (`int`, *optional*, defaults to 0): index of the report every other is tested against (`None`: no
            test).
        bootstrap (`int`, *optional*, defaults to 0): paired-bootstrap resamples (0: McNemar only).
    """
    rows = []
    base = reports[baseline] if baseline is not None and reports else None
    base_attacks = {a.attack: a for a in base.attacks} if base is not None else {}
    for k, r in enumerate(reports):
        common = {
            "model": r.model,
            "dataset": r.dataset,
            "clean_accuracy": r.clean_accuracy,
            "clean_accuracy_interval": r.clean_accuracy_interval,
        }
        if not r.attacks:
            rows.append({**common, "attack": None, "paired": None, "paired_note": None})
            continue
        for a in r.attacks:
            paired, note = None, None
            if base is not None and k != baseline:
                other = base_attacks.get(a.attack)
                if other is None:
                    note = f"the baseline {base.model} has no {a.attack} attack"
                else:
                    try:
                        paired = compare_attacks(a, other, bootstrap=bootstrap).to_dict()
                    except ValueError as err:
                        note = str(err)
            rows.append({
                **common,
                "attack": a.attack,
                "num_attacked_examples": a.num_examples,
                "sample_clean_accuracy": a.clean_accuracy,
                "sample_clean_accuracy_interval": a.clean_accuracy_interval,
                "accuracy_under_attack": a.accuracy_under_attack,
                "accuracy_under_attack_interval": a.accuracy_under_attack_interval,
                "attack_success_rate": a.attack_success_rate,
                "attack_success_rate_interval": a.attack_success_rate_interval,
                "avg_words_perturbed": a.avg_words_perturbed,
                "synonym_share": a.synonym_share,
                "num_synonym_substitutions": a.num_synonym_substitutions,
                "num_substitutions": a.num_substitutions,
                "avg_queries": a.avg_queries,
                "seconds": a.seconds,
                "paired": paired,
                "paired_note": note,
            })
    return rows


def _p(row: dict[str, Any]) -> str:
    paired = row.get("paired")
    if paired is None:
        return "–"
    return f"{paired['p_value']:.3g} ({paired['only_a_correct']}/{paired['only_b_correct']})"


def comparison_markdown(
    reports: Sequence[RobustnessReport], *, baseline: int | None = 0, bootstrap: int = 0
) -> str:
    """`comparison_rows` as a Markdown table (rates in % with 95% Wilson intervals; the paired column is the exact
    McNemar p-value against the baseline, with the discordant counts *this model only right / baseline only right*),
    followed by a line naming the baseline."""
    rows = comparison_rows(reports, baseline=baseline, bootstrap=bootstrap)
    lines = [
        "| model | dataset | clean acc. % (full split) | attack | attacked | sample clean acc. % | acc. under attack % "
        "| attack success % | WordNet synonyms % | avg queries | McNemar p vs baseline |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        clean = format_interval(row["clean_accuracy"], row["clean_accuracy_interval"])
        if row["attack"] is None:
            lines.append(f"| {row['model']} | {row['dataset']} | {clean} | – | 0 | – | – | – | – | – | – |")
            continue
        synonyms = "–" if row["synonym_share"] is None else (
            f"{100 * row['synonym_share']:.1f} ({row['num_synonym_substitutions']}/{row['num_substitutions']})"
        )
        queries = "–" if row["avg_queries"] is None else f"{row['avg_queries']:.1f}"
        lines.append(
            f"| {row['model']} | {row['dataset']} | {clean} | {row['attack']} | {row['num_attacked_examples']} "
            f"| {format_interval(row['sample_clean_accuracy'], row['sample_clean_accuracy_interval'])} "
            f"| {format_interval(row['accuracy_under_attack'], row['accuracy_under_attack_interval'])} "
            f"| {format_interval(row['attack_success_rate'], row['attack_success_rate_interval'])} "
            f"| {synonyms} | {queries} | {_p(row)} |"
        )
    if baseline is not None and reports:
        lines += ["", f"Paired test: exact McNemar on accuracy under attack against {reports[baseline].model}, over "
                      "the attacked sentences both share (discordant pairs: this model only / baseline only)."]
    return "\n".join(lines) + "\n"
