"""Counter-fitting word vectors to WordNet's synonyms and antonyms (Mrkšić et al., NAACL 2016, "Counter-fitting Word
Vectors to Linguistic Constraints"), offline, from local data only.

Plain distributional vectors such as GloVe put antonyms next to each other ("good" / "bad") and rank related words
("amusingly", "remarkably") as high as synonyms, so an embedding-neighbour attack that swaps words with their nearest
neighbours changes the meaning. TextAttack's recipes therefore use counter-fitted vectors (``paragramcf``), which
cannot be downloaded here; `counter_fitted_vectors` builds the equivalent from the packaged GloVe 6B 50-d vectors and
WordNet 3.0 (both local), and caches the result. This module works on matrices and word lists;
`advtrain.attacks.vectors.counter_fitted_vectors` wraps it into a `WordVectors` table (the attacks' default).

With unit vectors and the cosine distance ``d(u, v) = 1 - u·v``, the method minimises over the new vectors ``V'``::

    C(V') = k1 · AR(V') + k2 · SA(V') + k3 · VSP(V, V')
    AR  = Σ_{(u,w) ∈ antonyms}  τ(δ - d(v'_u, v'_w))                 antonym repel, margin δ = 1.0
    SA  = Σ_{(u,w) ∈ synonyms}  τ(d(v'_u, v'_w) - γ)                 synonym attract, margin γ = 0
    VSP = Σ_i Σ_{j ∈ N(i)}      τ(d(v'_i, v'_j) - d(v_i, v_j))      vector-space preservation

with ``τ(x) = max(0, x)`` and ``N(i)`` the words within distance ``ρ = 0.2`` of word ``i`` in the original space.
Optimisation is full-batch gradient descent, vectorised: each iteration moves every word by ``k1``, ``k2`` and ``k3``
times the mean gradient of its active antonym, synonym and preservation terms respectively, then renormalises every
vector; 20 iterations with ``k1 = k2 = k3 = 0.1``, the paper's settings. (The authors' code divides a word's summed
update by its number of active terms of all three kinds together; with WordNet's large synsets a word such as "good"
has a hundred synonym terms and one antonym term, whose push then vanishes, so each kind is averaged on its own.) Pairs that are both synonyms and antonyms are dropped from the synonyms, and antonym pairs from the
preserved neighbours, as in the paper.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

# Bump when the algorithm or the constraint extraction changes: cached tables of older versions are not reused.
COUNTERFIT_VERSION = 2
CACHE_ENV = "ADVTRAIN_CACHE"


@dataclass(frozen=True)
class CounterFitConfig:
    """The counter-fitting hyper-parameters (defaults: Mrkšić et al. 2016 and their released configuration).

    Args:
        delta (`float`, *optional*, defaults to 1.0): ``δ``, the antonym repel margin: antonyms are pushed until their
            cosine distance is at least ``δ`` (orthogonal or further).
        gamma (`float`, *optional*, defaults to 0.0): ``γ``, the synonym attract margin: synonyms are pulled together
            until their distance is at most ``γ``.
        rho (`float`, *optional*, defaults to 0.2): ``ρ``, the neighbourhood radius of the vector-space preservation
            term: pairs closer than ``ρ`` in the original space are kept from drifting apart.
        k_antonym, k_synonym, k_preserve (`float`, *optional*, default to 0.1): ``k1``, ``k2``, ``k3``, the weights of
            the three terms (the step size of each term's update).
        iterations (`int`, *optional*, defaults to 20): full-batch gradient steps.
    """

    delta: float = 1.0
    gamma: float = 0.0
    rho: float = 0.2
    k_antonym: float = 0.1
    k_synonym: float = 0.1
    k_preserve: float = 0.1
    iterations: int = 20


def _pairs_array(pairs: Iterable[tuple[int, int]]) -> torch.Tensor:
    unique = sorted({(min(i, j), max(i, j)) for i, j in pairs if i != j})
    return torch.tensor(unique, dtype=torch.long).view(-1, 2)


def wordnet_constraints(
    words: Sequence[str], wordnet: Any = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Synonym and antonym pairs among `words` from WordNet, as ``[P, 2]`` index tensors (each unordered pair once).

    Two words are synonyms when a synset lists lemmas that reduce to them — a word's lemma forms are the word itself and
    WordNet's morphological base forms of it (``wordnet.morphy`` per part of speech: "films" → "film"), so inflected
    words get the synonyms of their lemma; antonyms likewise from the lemmas' antonym relations. Multi-word lemmas
    ("ice_cream") are left out. Synonym pairs that are also antonyms are dropped from the synonyms.

    Args:
        words (`Sequence[str]`): the vocabulary (lower-case).
        wordnet (`str` or WordNet reader, *optional*): an nltk ``WordNetCorpusReader`` or its folder; by default found
            under ``NLTK_DATA`` (`MissingResourceError` when absent).
    """
    from ..lexicon import load_wordnet

    if not hasattr(wordnet, "all_synsets"):
        wordnet = load_wordnet(None if wordnet is None else os.fspath(wordnet))
    by_lemma: dict[str, list[int]] = {}
    for index, word in enumerate(words):
        forms = {word}
        for pos in ("n", "v", "a", "r"):
            base = wordnet.morphy(word, pos)
            if base:
                forms.add(base)
        for form in forms:
            by_lemma.setdefault(form, []).append(index)
    synonyms, antonyms = set(), set()
    for synset in wordnet.all_synsets():
        members = sorted({i for name in synset.lemma_names() for i in by_lemma.get(name.lower(), ())})
        synonyms.update((a, b) for k, a in enumerate(members) for b in members[k + 1 :])
        for lemma in synset.lemmas():
            for antonym in lemma.antonyms():
                left, right = by_lemma.get(lemma.name().lower(), ()), by_lemma.get(antonym.name().lower(), ())
                antonyms.update((min(a, b), max(a, b)) for a in left for b in right if a != b)
    synonyms -= antonyms
    return _pairs_array(synonyms), _pairs_array(antonyms)


def neighbour_pairs(vectors: torch.Tensor, rho: float, chunk: int = 2048) -> tuple[torch.Tensor, torch.Tensor]:
    """The pairs of rows of unit `vectors` at cosine distance below `rho`, each unordered pair once (``[R, 2]``), and
    their distances (``[R]``): the neighbourhoods the vector-space preservation term keeps. One matrix product per
    `chunk` rows."""
    found, distances = [], []
    for start in range(0, len(vectors), chunk):
        sims = vectors[start : start + chunk] @ vectors.T
        rows, cols = torch.nonzero(sims > 1 - rho, as_tuple=True)
        rows = rows + start
        keep = rows < cols
        found.append(torch.stack([rows[keep], cols[keep]], 1))
        distances.append(1 - sims[rows[keep] - start, cols[keep]])
    if not found:
        return torch.empty(0, 2, dtype=torch.long), torch.empty(0)
    return torch.cat(found), torch.cat(distances)


def _term_update(vectors: torch.Tensor, pairs: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
    """For every row, the mean over the `active` pairs it belongs to of ``∂d(v_i, v_j)/∂v_i`` (zero for a row in no
    active pair). On the unit sphere ``∂d/∂v_i = (v_i·v_j) v_i - v_j``: the gradient of ``1 - v_i·v_j`` projected on
    the tangent plane at ``v_i``; a step along it moves the pair apart."""
    total = torch.zeros_like(vectors)
    count = torch.zeros(len(vectors), 1)
    pairs = pairs[active]
    for a, b in ((0, 1), (1, 0)):
        u, v = vectors[pairs[:, a]], vectors[pairs[:, b]]
        total.index_add_(0, pairs[:, a], (u * v).sum(-1, keepdim=True) * u - v)
        count.index_add_(0, pairs[:, a], torch.ones(len(pairs), 1))
    return total / count.clamp_min(1.0)


def counter_fit(
    matrix: Any,
    synonyms: torch.Tensor,
    antonyms: torch.Tensor,
    config: CounterFitConfig = CounterFitConfig(),
    neighbours: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Counter-fits the rows of `matrix` to the given synonym and antonym pairs (see the module docstring).

    Args:
        matrix (`numpy.ndarray` or `torch.Tensor`): ``[vocab, dim]`` vectors (normalised here).
        synonyms, antonyms (`torch.Tensor`): ``[P, 2]`` row-index pairs (`wordnet_constraints`).
        config (`CounterFitConfig`, *optional*): the hyper-parameters.
        neighbours (`tuple`, *optional*): `neighbour_pairs` of the normalised matrix, if already computed.

    Returns:
        `torch.Tensor`: the ``[vocab, dim]`` counter-fitted unit vectors (float32).
    """
    vectors = torch.as_tensor(np.asarray(matrix, dtype=np.float32) if not torch.is_tensor(matrix) else matrix)
    vectors = torch.nn.functional.normalize(vectors.float(), dim=1)
    vsp, original = neighbours if neighbours is not None else neighbour_pairs(vectors, config.rho)
    if len(antonyms) and len(vsp):  # antonym pairs are not preserved
        antonym_keys = set(map(tuple, antonyms.tolist()))
        keep = torch.tensor([tuple(p) not in antonym_keys for p in vsp.tolist()], dtype=torch.bool)
        vsp, original = vsp[keep], original[keep]
    def distance(pairs: torch.Tensor) -> torch.Tensor:
        return 1 - (vectors[pairs[:, 0]] * vectors[pairs[:, 1]]).sum(-1)

    for _ in range(config.iterations):
        step = torch.zeros_like(vectors)
        if len(antonyms):  # repel: along the distance's gradient, while closer than δ
            step += config.k_antonym * _term_update(vectors, antonyms, distance(antonyms) < config.delta)
        if len(synonyms):  # attract: against it, while further than γ
            step -= config.k_synonym * _term_update(vectors, synonyms, distance(synonyms) > config.gamma)
        if len(vsp) and config.k_preserve > 0:  # preserve: against it, while further apart than originally
            step -= config.k_preserve * _term_update(vectors, vsp, distance(vsp) > original)
        vectors = torch.nn.functional.normalize(vectors + step, dim=1)
    return vectors


def counter_fitting_loss(
    vectors: torch.Tensor,
    synonyms: torch.Tensor,
    antonyms: torch.Tensor,
    neighbours: tuple[torch.Tensor, torch.Tensor],
    config: CounterFitConfig = CounterFitConfig(),
) -> dict[str, float]:
    """The three terms of the objective (unweighted sums of hinges) for unit `vectors`: ``{"antonym_repel",
    "synonym_attract", "vector_space_preservation"}``."""
    def distance(pairs):
        return 1 - (vectors[pairs[:, 0]] * vectors[pairs[:, 1]]).sum(-1)

    vsp, original = neighbours
    return {
        "antonym_repel": float((config.delta - distance(antonyms)).clamp_min(0).sum()) if len(antonyms) else 0.0,
        "synonym_attract": float((distance(synonyms) - config.gamma).clamp_min(0).sum()) if len(synonyms) else 0.0,
        "vector_space_preservation": float((distance(vsp) - original).clamp_min(0).sum()) if len(vsp) else 0.0,
    }


def default_cache_dir() -> Path:
    """``$ADVTRAIN_CACHE/counterfit``, by default ``~/.cache/advtrain/counterfit`` (outside any git tree)."""
    root = os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "advtrain")
    return Path(root) / "counterfit"


def select_vocabulary(words: Sequence[str], vocab_size: int, extra_words: Iterable[str] = ()) -> list[int]:
    """Rows of the first `vocab_size` purely alphabetic `words` (GloVe files are sorted by frequency, so the most
    frequent words), plus the rows of any of `extra_words` (lower-cased) the list holds, in row order."""
    chosen: dict[int, None] = {}
    for i, word in enumerate(words):
        if len(chosen) >= vocab_size:
            break
        if word.isalpha():
            chosen[i] = None
    index = {w: i for i, w in reversed(list(enumerate(words)))}  # the first row wins on duplicates
    for word in extra_words:
        i = index.get(word.lower())
        if i is not None and words[i].isalpha():
            chosen[i] = None
    return sorted(chosen)


def _fingerprint(matrix: np.ndarray, words: Sequence[str], wordnet: Any, config: CounterFitConfig) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps({"version": COUNTERFIT_VERSION, "config": asdict(config)}, sort_keys=True).encode())
    digest.update("\n".join(words).encode())
    digest.update(np.ascontiguousarray(matrix, dtype=np.float32).tobytes())
    root = getattr(wordnet, "root", None) or getattr(wordnet, "_root", None)
    if root is not None:  # the WordNet files: their names, sizes and modification times
        folder = Path(str(getattr(root, "path", root)))
        for path in sorted(folder.glob("*")) if folder.is_dir() else []:
            stat = path.stat()
            digest.update(f"{path.name}:{stat.st_size}:{int(stat.st_mtime)}".encode())
    return digest.hexdigest()[:16]


def counter_fit_cached(
    matrix: Any,
    words: Sequence[str],
    *,
    wordnet: Any = None,
    config: CounterFitConfig = CounterFitConfig(),
    cache_dir: str | os.PathLike | None = None,
    verbose: bool = False,
) -> np.ndarray:
    """`counter_fit` of `matrix` (one row per word of `words`) to `wordnet_constraints(words)`, cached.

    The result is saved under `cache_dir` (default `default_cache_dir`) as ``counterfit-<key>.npz``, the key a hash of
    the rows, the words, the WordNet files, the hyper-parameters and the algorithm's version, and loaded from there
    when it exists; the file is written atomically (a concurrent reader never sees half of it).

    Returns:
        `numpy.ndarray`: the ``[len(words), dim]`` counter-fitted unit vectors (float32).
    """
    from ..lexicon import load_wordnet

    matrix = np.asarray(matrix.detach().cpu() if torch.is_tensor(matrix) else matrix, dtype=np.float32)
    if not hasattr(wordnet, "all_synsets"):
        wordnet = load_wordnet(None if wordnet is None else os.fspath(wordnet))
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = folder / f"counterfit-{_fingerprint(matrix, words, wordnet, config)}.npz"
    if path.exists():
        with np.load(path) as data:
            if [str(w) for w in data["words"]] == list(words):
                return data["matrix"]
    start = time.perf_counter()
    synonyms, antonyms = wordnet_constraints(words, wordnet)
    normed = torch.nn.functional.normalize(torch.from_numpy(matrix), dim=1)
    neighbours = neighbour_pairs(normed, config.rho)
    if verbose:
        print(f"[counterfit] {len(words)} words: {len(synonyms)} synonym, {len(antonyms)} antonym, "
              f"{len(neighbours[0])} neighbour pairs ({time.perf_counter() - start:.0f}s)", flush=True)
    fitted = counter_fit(normed, synonyms, antonyms, config, neighbours).numpy()
    folder.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.tmp.npz")
    np.savez(partial, matrix=fitted, words=np.asarray(list(words)))
    os.replace(partial, path)
    if verbose:
        print(f"[counterfit] done in {time.perf_counter() - start:.0f}s → {path}", flush=True)
    return fitted
