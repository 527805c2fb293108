"""Uncertainty of robustness figures: Wilson score intervals for proportions, and paired comparisons of two models
attacked on the same examples (exact McNemar test on the discordant pairs, optional paired bootstrap).

Every accuracy and attack success rate of a `RobustnessReport` is a proportion ``k / n`` over a few hundred examples
at most, so one flip moves it by ``100 / n`` points; these functions say how far apart two figures must be to tell.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any


def _z(confidence: float) -> float:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def wilson_interval(successes: int, total: int, confidence: float = 0.95) -> tuple[float, float] | None:
    """The Wilson score interval for a binomial proportion ``successes / total`` (Wilson 1927).

    With ``p = k / n`` and ``z`` the normal quantile of ``(1 + confidence) / 2`` (1.96 for 95%)::

        centre = (p + z² / 2n) / (1 + z² / n)
        half   = z / (1 + z² / n) · sqrt(p (1 - p) / n + z² / 4n²)

    Unlike the normal (Wald) interval it stays inside ``[0, 1]`` and does not collapse to a point at ``k = 0`` or
    ``k = n``, which matters for the small samples and extreme rates of attack evaluations.

    Args:
        successes (`int`): ``k``, with ``0 <= k <= n``.
        total (`int`): ``n``.
        confidence (`float`, *optional*, defaults to 0.95): the coverage.

    Returns:
        ``(low, high)`` as fractions, or `None` when ``total == 0``.
    """
    if total < 0 or not 0 <= successes <= max(total, 0):
        raise ValueError(f"need 0 <= successes <= total, got {successes} and {total}")
    if total == 0:
        return None
    z = _z(confidence)
    p, n = successes / total, total
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def mcnemar_exact_p(b: int, c: int) -> float:
    """Two-sided p-value of the exact McNemar test: with ``b`` and ``c`` the discordant pairs (one model right, the other
    wrong, and the converse), under the null hypothesis ``b ~ Binomial(b + c, 1/2)``, so
    ``p = min(1, 2 · Σ_{k ≤ min(b, c)} C(b + c, k) / 2^(b + c))``; 1 when there is no discordant pair."""
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be non-negative, got {b} and {c}")
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(b, c) + 1))
    return min(1.0, 2 * tail / 2**n)


@dataclass
class PairedComparison:
    """Two models' per-example outcomes on the same examples, and the exact McNemar test between them.

    Args:
        num_pairs (`int`): examples with a known outcome for both models.
        both_correct, only_a_correct, only_b_correct, both_wrong (`int`): the 2×2 table of the pairs.
        accuracy_a, accuracy_b (`float`): each model's accuracy on the pairs.
        difference (`float`): ``accuracy_a - accuracy_b``.
        p_value (`float`): exact McNemar, two-sided (`mcnemar_exact_p` of the discordant counts).
        difference_interval (`tuple[float, float]`, *optional*): the paired bootstrap's percentile interval of
            `difference`, when requested.
        confidence (`float`): the interval's coverage.
    """

    num_pairs: int
    both_correct: int
    only_a_correct: int
    only_b_correct: int
    both_wrong: int
    accuracy_a: float | None
    accuracy_b: float | None
    difference: float | None
    p_value: float
    difference_interval: tuple[float, float] | None = None
    confidence: float = 0.95

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def paired_bootstrap_interval(
    a_correct: Sequence[bool],
    b_correct: Sequence[bool],
    *,
    num_resamples: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float] | None:
    """Percentile interval of ``accuracy(a) - accuracy(b)`` from `num_resamples` resamples of the *pairs* (examples
    drawn with replacement, each keeping both models' outcomes), seeded. `None` without pairs."""
    import numpy as np

    if len(a_correct) != len(b_correct):
        raise ValueError(f"need one outcome per pair, got {len(a_correct)} and {len(b_correct)}")
    if not len(a_correct):
        return None
    _z(confidence)
    diff = np.asarray(a_correct, dtype=np.float64) - np.asarray(b_correct, dtype=np.float64)
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, len(diff), size=(num_resamples, len(diff)))
    means = diff[rows].mean(axis=1)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return float(low), float(high)


def paired_comparison(
    a_correct: Sequence[bool],
    b_correct: Sequence[bool],
    *,
    bootstrap: int = 0,
    confidence: float = 0.95,
    seed: int = 0,
) -> PairedComparison:
    """Compares two models on the same examples: the 2×2 table of their per-example correctness, the exact McNemar
    test on its discordant cells, and optionally a paired bootstrap interval of the accuracy difference.

    Args:
        a_correct, b_correct (`Sequence[bool]`): whether model A (B) was right on each example, aligned.
        bootstrap (`int`, *optional*, defaults to 0): resamples for `paired_bootstrap_interval` (0: none).
        confidence (`float`, *optional*, defaults to 0.95): the bootstrap interval's coverage.
        seed (`int`, *optional*, defaults to 0): the bootstrap's seed.
    """
    if len(a_correct) != len(b_correct):
        raise ValueError(f"need one outcome per pair, got {len(a_correct)} and {len(b_correct)}")
    pairs = [(bool(x), bool(y)) for x, y in zip(a_correct, b_correct)]
    n = len(pairs)
    table = {(x, y): 0 for x in (True, False) for y in (True, False)}
    for pair in pairs:
        table[pair] += 1
    b, c = table[(True, False)], table[(False, True)]
    acc_a = (table[(True, True)] + b) / n if n else None
    acc_b = (table[(True, True)] + c) / n if n else None
    interval = None
    if bootstrap:
        interval = paired_bootstrap_interval(
            [x for x, _ in pairs], [y for _, y in pairs], num_resamples=bootstrap, confidence=confidence, seed=seed
        )
    return PairedComparison(
        num_pairs=n,
        both_correct=table[(True, True)],
        only_a_correct=b,
        only_b_correct=c,
        both_wrong=table[(False, False)],
        accuracy_a=acc_a,
        accuracy_b=acc_b,
        difference=None if acc_a is None else acc_a - acc_b,
        p_value=mcnemar_exact_p(b, c),
        difference_interval=interval,
        confidence=confidence,
    )


# Two-sided 95% quantiles of Student's t by degrees of freedom (1-30); beyond, the normal quantile is within 2%.
_T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def mean_interval(values: Sequence[float]) -> tuple[float, float | None]:
    """The mean of `values` (e.g. one figure per seed) and the half-width of its 95% Student-t interval,
    ``t_{0.975, n-1} · s / √n`` with ``s`` the sample standard deviation; the half-width is `None` for one value."""
    from statistics import mean, stdev

    if not len(values):
        raise ValueError("need at least one value")
    if len(values) < 2:
        return float(mean(values)), None
    df = len(values) - 1
    t = _T95[df - 1] if df <= len(_T95) else _z(0.95)
    return float(mean(values)), float(t * stdev(values) / len(values) ** 0.5)
