"""The one loop that runs an `Attack` over many examples, a chunk at a time: the robustness evaluation
(`advtrain.evaluation.evaluate_robustness`) and online attack augmentation (`advtrain.training.OnlineAttackAugmentation`)
both call `run_attack`."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from .results import Attack, AttackResult

__all__ = ["run_attack", "unattacked"]


def unattacked(index: int, text: Any, label: int, status: str, error: str | None = None) -> AttackResult:
    """The result of an example the attack did not run on: ``error`` (its `attack_batch` raised), or ``budget`` /
    ``timeout`` (a run's query budget or time limit was spent before its turn)."""
    return AttackResult(index, text, None, label, -1, None, status, error=error)


def _checked(out: Sequence[AttackResult], indices: list[int]) -> list[AttackResult]:
    out = list(out)
    if [r.index for r in out] != indices:
        raise ValueError(f"attack_batch returned results for rows {[r.index for r in out]}, expected {indices}")
    return out


def run_attack(
    attack: Attack,
    model: Any,
    tokenizer: Any,
    texts: Sequence[Any],
    labels: Sequence[int],
    indices: Sequence[int],
    *,
    chunk_size: int = 32,
    bar: Any = None,
    time_limit_s: float | None = None,
    query_budget: int | None = None,
    start: float | None = None,
) -> list[AttackResult]:
    """Runs `attack` on the examples `chunk_size` at a time and returns one `AttackResult` per example, in order.

    A chunk whose `attack_batch` raises (or answers for other rows than it was given) is retried one example at a
    time, so one bad example yields an ``error`` result and the others their own results. Before each chunk, the
    run's `time_limit_s` (seconds since `start`, default: now) and `query_budget` (model queries summed over the results
    so far) are checked; once one is spent, the remaining examples get the ``timeout`` or ``budget`` status unattacked.
    `bar` (a tqdm bar, optional) advances by each chunk's size.
    """
    start = time.perf_counter() if start is None else start
    results: list[AttackResult] = []
    queries = 0
    for first in range(0, len(texts), chunk_size):
        chunk = slice(first, first + chunk_size)
        args = list(texts[chunk]), [int(y) for y in labels[chunk]], [int(i) for i in indices[chunk]]
        stop = None
        if time_limit_s is not None and time.perf_counter() - start >= time_limit_s:
            stop = "timeout"
        elif query_budget is not None and queries >= query_budget:
            stop = "budget"
        if stop is not None:
            out = [unattacked(i, t, y, stop) for t, y, i in zip(*args)]
        else:
            try:
                out = _checked(attack.attack_batch(model, tokenizer, *args), args[2])
            except Exception:  # noqa: BLE001 - isolate the failing example below
                out = []
                for text, label, index in zip(*args):
                    try:
                        out += _checked(attack.attack_batch(model, tokenizer, [text], [label], [index]), [index])
                    except Exception as err:  # noqa: BLE001 - recorded as the example's `error` status
                        out.append(unattacked(index, text, label, "error", f"{type(err).__name__}: {err}"))
        queries += sum(r.num_queries for r in out)
        results += out
        if bar is not None:
            bar.update(len(out))
    return results
