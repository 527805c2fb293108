"""advtrain's own batched word-substitution attacks (A2T, A2T-MLM, BERT-Attack) behind the `Attack` protocol, and the
TextAttack adapter (textattack itself is imported only when the adapter is used)."""

from .candidates import EmbeddingNeighbourSwap, MaskedLMSwap, load_masked_lm
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
from ..lexicon import WordNetFilter, load_stopwords, load_wordnet
from .recipes import ATTACK_RECIPES, a2t, a2t_mlm, bert_attack, build_attack
from .results import STATUSES, Attack, AttackResult
from .search import WordSubstitutionAttack
from .textattack_adapter import TextAttackAttack, textattack_recipe, textattack_word_embedding
from .vectors import WordVectors
from .words import Words, is_word

__all__ = [
    "ATTACK_RECIPES",
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
    "WordSubstitutionAttack",
    "WordVectors",
    "Words",
    "a2t",
    "a2t_mlm",
    "bert_attack",
    "build_attack",
    "is_word",
    "load_masked_lm",
    "load_stopwords",
    "load_wordnet",
    "spacy_pos_tagger",
    "textattack_recipe",
    "textattack_word_embedding",
]
