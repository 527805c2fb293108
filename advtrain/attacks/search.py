"""The batched greedy word-importance search behind advtrain's A2T, A2T-MLM and BERT-Attack.

All examples of a call advance in lock-step: at each step every still-active example proposes candidates for its next
most important word, the candidates of all examples go through the constraints together, and every surviving
perturbed text is scored in one batched, length-sorted, dynamically padded query. Word importance is computed for the
whole batch at once too: from the gradient of the loss w.r.t. the word embeddings (one forward + backward, which also
gives the original predictions), or by replacing each word with ``[UNK]``/``[MASK]`` (one batched query).

Expensive constraints (``Constraint.lazy``: the sentence encoder) are by default checked after the victim query, on
each example's best-ranked candidates only, until one passes (`WordSubstitutionAttack`'s ``lazy_constraints``); the
substitute taken is the same, the encoder forwards far fewer, the victim queries somewhat more.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .batching import eval_mode, length_sorted_batches, model_device
from .constraints import AttackState, Constraint, Proposal
from .results import AttackResult
from .words import Words

IMPORTANCE_METHODS = ("gradient", "unk", "mask", "delete", "weighted-saliency")


@dataclass
class _Example:
    """Mutable bookkeeping for one example during `WordSubstitutionAttack.attack_batch`."""

    index: int
    text: Any
    label: int
    fields: tuple[str, ...]
    field: int
    state: AttackState
    queries: int = 0
    gold_prob: float = 0.0
    original_prediction: int = -1
    prediction: int = -1
    order: list[int] = field(default_factory=list)
    pointer: int = 0
    status: str | None = None
    error: str | None = None
    seconds: float = 0.0
    clock: float = 0.0  # this example's share of the call's wall time, what `time_limit_s` is checked against

    def inputs(self, words: Words) -> tuple[str, ...]:
        """The model input with the attacked field replaced by `words`."""
        fields = list(self.fields)
        fields[self.field] = words.text
        return tuple(fields)


def _charge(examples: list[_Example], seconds: float) -> None:
    """Splits `seconds` of the call's wall time evenly among the `examples` it served."""
    for e in examples:
        e.clock += seconds / len(examples)


def _call_isolated(fn: Callable[[list], list], items: list) -> list:
    """``fn(items)`` in one batched call; if it raises, each item alone, so that one bad example yields its own
    exception (returned in its slot) and the others still get their results."""
    try:
        out = fn(items)
        if len(out) != len(items):
            raise ValueError(f"expected {len(items)} results, got {len(out)}")
        return out
    except Exception:
        if len(items) == 1:
            raise
    results = []
    for item in items:
        try:
            results.append(fn([item])[0])
        except Exception as err:  # noqa: BLE001 - reported as the example's `error` status
            results.append(err)
    return results


class WordSubstitutionAttack:
    """A greedy word-substitution attack by word importance, batched across examples; implements the `Attack` protocol.

    Args:
        transformation (`Callable`): proposes substitutes for ``[(Words, position), ...]`` (see `advtrain.attacks.candidates`).
        constraints (`Sequence[Constraint]`, *optional*): position and candidate constraints.
        importance (`str`, *optional*, defaults to ``"gradient"``): ``"gradient"`` (L1 norm of the loss gradient w.r.t.
            the word's embeddings, averaged over its sub-tokens; A2T), ``"unk"`` or ``"mask"`` (drop in the gold-class
            probability when the word is replaced by the unknown or mask token; BERT-Attack), ``"delete"`` (the drop
            when the word is deleted; TextFooler, BAE) or ``"weighted-saliency"`` (PWWS: the softmax over the words of
            their ``"unk"`` drops, times the drop that the word's best substitute causes; the substitutes of every word
            are generated, constrained and scored once, before the search).
        name (`str`, *optional*): the attack's name in results and progress bars.
        query_budget (`int`, *optional*): the most inputs scored per example (the original counts as one); then the
            status is ``"budget"``.
        time_limit_s (`float`, *optional*): per-example wall-time limit, checked between search steps. Examples advance
            together, so each is charged its share of the call's wall time: the time before the search and each search
            step are split evenly among the examples they served. Then the status is ``"timeout"``.
        batch_size (`int`, *optional*, defaults to 64): inputs per model forward.
        max_length (`int`, *optional*, defaults to 256): truncation length for the victim model.
        attacked_field (`int`, *optional*, defaults to -1): for sentence pairs, which text is perturbed (the hypothesis).
        progress (`bool`, *optional*, defaults to `True`): show a tqdm bar.
        lazy_constraints (`bool`, *optional*, defaults to `True`): check the expensive constraints (``lazy = True``,
            e.g. `SentenceEncoderSimilarity`) only after the victim has scored the candidates that pass the cheap ones,
            in the search's preference order and only until one passes. The chosen substitute is the one the eager
            order picks, at a fraction of the encoder forwards; but the victim now also scores candidates that the
            lazy constraints would have rejected, and those count as queries (``num_queries``, `query_budget`): more
            queries per example than TextAttack, whose search filters first. When `query_budget` cuts a step's
            candidates short, the two orders may therefore pick differently. `False` restores the eager order:
            every constraint first, the victim scores only what passes all of them (TextAttack-like query counts).
    """

    def __init__(
        self,
        transformation: Callable[[Sequence[tuple[Words, int]]], list[list[str]]],
        constraints: Sequence[Constraint] = (),
        importance: str = "gradient",
        *,
        name: str = "word-substitution",
        query_budget: int | None = None,
        time_limit_s: float | None = None,
        batch_size: int = 64,
        max_length: int = 256,
        attacked_field: int = -1,
        progress: bool = True,
        lazy_constraints: bool = True,
    ):
        if importance not in IMPORTANCE_METHODS:
            raise ValueError(f"importance must be one of {IMPORTANCE_METHODS}, got {importance!r}")
        if query_budget is not None and query_budget < 1:
            raise ValueError(f"query_budget must be at least 1 (the original input is one query), got {query_budget}")
        self.transformation, self.constraints, self.importance = transformation, list(constraints), importance
        self.name, self.query_budget, self.time_limit_s = name, query_budget, time_limit_s
        self.batch_size, self.max_length, self.attacked_field, self.progress = (
            batch_size,
            max_length,
            attacked_field,
            progress,
        )
        self.lazy_constraints = lazy_constraints

    # ----------------------------------------------------------------- model queries
    def _encode(self, tokenizer: Any, inputs: Sequence[tuple[str, ...]], offsets: bool = False):
        columns = list(zip(*inputs))
        return tokenizer(
            list(columns[0]),
            list(columns[1]) if len(columns) > 1 else None,
            truncation=True,
            max_length=self.max_length,
            return_offsets_mapping=offsets,
        )

    def _query(self, model, tokenizer, inputs: Sequence[tuple[str, ...]]) -> torch.Tensor:
        """Class probabilities ``[len(inputs), num_labels]`` (on CPU); the caller counts the queries."""
        if not inputs:
            return torch.empty(0, 0)
        enc = self._encode(tokenizer, inputs)
        out: list[torch.Tensor | None] = [None] * len(inputs)
        with torch.no_grad():
            for rows, batch in length_sorted_batches(enc, self.batch_size, tokenizer, model_device(model)):
                probs = model(**batch).logits.float().softmax(-1).cpu()
                for r, p in zip(rows, probs):
                    out[r] = p
        return torch.stack(out)

    def _gradient_importance(self, model, tokenizer, examples: list[_Example]) -> None:
        """One forward + backward per micro-batch: predictions (one query each) and per-word gradient importance."""
        enc = self._encode(tokenizer, [e.inputs(e.state.original) for e in examples], offsets=True)
        embeddings = model.get_input_embeddings()
        device = model_device(model)
        for rows, batch in length_sorted_batches(enc, self.batch_size, tokenizer, device):
            with torch.enable_grad():
                # A leaf copy of the word embeddings: autograd.grad w.r.t. it alone leaves every parameter's .grad alone.
                embeds = embeddings(batch.pop("input_ids")).detach().requires_grad_(True)
                logits = model(inputs_embeds=embeds, **batch).logits.float()
                labels = torch.tensor([examples[r].label for r in rows], device=device)
                # Summed, not averaged: each example's gradient is then that of its own loss.
                (grad,) = torch.autograd.grad(F.cross_entropy(logits, labels, reduction="sum"), embeds)
            probs = logits.detach().softmax(-1).cpu()
            grad = grad.detach().cpu()
            for b, r in enumerate(rows):
                e = examples[r]
                self._set_prediction(e, probs[b])
                e.queries += 1
                starts = [s for s, _ in e.state.original.spans()]
                ends = [t for _, t in e.state.original.spans()]
                seq_ids = enc.sequence_ids(r)
                per_word: dict[int, list[torch.Tensor]] = {}
                # Offsets map sub-tokens to our words (word_ids() would follow the tokenizer's own pre-tokenisation).
                for t, (a, z) in enumerate(enc["offset_mapping"][r]):
                    if seq_ids[t] != e.field or z <= a:
                        continue
                    w = bisect.bisect_right(starts, a) - 1
                    if w >= 0 and a < ends[w]:
                        per_word.setdefault(w, []).append(grad[b, t])
                scores = {w: torch.stack(g).mean(0).abs().sum().item() for w, g in per_word.items()}
                e.order = sorted(e.order, key=lambda w: -scores.get(w, float("-inf")))

    def _replacement_importance(self, model, tokenizer, examples: list[_Example], finish) -> None:
        """Replaces each candidate word by the unknown/mask token (or deletes it); importance = drop in the gold-class
        probability. ``"weighted-saliency"`` then weights these drops by the best substitute's (`_best_swap_drops`)."""
        if self.importance == "delete":
            token = ""  # the word's separators stay: "a fine , dull film" -> "a fine ,  film"
        else:
            token = tokenizer.mask_token if self.importance == "mask" else tokenizer.unk_token
            if token is None:
                raise ValueError(f"importance={self.importance!r} needs a tokenizer with that special token")
        inputs, owners = [], []
        for e in examples:
            positions = e.order
            if self.query_budget is not None:
                positions = positions[: max(0, self.query_budget - e.queries)]
            for p in positions:
                inputs.append(e.inputs(e.state.original.replace(p, token)))
                owners.append((e, p))
        probs = self._query(model, tokenizer, inputs)
        drops: dict[int, dict[int, float]] = {}
        for (e, p), prob in zip(owners, probs):
            e.queries += 1
            drops.setdefault(id(e), {})[p] = e.gold_prob - prob[e.label].item()
        if self.importance == "weighted-saliency":
            swap_drops = self._best_swap_drops(model, tokenizer, examples, finish)
            for e in examples:
                saliency = drops.get(id(e), {})
                if not saliency:
                    continue
                positions = list(saliency)
                weights = torch.tensor([saliency[p] for p in positions], dtype=torch.float64).softmax(0).tolist()
                best = swap_drops.get(id(e), {})
                drops[id(e)] = {p: w * best.get(p, 0.0) for p, w in zip(positions, weights)}
        for e in examples:
            scores = drops.get(id(e), {})
            e.order = sorted(e.order, key=lambda w: -scores.get(w, float("-inf")))

    def _best_swap_drops(self, model, tokenizer, examples: list[_Example], finish) -> dict[int, dict[int, float]]:
        """PWWS's ``ΔP*``: for every modifiable word of every example, the largest drop in the gold-class probability
        among its constrained substitutes in the original text (0 without one), in one batched query."""
        requests = [(e, p) for e in examples if e.status is None for p in e.order]
        candidates = _call_isolated(lambda rs: self.transformation([(e.state.original, p) for e, p in rs]), requests)
        proposals, owners = [], {}
        for (e, p), cands in zip(requests, candidates):
            if isinstance(cands, Exception):
                if e.status is None:
                    finish(e, "error", f"{type(cands).__name__}: {cands}")
                continue
            proposal = Proposal(e.state, p, list(dict.fromkeys(cands)))
            proposals.append(proposal)
            owners[id(proposal)] = e
        self._filter(self.constraints, proposals, owners, finish)
        proposals = [pr for pr in proposals if owners[id(pr)].status is None]
        if self.query_budget is not None:
            left = {id(e): self.query_budget - e.queries for e in examples}
            for pr in proposals:
                key = id(owners[id(pr)])
                pr.candidates = pr.candidates[: max(0, left[key])]
                left[key] -= len(pr.candidates)
        inputs = [owners[id(pr)].inputs(pr.perturbed(c)) for pr in proposals for c in pr.candidates]
        if not inputs:
            return {}
        probs = self._query(model, tokenizer, inputs)
        out: dict[int, dict[int, float]] = {}
        row = 0
        for pr in proposals:
            e = owners[id(pr)]
            gold = probs[row : row + len(pr.candidates), e.label]
            row += len(pr.candidates)
            e.queries += len(pr.candidates)
            if len(pr.candidates):
                out.setdefault(id(e), {})[pr.position] = e.gold_prob - gold.min().item()
        return out

    @staticmethod
    def _set_prediction(e: _Example, probs: torch.Tensor) -> None:
        e.gold_prob = probs[e.label].item()
        e.prediction = int(probs.argmax())
        if e.original_prediction < 0:
            e.original_prediction = e.prediction

    # ----------------------------------------------------------------- the search
    def attack_batch(
        self, model: Any, tokenizer: Any, texts: Sequence[Any], labels: Sequence[int], indices: Sequence[int]
    ) -> list[AttackResult]:
        """Attacks `texts` (strings, or pairs of strings) against `model`; returns one `AttackResult` per example.

        The model is queried in eval mode without touching parameter gradients, and its train/eval mode is restored.
        """
        if not getattr(tokenizer, "is_fast", False):
            raise ValueError(
                "WordSubstitutionAttack needs a fast tokenizer (offset mappings align sub-tokens with words)"
            )
        if not len(texts) == len(labels) == len(indices):
            raise ValueError(f"got {len(texts)} texts, {len(labels)} labels and {len(indices)} indices")
        num_labels = getattr(getattr(model, "config", None), "num_labels", None)
        if isinstance(num_labels, int):
            bad = next(((i, lab) for i, lab in zip(indices, labels) if not 0 <= int(lab) < num_labels), None)
            if bad is not None:
                raise ValueError(
                    f"WordSubstitutionAttack: example {bad[0]} has label {bad[1]!r}, but the model has num_labels="
                    f"{num_labels} (labels must be in [0, {num_labels - 1}]). Use the dataset the model was trained "
                    "on, or map its labels to the model's class ids."
                )
        start = time.perf_counter()
        examples = []
        for text, label, index in zip(texts, labels, indices):
            fields = (text,) if isinstance(text, str) else tuple(text)
            column = self.attacked_field % len(fields)
            words = Words.split(fields[column])
            examples.append(_Example(int(index), text, int(label), fields, column, AttackState(words, words)))
        bar = tqdm(total=len(examples), desc=self.name, unit="ex", disable=not self.progress, leave=False)

        def finish(e: _Example, status: str, error: str | None = None) -> None:
            e.status, e.error, e.seconds = status, error, time.perf_counter() - start
            bar.update(1)

        with eval_mode(model):
            for e in examples:  # never attack stop words etc.: drop those positions before ranking them
                e.order = [
                    p
                    for p in range(len(e.state.original))
                    if all(c.allows_position(e.state, p) for c in self.constraints)
                ]
            if self.importance == "gradient":
                self._gradient_importance(model, tokenizer, examples)
            else:
                probs = self._query(model, tokenizer, [e.inputs(e.state.original) for e in examples])
                for e, p in zip(examples, probs):
                    self._set_prediction(e, p)
                    e.queries += 1
            for e in examples:
                if e.original_prediction != e.label:
                    finish(e, "skipped")
            if self.importance != "gradient":
                self._replacement_importance(model, tokenizer, [e for e in examples if e.status is None], finish)
            active = [e for e in examples if e.status is None]
            _charge(active, time.perf_counter() - start)  # predictions and word importance
            while active:
                step_start = time.perf_counter()
                self._step(model, tokenizer, active, finish)
                _charge(active, time.perf_counter() - step_start)
                active = [e for e in active if e.status is None]
        bar.close()
        return [self._result(e) for e in examples]

    def _next_position(self, e: _Example) -> int | None:
        while e.pointer < len(e.order):
            p = e.order[e.pointer]
            e.pointer += 1
            if all(c.allows_position(e.state, p) for c in self.constraints):
                return p
        return None

    @staticmethod
    def _filter(constraints: Sequence[Constraint], proposals: list[Proposal], owners: dict, finish) -> None:
        """Narrows each proposal's `candidates` to those every constraint keeps; a constraint that raises for an example
        finishes that example with status ``"error"`` (the others go on)."""
        for constraint in constraints:
            live = [pr for pr in proposals if pr.candidates and owners[id(pr)].status is None]
            if not live:
                return
            masks = _call_isolated(constraint.filter, live)
            for pr, mask in zip(live, masks):
                if isinstance(mask, Exception):
                    finish(owners[id(pr)], "error", f"{type(mask).__name__}: {mask}")
                    pr.candidates = []
                else:
                    pr.candidates = [c for c, keep in zip(pr.candidates, mask) if keep]

    def _step(self, model, tokenizer, active: list[_Example], finish) -> None:
        """One greedy step for every active example: propose, constrain, score together, take the best substitute.

        Eager order (``lazy_constraints=False``): every constraint filters the candidates, the victim scores the
        survivors, the best one is taken. Lazy order: the non-lazy constraints filter, the victim scores their
        survivors, and the lazy constraints are checked on each example's candidates in the victim's preference order,
        in chunks of 1, 2, 4, ... batched across examples, until one passes; that one is the candidate the eager order
        takes (the best-ranked among those passing every constraint).
        """
        requests = []
        for e in active:
            if self.time_limit_s is not None and e.clock > self.time_limit_s:
                finish(e, "timeout")
            elif self.query_budget is not None and e.queries >= self.query_budget:
                finish(e, "budget")
            elif (p := self._next_position(e)) is None:
                finish(e, "failed")  # no word left that the constraints allow to modify
            else:
                requests.append((e, p))
        if not requests:
            return
        candidates = _call_isolated(lambda rs: self.transformation([(e.state.current, p) for e, p in rs]), requests)
        proposals, owners = [], {}
        for (e, p), cands in zip(requests, candidates):
            if isinstance(cands, Exception):
                finish(e, "error", f"{type(cands).__name__}: {cands}")
                continue
            proposal = Proposal(e.state, p, list(dict.fromkeys(cands)))
            proposals.append(proposal)
            owners[id(proposal)] = e
        lazy = [c for c in self.constraints if self.lazy_constraints and getattr(c, "lazy", False)]
        self._filter([c for c in self.constraints if c not in lazy], proposals, owners, finish)
        proposals = [pr for pr in proposals if owners[id(pr)].status is None]
        truncated = {}
        for pr in proposals:
            e = owners[id(pr)]
            if self.query_budget is not None:
                allowed = self.query_budget - e.queries
                truncated[id(pr)] = len(pr.candidates) > allowed
                pr.candidates = pr.candidates[:allowed]
        inputs = [owners[id(pr)].inputs(pr.perturbed(c)) for pr in proposals for c in pr.candidates]
        probs = self._query(model, tokenizer, inputs)
        row, ranked, scores = 0, {}, {}
        for pr in proposals:
            e = owners[id(pr)]
            scored = probs[row : row + len(pr.candidates)]
            row += len(pr.candidates)
            e.queries += len(pr.candidates)
            scores[id(pr)] = scored
            if not len(pr.candidates):
                continue
            gold = scored[:, e.label]
            flipped = scored.argmax(-1) != e.label
            # Prefer a substitute that flips the prediction; among those (or all), the lowest gold probability. A stable
            # sort of this key puts first the candidate that argmin picks (the first of equal minima).
            key = torch.where(flipped, gold, gold + 2.0).tolist()
            order = sorted(range(len(key)), key=key.__getitem__)
            takeable = [bool(flipped[i]) or gold[i].item() < e.gold_prob for i in order]
            # A candidate ranked after the last takeable one can never be taken: if it is the best passing one, the
            # step changes nothing either way, so the lazy constraints need not look at it.
            last = max((k for k, ok in enumerate(takeable) if ok), default=-1)
            ranked[id(pr)] = order[: last + 1]
        chosen = self._first_passing(lazy, proposals, ranked, owners, finish)
        for pr in proposals:
            e = owners[id(pr)]
            if e.status is not None:
                continue
            best = chosen.get(id(pr))
            if best is not None:
                scored = scores[id(pr)]
                gold, flipped = scored[best, e.label].item(), int(scored[best].argmax()) != e.label
                if flipped or gold < e.gold_prob:
                    e.state.current = pr.perturbed(pr.candidates[best])
                    e.state.modified.add(pr.position)
                    self._set_prediction(e, scored[best])
                    if flipped:
                        finish(e, "successful")
                        continue
            if truncated.get(id(pr)):
                finish(e, "budget")

    def _first_passing(
        self, lazy: list[Constraint], proposals: list[Proposal], ranked: dict, owners: dict, finish
    ) -> dict[int, int]:
        """For each proposal, the index (into its `candidates`) of the first candidate in its `ranked` order that every
        `lazy` constraint keeps. The lazy constraints see chunks of 1, 2, 4, ... candidates per example, the chunks of
        all examples in one call, and stop at an example's first passing candidate."""
        chosen: dict[int, int] = {}
        pending = {id(pr): (pr, list(ranked[id(pr)])) for pr in proposals if ranked.get(id(pr))}
        if not lazy:
            return {key: order[0] for key, (_, order) in pending.items()}
        size = 1
        while pending:
            chunks, sub_owners = [], {}
            for key, (pr, order) in pending.items():
                head, order[:] = order[:size], order[size:]
                sub = Proposal(pr.state, pr.position, [pr.candidates[i] for i in head])
                chunks.append((key, sub, {pr.candidates[i]: i for i in head}))
                sub_owners[id(sub)] = owners[id(pr)]
            self._filter(lazy, [sub for _, sub, _ in chunks], sub_owners, finish)
            for key, sub, index in chunks:
                pr, order = pending[key]
                if owners[id(pr)].status is not None:  # a lazy constraint raised for this example
                    del pending[key]
                elif sub.candidates:  # the filter keeps the order: the first survivor is the best-ranked
                    chosen[key] = index[sub.candidates[0]]
                    del pending[key]
                elif not order:
                    del pending[key]
            size *= 2
        return chosen

    def _result(self, e: _Example) -> AttackResult:
        changed = e.state.current.num_changed(e.state.original)
        perturbed = None
        if changed:
            fields = e.inputs(e.state.current)
            perturbed = fields[0] if isinstance(e.text, str) else fields
        return AttackResult(
            index=e.index,
            original_text=e.text,
            perturbed_text=perturbed,
            label=e.label,
            original_prediction=e.original_prediction,
            perturbed_prediction=e.prediction if changed else None,
            status=e.status,
            num_queries=e.queries,
            words_changed=changed,
            num_words=len(e.state.original),
            seconds=e.seconds,
            error=e.error,
            extra={"attack": self.name, "modified_positions": sorted(e.state.modified)},
        )
