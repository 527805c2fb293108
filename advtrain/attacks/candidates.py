"""Transformations: the substitute words proposed for one word of one text, for many (text, position) requests at once.

A transformation is any callable ``requests -> candidates`` where `requests` is a sequence of ``(Words, position)``
pairs (from different examples) and the result holds one list of substitute words per request. Batching the requests
of all active examples into one call is what lets `MaskedLMSwap` run a single masked-LM forward per search step.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Protocol

import torch

from ..lexicon import WordNetFilter, load_wordnet
from ..resources import MissingResourceError
from .batching import eval_mode, length_sorted_batches, model_device
from .vectors import WordVectors
from .words import Words, is_word

HOW_TO_PROVIDE_MLM = (
    "pass masked_lm=<path to a local AutoModelForMaskedLM folder, or the model object> and mlm_tokenizer=<its "
    "tokenizer>. No packaged masked LM exists offline: train one (e.g. continue pre-training an encoder with an MLM "
    "head) or copy a checkpoint such as bert-base-uncased to a local folder; or use the embedding-neighbour recipe 'a2t'"
)


class Transformation(Protocol):
    def __call__(self, requests: Sequence[tuple[Words, int]]) -> list[list[str]]: ...


class EmbeddingNeighbourSwap:
    """Substitutes a word with its nearest neighbours in a word-vector table (A2T's ``WordSwapEmbedding``).

    Neighbours are searched on torch for all uncached words of a step at once and cached per word.

    Args:
        word_vectors (`WordVectors`, path or ``(matrix, words)``): the table (see `WordVectors.from_object`).
        max_candidates (`int`, *optional*, defaults to 20): neighbours considered per word.
        min_cos_sim (`float`, *optional*, defaults to 0.8): drop neighbours with a lower cosine similarity.
        wordnet_filter (`str`, *optional*): ``"antonyms"`` or ``"synonyms"`` (see `WordNetFilter`); `None` keeps every
            neighbour. Counter-fitted vectors push antonyms apart; plain GloVe does not, hence the filter.
        wordnet (`str` or WordNet reader, *optional*): for the filter (see `WordNetFilter`); default under ``NLTK_DATA``.
    """

    def __init__(
        self,
        word_vectors: Any,
        max_candidates: int = 20,
        min_cos_sim: float | None = 0.8,
        wordnet_filter: str | None = None,
        wordnet: Any = None,
    ):
        self.word_vectors = WordVectors.from_object(word_vectors)
        self.max_candidates = max_candidates
        self.min_cos_sim = min_cos_sim
        self.wordnet_filter = WordNetFilter(wordnet_filter, wordnet) if wordnet_filter else None

    def __call__(self, requests: Sequence[tuple[Words, int]]) -> list[list[str]]:
        words = [w.words[p] for w, p in requests]
        neighbours = self.word_vectors.nearest(words, self.max_candidates, self.min_cos_sim)
        out = []
        for word, cands in zip(words, neighbours):
            # A substitute must stay one word, or the text would re-split into a different word sequence.
            cands = [c for c in cands if is_word(c) and c.lower() != word.lower()]
            out.append(self.wordnet_filter(word, cands) if self.wordnet_filter else cands)
        return out


class WordNetSynonymSwap:
    """Substitutes a word with its WordNet synonyms: the one-word lemma names of every synset of the word (PWWS; as
    TextAttack's ``WordSwapWordNet``), in WordNet's order, without the word itself. Lower-case words get lower-cased
    synonyms.

    Args:
        wordnet (`str` or WordNet reader, *optional*): an nltk ``WordNetCorpusReader`` (anything with
            ``synsets(word)`` whose synsets have ``lemma_names()``), or the ``corpora/wordnet`` / nltk_data folder; by
            default found under ``NLTK_DATA`` (`MissingResourceError` when absent).
        max_candidates (`int`, *optional*): keep at most this many synonyms per word (all by default).
    """

    def __init__(self, wordnet: Any = None, max_candidates: int | None = None):
        if wordnet is None or isinstance(wordnet, (str, os.PathLike)):
            wordnet = load_wordnet(None if wordnet is None else os.fspath(wordnet))
        self.wordnet, self.max_candidates = wordnet, max_candidates
        self._cache: dict[str, list[str]] = {}

    def synonyms(self, word: str) -> list[str]:
        if word not in self._cache:
            out: dict[str, None] = {}
            for synset in self.wordnet.synsets(word):
                for name in synset.lemma_names():
                    name = name.lower() if word.islower() else name
                    # A substitute must stay one word ("_" joins multi-word lemmas such as "ice_cream").
                    if is_word(name) and name.lower() != word.lower():
                        out[name] = None
            self._cache[word] = list(out)[: self.max_candidates]
        return self._cache[word]

    def __call__(self, requests: Sequence[tuple[Words, int]]) -> list[list[str]]:
        return [list(self.synonyms(w.words[p])) for w, p in requests]


def load_masked_lm(masked_lm: Any, mlm_tokenizer: Any = None) -> tuple[torch.nn.Module, Any]:
    """Returns ``(model, tokenizer)`` from a local ``AutoModelForMaskedLM`` path or a model object (with its tokenizer
    or a tokenizer path); raises `MissingResourceError` when the path does not exist or nothing is given."""
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    if masked_lm is None or isinstance(masked_lm, (str, os.PathLike)):
        if masked_lm is None or not os.path.isdir(masked_lm):
            raise MissingResourceError(
                "masked language model", HOW_TO_PROVIDE_MLM, None if masked_lm is None else os.fspath(masked_lm)
            )
        model = AutoModelForMaskedLM.from_pretrained(masked_lm)
        mlm_tokenizer = masked_lm if mlm_tokenizer is None else mlm_tokenizer
    else:
        model = masked_lm
    if mlm_tokenizer is None:
        raise MissingResourceError(
            "masked LM tokenizer", "pass mlm_tokenizer=<the masked LM's fast tokenizer or its folder>"
        )
    if isinstance(mlm_tokenizer, (str, os.PathLike)):
        if not os.path.isdir(mlm_tokenizer):
            raise MissingResourceError("masked LM tokenizer", HOW_TO_PROVIDE_MLM, os.fspath(mlm_tokenizer))
        mlm_tokenizer = AutoTokenizer.from_pretrained(mlm_tokenizer)
    if not getattr(mlm_tokenizer, "is_fast", False) or mlm_tokenizer.mask_token_id is None:
        raise ValueError("MaskedLMSwap needs a fast tokenizer with a mask token (for offsets and masking)")
    return model, mlm_tokenizer


class MaskedLMSwap:
    """Substitutes a word with a masked LM's top predictions at its position (BAE / BERT-Attack / A2T-MLM).

    Only single-token whole-word predictions are proposed (no ``##`` continuations, no multi-token words, no special
    tokens): one forward gives every candidate, and BAE/A2T-MLM do the same for their ``max_candidates``.

    Args:
        masked_lm (`str` or `PreTrainedModel`): a local ``AutoModelForMaskedLM`` folder or model.
        mlm_tokenizer (fast tokenizer or `str`, *optional*): its tokenizer (defaults to the model folder).
        max_candidates (`int`, *optional*, defaults to 50): top predictions kept per word.
        method (`str`, *optional*, defaults to ``"bae"``): ``"bae"`` replaces the word with the mask token and reads the
            predictions there (Garg & Ramakrishnan 2020, A2T-MLM); ``"bert-attack"`` feeds the unmasked text and reads
            the predictions at the word's first sub-token (Li et al. 2020).
        batch_size (`int`, *optional*, defaults to 32): texts per masked-LM forward.
        max_length (`int`, *optional*, defaults to 256): truncation length; a word beyond it gets no candidates.
    """

    def __init__(
        self,
        masked_lm: Any,
        mlm_tokenizer: Any = None,
        max_candidates: int = 50,
        method: str = "bae",
        batch_size: int = 32,
        max_length: int = 256,
    ):
        if method not in ("bae", "bert-attack"):
            raise ValueError(f"method must be 'bae' or 'bert-attack', got {method!r}")
        self.model, self.tokenizer = load_masked_lm(masked_lm, mlm_tokenizer)
        self.max_candidates, self.method, self.batch_size, self.max_length = (
            max_candidates,
            method,
            batch_size,
            max_length,
        )
        self._words, self._allowed = self._whole_word_vocabulary()

    def _whole_word_vocabulary(self) -> tuple[list[str], torch.Tensor]:
        """Each token's word form and whether it may stand alone as a substitute word."""
        tokens = self.tokenizer.convert_ids_to_tokens(list(range(len(self.tokenizer))))
        # WordPiece marks continuations ("##ing"); BPE and Unigram (SentencePiece) mark word starts ("Ġ", "▁").
        wordpiece = type(self.tokenizer.backend_tokenizer.model).__name__ == "WordPiece"
        special = set(self.tokenizer.all_special_ids)
        words, allowed = [], []
        for i, t in enumerate(tokens):
            if wordpiece:
                word, ok = t, not t.startswith("##")
            else:  # byte-level BPE ("Ġ") and SentencePiece ("▁") mark the start of a word
                word, ok = t.lstrip("Ġ▁"), t[:1] in ("Ġ", "▁")
            words.append(word)
            allowed.append(ok and i not in special and is_word(word) and word.isalpha())
        return words, torch.tensor(allowed)

    def _token_positions(self, requests: Sequence[tuple[Words, int]]) -> tuple[Any, list[int | None]]:
        if self.method == "bae":
            texts = [w.replace(p, self.tokenizer.mask_token).text for w, p in requests]
            enc = self.tokenizer(texts, truncation=True, max_length=self.max_length)
            mask_id = self.tokenizer.mask_token_id
            positions = [ids.index(mask_id) if mask_id in ids else None for ids in enc["input_ids"]]
            return enc, positions
        texts = [w.text for w, _ in requests]
        enc = self.tokenizer(texts, truncation=True, max_length=self.max_length, return_offsets_mapping=True)
        positions = []
        for (words, p), offsets, seq_ids in zip(
            requests, enc["offset_mapping"], (enc.sequence_ids(i) for i in range(len(texts)))
        ):
            start, end = words.spans()[p]
            positions.append(
                next((t for t, (a, b) in enumerate(offsets) if seq_ids[t] == 0 and b > a and start <= a < end), None)
            )
        return enc, positions

    def __call__(self, requests: Sequence[tuple[Words, int]]) -> list[list[str]]:
        if not requests:
            return []
        enc, positions = self._token_positions(requests)
        out: list[list[str]] = [[] for _ in requests]
        device = model_device(self.model)
        allowed = self._allowed.to(device)
        with eval_mode(self.model), torch.no_grad():
            for rows, batch in length_sorted_batches(enc, self.batch_size, self.tokenizer, device):
                logits = self.model(**batch).logits
                for row_in_batch, row in enumerate(rows):
                    if positions[row] is None:
                        continue
                    scores = logits[row_in_batch, positions[row], : allowed.numel()].masked_fill(
                        ~allowed, float("-inf")
                    )
                    top = scores.topk(min(self.max_candidates + 1, scores.numel())).indices.tolist()
                    original = requests[row][0].words[requests[row][1]].lower()
                    cands = [
                        self._words[t] for t in top if self._words[t].lower() != original and scores[t] > float("-inf")
                    ]
                    out[row] = cands[: self.max_candidates]
        return out
