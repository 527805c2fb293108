"""What an attack returns for one example, shared by advtrain's own attacks and the TextAttack adapter."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

# Outcome of attacking one example:
#   successful - the perturbed text is misclassified by the model;
#   failed     - the search ended (no candidates left, budget of modified words reached) without a flip;
#   skipped    - the model already misclassified the original example, so it was not attacked;
#   budget     - the query budget ran out before a flip;
#   timeout    - the per-example time limit ran out before a flip;
#   error      - the attack raised; `error` holds the message and the run went on.
STATUSES = ("successful", "failed", "skipped", "budget", "timeout", "error")


@dataclass
class AttackResult:
    """The outcome of attacking one example.

    Args:
        index (`int`): the example's row in the dataset that was attacked.
        original_text (`str | tuple[str, str]`): the input as given (a pair for sentence-pair tasks).
        perturbed_text (`str | tuple[str, str] | None`): the adversarial input (``None`` unless the search produced one).
        label (`int`): the gold label.
        original_prediction (`int`): the model's prediction on the original input.
        perturbed_prediction (`int | None`): the model's prediction on `perturbed_text`.
        status (`str`): one of `STATUSES`.
        num_queries (`int`): model queries (inputs scored) spent on this example.
        words_changed (`int`): words of `perturbed_text` that differ from the original.
        num_words (`int`): words in the original input.
        seconds (`float`): wall time spent on this example.
        error (`str | None`): the exception message when `status == "error"`.
    """

    index: int
    original_text: Any
    perturbed_text: Any
    label: int
    original_prediction: int
    perturbed_prediction: int | None
    status: str
    num_queries: int = 0
    words_changed: int = 0
    num_words: int = 0
    seconds: float = 0.0
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")

    @property
    def successful(self) -> bool:
        return self.status == "successful"

    @property
    def perturbed_share(self) -> float:
        """Share of the original's words that were changed."""
        return self.words_changed / self.num_words if self.num_words else 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AttackResult:
        return cls(**data)


class Attack(Protocol):
    """What the online augmentation and the evaluation harness call: attack a batch of examples against `model`.

    `model` is a sequence classifier in eval mode and `tokenizer` its fast tokenizer; `texts` are strings (or pairs
    of strings), `labels` the gold labels and `indices` the rows they came from. The attack must not leave
    gradients in the model's parameters. It returns one `AttackResult` per example, in order.
    """

    name: str

    def attack_batch(
        self, model: Any, tokenizer: Any, texts: Sequence[Any], labels: Sequence[int], indices: Sequence[int]
    ) -> list[AttackResult]: ...
