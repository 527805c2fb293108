"""Online attack-based augmentation (the A2T training recipe family) for any `transformers.Trainer`.

Every few epochs (or steps) a seeded sample of the training set is attacked against the *current* model, and the
successful adversarial examples are trained on until the next round replaces them. The component is a
`TrainerCallback` plus a fixed-length training dataset, so it works with the plain `Trainer` and with every advtrain
trainer, and it relies on nothing but the `Attack` protocol of `advtrain.attacks.results`: the round runs the attack
through `advtrain.attacks.runner.run_attack` (the evaluation harness's loop), gathers the processes' shards with
accelerate's `gather_object`, and keeps its state beside the Trainer's checkpoints with `advtrain.checkpoints`.

See ``docs/online.md`` for the design: why the dataset has a fixed length, how the adversarial weight α is realised,
when rounds run, several processes, resuming, and the logged metrics.
"""

from __future__ import annotations

import logging
import math
import os
import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from accelerate import PartialState
from accelerate.utils import gather_object
from torch.utils.data import Dataset as TorchDataset
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from ..attacks.results import STATUSES, Attack, AttackResult
from ..attacks.runner import run_attack
from ..checkpoints import checkpoint_at_step, load_state, resolve_resume_checkpoint, save_state
from ..validation import check_value, is_int, is_number

logger = logging.getLogger(__name__)

ONLINE_STATE_NAME = "advtrain_online_state.json"
STATE_VERSION = 1
# Keys the Trainer's collator understands; everything else the tokenizer returns is dropped.
ENCODING_KEYS = ("input_ids", "attention_mask", "token_type_ids")
MAX_ERROR_MESSAGES = 5


def _check(ok: bool, name: str, expected: str, value: Any) -> None:
    check_value(ok, name, expected, value, where="OnlineAttackAugmentation")


def _process() -> tuple[int, int]:
    """``(index, count)`` of this process among the launched ones (accelerate's view; ``(0, 1)`` alone)."""
    state = PartialState()
    return state.process_index, state.num_processes


@dataclass
class RoundReport:
    """What one attack round did. Counts are over all processes.

    Args:
        round (`int`): 1 for the first round.
        global_step (`int`): the optimizer step after which the round ran.
        epoch (`float`): the Trainer's epoch counter at that moment.
        sampled (`int`): examples drawn for the round.
        counts (`dict[str, int]`): examples per `STATUSES` entry (``budget`` and ``timeout`` include the examples the
            round's own query budget or time limit left unattacked).
        unverified (`int`): examples the attack called successful that the model, re-queried with the training
            tokenization, still classifies correctly; they are not added.
        added (`int`): adversarial slots filled in the training dataset (α copies per success in expectation).
        seconds (`float`): wall time of the round on this process.
        errors (`list[str]`): the first few error messages.
    """

    round: int
    global_step: int
    epoch: float
    sampled: int
    counts: dict[str, int]
    unverified: int
    added: int
    seconds: float
    errors: list[str] = field(default_factory=list)

    @property
    def attacked(self) -> int:
        """Examples the attack ran on (everything but the originally misclassified and the unattacked ones)."""
        return self.sampled - self.counts.get("skipped", 0)

    @property
    def successful(self) -> int:
        return self.counts.get("successful", 0) - self.unverified

    def metrics(self) -> dict[str, float]:
        """The round as ``online/*`` metrics for the Trainer's log stream."""
        attacked = self.attacked
        return {
            "online/round": float(self.round),
            "online/sampled": float(self.sampled),
            "online/attacked": float(attacked),
            "online/successful": float(self.successful),
            "online/failed": float(self.counts.get("failed", 0)),
            "online/skipped": float(self.counts.get("skipped", 0)),
            "online/budget": float(self.counts.get("budget", 0)),
            "online/timeout": float(self.counts.get("timeout", 0)),
            "online/errors": float(self.counts.get("error", 0)),
            "online/unverified": float(self.unverified),
            "online/success_rate": self.successful / attacked if attacked else 0.0,
            "online/added": float(self.added),
            "online/seconds": self.seconds,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "round": self.round, "global_step": self.global_step, "epoch": self.epoch, "sampled": self.sampled,
            "counts": dict(self.counts), "unverified": self.unverified, "added": self.added, "seconds": self.seconds,
            "errors": list(self.errors),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RoundReport:
        return cls(**data)


class AugmentedDataset(TorchDataset):
    """The training set the Trainer sees: the `N` clean examples followed by `C` adversarial slots.

    Its length never changes, so the Trainer's epoch length, learning-rate schedule and distributed sampler stay
    valid while the slots' content is replaced every round. Items are tokenized encodings (lists of ints, unpadded)
    with a ``labels`` key: pad them with `DataCollatorWithPadding` (the `Trainer`'s default when it is given the
    tokenizer as `processing_class`).

    Args:
        clean (`datasets.Dataset`): the tokenized clean examples (encoding columns and ``labels``).
        capacity (`int`): the number of adversarial slots `C`.
    """

    def __init__(self, clean: Any, capacity: int):
        self.clean = clean
        self.capacity = capacity
        # One entry per slot: ("adv", k) reads self.adversarial[k], ("clean", i) repeats clean example i.
        self.slots: list[tuple[str, int]] = []
        self.adversarial: list[dict[str, Any]] = []

    def __len__(self) -> int:
        return len(self.clean) + self.capacity

    def __getitem__(self, index: int) -> dict[str, Any]:
        n = len(self.clean)
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)} examples")
        if index < n:
            return dict(self.clean[int(index)])
        kind, k = self.slots[index - n]
        return dict(self.adversarial[k]) if kind == "adv" else dict(self.clean[int(k)])

    @property
    def num_adversarial_slots(self) -> int:
        """Slots that currently hold an adversarial example (the rest repeat clean examples)."""
        return sum(kind == "adv" for kind, _ in self.slots)


class OnlineAttackAugmentation(TrainerCallback):
    """Attacks a sample of the training set against the current model every few epochs or steps, and trains on the
    successful adversarial examples (A2T, Yoo & Qi 2021: https://arxiv.org/abs/2109.00544).

    Give `train_dataset` (the fixed-length [`AugmentedDataset`]) to the Trainer and the object itself as a callback:

    ```python
    augmentation = OnlineAttackAugmentation(raw_train, tokenizer, attack, num_examples=0.2, weight=1.0)
    trainer = Trainer(model, args, train_dataset=augmentation.train_dataset, processing_class=tokenizer,
                      callbacks=[augmentation])
    ```

    Parameters that say what is attacked:

    Args:
        dataset (`datasets.Dataset`):
            The raw training set: a text column (two for sentence pairs) and an integer label column.
        tokenizer (`PreTrainedTokenizerBase`):
            The model's tokenizer; it tokenizes the clean and the adversarial examples and is handed to the attack.
        attack (`Attack`):
            Anything with ``attack_batch(model, tokenizer, texts, labels, indices) -> list[AttackResult]``.
        text_columns (`str` or `Sequence[str]`, defaults to `"text"`):
            The text column, or the two columns of a sentence pair.
        label_column (`str`, defaults to `"label"`):
            The integer class label column.
        tokenizer_kwargs (`dict`, *optional*):
            Keyword arguments of the tokenizer call, e.g. ``{"truncation": True, "max_length": 128}``
            (defaults to ``{"truncation": True}``).

    Parameters that control the schedule:

        every_n_epochs (`int`, *optional*):
            Run a round at the end of every `every_n_epochs`-th epoch (defaults to `1` unless `every_n_steps` is set).
        every_n_steps (`int`, *optional*):
            Run a round after every `every_n_steps`-th optimizer step instead.
        start_epoch (`int`, *optional*):
            The first round ends epoch `start_epoch` (defaults to `1`: A2T trains one clean epoch first).
        start_step (`int`, *optional*):
            With `every_n_steps`: the first round follows step `start_step` (defaults to `every_n_steps`).

    Parameters that control a round:

        num_examples (`int` or `float`, defaults to `0.1`):
            Examples attacked per round: an integer count, or a fraction in (0, 1] of the training set. A new seeded
            sample is drawn every round.
        weight (`float`, defaults to `1.0`):
            A2T's α: every successful adversarial example appears α times per epoch in expectation.
        seed (`int`, defaults to `0`):
            Seeds the samples, the slot filling and the attack's random generators (per round).
        attack_batch_size (`int`, defaults to `32`):
            Examples handed to `attack.attack_batch` at once.
        round_time_limit_s (`float`, *optional*):
            Wall-clock limit of a round on each process, checked between attack batches; the examples left
            unattacked are counted as ``timeout``.
        round_query_budget (`int`, *optional*):
            Model queries a round may spend (split evenly over processes), checked between attack batches; the
            examples left unattacked are counted as ``budget``. Per-example budgets belong to the attack itself.
        verify (`bool`, defaults to `True`):
            Re-classify every successful perturbed text with the training tokenization and keep only those the model
            misclassifies.
    """

    def __init__(
        self,
        dataset: Any,
        tokenizer: Any,
        attack: Attack,
        *,
        text_columns: str | Sequence[str] = "text",
        label_column: str = "label",
        tokenizer_kwargs: dict[str, Any] | None = None,
        every_n_epochs: int | None = None,
        every_n_steps: int | None = None,
        start_epoch: int | None = None,
        start_step: int | None = None,
        num_examples: int | float = 0.1,
        weight: float = 1.0,
        seed: int = 0,
        attack_batch_size: int = 32,
        round_time_limit_s: float | None = None,
        round_query_budget: int | None = None,
        verify: bool = True,
    ):
        self.text_columns = (text_columns,) if isinstance(text_columns, str) else tuple(text_columns)
        _check(len(self.text_columns) in (1, 2), "text_columns", "one column name or two (a sentence pair)",
               text_columns)
        self.label_column = label_column
        expected = [*self.text_columns, label_column]
        found = list(getattr(dataset, "column_names", None) or [])
        missing = [c for c in expected if c not in found]
        if missing:
            raise ValueError(
                f"OnlineAttackAugmentation: the training dataset lacks column(s) {missing}. Expected columns "
                f"{expected} (set `text_columns`/`label_column`), found {found}."
            )
        _check(callable(getattr(attack, "attack_batch", None)), "attack", "an object with `attack_batch(...)` "
               "(the `advtrain.attacks.results.Attack` protocol)", attack)

        if every_n_epochs is not None and every_n_steps is not None:
            raise ValueError("OnlineAttackAugmentation: set either `every_n_epochs` or `every_n_steps`, not both.")
        if every_n_steps is None:
            every_n_epochs = 1 if every_n_epochs is None else every_n_epochs
            _check(is_int(every_n_epochs) and every_n_epochs >= 1, "every_n_epochs", "an integer ≥ 1",
                   every_n_epochs)
            _check(start_step is None, "start_step", "unset with an epoch schedule (use `start_epoch`)", start_step)
            start_epoch = 1 if start_epoch is None else start_epoch
            _check(is_int(start_epoch) and start_epoch >= 1, "start_epoch", "an integer ≥ 1", start_epoch)
        else:
            _check(is_int(every_n_steps) and every_n_steps >= 1, "every_n_steps", "an integer ≥ 1", every_n_steps)
            _check(start_epoch is None, "start_epoch", "unset with a step schedule (use `start_step`)", start_epoch)
            start_step = every_n_steps if start_step is None else start_step
            _check(is_int(start_step) and start_step >= 1, "start_step", "an integer ≥ 1", start_step)
        self.every_n_epochs, self.every_n_steps = every_n_epochs, every_n_steps
        self.start_epoch, self.start_step = start_epoch, start_step

        n = len(dataset)
        _check(n > 0, "dataset", "a non-empty dataset", n)
        if is_int(num_examples):
            _check(1 <= num_examples <= n, "num_examples", f"an integer in [1, {n}] (the training set's size) "
                   "or a fraction in (0, 1]", num_examples)
            self.num_attacked = int(num_examples)
        else:
            _check(is_number(num_examples) and 0 < num_examples <= 1, "num_examples",
                   "an integer ≥ 1 or a fraction in (0, 1]", num_examples)
            self.num_attacked = max(1, math.ceil(num_examples * n))
        self.num_examples = num_examples
        _check(is_number(weight) and weight > 0 and math.isfinite(weight), "weight", "a finite number > 0 (A2T's α)",
               weight)
        _check(is_int(seed), "seed", "an integer", seed)
        _check(is_int(attack_batch_size) and attack_batch_size >= 1, "attack_batch_size", "an integer ≥ 1",
               attack_batch_size)
        _check(round_time_limit_s is None or (is_number(round_time_limit_s) and round_time_limit_s > 0),
               "round_time_limit_s", "a number > 0 or None", round_time_limit_s)
        _check(round_query_budget is None or (is_int(round_query_budget) and round_query_budget >= 1),
               "round_query_budget", "an integer ≥ 1 or None", round_query_budget)
        self.weight = float(weight)
        self.seed = int(seed)
        self.attack_batch_size = int(attack_batch_size)
        self.round_time_limit_s = round_time_limit_s
        self.round_query_budget = round_query_budget
        self.verify = verify

        self.raw = dataset
        self.tokenizer = tokenizer
        self.attack = attack
        self.tokenizer_kwargs = {"truncation": True} if tokenizer_kwargs is None else dict(tokenizer_kwargs)
        self.texts = [self._text(row) for row in dataset.select_columns(list(self.text_columns))]
        self.labels = [int(v) for v in dataset[label_column]]

        # C = ⌈α · K⌉ slots hold at most ⌈α · S⌉ ≤ C copies of the S ≤ K successes of a round.
        self.capacity = math.ceil(self.weight * self.num_attacked)
        self.train_dataset = AugmentedDataset(self._tokenize_clean(dataset), self.capacity)
        self.round = 0
        self.history: list[RoundReport] = []
        self.last_results: list[AttackResult] = []
        self.adversarial_results: list[AttackResult] = []  # the successes the slots hold now, in sample order
        self._pending_metrics: dict[str, float] = {}
        self._fill_slots([], np.random.default_rng([self.seed, 0]))

    # ----------------------------------------------------------------------------------------------------------
    # Data.

    def _text(self, row: dict[str, Any]) -> str | tuple[str, str]:
        values = tuple(row[c] for c in self.text_columns)
        return values[0] if len(values) == 1 else values

    def _encode(self, texts: Sequence[Any]) -> dict[str, list]:
        if len(self.text_columns) == 1:
            encoding = self.tokenizer(list(texts), **self.tokenizer_kwargs)
        else:
            encoding = self.tokenizer([t[0] for t in texts], [t[1] for t in texts], **self.tokenizer_kwargs)
        return {k: encoding[k] for k in ENCODING_KEYS if k in encoding}

    def _tokenize_clean(self, dataset: Any) -> Any:
        def encode(batch: dict[str, list]) -> dict[str, list]:
            texts = list(zip(*(batch[c] for c in self.text_columns)))
            out = self._encode([t[0] if len(t) == 1 else t for t in texts])
            out["labels"] = [int(v) for v in batch[self.label_column]]
            return out

        return dataset.map(encode, batched=True, remove_columns=dataset.column_names)

    def _fill_slots(self, successes: list[AttackResult], rng: np.random.Generator) -> int:
        """Replaces the slots' content: ⌊α⌋ copies of every success plus one more copy for a random subset, sized
        so that the total is α·S in expectation; the remaining slots repeat random clean examples."""
        encodings = self._encode([r.perturbed_text for r in successes]) if successes else {}
        adversarial = [
            {**{k: v[i] for k, v in encodings.items()}, "labels": int(r.label)} for i, r in enumerate(successes)
        ]
        s = len(successes)
        whole, frac = divmod(self.weight * s, 1.0)
        total = int(whole) + int(rng.random() < frac)  # ⌊α·S⌋ or ⌈α·S⌉, α·S in expectation, never above C
        copies = int(self.weight) * s
        extra = rng.choice(s, size=total - copies, replace=False).tolist() if total > copies else []
        slots = [("adv", k) for k in range(s) for _ in range(int(self.weight))] + [("adv", k) for k in sorted(extra)]
        fillers = rng.integers(0, len(self.train_dataset.clean), size=self.capacity - len(slots)).tolist()
        slots += [("clean", int(i)) for i in fillers]
        # Spread the adversarial copies over the slots so that a process's shard is not all clean or all adversarial.
        order = rng.permutation(len(slots)).tolist()
        self.train_dataset.adversarial = adversarial
        self.train_dataset.slots = [slots[i] for i in order]
        self.adversarial_results = list(successes)
        return len(slots) - len(fillers)

    # ----------------------------------------------------------------------------------------------------------
    # Schedule.

    def _round_due(self, state: TrainerState, control: TrainerControl, at_epoch_end: bool) -> bool:
        if control.should_training_stop or (state.max_steps and state.global_step >= state.max_steps):
            return False  # the examples of a round after the last step would never be trained on
        if at_epoch_end:
            epochs = round(state.epoch or 0)
            if self.every_n_epochs is None or abs((state.epoch or 0) - epochs) > 1e-6:
                return False  # not a completed epoch (training was stopped inside it)
            return epochs >= self.start_epoch and (epochs - self.start_epoch) % self.every_n_epochs == 0
        if self.every_n_steps is None:
            return False
        step = state.global_step
        return step >= self.start_step and (step - self.start_step) % self.every_n_steps == 0

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        if args.dataloader_num_workers > 0 and args.dataloader_persistent_workers:
            raise ValueError(
                "OnlineAttackAugmentation: persistent dataloader workers keep a copy of the training dataset and never "
                "see a round's adversarial examples; set `dataloader_persistent_workers=False`."
            )
        # The Trainer loads `state` from the checkpoint before `on_train_begin`: a resumed run starts past step 0.
        if state.global_step > 0:
            folder = self._resume_folder(args, state)
            path = None if folder is None else os.path.join(folder, ONLINE_STATE_NAME)
            if path is not None and os.path.isfile(path):
                self.load_state_dict(load_state(path))
            else:
                logger.warning(
                    "OnlineAttackAugmentation: resuming at step %d but no %s was found (%s); the adversarial examples "
                    "start empty at round %d.", state.global_step, ONLINE_STATE_NAME, path or args.output_dir,
                    self.round,
                )

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        if self._round_due(state, control, at_epoch_end=False):
            self.run_round(kwargs["model"], state)
            control.should_log = True

    def on_epoch_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        if self._round_due(state, control, at_epoch_end=True):
            self.run_round(kwargs["model"], state)
            control.should_log = True

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, logs=None, **kwargs):
        # `Trainer.log` appends a copy of `logs` to `log_history` and then calls `on_log`: update both in place so
        # the round's metrics reach the history and every reporter that runs after this callback.
        if self._pending_metrics and logs is not None and "loss" in logs:
            logs.update(self._pending_metrics)
            if state.log_history and state.log_history[-1].get("step") == state.global_step:
                state.log_history[-1].update(self._pending_metrics)
            self._pending_metrics = {}

    @staticmethod
    def _resume_folder(args: TrainingArguments, state: TrainerState) -> str | None:
        """The checkpoint a resumed run started from: ``args.resume_from_checkpoint`` when it names one holding this
        step, else the folder the Trainer wrote at this step under ``output_dir`` (a trial's folder during a
        hyper-parameter search included)."""
        folder = resolve_resume_checkpoint(args.resume_from_checkpoint, args.output_dir)
        if folder is not None and os.path.isfile(os.path.join(folder, ONLINE_STATE_NAME)):
            return folder
        return checkpoint_at_step(args.output_dir, state.global_step)

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        if args.should_save:
            # `on_save` runs after the Trainer has written its checkpoint: the state goes into that folder.
            folder = checkpoint_at_step(args.output_dir, state.global_step)
            if folder is None:
                logger.warning("OnlineAttackAugmentation: no checkpoint folder for step %d under %s; the round state "
                               "was not saved.", state.global_step, args.output_dir)
                return
            save_state(folder, ONLINE_STATE_NAME, self.state_dict())

    def attach(self, trainer: Any) -> OnlineAttackAugmentation:
        """Puts this callback first in `trainer`'s callbacks (adding it if needed), so that the round metrics it adds
        to a log reach every reporter (TensorBoard, W&B...), which otherwise run before a user callback."""
        callbacks = trainer.callback_handler.callbacks
        if self in callbacks:
            callbacks.remove(self)
        callbacks.insert(0, self)
        return self

    # ----------------------------------------------------------------------------------------------------------
    # A round.

    def sample(self, round_index: int) -> list[int]:
        """The dataset rows attacked in round `round_index` (the same on every process)."""
        rng = np.random.default_rng([self.seed, round_index, 1])
        return sorted(rng.choice(len(self.texts), size=self.num_attacked, replace=False).tolist())

    def run_round(self, model: torch.nn.Module, state: TrainerState | None = None) -> RoundReport:
        """Attacks this round's sample against `model` as it is now, and replaces the adversarial slots.

        The model is put in eval mode for the round and back to its previous mode afterwards; its parameters'
        gradients and the global random generators are left as they were.
        """
        start = time.perf_counter()
        index = self.round + 1
        indices = self.sample(index)
        rank, world = _process()
        mine = indices[rank::world]

        was_training = model.training
        grads = {p: (None if p.grad is None else p.grad.detach().clone()) for p in model.parameters()}
        devices = [torch.cuda.current_device()] if torch.cuda.is_available() and torch.cuda.is_initialized() else []
        py_state, np_state = random.getstate(), np.random.get_state()
        try:
            with torch.random.fork_rng(devices=devices):
                # A per-round, per-process seed: the attack is reproducible and the training's random stream untouched.
                round_seed = int(np.random.default_rng([self.seed, index, 2, rank]).integers(2**31))
                torch.manual_seed(round_seed)
                random.seed(round_seed)
                np.random.seed(round_seed)
                model.eval()
                failure: str | None = None
                try:
                    results = self._attack_shard(model, mine, start, world)
                    unverified = self._verify(model, results) if self.verify else set()
                except Exception as err:
                    if world == 1:
                        raise
                    # Raising here would leave the other processes waiting in the gather below; every process
                    # raises after it instead.
                    failure, results, unverified = f"{type(err).__name__}: {err}", [], set()
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)
            model.train(was_training)
            leaked = self._restore_grads(grads)
        if leaked:
            logger.warning("OnlineAttackAugmentation: the attack left gradients in %d parameters; they were restored "
                           "(the Attack protocol asks attacks not to).", leaked)

        if world > 1:
            gathered = gather_object([([r.to_dict() for r in results], sorted(unverified), failure)])
            failures = [f"rank {r}: {message}" for r, (_, _, message) in enumerate(gathered) if message]
            if failures:
                raise RuntimeError(f"OnlineAttackAugmentation: round {index} failed on {len(failures)} of {world} "
                                   f"processes: {failures}")
            per_rank = [([AttackResult.from_dict(d) for d in res], set(unv)) for res, unv, _ in gathered]
        else:
            per_rank = [(results, unverified)]
        # Back to the sample's order: position j of rank r's shard is indices[r + j * world].
        ordered: list[AttackResult] = [None] * len(indices)  # type: ignore[list-item]
        rejected: set[int] = set()
        for r, (res, unv) in enumerate(per_rank):
            ordered[r::world] = res
            rejected |= unv
        for result in ordered:
            if isinstance(result.perturbed_text, list):  # JSON and pickling keep pairs as lists
                result.perturbed_text = tuple(result.perturbed_text)
                result.original_text = tuple(result.original_text)

        counts = Counter(r.status for r in ordered)
        errors = [f"row {r.index}: {r.error}" for r in ordered if r.status == "error"][:MAX_ERROR_MESSAGES]
        if ordered and counts["error"] == len(ordered):
            raise RuntimeError(
                f"OnlineAttackAugmentation: every example of round {index} raised; first errors: {errors}"
            )
        successes = [r for r in ordered if r.successful and r.index not in rejected]
        added = self._fill_slots(successes, np.random.default_rng([self.seed, index, 3]))
        self.round = index
        self.last_results = ordered
        report = RoundReport(
            round=index,
            global_step=state.global_step if state is not None else 0,
            epoch=float(state.epoch or 0) if state is not None else 0.0,
            sampled=len(indices),
            counts={s: counts.get(s, 0) for s in STATUSES},
            unverified=len(rejected),
            added=added,
            seconds=time.perf_counter() - start,
            errors=errors,
        )
        self.history.append(report)
        self._pending_metrics = report.metrics()
        return report

    def _attack_shard(self, model: torch.nn.Module, rows: list[int], start: float, world: int) -> list[AttackResult]:
        budget = None if self.round_query_budget is None else self.round_query_budget // world
        return run_attack(
            self.attack, model, self.tokenizer, [self.texts[i] for i in rows], [self.labels[i] for i in rows], rows,
            chunk_size=self.attack_batch_size, time_limit_s=self.round_time_limit_s, query_budget=budget, start=start,
        )

    @torch.no_grad()
    def _verify(self, model: torch.nn.Module, results: list[AttackResult]) -> set[int]:
        """Rows whose 'successful' perturbed text the model, fed the training tokenization, classifies correctly."""
        successes = [r for r in results if r.successful]
        rejected: set[int] = set()
        device = next(model.parameters()).device
        for b in range(0, len(successes), self.attack_batch_size):
            chunk = successes[b : b + self.attack_batch_size]
            encoding = self.tokenizer.pad(self._encode([r.perturbed_text for r in chunk]), return_tensors="pt")
            logits = model(**{k: v.to(device) for k, v in encoding.items()}).logits
            for r, pred in zip(chunk, logits.argmax(-1).tolist()):
                if pred == r.label:
                    rejected.add(r.index)
        return rejected

    @staticmethod
    def _restore_grads(grads: dict[torch.nn.Parameter, torch.Tensor | None]) -> int:
        leaked = 0
        for p, before in grads.items():
            if before is None:
                if p.grad is not None:
                    leaked += 1
                    p.grad = None
            elif p.grad is None or not torch.equal(p.grad, before):
                leaked += 1
                p.grad = before
        return leaked

    # ----------------------------------------------------------------------------------------------------------
    # State.

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs: the round counter (the per-round generators derive from it and `seed`),
        the current adversarial examples and slots, and the history."""
        return {
            "version": STATE_VERSION,
            "round": self.round,
            "seed": self.seed,
            "num_clean": len(self.train_dataset.clean),
            "capacity": self.capacity,
            "adversarial_results": [r.to_dict() for r in self.adversarial_results],
            "slots": [list(s) for s in self.train_dataset.slots],
            "history": [h.to_dict() for h in self.history],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores what `state_dict` saved; the dataset and the settings must match the saving run's."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"OnlineAttackAugmentation: unknown state version {state.get('version')!r}")
        ours = {"seed": self.seed, "num_clean": len(self.train_dataset.clean), "capacity": self.capacity}
        theirs = {k: state[k] for k in ours}
        if ours != theirs:
            raise ValueError(
                f"OnlineAttackAugmentation: the checkpoint was written with {theirs}, this run has {ours}; "
                "use the same dataset, `num_examples`, `weight` and `seed` to resume."
            )
        successes = [AttackResult.from_dict(d) for d in state["adversarial_results"]]
        for r in successes:
            if isinstance(r.perturbed_text, list):
                r.perturbed_text, r.original_text = tuple(r.perturbed_text), tuple(r.original_text)
        encodings = self._encode([r.perturbed_text for r in successes]) if successes else {}
        self.train_dataset.adversarial = [
            {**{k: v[i] for k, v in encodings.items()}, "labels": int(r.label)} for i, r in enumerate(successes)
        ]
        self.train_dataset.slots = [(kind, int(k)) for kind, k in state["slots"]]
        self.adversarial_results = successes
        self.round = int(state["round"])
        self.history = [RoundReport.from_dict(h) for h in state["history"]]
