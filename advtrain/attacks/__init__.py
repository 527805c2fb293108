"""advtrain's own batched word-substitution attacks (A2T, A2T-MLM, BERT-Attack, TextFooler, PWWS, BAE) behind the
`Attack` protocol, the recipe registry, and the TextAttack adapter (textattack itself is imported only when the adapter
is used). ``advtrain.attacks.OnlineAttackAugmentation`` still names `advtrain.training.OnlineAttackAugmentation`."""

import importlib
from typing import Any

from ..lexicon import WordNetFilter, load_stopwords, load_wordnet
from .candidates import (
    EmbeddingNeighbourSwap,
    MaskedLMSwap,
    WordNetSynonymSwap,
    load_masked_lm,
)
from .constraints import (
    AttackState,
    Constraint,
    MaxModificationRate,
    PartOfSpeech,
    Proposal,
    RepeatModification,
    SentenceEncoder,
    SentenceEncoderSimilarity,
    StopwordModification,
    WordEmbeddingDistance,
    spacy_pos_tagger,
)
from .recipes import (
    ATTACK_RECIPES,
    a2t,
    a2t_mlm,
    bae,
    bert_attack,
    build_attack,
    pwws,
    textfooler,
)
from .registry import RECIPES, Recipe, normalize_name, recipe
from .results import STATUSES, Attack, AttackResult
from .runner import run_attack
from .search import WordSubstitutionAttack
from .textattack_adapter import (
    TextAttackAttack,
    textattack_pso,
    textattack_recipe,
    textattack_word_embedding,
)
from .vectors import WordVectors
from .words import Words, is_word

__all__ = [
    "ATTACK_RECIPES",
    "RECIPES",
    "Recipe",
    "STATUSES",
    "Attack",
    "AttackResult",
    "AttackState",
    "Constraint",
    "EmbeddingNeighbourSwap",
    "MaskedLMSwap",
    "MaxModificationRate",
    "PartOfSpeech",
    "Proposal",
    "RepeatModification",
    "SentenceEncoder",
    "SentenceEncoderSimilarity",
    "StopwordModification",
    "TextAttackAttack",
    "WordEmbeddingDistance",
    "WordNetFilter",
    "WordNetSynonymSwap",
    "WordSubstitutionAttack",
    "WordVectors",
    "Words",
    "a2t",
    "a2t_mlm",
    "bae",
    "bert_attack",
    "build_attack",
    "is_word",
    "load_masked_lm",
    "load_stopwords",
    "load_wordnet",
    "normalize_name",
    "pwws",
    "recipe",
    "run_attack",
    "spacy_pos_tagger",
    "textattack_pso",
    "textattack_recipe",
    "textattack_word_embedding",
    "textfooler",
]


def __getattr__(name: str) -> Any:
    # Online augmentation moved to `advtrain.training`; looked up on use, so that this package does not import it.
    if name == "OnlineAttackAugmentation":
        return importlib.import_module("advtrain.training.online").OnlineAttackAugmentation
    raise AttributeError(f"module 'advtrain.attacks' has no attribute {name!r}")
