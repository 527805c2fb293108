"""SSMBA, "Self-Supervised Manifold Based Augmentation" (Ng et al. 2020, https://arxiv.org/abs/2009.10195): move a
sentence off the data manifold with the masked-LM corruption, then project it back by sampling the masked LM at the
corrupted positions.

The masked LM is batched here (all copies of all sentences sorted by length, dynamic padding) instead of using
nlpaug's ``ContextualWordEmbsAug``: that one runs the model once per substituted word, and its corruption is not
SSMBA's (no random-token / kept-token split, and it predicts each word with the others unmasked).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from ..resources import require_path
from ..validation import is_int, is_number
from .base import Augmenter, default_device

logger = logging.getLogger(__name__)

_HOW_TO_PROVIDE_MLM = (
    "no packaged masked LM exists offline: pass `model=` a local directory that "
    "`AutoModelForMaskedLM.from_pretrained(dir)` loads (with its tokenizer, or pass `tokenizer=`), or a model "
    "object; e.g. train one here (an encoder plus an MLM head continued-pre-trained on in-domain text) and save it "
    "with `model.save_pretrained(dir)`"
)


class SSMBA(Augmenter):
    r"""
    SSMBA (Ng et al. 2020). For each copy, every sentence is tokenized and ``⌊ν·l + u⌋`` of its ``l`` non-special
    tokens are selected (``u ~ U(0, 1)``, the rounding of the authors' code); a selected token becomes ``[MASK]``
    with probability ``p_mask``, a uniformly drawn non-special token with probability ``p_random``, and stays
    otherwise (BERT's 80/10/10). The masked LM then re-samples exactly the selected positions from its predicted
    distribution (special tokens excluded, optionally restricted to the ``top_k`` tokens, divided by
    ``temperature``), and the tokens are decoded back to text. The label is kept, or set by `teacher`.

    Parameters of the corruption and reconstruction:
        model (`str`, `os.PathLike` or `PreTrainedModel`):
            Any masked LM: a local directory `AutoModelForMaskedLM` loads, or a model object.
        tokenizer (`str`, `os.PathLike` or `PreTrainedTokenizerBase`, *optional*):
            Its tokenizer; defaults to the model's directory.
        noise_prob (`float`, defaults to `0.15`):
            Fraction of tokens selected for corruption (the paper's noise probability).
        p_mask (`float`, defaults to `0.8`):
            Probability that a selected token is replaced by the mask token.
        p_random (`float`, defaults to `0.1`):
            Probability that a selected token is replaced by a random token (the rest stay unchanged).
        top_k (`int`, *optional*):
            Sample among the ``k`` most likely tokens only; ``None`` samples the full distribution (the paper's default).
        temperature (`float`, defaults to `1.0`):
            Softmax temperature of the sampling.
        max_length (`int`, *optional*):
            Longer texts are truncated to this many tokens (a warning counts them); defaults to the model's maximum.
        batch_size (`int`, defaults to `32`):
            Sequences per forward pass.
        device (`str` or `torch.device`, *optional*):
            Defaults to ``"cuda"`` when available, else ``"cpu"``.
        teacher (`Callable[[list], list]`, *optional*):
            Relabels the augmentations: called with the augmented texts (tuples for pairs), returns one label each.
        label_column (`str`, defaults to `"label"`):
            The column `teacher`'s labels are written to.

    The shared parameters (``text_column``, ``num_augmentations``, ``keep_original``, ``seed``...) are those of
    [`Augmenter`].
    """

    def __init__(
        self,
        model: Any,
        *,
        tokenizer: Any = None,
        noise_prob: float = 0.15,
        p_mask: float = 0.8,
        p_random: float = 0.1,
        top_k: int | None = None,
        temperature: float = 1.0,
        max_length: int | None = None,
        batch_size: int = 32,
        device: str | torch.device | None = None,
        teacher: Callable[[list], Sequence] | None = None,
        label_column: str = "label",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.noise_prob, self.p_mask, self.p_random = noise_prob, p_mask, p_random
        self.top_k, self.temperature, self.max_length, self.batch_size = top_k, temperature, max_length, batch_size
        self.teacher, self.label_column = teacher, label_column
        check = self._check
        check(is_number(noise_prob) and 0 < noise_prob <= 1, "noise_prob", "a number in (0, 1]")
        check(is_number(p_mask) and 0 <= p_mask <= 1, "p_mask", "a number in [0, 1]")
        check(is_number(p_random) and 0 <= p_random <= 1 - p_mask, "p_random", "a number in [0, 1 - p_mask]")
        check(top_k is None or (is_int(top_k) and top_k >= 1), "top_k", "None or an integer ≥ 1")
        check(is_number(temperature) and temperature > 0, "temperature", "a number > 0")
        check(max_length is None or (is_int(max_length) and max_length >= 3), "max_length", "None or an integer ≥ 3")
        check(is_int(batch_size) and batch_size >= 1, "batch_size", "an integer ≥ 1")
        check(teacher is None or callable(teacher), "teacher", "None or a callable texts -> labels")
        self.device = torch.device(device if device is not None else default_device())
        self.model, self.tokenizer = self._load(model, tokenizer)
        self.model.to(self.device).eval()
        if self.tokenizer.mask_token_id is None:
            raise ValueError(f"The tokenizer {type(self.tokenizer).__name__} has no mask token; SSMBA needs one.")
        if self.max_length is None:
            limits = [getattr(self.model.config, "max_position_embeddings", None), self.tokenizer.model_max_length]
            self.max_length = min(int(v) for v in limits if v is not None and v < 1e9) if any(limits) else 512
        special = set(self.tokenizer.all_special_ids)
        vocab_size = self.model.get_output_embeddings().weight.shape[0]
        self.special_ids = torch.tensor(sorted(i for i in special if i < vocab_size), dtype=torch.long)
        # [CLS]/[SEP]/padding frame the text and are never selected; an unknown token is a word like any other
        # (selected, and kept as [UNK] in the text when it is not).
        self.frame_ids = frozenset(special - {self.tokenizer.unk_token_id})
        self.normal_ids = np.array([i for i in range(min(vocab_size, len(self.tokenizer))) if i not in special])

    @staticmethod
    def _load(model: Any, tokenizer: Any):
        from transformers import AutoModelForMaskedLM, AutoTokenizer

        if isinstance(model, (str, os.PathLike)):
            path = require_path(model, "masked language model", _HOW_TO_PROVIDE_MLM)
            model, info = AutoModelForMaskedLM.from_pretrained(path, output_loading_info=True)
            fresh = [k for k in info.get("missing_keys", []) if not k.endswith(("position_ids", "bias"))]
            if fresh:
                raise ValueError(
                    f"SSMBA: {path} holds no masked-LM head ({len(fresh)} weights would be initialised at random, e.g. "
                    f"{fresh[0]!r}); it is probably a classifier or a bare encoder. Point `model` at a masked LM "
                    "(e.g. one saved from AutoModelForMaskedLM, or made by benchmarks/train_masked_lm.py)."
                )
            tokenizer = path if tokenizer is None else tokenizer
        if not isinstance(model, torch.nn.Module):
            raise ValueError(f"`model` must be a path or a masked LM object, got {type(model).__name__}.")
        if tokenizer is None:
            raise ValueError("`tokenizer` is required when `model` is an object (pass the model's tokenizer).")
        if isinstance(tokenizer, (str, os.PathLike)):
            path = require_path(tokenizer, "tokenizer of the masked language model", _HOW_TO_PROVIDE_MLM)
            tokenizer = AutoTokenizer.from_pretrained(path)
        return model, tokenizer

    # --- token level ------------------------------------------------------------------------------------------------

    def corrupt(self, input_ids: list[int], rng: np.random.Generator) -> tuple[list[int], list[bool]]:
        """The MLM corruption of one tokenized sequence (its [CLS]/[SEP]-like tokens included, never selected).

        Returns:
            `tuple[list[int], list[bool]]`: the corrupted ids and the selection mask (``True`` at the positions the
            masked LM will re-sample).
        """
        ids = list(input_ids)
        positions = [k for k, t in enumerate(ids) if t not in self.frame_ids]
        num = min(len(positions), int(self.noise_prob * len(positions) + rng.random()))
        selected = [False] * len(ids)
        for k in rng.choice(positions, size=num, replace=False) if num else []:
            selected[int(k)] = True
            u = rng.random()
            if u < self.p_mask:
                ids[int(k)] = self.tokenizer.mask_token_id
            elif u < self.p_mask + self.p_random:
                ids[int(k)] = int(self.normal_ids[rng.integers(len(self.normal_ids))])
        return ids, selected

    @torch.no_grad()
    def reconstruct(
        self, sequences: list[list[int]], selected: list[list[bool]], generator: torch.Generator
    ) -> list[list[int]]:
        """Re-samples the selected positions of a batch of corrupted sequences from the masked LM; every other
        position is returned unchanged."""
        width = max(len(s) for s in sequences)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids = torch.full((len(sequences), width), pad, dtype=torch.long)
        attention = torch.zeros_like(ids)
        chosen = torch.zeros_like(ids, dtype=torch.bool)
        for b, (s, m) in enumerate(zip(sequences, selected)):
            ids[b, : len(s)] = torch.tensor(s)
            attention[b, : len(s)] = 1
            chosen[b, : len(m)] = torch.tensor(m, dtype=torch.bool)
        out = ids.clone()
        if chosen.any():
            logits = self.model(input_ids=ids.to(self.device), attention_mask=attention.to(self.device)).logits
            # Only the selected rows leave the device; sampling on the CPU generator makes the output independent
            # of the device.
            picked = logits[chosen.to(self.device)].float().cpu()
            picked[:, self.special_ids] = float("-inf")
            picked = picked / self.temperature
            if self.top_k is not None and self.top_k < picked.shape[-1]:
                kth = picked.topk(self.top_k, dim=-1).values[:, -1:]
                picked = picked.masked_fill(picked < kth, float("-inf"))
            out[chosen] = torch.multinomial(picked.softmax(-1), 1, generator=generator).squeeze(-1)
        return [out[b, : len(s)].tolist() for b, s in enumerate(sequences)]

    # --- text level -------------------------------------------------------------------------------------------------

    def augment_texts(self, texts: list[str], rng: np.random.Generator) -> list[list[str]]:
        n = self.num_augmentations
        encoded = self.tokenizer(texts, truncation=True, max_length=self.max_length)["input_ids"]
        truncated = sum(len(e) >= self.max_length for e in encoded)
        if truncated:
            logger.warning(
                "%d texts were truncated to max_length=%d tokens before augmentation.", truncated, self.max_length
            )
        jobs = [(i, j) for i in range(len(texts)) for j in range(n)]
        corrupted = [self.corrupt(encoded[i], rng) for i, _ in jobs]
        generator = torch.Generator().manual_seed(int(rng.integers(2**63 - 1)))
        # Sorted by length so that each batch pads little; the order is a pure function of the input.
        order = sorted(range(len(jobs)), key=lambda k: len(corrupted[k][0]))
        results: list[str | None] = [None] * len(jobs)
        bar = self.progress(len(jobs), "SSMBA")
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            new_ids = self.reconstruct([corrupted[k][0] for k in batch], [corrupted[k][1] for k in batch], generator)
            for k, ids in zip(batch, new_ids):
                i = jobs[k][0]
                # An unchanged token sequence gives back the source string exactly (decoding would normalise it).
                results[k] = texts[i] if ids == encoded[i] else self.decode(ids)
            bar.update(len(batch))
        bar.close()
        return [[results[i * n + j] for j in range(n)] for i in range(len(texts))]

    def check_columns(self, dataset) -> None:
        super().check_columns(dataset)
        if self.teacher is not None and self.label_column not in dataset.column_names:
            raise ValueError(
                f"SSMBA with a `teacher` expects the label column {self.label_column!r} but the dataset has columns "
                f"{list(dataset.column_names)}. Pass `label_column=` with the right name."
            )

    def decode(self, ids: list[int]) -> str:
        """Text of a token sequence without its frame tokens (an [UNK] stays visible rather than being deleted)."""
        return self.tokenizer.decode([t for t in ids if t not in self.frame_ids], clean_up_tokenization_spaces=True)

    def relabel(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
        if self.teacher is None:
            return None
        cols = self.text_columns
        texts = [r[cols[0]] if len(cols) == 1 else tuple(r[c] for c in cols) for r in rows]
        labels = list(self.teacher(texts))
        if len(labels) != len(texts):
            raise ValueError(f"`teacher` returned {len(labels)} labels for {len(texts)} texts.")
        return [{self.label_column: label} for label in labels]
