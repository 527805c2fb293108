"""EDA, "Easy Data Augmentation" (Wei & Zou 2019, https://arxiv.org/abs/1901.11196): synonym replacement (SR),
random insertion (RI), random swap (RS) and random deletion (RD), each augmented copy made by one operation.

The four operations are written here rather than chained from nlpaug: nlpaug's ``SynonymAug(aug_src="wordnet")``
always calls ``nltk.pos_tag``, whose pretrained tagger cannot be had offline, and its ``RandomWordAug`` draws from
the process-global ``random``/``numpy.random`` state (reproducible only by reseeding globals, which other code
shares) — see docs/augment.md.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from ..lexicon import load_stopwords, load_wordnet
from ..validation import is_number
from .base import Augmenter

OPERATIONS = ("sr", "ri", "rs", "rd")

def load_wordnet_and_stopwords(nltk_data: str | os.PathLike | None = None):
    """Returns nltk's WordNet reader and the English stop-word set, read from local files only (`advtrain.lexicon`).

    Args:
        nltk_data (`str` or `os.PathLike`, *optional*):
            A folder in nltk's layout (``corpora/wordnet``, ``corpora/stopwords``). Without it nltk's own search path
            is used (``NLTK_DATA`` and the usual folders).

    Raises:
        `MissingResourceError`: the folder does not exist, or WordNet or the stop-word list is not found.
    """
    path = None if nltk_data is None else os.fspath(nltk_data)
    return load_wordnet(path), load_stopwords(path)


class EDA(Augmenter):
    r"""
    EDA (Wei & Zou 2019): each augmented copy applies one of synonym replacement, random insertion, random swap or
    random deletion to the whitespace-separated words of the text. With ``l`` words, SR/RI/RS change
    ``max(1, ⌊α·l⌋)`` words; RD deletes each word with probability ``p``. The operation of each copy cycles through
    a shuffled order of the enabled operations, so ``n = 4`` gives one copy per operation (as the paper's
    ``n_aug/4`` per technique). Words are not lower-cased and punctuation is kept (unlike the paper's code).

    Parameters of the operations:
        alpha_sr (`float`, defaults to `0.1`):
            Fraction of words replaced by a WordNet synonym (``α_sr``); stop words are never replaced. ``0`` disables SR.
        alpha_ri (`float`, defaults to `0.1`):
            Fraction of insertions of a synonym of a random non-stop word at a random position (``α_ri``).
        alpha_rs (`float`, defaults to `0.1`):
            Fraction of swaps of two random words (``α_rs``).
        p_rd (`float`, defaults to `0.1`):
            Probability of deleting each word (``p_rd``); one word is always left.
        nltk_data (`str` or `os.PathLike`, *optional*):
            Folder holding nltk's ``corpora/wordnet`` and ``corpora/stopwords``; else ``NLTK_DATA`` / nltk's path.
        stop_words (`Sequence[str]`, *optional*):
            Words never replaced or used for insertion; defaults to nltk's English list.

    The shared parameters (``text_column``, ``num_augmentations``, ``keep_original``, ``seed``...) are those of
    [`Augmenter`].

    Example:

    ```python
    >>> from advtrain.augment import EDA
    >>> eda = EDA(num_augmentations=4, nltk_data="/path/to/nltk_data", seed=0)
    >>> augmented = eda(train_dataset)  # columns of train_dataset + "source_index"
    >>> eda.last_report.to_dict()
    ```
    """

    def __init__(
        self,
        *,
        alpha_sr: float = 0.1,
        alpha_ri: float = 0.1,
        alpha_rs: float = 0.1,
        p_rd: float = 0.1,
        nltk_data: str | os.PathLike | None = None,
        stop_words: Sequence[str] | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.alpha_sr, self.alpha_ri, self.alpha_rs, self.p_rd = alpha_sr, alpha_ri, alpha_rs, p_rd
        for name in ("alpha_sr", "alpha_ri", "alpha_rs", "p_rd"):
            value = getattr(self, name)
            self._check(is_number(value) and 0 <= value <= 1, name, "a number in [0, 1] (0 disables the operation)")
        rates = dict(sr=alpha_sr, ri=alpha_ri, rs=alpha_rs, rd=p_rd)
        self.operations = tuple(op for op in OPERATIONS if rates[op] > 0)
        if not self.operations:
            raise ValueError("At least one of `alpha_sr`, `alpha_ri`, `alpha_rs`, `p_rd` must be > 0.")
        self.nltk_data = nltk_data
        self.wordnet = None
        self.stop_words = frozenset(stop_words) if stop_words is not None else None
        if "sr" in self.operations or "ri" in self.operations or self.stop_words is None:
            self.wordnet, default_stop_words = load_wordnet_and_stopwords(nltk_data)
            if self.stop_words is None:
                self.stop_words = default_stop_words
        self._synonym_cache: dict[str, tuple[str, ...]] = {}

    def synonyms(self, word: str) -> tuple[str, ...]:
        """WordNet synonyms of `word` (lemmas of all its synsets, ``_`` → space), without `word`; cached."""
        cached = self._synonym_cache.get(word)
        if cached is None:
            lower = word.lower()
            found: dict[str, None] = {}  # ordered set: the order must not depend on hashing for reproducibility
            for synset in self.wordnet.synsets(lower):
                for lemma in synset.lemma_names():
                    candidate = lemma.replace("_", " ").replace("-", " ")
                    if candidate.lower() != lower and all(ch.isalpha() or ch == " " for ch in candidate):
                        found[candidate] = None
            cached = self._synonym_cache[word] = tuple(found)
        return cached

    def _candidates(self, words: list[str]) -> list[int]:
        return [k for k, w in enumerate(words) if w.lower() not in self.stop_words and w.isalpha()]

    def synonym_replacement(self, words: list[str], n: int, rng: np.random.Generator) -> list[str]:
        new = list(words)
        order = self._candidates(words)
        rng.shuffle(order)
        replaced, done = 0, set()
        for k in order:
            word = words[k]
            if word in done:
                continue
            options = self.synonyms(word)
            if options:
                synonym = options[rng.integers(len(options))]
                # As in the paper's code: every occurrence of the chosen word gets the same synonym.
                new = [synonym if w == word else w for w in new]
                done.add(word)
                replaced += 1
            if replaced >= n:
                break
        return " ".join(new).split(" ")

    def random_insertion(self, words: list[str], n: int, rng: np.random.Generator) -> list[str]:
        new = list(words)
        candidates = self._candidates(words)
        for _ in range(n):
            # Up to 10 draws for a word that has a synonym (the paper's code does the same).
            for _attempt in range(10 if candidates else 0):
                options = self.synonyms(words[candidates[rng.integers(len(candidates))]])
                if options:
                    new.insert(int(rng.integers(len(new) + 1)), options[rng.integers(len(options))])
                    break
        return " ".join(new).split(" ")

    @staticmethod
    def random_swap(words: list[str], n: int, rng: np.random.Generator) -> list[str]:
        new = list(words)
        if len(new) < 2:
            return new
        size = len(new)
        for _ in range(n):
            # Two distinct positions; `rng.choice(size, 2, replace=False)` permutes the whole range and costs 20x more.
            a, b = rng.integers(size, size=2)
            if a == b:
                b = (a + 1 + rng.integers(size - 1)) % size
            new[a], new[b] = new[b], new[a]
        return new

    @staticmethod
    def random_deletion(words: list[str], p: float, rng: np.random.Generator) -> list[str]:
        if len(words) <= 1:
            return list(words)
        keep = rng.random(len(words)) >= p
        if not keep.any():
            return [words[int(rng.integers(len(words)))]]
        return [w for w, k in zip(words, keep) if k]

    def augment_texts(self, texts: list[str], rng: np.random.Generator) -> list[list[str]]:
        n_aug = self.num_augmentations
        out = []
        bar = self.progress(len(texts), "EDA")
        for text in texts:
            words = text.split()
            num_words = len(words)
            order = list(self.operations)
            rng.shuffle(order)
            copies = []
            for j in range(n_aug):
                op = order[j % len(order)]
                if not words:
                    new = []
                elif op == "sr":
                    new = self.synonym_replacement(words, max(1, int(self.alpha_sr * num_words)), rng)
                elif op == "ri":
                    new = self.random_insertion(words, max(1, int(self.alpha_ri * num_words)), rng)
                elif op == "rs":
                    new = self.random_swap(words, max(1, int(self.alpha_rs * num_words)), rng)
                else:
                    new = self.random_deletion(words, self.p_rd, rng)
                # An unchanged word list gives back the source string exactly, so that it is counted as unchanged.
                copies.append(text if new == words else " ".join(new))
            out.append(copies)
            bar.update(1)
        bar.close()
        return out
