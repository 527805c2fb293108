"""The robustness evaluation (advtrain.evaluation): metrics on a hand-computed case, the report's round trip, clean
accuracy, temperature calibration, the harness's guarantees (eval mode, no gradients, error isolation, budget and time
limits) and every native attack path end to end on MR sentences with tiny resources built here (no downloads)."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification, BertModel
from transformers.modeling_outputs import SequenceClassifierOutput

from advtrain.attacks import (
    STATUSES,
    AttackResult,
    SentenceEncoder,
    SentenceEncoderSimilarity,
    Words,
    WordVectors,
)
from advtrain.attacks.constraints import AttackState, Proposal, text_window
from advtrain.evaluation import (
    EVALUATION_ATTACKS,
    AttackSummary,
    RobustnessReport,
    TemperatureScaledModel,
    build_evaluation_attack,
    clean_accuracy,
    compute_accuracy,
    evaluate_robustness,
    fit_temperature,
    summarize_attack,
)
from advtrain.evaluation.scoring import predict_logits, temperature_from_logits
from advtrain.resources import MissingResourceError
from conftest import make_model, read_jsonl
from test_attacks import QueryCounter

STOPWORDS = {"the", "a", "an", "of", "and", "is", "it", "to", "that", "this", "in", "'s", "with", "as", "for"}


# ----------------------------------------------------------------------------- metrics
def _result(index, status, label=1, words_changed=0, num_words=10, queries=0):
    original = -1 if status == "error" else (1 - label if status == "skipped" else label)
    perturbed = 1 - label if status == "successful" else None
    return AttackResult(
        index, f"text {index}", "x" if words_changed else None, label, original, perturbed, status,
        num_queries=queries, words_changed=words_changed, num_words=num_words,
    )


def test_summary_metrics_on_a_hand_computed_case():
    results = [
        _result(0, "successful", words_changed=1, num_words=10, queries=5),
        _result(1, "successful", words_changed=2, num_words=10, queries=7),
        _result(2, "successful", words_changed=3, num_words=6, queries=9),
        _result(3, "failed", queries=20),
        _result(4, "failed", queries=30),
        _result(5, "budget", queries=50),
        _result(6, "timeout", queries=11),
        _result(7, "skipped", queries=1),
        _result(8, "skipped", queries=1),
        _result(9, "error", queries=3),
    ]
    s = summarize_attack(results, "hand", seconds=2.5, notes=["n1"])
    assert (s.num_examples, s.num_successful, s.num_failed, s.num_skipped) == (10, 3, 2, 2)
    assert (s.num_budget, s.num_timeout, s.num_errors, s.num_attacked) == (1, 1, 1, 7)
    # known = 10 - 1 error = 9; attacked = 3 + 2 + 1 + 1 = 7
    assert s.clean_accuracy == pytest.approx(7 / 9)
    assert s.accuracy_under_attack == pytest.approx(4 / 9)
    assert s.attack_success_rate == pytest.approx(3 / 7)
    assert s.avg_words_perturbed == pytest.approx((0.1 + 0.2 + 0.5) / 3)
    assert s.avg_queries == pytest.approx((5 + 7 + 9 + 20 + 30 + 50 + 11) / 7)
    assert s.accuracy_under_attack == pytest.approx(s.clean_accuracy * (1 - s.attack_success_rate))
    assert (s.attack, s.seconds, s.notes) == ("hand", 2.5, ["n1"])

    empty = summarize_attack([_result(0, "error"), _result(1, "skipped")], "none")
    assert empty.clean_accuracy == 0.0 and empty.accuracy_under_attack == 0.0
    assert empty.attack_success_rate is None and empty.avg_queries is None and empty.avg_words_perturbed is None
    assert summarize_attack([_result(0, "error")], "err").clean_accuracy is None


def test_report_round_trip_and_markdown(tmp_path):
    summary = summarize_attack([_result(0, "successful", 1, 1, 4, 3), _result(1, "failed", queries=8)], "a2t", 1.0,
                               ["sentence encoder: MiniLM instead of USE"])
    report = RobustnessReport(
        model="tiny", dataset="mr", num_examples=2, clean_accuracy=0.5, attacks=[summary],
        ood_accuracy={"sst2": 0.75}, temperature=2.0, notes=["calibrated"], config={"seed": 0, "columns": ["text"]},
    )
    report.save(tmp_path / "report.json")
    loaded = RobustnessReport.load(tmp_path / "report.json")
    assert loaded == report and isinstance(loaded.attacks[0], AttackSummary)
    assert json.loads((tmp_path / "report.json").read_text())["attacks"][0]["attack_success_rate"] == 0.5
    assert AttackSummary.from_dict(summary.to_dict()) == summary
    with pytest.raises(ValueError, match="unknown AttackSummary fields"):
        AttackSummary.from_dict({**summary.to_dict(), "bogus": 1})
    markdown = report.to_markdown()
    rows = [line for line in markdown.splitlines() if line.startswith("| a2t |")]
    # ASR 1/2 with its Wilson interval, words perturbed 1/4
    assert len(rows) == 1 and "| 50.0 [9.5, 90.5] |" in rows[0] and "| 25.0 |" in rows[0]
    assert "OOD clean accuracy on sst2: 75.0%" in markdown and "MiniLM instead of USE" in markdown


# ----------------------------------------------------------------------------- clean accuracy and calibration
def test_compute_accuracy_reads_logits_and_tuples():
    logits = np.array([[0.1, 2.0], [3.0, -1.0], [0.0, 0.5], [1.0, 0.0]])  # predicted 1, 0, 1, 0
    labels = np.array([1, 1, 1, 0])
    assert compute_accuracy((logits, labels)) == {"accuracy": 0.75}
    hidden = np.zeros((4, 3))
    assert compute_accuracy(((logits, hidden), labels)) == {"accuracy": 0.75}  # a model returning more outputs


def test_clean_accuracy_single_and_pairs(tokenizer):
    model = make_model("bert")
    rows = read_jsonl("mr", "test", 24)
    texts = [r["text"] for r in rows]
    with torch.no_grad():
        expected = []
        for t, r in zip(texts, rows):
            enc = tokenizer(t, truncation=True, max_length=16, return_tensors="pt")
            expected.append(int(model(**enc).logits.argmax(-1)) == r["label"])
    model.train()
    accuracy = clean_accuracy(model, tokenizer, rows, batch_size=5, max_length=16)
    assert accuracy == pytest.approx(sum(expected) / len(expected)) and model.training
    assert all(p.grad is None for p in model.parameters())

    pairs = [{"text": t, "text_pair": t[::-1], "label": r["label"]} for t, r in zip(texts, rows)]
    enc = tokenizer(texts, [t[::-1] for t in texts], padding=True, truncation=True, max_length=48, return_tensors="pt")
    with torch.no_grad():
        pair_expected = (model.eval()(**enc).logits.argmax(-1) == torch.tensor([r["label"] for r in rows])).float()
    assert clean_accuracy(model, tokenizer, pairs, max_length=48) == pytest.approx(pair_expected.mean().item())
    with pytest.raises(ValueError, match=r"missing \['sentence'\], found \['text', 'label'\]"):
        clean_accuracy(model, tokenizer, rows, text_column="sentence")


def test_temperature_recovered_from_synthetic_logits():
    g = torch.Generator().manual_seed(0)
    base = torch.randn(20000, 3, generator=g) * 2
    labels = torch.multinomial(base.softmax(-1), 1, generator=g).squeeze(1)
    assert temperature_from_logits(5 * base, labels) == pytest.approx(5.0, rel=0.05)
    assert temperature_from_logits(base / 2, labels) == pytest.approx(0.5, rel=0.05)


class _BagOfWords(torch.nn.Module):
    """A classifier whose logits are `scale` times the mean of per-token class scores."""

    def __init__(self, vocab_size: int, scale: float):
        super().__init__()
        torch.manual_seed(0)
        self.scores = torch.nn.Embedding(vocab_size, 2)
        torch.nn.init.normal_(self.scores.weight, std=3.0)
        self.scale = scale

    def base_logits(self, input_ids, attention_mask, **_):
        mask = attention_mask.unsqueeze(-1).float()
        return (self.scores(input_ids) * mask).sum(1) / mask.sum(1)

    def forward(self, input_ids, attention_mask, **kwargs):
        return SequenceClassifierOutput(logits=self.scale * self.base_logits(input_ids, attention_mask))


def test_fit_temperature_recovers_the_scale_and_wraps_the_model(tokenizer):
    model = _BagOfWords(len(tokenizer), scale=5.0)
    rng = random.Random(0)
    words = [w for w in tokenizer.get_vocab() if w.isalpha()]
    texts = [" ".join(rng.choices(words, k=3)) for _ in range(1500)]
    with torch.no_grad():
        enc = tokenizer(texts, padding=True, return_tensors="pt")
        probs = model.base_logits(**enc).softmax(-1)
    labels = torch.multinomial(probs, 1, generator=torch.Generator().manual_seed(0)).squeeze(1).tolist()
    dev = [{"text": t, "label": y} for t, y in zip(texts, labels)]
    temperature = fit_temperature(model, tokenizer, dev, batch_size=256)
    assert temperature == pytest.approx(5.0, rel=0.15)
    assert all(p.grad is None for p in model.parameters())

    scaled = TemperatureScaledModel(make_model("bert"), 4.0)
    inner = scaled.model
    enc = tokenizer(texts[:3], padding=True, return_tensors="pt")
    out = scaled(**enc, labels=torch.tensor([0, 1, 0]))
    torch.testing.assert_close(out.logits, inner(**enc).logits / 4.0)
    torch.testing.assert_close(out.loss, torch.nn.functional.cross_entropy(out.logits, torch.tensor([0, 1, 0])))
    assert scaled.config is inner.config and scaled.get_input_embeddings() is inner.get_input_embeddings()
    scaled.train()
    assert inner.training
    with pytest.raises(ValueError, match="temperature must be positive"):
        TemperatureScaledModel(inner, 0.0)


# ----------------------------------------------------------------------------- tiny resources for the recipes
class _Synset:
    def __init__(self, names):
        self.names = names

    def lemma_names(self):
        return list(self.names)


class _Lemma:
    def __init__(self, name, synset):
        self._name, self._synset = name, synset

    def name(self):
        return self._name

    def antonyms(self):
        return []

    def synset(self):
        return self._synset


class _TinyWordNet:
    """Every word has one synset holding 4 words of the vocabulary chosen from a seed of the word itself."""

    def __init__(self, vocabulary):
        self.vocabulary = sorted(vocabulary)

    def synsets(self, word):
        rng = random.Random(word)
        return [_Synset([word, *rng.sample(self.vocabulary, 4), "two_words"])]

    def lemmas(self, word):
        synset = self.synsets(word)[0]
        return [_Lemma(word, synset)]


@pytest.fixture(scope="module")
def resources(tokenizer):
    vocabulary = [w for w in tokenizer.get_vocab() if w.isalpha()]
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    encoder = SentenceEncoder(
        BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                             intermediate_size=37)),
        tokenizer,
    )
    return {
        "word_vectors": WordVectors(rng.normal(size=(len(vocabulary), 6)), vocabulary),
        "sentence_encoder": encoder,
        "masked_lm": make_model("bert", masked_lm=True, seed=1),
        "mlm_tokenizer": tokenizer,
        "pos_tagger": lambda words: ["NOUN" if len(w) % 2 else "ADJ" for w in words],
        "wordnet": _TinyWordNet(vocabulary),
        "stopwords": STOPWORDS,
    }


RECIPE_RESOURCES = {
    "textfooler": ("word_vectors", "sentence_encoder", "pos_tagger", "wordnet", "stopwords"),
    "a2t": ("word_vectors", "sentence_encoder", "pos_tagger", "wordnet", "stopwords"),
    "bae": ("masked_lm", "mlm_tokenizer", "sentence_encoder", "pos_tagger", "stopwords"),
    "bert-attack": ("masked_lm", "mlm_tokenizer", "sentence_encoder", "stopwords"),
    "a2t-mlm": ("masked_lm", "mlm_tokenizer", "sentence_encoder", "pos_tagger", "stopwords"),
    "pwws": ("wordnet", "stopwords"),
}


def _sensitive_model():
    """A tiny random BERT initialised with a large weight scale, so that single word swaps move its predictions (the
    default scale gives a model that predicts one class whatever the words); its predictions on MR are mixed."""
    torch.manual_seed(0)
    config = BertConfig(vocab_size=400, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
                        max_position_embeddings=128, initializer_range=0.5, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0)
    return BertForSequenceClassification(config).eval()


def _mr_examples(model, tokenizer, n=6):
    """MR test sentences labelled with the model's own predictions, so that every one is attacked (none skipped)."""
    texts = [r["text"] for r in read_jsonl("mr", "test", n)]
    return texts, predict_logits(model, tokenizer, texts).argmax(-1).tolist()


@pytest.mark.parametrize("name", list(RECIPE_RESOURCES))
def test_native_recipes_run_end_to_end_on_mr(name, resources, tokenizer):
    model = _sensitive_model()
    texts, labels = _mr_examples(model, tokenizer)
    attack, notes = build_evaluation_attack(name, **{k: resources[k] for k in RECIPE_RESOURCES[name]})
    assert attack.name == name and isinstance(notes, list)
    if "sentence_encoder" in RECIPE_RESOURCES[name]:
        assert any("sentence encoder:" in note for note in notes), notes
    model.train()
    counter = QueryCounter(model)
    try:
        results = attack.attack_batch(model, tokenizer, texts, labels, list(range(10, 16)))
    finally:
        counter.handle.remove()
    assert model.training and all(p.grad is None for p in model.parameters())
    assert [r.index for r in results] == list(range(10, 16))
    assert all(r.status in ("successful", "failed") for r in results), [(r.status, r.error) for r in results]
    assert sum(r.num_queries for r in results) == counter.count
    successful = [r for r in results if r.successful]
    assert successful, "the tiny model should be flipped at least once"
    if successful:
        flipped = predict_logits(model.eval(), tokenizer, [r.perturbed_text for r in successful]).argmax(-1).tolist()
        assert flipped == [r.perturbed_prediction for r in successful]
        assert all(p != r.label for p, r in zip(flipped, successful))
    for r in results:
        original, perturbed = Words.split(r.original_text), Words.split(r.perturbed_text or r.original_text)
        changed = [i for i, (a, b) in enumerate(zip(original.words, perturbed.words)) if a != b]
        assert len(changed) == r.words_changed and changed == r.extra["modified_positions"]
        assert not {original.words[i].lower() for i in changed} & STOPWORDS
    assert sum(r.successful for r in results) + sum(r.status == "failed" for r in results) == 6
    summary = summarize_attack(results, name)
    assert summary.clean_accuracy == 1.0 and summary.num_attacked == 6


def test_pwws_importance_weights_saliency_by_the_best_swap(classifier_like, tokenizer):
    """PWWS visits first the word whose best synonym flips the model, even when deleting it matters less."""
    model, text, label = classifier_like
    words = Words.split(text)
    synonyms = {"best": ["worst"], "film": ["story"]}
    wordnet = type("WN", (), {"synsets": lambda _, w: [_Synset(synonyms.get(w, []))]})()
    attack, _ = build_evaluation_attack("pwws", wordnet=wordnet, stopwords=STOPWORDS, query_budget=None)
    result = attack.attack_batch(model, tokenizer, [text], [label], [0])[0]
    assert result.status == "successful"
    assert [words.words[p] for p in result.extra["modified_positions"]] == ["best"]


@pytest.fixture(scope="module")
def classifier_like(tokenizer):
    """A bag-of-words tiny model on "the film is the best" (class 1): replacing "film" by [UNK] lowers P(1) more than
    replacing "best" (unk saliency: film first), but "film"'s synonym "story" barely changes P(1) while "best" →
    "worst" flips the prediction (weighted saliency: best first). Every other token scores zero."""
    model = _BagOfWords(len(tokenizer), scale=1.0)
    vocab = tokenizer.get_vocab()
    with torch.no_grad():
        model.scores.weight.zero_()
        for word, scores in {"film": [0.0, 4.0], "story": [0.0, 3.5], "best": [0.0, 3.0], "worst": [6.0, 0.0],
                             "[UNK]": [0.0, -4.0]}.items():
            model.scores.weight[vocab[word]] = torch.tensor(scores)
    return model, "the film is the best", 1


# ----------------------------------------------------------------------------- the harness
class _RaisingAttack:
    """Raises for any batch holding a text with "gong" (an example the attack cannot handle)."""

    name = "raising"

    def __init__(self):
        self.calls, self.modes = 0, []

    def attack_batch(self, model, tokenizer, texts, labels, indices):
        self.calls += 1
        self.modes.append((model.training, any(p.requires_grad for p in model.parameters())))
        if any("gong" in t for t in texts):
            raise RuntimeError("cannot attack this one")
        return [AttackResult(i, t, None, y, y, None, "failed", num_queries=1) for t, y, i in zip(texts, labels, indices)]


class _LeakingAttack:
    """Tries to backpropagate into the parameters (what a careless gradient attack does)."""

    name = "leaking"

    def attack_batch(self, model, tokenizer, texts, labels, indices):
        enc = tokenizer(list(texts), padding=True, return_tensors="pt")
        model(**enc).logits.sum().backward()
        return [AttackResult(i, t, None, y, y, None, "failed") for t, y, i in zip(texts, labels, indices)]


def test_evaluate_robustness_end_to_end(resources, tokenizer):
    model = make_model("bert", seed=3)
    rows = read_jsonl("mr", "test", 12)
    ood = read_jsonl("sst2", "dev", 8)
    raising = _RaisingAttack()
    attacks = {
        "pwws": build_evaluation_attack("pwws", wordnet=resources["wordnet"], stopwords=STOPWORDS),
        "a2t": build_evaluation_attack("a2t", **{k: resources[k] for k in RECIPE_RESOURCES["a2t"]}),
        "raising": raising,
    }
    model.train()
    requires_grad = [p.requires_grad for p in model.parameters()]
    report = evaluate_robustness(
        model, tokenizer, rows, attacks, num_examples=8, seed=1, ood_datasets={"ood": ood}, calibration_dataset=rows,
        batch_size=4, max_length=32, progress=False, dataset_name="mr",
    )
    assert model.training and [p.requires_grad for p in model.parameters()] == requires_grad
    assert all(p.grad is None for p in model.parameters())
    assert report.clean_accuracy == pytest.approx(clean_accuracy(model, tokenizer, rows, max_length=32))
    assert report.ood_accuracy == {"ood": pytest.approx(clean_accuracy(model, tokenizer, ood, max_length=32))}
    assert report.temperature is not None and report.temperature > 0 and "T =" in report.notes[0]
    assert report.num_examples == 12 and report.dataset == "mr" and report.config["num_attacked_examples"] == 8
    pwws, a2t, raised = report.attacks
    assert a2t.num_errors == 0 and a2t.num_attacked + a2t.num_skipped == 8  # gradient importance through T-scaling
    assert pwws.attack == "pwws" and pwws.num_examples == 8 and "pwws" in report.to_markdown()
    # "worthy of the gong ." is row 0; whether it is in the seeded sample decides the error count.
    sample = sorted(random.Random(1).sample(range(12), 8))
    assert raised.num_errors == (0 in sample) and raised.num_failed == 8 - raised.num_errors
    assert raising.modes and all(mode == (False, False) for mode in raising.modes), raising.modes
    # The calibrated model leaves predictions, hence the sample's clean accuracy, unchanged.
    sample_accuracy = np.mean([clean_accuracy(model, tokenizer, [rows[i]], max_length=32) for i in sample])
    assert pwws.clean_accuracy == pytest.approx(sample_accuracy)

    report = evaluate_robustness(model, tokenizer, rows, [_LeakingAttack()], progress=False)
    assert report.attacks[0].num_errors == 12  # backward through frozen parameters fails, example by example
    assert all(p.grad is None for p in model.parameters())


def test_query_budget_and_time_limit_statuses(resources, tokenizer):
    model = _sensitive_model()
    texts, labels = _mr_examples(model, tokenizer, 4)
    rows = [{"text": t, "label": y} for t, y in zip(texts, labels)]
    for name in ("textfooler", "pwws", "bae"):
        kwargs = {k: resources[k] for k in RECIPE_RESOURCES[name]}
        budget, _ = build_evaluation_attack(name, query_budget=2, **kwargs)
        timeout, _ = build_evaluation_attack(name, time_limit_s=0.0, **kwargs)
        report = evaluate_robustness(model, tokenizer, rows, {"budget": budget, "timeout": timeout}, progress=False)
        by_name = {a.attack: a for a in report.attacks}
        assert by_name["budget"].num_budget == 4 and by_name["budget"].avg_queries <= 2, name
        assert by_name["timeout"].num_timeout == 4, name


def test_saved_model_folder(tmp_path, tokenizer):
    model = make_model("bert", seed=3)
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    rows = read_jsonl("mr", "test", 6)
    report = evaluate_robustness(str(tmp_path / "model"), dataset=rows, attacks={}, progress=False)
    assert report.model == str(tmp_path / "model")
    assert report.clean_accuracy == pytest.approx(clean_accuracy(model, tokenizer, rows))
    with pytest.raises(MissingResourceError, match="saved model folder.*save_pretrained"):
        evaluate_robustness(str(tmp_path / "missing"), dataset=rows, attacks={})


# ----------------------------------------------------------------------------- resources and constraints
def test_missing_resources_name_themselves(tmp_path, resources, monkeypatch):
    from test_attacks import _no_packaged_glove

    _no_packaged_glove(monkeypatch)  # else the default counter-fits the packaged GloVe
    with pytest.raises(MissingResourceError, match="word vectors"):
        build_evaluation_attack("textfooler", stopwords=STOPWORDS)
    with pytest.raises(MissingResourceError, match="sentence encoder"):
        build_evaluation_attack("textfooler", word_vectors=resources["word_vectors"], wordnet=resources["wordnet"],
                                stopwords=STOPWORDS)
    with pytest.raises(MissingResourceError, match="masked language model"):
        build_evaluation_attack("bae", sentence_encoder=resources["sentence_encoder"], stopwords=STOPWORDS)
    with pytest.raises(MissingResourceError, match="WordNet"):
        build_evaluation_attack("pwws", wordnet=str(tmp_path / "no-wordnet"), stopwords=STOPWORDS)
    with pytest.raises(MissingResourceError, match=r"HowNet sememe data \(OpenHowNet\).*word_candidates_sense.pkl"):
        build_evaluation_attack("pso")
    bank = tmp_path / "word_candidates_sense.pkl"
    bank.write_bytes(b"")
    try:
        import textattack  # noqa: F401
    except ImportError:
        with pytest.raises(MissingResourceError, match="TextAttack"):
            build_evaluation_attack("pso", sememes=str(bank))
    with pytest.raises(ValueError, match="no native implementation"):
        build_evaluation_attack("pso", sememes=str(bank), backend="native")
    with pytest.raises(ValueError, match="unknown evaluation attack 'deepwordbug'"):
        build_evaluation_attack("deepwordbug")
    assert set(EVALUATION_ATTACKS) == {"textfooler", "a2t", "a2t-mlm", "bae", "bert-attack", "pwws", "pso"}
    _, notes = build_evaluation_attack("bert-attack", masked_lm=resources["masked_lm"],
                                       mlm_tokenizer=resources["mlm_tokenizer"], stopwords=STOPWORDS)
    assert "sentence-encoder constraint dropped (no sentence_encoder given)" in notes
    _, notes = build_evaluation_attack("textfooler", word_vectors=resources["word_vectors"], wordnet=resources["wordnet"],
                                       min_sentence_similarity=None)
    assert "part-of-speech constraint dropped (no pos_tagger given)" in notes
    assert any("TextFooler's own 240 words" in n for n in notes)


def test_text_window_matches_textattack():
    words = Words.split(" ".join(f"w{i}" for i in range(20)))
    assert text_window(words, 0, 15) == " ".join(f"w{i}" for i in range(15))
    assert text_window(words, 19, 15) == " ".join(f"w{i}" for i in range(5, 20))
    assert text_window(words, 10, 15) == " ".join(f"w{i}" for i in range(3, 18))
    assert text_window(words, 5, 4) == "w3 w4 w5 w6"  # an even window reaches further left (TextAttack's ceil/floor)
    assert text_window(Words.split("a b"), 1, 15) == "a b"
    assert text_window(words, 10, None) == words.text


def test_windowed_angular_encoder_constraint(resources):
    encoder = resources["sentence_encoder"]
    long_text = Words.split(" ".join(["good film"] * 10))
    short = Words.split("good film")
    state = AttackState(long_text, long_text.replace(0, "bad"))
    proposal = Proposal(state, 19, ["story", "film"])
    cos = encoder.encode([text_window(proposal.perturbed("story"), 19, 15)]) @ encoder.encode(
        [text_window(long_text.replace(0, "bad"), 19, 15)]
    ).T
    angular = 1 - torch.acos(cos.clamp(-1, 1)).item() / np.pi
    against_current = SentenceEncoderSimilarity(encoder, angular - 1e-4, "angular", 15, compare_against_original=False)
    assert against_current.filter([proposal]) == [[True, True]]
    assert SentenceEncoderSimilarity(encoder, angular + 1e-4, "angular", 15, False).filter([proposal]) == [[False, True]]
    # Texts shorter than the window always pass.
    short_proposal = Proposal(AttackState(short, short), 0, ["bad"])
    assert SentenceEncoderSimilarity(encoder, 1.5, "cosine", 15).filter([short_proposal]) == [[True]]
    assert SentenceEncoderSimilarity(encoder, 1.5, "cosine", None).filter([short_proposal]) == [[False]]
    assert STATUSES  # the statuses the harness reports are the attacks' own
