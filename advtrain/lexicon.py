"""Stop words and WordNet, read from local nltk data (``NLTK_DATA``) or a given path; never downloaded. Shared by
EDA and the attacks."""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .resources import MissingResourceError

HOW_TO_PROVIDE_NLTK = (
    "set NLTK_DATA=/path/to/nltk_data or pass the folder explicitly (an nltk_data folder holding corpora/{corpus}, "
    "e.g. the offline copy ../shared/nltk_data); on a machine with network, run "
    '`import nltk; nltk.download("{corpus}")` and copy the nltk_data folder'
)
RESOURCES = {"wordnet": "WordNet (nltk corpus 'wordnet')", "stopwords": "nltk stop-word list (corpus 'stopwords')"}


def _find_nltk(resource: str, corpus: str, path: str | os.PathLike | None) -> Path:
    """The local file or folder of an nltk `resource` (e.g. ``corpora/wordnet``): `path` itself, or `path/resource`
    when `path` is an nltk_data root, or nltk's own search (``NLTK_DATA`` and the usual folders) without a `path`."""
    how = HOW_TO_PROVIDE_NLTK.format(corpus=corpus)
    if path is not None:
        path = Path(path)
        if (path / resource).exists():
            return path / resource
        if not path.exists() or path.is_dir() and not path.match(f"*/{Path(resource).name}"):
            raise MissingResourceError(RESOURCES[corpus], how, os.fspath(path))
        return path
    import nltk

    try:
        return Path(str(nltk.data.find(resource)))
    except LookupError:  # `from None`: its banner of search paths is what the message says more briefly
        raise MissingResourceError(RESOURCES[corpus], how, os.pathsep.join(map(str, nltk.data.path))) from None


def load_stopwords(stopwords: Iterable[str] | str | os.PathLike | None = None) -> frozenset[str]:
    """The English stop words (lower-cased) that EDA never replaces and the attacks never modify.

    Args:
        stopwords (`Iterable[str]`, `str` or `os.PathLike`, *optional*): a set of words; a file with one word a line;
            an nltk_data folder (its ``corpora/stopwords/english`` is read); by default nltk's English list found
            under ``NLTK_DATA``.
    """
    if stopwords is not None and not isinstance(stopwords, (str, os.PathLike)):
        return frozenset(w.lower() for w in stopwords)
    path = _find_nltk("corpora/stopwords/english", "stopwords", stopwords)
    return frozenset(line.strip().lower() for line in path.read_text(encoding="utf-8").splitlines() if line.strip())


@functools.lru_cache(maxsize=4)
def load_wordnet(path: str | None = None):
    """nltk's WordNet reader over local files: `path` is a ``corpora/wordnet`` folder or an nltk_data folder holding
    one; by default WordNet is found under ``NLTK_DATA``. Raises `MissingResourceError` when it is not there."""
    import nltk
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    folder = _find_nltk("corpora/wordnet", "wordnet", path)
    root = str(folder.parent.parent)
    if path is not None and root not in nltk.data.path:
        # nltk >= 3.9 refuses corpus readers outside nltk.data.path: register the given folder's nltk_data root.
        nltk.data.path.append(root)
    with warnings.catch_warnings():  # nltk warns that the multilingual wordnet (omw) is absent; it is not needed
        warnings.filterwarnings("ignore", message="The multilingual functions")
        return WordNetCorpusReader(str(folder), None)


class WordNetFilter:
    """Keeps embedding neighbours that WordNet does not contradict (plain GloVe places antonyms close together).

    Args:
        mode (`str`): ``"antonyms"`` drops candidates that are WordNet antonyms of the word; ``"synonyms"`` keeps only
            candidates sharing a synset with the word (much stricter; words unknown to WordNet keep no candidate).
        wordnet (`str` or WordNet reader, *optional*): the ``<nltk_data>/corpora/wordnet`` folder or an nltk
            ``WordNetCorpusReader`` (anything with ``lemmas(word)``); by default found under ``NLTK_DATA``.
    """

    def __init__(self, mode: str = "antonyms", wordnet: Any = None):
        if mode not in ("antonyms", "synonyms"):
            raise ValueError(f"wordnet filter mode must be 'antonyms' or 'synonyms', got {mode!r}")
        self.mode = mode
        self.wordnet = (
            wordnet if hasattr(wordnet, "lemmas") else load_wordnet(None if wordnet is None else os.fspath(wordnet))
        )
        self._cache: dict[str, tuple[set[str], set[str]]] = {}

    def _relations(self, word: str) -> tuple[set[str], set[str]]:
        if word not in self._cache:
            synonyms, antonyms = set(), set()
            for lemma in self.wordnet.lemmas(word):
                synonyms.update(name.lower().replace("_", " ") for name in lemma.synset().lemma_names())
                antonyms.update(a.name().lower().replace("_", " ") for a in lemma.antonyms())
            self._cache[word] = (synonyms, antonyms)
        return self._cache[word]

    def __call__(self, word: str, candidates: list[str]) -> list[str]:
        synonyms, antonyms = self._relations(word.lower())
        if self.mode == "synonyms":
            return [c for c in candidates if c.lower() in synonyms]
        return [c for c in candidates if c.lower() not in antonyms]


class WordNetSynonymy:
    """Whether WordNet lists two words as synonyms: they share a synset, after WordNet's own morphological reduction
    (``wordnet.synsets(word)``: "films" and "movies" share ``movie.n.01``). The measure of `synonym_share` in the
    attack reports.

    Args:
        wordnet (`str` or WordNet reader, *optional*): an nltk ``WordNetCorpusReader`` (anything with
            ``synsets(word)``), or the ``corpora/wordnet`` / nltk_data folder; by default found under ``NLTK_DATA``.
    """

    def __init__(self, wordnet: Any = None):
        self.wordnet = (
            wordnet if hasattr(wordnet, "synsets") else load_wordnet(None if wordnet is None else os.fspath(wordnet))
        )
        self._synsets: dict[str, frozenset] = {}

    def synsets(self, word: str) -> frozenset:
        word = word.lower()
        if word not in self._synsets:
            self._synsets[word] = frozenset(self.wordnet.synsets(word))
        return self._synsets[word]

    def __call__(self, word: str, other: str) -> bool:
        return word.lower() != other.lower() and bool(self.synsets(word) & self.synsets(other))
