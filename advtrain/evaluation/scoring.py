"""Clean accuracy and temperature calibration: batched, length-sorted, dynamically padded, in eval mode, no gradients.

A dataset is a ``datasets.Dataset`` or a sequence of mappings (rows). Its inputs are one text column or, for sentence
pairs, two: `text_column` may name both (``("premise", "hypothesis")``), and a ``text_pair`` column next to a single
`text_column` is read as the second text. Inputs are then strings or ``(first, second)`` tuples, as the attacks take.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from ..attacks.batching import eval_mode, length_sorted_batches, model_device

PAIR_COLUMN = "text_pair"


def _column_names(dataset: Any) -> list[str]:
    from datasets import Dataset

    if isinstance(dataset, Dataset):
        return list(dataset.column_names)
    return list(dataset[0].keys()) if len(dataset) else []


def dataset_inputs(
    dataset: Any, text_column: str | Sequence[str] = "text", label_column: str = "label"
) -> tuple[list[Any], list[int]]:
    """The inputs (strings, or tuples for sentence pairs) and integer labels of `dataset`.

    Raises:
        ValueError: when a required column is missing (the message lists the columns found).
    """
    columns = [text_column] if isinstance(text_column, str) else list(text_column)
    found = _column_names(dataset)
    if len(columns) == 1 and PAIR_COLUMN in found and columns[0] != PAIR_COLUMN:
        columns.append(PAIR_COLUMN)
    missing = [c for c in [*columns, label_column] if c not in found]
    if missing or not 1 <= len(columns) <= 2:
        raise ValueError(
            f"the dataset needs the text column(s) {columns} (one, or two for sentence pairs) and the label column "
            f"{label_column!r}; missing {missing}, found {found}. Pass text_column=/label_column= to match"
        )
    rows = dataset.select_columns([*columns, label_column]) if hasattr(dataset, "select_columns") else dataset
    texts, labels = [], []
    for row in rows:
        texts.append(row[columns[0]] if len(columns) == 1 else tuple(row[c] for c in columns))
        labels.append(int(row[label_column]))
    return texts, labels


def predict_logits(
    model: torch.nn.Module, tokenizer: Any, texts: Sequence[Any], *, batch_size: int = 32, max_length: int = 128
) -> torch.Tensor:
    """``[len(texts), num_labels]`` float logits on CPU, in the order of `texts` (eval mode, no gradients)."""
    if not len(texts):
        return torch.empty(0, 0)
    pairs = not isinstance(texts[0], str)
    columns = list(zip(*texts)) if pairs else [list(texts)]
    enc = tokenizer(*[list(c) for c in columns], truncation=True, max_length=max_length)
    out: list[torch.Tensor | None] = [None] * len(texts)
    with eval_mode(model), torch.no_grad():
        for rows, batch in length_sorted_batches(enc, batch_size, tokenizer, model_device(model)):
            logits = model(**batch).logits.float().cpu()
            for r, row in zip(rows, logits):
                out[r] = row
    return torch.stack(out)


def clean_accuracy(
    model: torch.nn.Module,
    tokenizer: Any,
    dataset: Any,
    *,
    text_column: str | Sequence[str] = "text",
    label_column: str = "label",
    batch_size: int = 32,
    max_length: int = 128,
) -> float:
    """Accuracy of `model` on `dataset` (every row), batched by length in eval mode without gradients; the model's
    train/eval mode is restored afterwards.

    Args:
        model (`PreTrainedModel`): a sequence classifier.
        tokenizer: its tokenizer.
        dataset (``datasets.Dataset`` or `Sequence[dict]`): rows with the text column(s) and the label column.
        text_column (`str` or `Sequence[str]`, *optional*, defaults to ``"text"``): see the module docstring for pairs.
        label_column (`str`, *optional*, defaults to ``"label"``): integer class labels.
        batch_size (`int`, *optional*, defaults to 32): inputs per forward.
        max_length (`int`, *optional*, defaults to 128): truncation length.
    """
    texts, labels = dataset_inputs(dataset, text_column, label_column)
    if not texts:
        raise ValueError("clean_accuracy got an empty dataset")
    logits = predict_logits(model, tokenizer, texts, batch_size=batch_size, max_length=max_length)
    return (logits.argmax(-1) == torch.tensor(labels)).float().mean().item()


def temperature_from_logits(logits: torch.Tensor, labels: torch.Tensor, max_iter: int = 100) -> float:
    """The temperature ``T > 0`` minimising the mean negative log-likelihood of ``softmax(logits / T)`` (Guo et al.
    2017), found by L-BFGS on ``log T`` (so ``T`` stays positive)."""
    logits, labels = logits.detach().double(), labels.detach().long()
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.5, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return float(log_t.detach().exp())


def fit_temperature(
    model: torch.nn.Module,
    tokenizer: Any,
    dataset: Any,
    *,
    text_column: str | Sequence[str] = "text",
    label_column: str = "label",
    batch_size: int = 32,
    max_length: int = 128,
) -> float:
    """Fits a softmax temperature on a dev set: ``T = argmin_T NLL(softmax(logits / T), labels)``.

    An over-confident model saturates its softmax, so gradient- and probability-based attacks see flat scores and the
    model looks more robust than it is; dividing the logits by the fitted `T` (`TemperatureScaledModel`) before
    attacking removes that effect without changing a single prediction. The logits are computed once (no gradients
    reach the model); only ``log T`` is optimised.

    Args:
        model, tokenizer, dataset, text_column, label_column, batch_size, max_length: as in `clean_accuracy`.

    Returns:
        `float`: the temperature, > 0 (> 1 for an over-confident model).
    """
    texts, labels = dataset_inputs(dataset, text_column, label_column)
    if not texts:
        raise ValueError("fit_temperature got an empty dataset")
    logits = predict_logits(model, tokenizer, texts, batch_size=batch_size, max_length=max_length)
    return temperature_from_logits(logits, torch.tensor(labels))


class TemperatureScaledModel(torch.nn.Module):
    """Wraps a sequence classifier so that its output's ``logits`` are divided by `temperature`.

    What the attacks use passes through: ``config``, ``get_input_embeddings()``, ``device``, the parameters (those of
    the wrapped model) and ``train()``/``eval()`` (which reach the wrapped model as a sub-module). With ``labels`` the
    returned ``loss`` is the cross-entropy of the scaled logits.

    Args:
        model (`PreTrainedModel`): the classifier.
        temperature (`float`): ``T > 0``.
    """

    def __init__(self, model: torch.nn.Module, temperature: float):
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.model = model
        self.temperature = float(temperature)
        self.train(model.training)  # a new Module starts in train mode; take the wrapped model's

    @property
    def config(self):
        return self.model.config

    @property
    def device(self) -> torch.device:
        return model_device(self.model)

    def get_input_embeddings(self) -> torch.nn.Module:
        return self.model.get_input_embeddings()

    def forward(self, *args, labels: torch.Tensor | None = None, **kwargs):
        output = self.model(*args, **kwargs)
        output["logits"] = output.logits / self.temperature
        if labels is not None:
            output["loss"] = F.cross_entropy(output.logits.float().view(-1, output.logits.shape[-1]), labels.view(-1))
        return output

    def extra_repr(self) -> str:
        return f"temperature={self.temperature:.4g}"
