"""The adversarial examples of an evaluation: the word substitutions each attack made, saved as JSON Lines, shown in
Markdown with the changed words marked, and judged against WordNet (the share of substitutions that are synonyms)."""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from ..attacks.results import AttackResult
from ..attacks.words import Words

SynonymCheck = Callable[[str, str], bool]


def _fields(text: Any) -> tuple[str, ...]:
    if text is None:
        return ()
    return (text,) if isinstance(text, str) else tuple(text)


def word_substitutions(original: Any, perturbed: Any) -> list[tuple[int, int, str, str]]:
    """The words `perturbed` changed in `original`: ``(field, position, old word, new word)`` for each, with `position`
    the word's index in its field (`advtrain.attacks.Words` split). Texts are strings or pairs of strings. A field whose
    word count changed (e.g. a TextAttack transformation that inserts words) is aligned with `difflib`, and only its
    one-for-one replacements are listed."""
    out = []
    for f, (a, b) in enumerate(zip(_fields(original), _fields(perturbed))):
        old, new = Words.split(a).words, Words.split(b).words
        if len(old) == len(new):
            out += [(f, p, x, y) for p, (x, y) in enumerate(zip(old, new)) if x != y]
            continue
        for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=old, b=new, autojunk=False).get_opcodes():
            if tag == "replace" and i2 - i1 == j2 - j1:
                out += [(f, i1 + k, old[i1 + k], new[j1 + k]) for k in range(i2 - i1)]
    return out


def mark_changes(original: Any, perturbed: Any) -> str:
    """`perturbed` with each substituted word written ``**~~old~~ → new**`` (Markdown: the old word struck out, both in
    bold), the rest verbatim; sentence pairs are joined with ``" ‖ "``."""
    changes = {(f, p): (x, y) for f, p, x, y in word_substitutions(original, perturbed)}
    parts = []
    for f, (a, b) in enumerate(zip(_fields(original), _fields(perturbed))):
        words = Words.split(b)
        if len(words) != len(Words.split(a)):
            parts.append(b)  # not a one-for-one substitution: shown as it is
            continue
        shown = [f"**~~{changes[(f, p)][0]}~~ → {w}**" if (f, p) in changes else w for p, w in enumerate(words.words)]
        parts.append(Words(tuple(shown), words.seps).text)
    return " ‖ ".join(parts)


@dataclass
class AdversarialExample:
    """One attacked example as saved in the report's JSON Lines file.

    Args:
        attack (`str`): the attack's name.
        index (`int`): the example's row in the evaluated dataset.
        original (`str | list[str]`): the input (a pair for sentence-pair tasks).
        perturbed (`str | list[str] | None`): the adversarial input (`None` if the search changed nothing).
        gold (`int`): the gold label.
        original_prediction (`int`): the model's prediction on `original`.
        perturbed_prediction (`int | None`): its prediction on `perturbed`.
        status (`str`): the attack's outcome (`advtrain.attacks.STATUSES`).
        queries (`int`): model queries spent.
        words_changed (`int`): words of `perturbed` that differ from `original`.
        substitutions (`list[list]`): ``[field, position, old, new]`` per changed word (`word_substitutions`).
        synonyms (`list[bool] | None`): per substitution, whether WordNet lists old and new as synonyms (`None`: not
            judged).
    """

    attack: str
    index: int
    original: Any
    perturbed: Any
    gold: int
    original_prediction: int
    perturbed_prediction: int | None
    status: str
    queries: int = 0
    words_changed: int = 0
    substitutions: list[list[Any]] = field(default_factory=list)
    synonyms: list[bool] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AdversarialExample:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown AdversarialExample fields {sorted(unknown)}; expected {sorted(known)}")
        return cls(**data)

    def marked(self) -> str:
        """The perturbed text with the changed words marked (`mark_changes`)."""
        return mark_changes(self.original, self.perturbed) if self.perturbed is not None else _join(self.original)


def _join(text: Any) -> str:
    return " ‖ ".join(_fields(text))


def _plain(text: Any) -> Any:
    return list(text) if isinstance(text, tuple) else text


def adversarial_examples(
    results: Sequence[AttackResult], attack: str, is_synonym: SynonymCheck | None = None
) -> list[AdversarialExample]:
    """One `AdversarialExample` per result that changed the text (successful or not), in order; with `is_synonym`
    (e.g. `advtrain.lexicon.WordNetSynonymy`) each substitution is judged."""
    out = []
    for r in results:
        if r.perturbed_text is None:
            continue
        subs = word_substitutions(r.original_text, r.perturbed_text)
        out.append(
            AdversarialExample(
                attack=attack,
                index=r.index,
                original=_plain(r.original_text),
                perturbed=_plain(r.perturbed_text),
                gold=r.label,
                original_prediction=r.original_prediction,
                perturbed_prediction=r.perturbed_prediction,
                status=r.status,
                queries=r.num_queries,
                words_changed=r.words_changed,
                substitutions=[list(s) for s in subs],
                synonyms=None if is_synonym is None else [bool(is_synonym(old, new)) for _, _, old, new in subs],
            )
        )
    return out


def synonym_counts(results: Sequence[AttackResult], is_synonym: SynonymCheck) -> tuple[int, int]:
    """``(synonyms, substitutions)`` over the word substitutions of the *successful* results: how many of the words an
    attack swapped to flip the model WordNet (or `is_synonym`) lists as synonyms of the word they replaced."""
    synonyms = total = 0
    for r in results:
        if r.status != "successful" or r.perturbed_text is None:
            continue
        for _, _, old, new in word_substitutions(r.original_text, r.perturbed_text):
            total += 1
            synonyms += bool(is_synonym(old, new))
    return synonyms, total


def save_examples(examples: Sequence[AdversarialExample], path: str | os.PathLike) -> None:
    """Writes `examples` as JSON Lines, one object per line (the fields of `AdversarialExample`)."""
    with open(path, "w", encoding="utf-8") as f:
        for e in examples:
            f.write(json.dumps(e.to_dict(), ensure_ascii=False) + "\n")


def load_examples(path: str | os.PathLike) -> list[AdversarialExample]:
    """Reads a file written by `save_examples`."""
    with open(path, encoding="utf-8") as f:
        return [AdversarialExample.from_dict(json.loads(line)) for line in f if line.strip()]
