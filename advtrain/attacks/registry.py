"""The attack recipes, each declared once: the resources it needs, its native builder (`advtrain.attacks.recipes`), its
TextAttack builder (`advtrain.attacks.textattack_adapter`) and what it substitutes offline for what the published
recipe downloads. Every caller (`build_attack`, `textattack_recipe`, `build_evaluation_attack`, the demo) reads this
table and normalises names with `normalize_name`; the messages for a missing resource are the ones below.

The builders are named, not imported, so that this module sits below both builder modules (each looks its own
builders up by these names) and importing it costs nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ..resources import MissingResourceError
from ..validation import normalize_name
from .candidates import HOW_TO_PROVIDE_MLM
from .constraints import HOW_TO_PROVIDE_ENCODER
from .vectors import HOW_TO_PROVIDE_VECTORS

__all__ = [
    "HOW_TO_PROVIDE_ENCODER",
    "HOW_TO_PROVIDE_MLM",
    "HOW_TO_PROVIDE_VECTORS",
    "RECIPES",
    "RESOURCES",
    "Recipe",
    "missing_masked_lm",
    "missing_sentence_encoder",
    "missing_word_vectors",
    "normalize_name",
    "recipe",
]

# Every resource keyword a recipe builder may take.
RESOURCES = ("word_vectors", "sentence_encoder", "masked_lm", "mlm_tokenizer", "pos_tagger", "stopwords", "wordnet",
             "sememes")

_USE = "the Universal Sentence Encoder"
_SBERT = "SBERT stsb-distilbert-base"
_PARAGRAMCF = "the counter-fitted paragramcf vectors"
_BERT_MLM = "bert-base-uncased"
_NLTK_TAGGER = "nltk's perceptron tagger"


@dataclass(frozen=True)
class Recipe:
    """One attack recipe.

    Args:
        name (`str`): the normalised name (``"a2t"``, ``"bert-attack"``, ...).
        needs (`tuple[str, ...]`): the resources it cannot run without (a missing one raises `MissingResourceError`).
        optional (`tuple[str, ...]`): the resources it takes besides (a missing one drops a constraint or falls back
            to nltk's data under ``NLTK_DATA``).
        substitutes (`Mapping[str, str]`): resource → what the published recipe downloads in its place (for the notes).
        native (`str`, *optional*): the name of its builder in `advtrain.attacks.recipes` (`None`: none).
        textattack (`str`, *optional*): the name of its components builder in `advtrain.attacks.textattack_adapter`
            (`None`: none, or one of its own such as PSO's `textattack_pso`).
    """

    name: str
    needs: tuple[str, ...]
    optional: tuple[str, ...] = ()
    substitutes: Mapping[str, str] = field(default_factory=dict)
    native: str | None = None
    textattack: str | None = None

    @property
    def resources(self) -> tuple[str, ...]:
        """Every resource keyword its builders take."""
        return self.needs + self.optional


# In the order of `advtrain.evaluation.EVALUATION_ATTACKS`.
RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        Recipe("textfooler", ("word_vectors", "sentence_encoder"), ("pos_tagger", "stopwords", "wordnet"),
               {"word_vectors": _PARAGRAMCF, "sentence_encoder": _USE, "pos_tagger": _NLTK_TAGGER,
                "stopwords": "TextFooler's own 240 words"}, native="textfooler", textattack="textfooler"),
        Recipe("a2t", ("word_vectors", "sentence_encoder"), ("pos_tagger", "stopwords", "wordnet"),
               {"word_vectors": _PARAGRAMCF, "sentence_encoder": _SBERT, "pos_tagger": _NLTK_TAGGER},
               native="a2t", textattack="a2t"),
        Recipe("a2t-mlm", ("masked_lm", "sentence_encoder"), ("mlm_tokenizer", "pos_tagger", "stopwords"),
               {"masked_lm": _BERT_MLM, "sentence_encoder": _SBERT, "pos_tagger": _NLTK_TAGGER},
               native="a2t_mlm", textattack="a2t_mlm"),
        Recipe("bae", ("masked_lm", "sentence_encoder"), ("mlm_tokenizer", "pos_tagger", "stopwords"),
               {"masked_lm": _BERT_MLM, "sentence_encoder": _USE, "pos_tagger": _NLTK_TAGGER},
               native="bae", textattack="bae"),
        Recipe("bert-attack", ("masked_lm",), ("mlm_tokenizer", "sentence_encoder", "stopwords"),
               {"masked_lm": _BERT_MLM, "sentence_encoder": _USE}, native="bert_attack", textattack="bert_attack"),
        Recipe("pwws", ("wordnet",), ("stopwords",), native="pwws", textattack="pwws"),
        # PSO runs on TextAttack's particle-swarm search only (`textattack_pso`), with a local HowNet bank.
        Recipe("pso", ("sememes", "pos_tagger"), ("stopwords",),
               {"sememes": "TextAttack's downloaded HowNet bank", "pos_tagger": "flair's upos-english-fast"}),
    )
}


def recipe(name: str, *, backend: str | None = None, what: str = "attack recipe") -> Recipe:
    """The `Recipe` called `name` (any case, ``_`` or ``-``); with `backend` (``"native"`` or ``"textattack"``) only
    one that has a builder there. Raises `ValueError` naming the known ones otherwise."""
    known = [r for r in RECIPES.values() if backend is None or getattr(r, backend) is not None]
    found = RECIPES.get(normalize_name(name))
    if found is None or found not in known:
        raise ValueError(f"unknown {what} {name!r}; known: {', '.join(sorted(r.name for r in known))}")
    return found


# ------------------------------------------------------------------------------------------- resource messages
def missing_sentence_encoder(what: str = "sentence encoder") -> MissingResourceError:
    """The error for a recipe whose sentence-encoder constraint has no encoder."""
    return MissingResourceError(
        what, HOW_TO_PROVIDE_ENCODER + ", or set min_sentence_similarity=None to drop the constraint"
    )


def missing_word_vectors(what: str = "word vectors") -> MissingResourceError:
    """The error for a recipe without its word vectors."""
    return MissingResourceError(what, HOW_TO_PROVIDE_VECTORS)


def missing_masked_lm(what: str = "masked language model") -> MissingResourceError:
    """The error for a recipe without its masked LM."""
    return MissingResourceError(what, HOW_TO_PROVIDE_MLM)
