"""What every offline augmenter shares: the column checks, the `n` copies per example, the back-pointer to the
source row, dropping (and counting) useless copies, the report, and the seeded random state.

A method subclasses [`Augmenter`] and writes only [`Augmenter.augment_texts`]: given a list of strings, return
`num_augmentations` candidate strings for each. Pairs (``text_column=("premise", "hypothesis")``) are handled here:
every segment is augmented on its own and the copies are zipped back together.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from datasets import Dataset, Features, Value

from ..validation import check_field, is_int

logger = logging.getLogger(__name__)

# Reasons a generated copy is dropped (keys of `AugmentationReport.dropped`).
DROP_EMPTY = "empty_text"
DROP_UNCHANGED = "identical_to_source"
DROP_DUPLICATE = "duplicate_of_other_copy"


def default_device() -> str:
    """``"cuda"`` when a GPU is visible, else ``"cpu"``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@dataclass
class AugmentationReport:
    """The counts of the last call of an [`Augmenter`].

    Args:
        augmenter (`str`): the class name.
        num_input (`int`): rows of the input dataset.
        num_requested (`int`): copies asked for (``num_input × num_augmentations``).
        num_generated (`int`): copies kept.
        num_original (`int`): original rows kept (``keep_original``).
        num_output (`int`): rows of the output dataset (``num_generated + num_original``).
        dropped (`dict[str, int]`): copies dropped, by reason: ``"empty_text"``, ``"identical_to_source"``,
            ``"duplicate_of_other_copy"``.
        seconds (`float`): wall time of the call.
    """

    augmenter: str
    num_input: int
    num_requested: int
    num_generated: int
    num_original: int
    num_output: int
    dropped: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def num_dropped(self) -> int:
        return sum(self.dropped.values())

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def __str__(self) -> str:
        why = ", ".join(f"{k}: {v}" for k, v in sorted(self.dropped.items()) if v) or "none"
        return (
            f"{self.augmenter}: {self.num_input} rows in, {self.num_output} out ({self.num_original} originals + "
            f"{self.num_generated}/{self.num_requested} augmentations); dropped {self.num_dropped} ({why}) "
            f"in {self.seconds:.1f}s"
        )


class Augmenter:
    r"""
    Base class of the offline augmenters: a seeded ``datasets.Dataset -> datasets.Dataset`` transform, called as
    ``augmenter(dataset)``.

    Every column of a source row (label included) is copied to its augmentations; only the text column(s) change.

    Parameters shared by every augmenter:
        text_column (`str` or `tuple[str, ...]`, defaults to `"text"`):
            The column to augment, or a tuple of columns for sentence pairs (e.g. ``("premise", "hypothesis")``);
            each segment is augmented on its own.
        num_augmentations (`int`, defaults to `4`):
            Augmented copies generated per example (``n`` in the papers).
        keep_original (`bool`, defaults to `False`):
            Also output each original row (its `source_index_column` is its own row number), placed before its copies.
        seed (`int`, defaults to `0`):
            Seed of all the randomness; the same seed gives the same output.
        source_index_column (`str`, defaults to `"source_index"`):
            Name of the added column holding the row number, in the input dataset, of each output row's source.
        drop_unchanged (`bool`, defaults to `True`):
            Drop copies identical to their source (they add nothing but weight).
        drop_duplicates (`bool`, defaults to `True`):
            Drop copies identical to an earlier copy of the same source.
        show_progress (`bool`, defaults to `True`):
            Show a tqdm progress bar.

    After each call, `last_report` holds an [`AugmentationReport`] (also logged at INFO level).
    """

    def __init__(
        self,
        *,
        text_column: str | Sequence[str] = "text",
        num_augmentations: int = 4,
        keep_original: bool = False,
        seed: int = 0,
        source_index_column: str = "source_index",
        drop_unchanged: bool = True,
        drop_duplicates: bool = True,
        show_progress: bool = True,
    ):
        self.text_column = text_column if isinstance(text_column, str) else tuple(text_column)
        self.num_augmentations = num_augmentations
        self.keep_original = keep_original
        self.seed = seed
        self.source_index_column = source_index_column
        self.drop_unchanged = drop_unchanged
        self.drop_duplicates = drop_duplicates
        self.show_progress = show_progress
        self.last_report: AugmentationReport | None = None
        check = self._check
        columns = self.text_columns
        check(
            len(columns) >= 1 and all(isinstance(c, str) and c for c in columns),
            "text_column",
            'a column name or a tuple of column names (e.g. "text" or ("premise", "hypothesis"))',
        )
        check(is_int(num_augmentations) and num_augmentations >= 1, "num_augmentations", "an integer ≥ 1")
        check(isinstance(keep_original, bool), "keep_original", "a bool")
        check(is_int(seed), "seed", "an integer")
        check(
            isinstance(source_index_column, str) and source_index_column not in columns,
            "source_index_column",
            "a column name different from the text column(s)",
        )

    def _check(self, ok: bool, name: str, expected: str) -> None:
        check_field(self, ok, name, expected)

    @property
    def text_columns(self) -> tuple[str, ...]:
        return (self.text_column,) if isinstance(self.text_column, str) else self.text_column

    # --- what a method implements ---------------------------------------------------------------------------------

    def augment_texts(self, texts: list[str], rng: np.random.Generator) -> list[list[str]]:
        """Returns `num_augmentations` candidates for each of `texts` (same order). Draw all randomness from `rng`."""
        raise NotImplementedError

    def relabel(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
        """Hook to change columns other than the text of the kept augmentations (e.g. SSMBA's teacher labels);
        returns the new values for each row, or ``None`` to keep them."""
        return None

    # --- the transform --------------------------------------------------------------------------------------------

    def check_columns(self, dataset: Dataset) -> None:
        """Raises a ``ValueError`` naming the expected and found columns if `dataset` lacks a text column."""
        found = list(dataset.column_names)
        missing = [c for c in self.text_columns if c not in found]
        if missing:
            raise ValueError(
                f"{type(self).__name__} expects the text column(s) {list(self.text_columns)} but the dataset has "
                f"columns {found} (missing: {missing}). Pass `text_column=` with the right name(s), or rename the "
                "column(s) with `dataset.rename_column(...)`."
            )
        if self.source_index_column in found:
            raise ValueError(
                f"The dataset already has a column {self.source_index_column!r} (columns: {found}); pass another "
                "`source_index_column=` or remove it first."
            )
        for c in self.text_columns:
            dtype = getattr(dataset.features[c], "dtype", None)
            if dtype not in ("string", "large_string"):
                raise ValueError(f"Column {c!r} must hold strings, got features {dataset.features[c]}.")

    def __call__(self, dataset: Dataset) -> Dataset:
        """Augments `dataset` and returns the new dataset; the counts are in `last_report`.

        Args:
            dataset (`datasets.Dataset`): holds the text column(s); every other column is copied.

        Returns:
            `datasets.Dataset`: for each source row, the original (if ``keep_original``) then its kept
            augmentations, with the column `source_index_column` added.
        """
        start = time.perf_counter()
        self.check_columns(dataset)
        n, num_rows = self.num_augmentations, len(dataset)
        rng = np.random.default_rng(self.seed)
        # candidates[c][i][j]: copy j of row i's column c; each column gets its own child stream.
        candidates = {}
        for c, child in zip(self.text_columns, rng.spawn(len(self.text_columns))):
            texts = list(dataset[c])
            bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
            if bad is not None:
                raise ValueError(
                    f"{type(self).__name__}: row {bad} of the '{c}' column is {texts[bad]!r}, not a string. Drop or fill "
                    f"such rows first, e.g. `dataset.filter(lambda r: isinstance(r['{c}'], str))`."
                )
            out = self.augment_texts(texts, child) if texts else []
            if len(out) != len(texts) or any(len(copies) != n for copies in out):
                raise RuntimeError(f"{type(self).__name__}.augment_texts must return {n} candidates per text.")
            candidates[c] = out
        sources = {c: list(dataset[c]) for c in self.text_columns}

        dropped: Counter = Counter()
        rows: list[int] = []
        is_copy: list[bool] = []
        new_text = {c: [] for c in self.text_columns}
        for i in range(num_rows):
            source = tuple(sources[c][i] for c in self.text_columns)
            if self.keep_original:
                rows.append(i)
                is_copy.append(False)
                for c, s in zip(self.text_columns, source):
                    new_text[c].append(s)
            seen = set()
            for j in range(n):
                copy = tuple(candidates[c][i][j] for c in self.text_columns)
                if any(not t or not t.strip() for t in copy):
                    dropped[DROP_EMPTY] += 1
                elif self.drop_unchanged and copy == source:
                    dropped[DROP_UNCHANGED] += 1
                elif self.drop_duplicates and copy in seen:
                    dropped[DROP_DUPLICATE] += 1
                else:
                    seen.add(copy)
                    rows.append(i)
                    is_copy.append(True)
                    for c, t in zip(self.text_columns, copy):
                        new_text[c].append(t)

        # Columnar assembly (Arrow take + one from_dict): row-by-row Dataset access would cost more than EDA itself.
        columns = dataset.remove_columns(list(self.text_columns)).select(rows).to_dict()
        columns.update(new_text)
        columns[self.source_index_column] = rows
        self._apply_relabel(columns, is_copy)
        features = Features({**dataset.features, self.source_index_column: Value("int64")})
        order = list(dataset.column_names) + [self.source_index_column]
        out = Dataset.from_dict({c: columns[c] for c in order}, features=features)

        num_original = num_rows if self.keep_original else 0
        self.last_report = AugmentationReport(
            augmenter=type(self).__name__,
            num_input=num_rows,
            num_requested=num_rows * n,
            num_generated=len(rows) - num_original,
            num_original=num_original,
            num_output=len(rows),
            dropped={k: dropped.get(k, 0) for k in (DROP_EMPTY, DROP_UNCHANGED, DROP_DUPLICATE)},
            seconds=time.perf_counter() - start,
        )
        logger.info("%s", self.last_report)
        return out

    def augment(self, dataset: Dataset) -> Dataset:
        """Alias of `__call__`."""
        return self(dataset)

    def _apply_relabel(self, columns: dict[str, list], is_copy: list[bool]) -> None:
        """Passes the kept augmentations (as row dicts) to `relabel` and writes what it returns into `columns`."""
        copy_rows = [k for k, flag in enumerate(is_copy) if flag]
        if not copy_rows:
            return
        new_values = self.relabel([{c: values[k] for c, values in columns.items()} for k in copy_rows])
        if new_values is None:
            return
        for k, update in zip(copy_rows, new_values):
            for c, value in update.items():
                columns[c][k] = value

    def progress(self, total: int, desc: str) -> Any:
        """A tqdm bar over `total` items (disabled by ``show_progress=False``)."""
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, disable=not self.show_progress, leave=False)


__all__ = ["AugmentationReport", "Augmenter", "default_device"]
