"""Intervals, paired tests, saved adversarial examples, the synonym share and the embedding-space curve of the
robustness reports, checked against hand-computed values."""

from __future__ import annotations

import json
import math

import pytest
import torch

import advtrain.evaluation.embedding as embedding_module
from advtrain.attacks import AttackResult
from advtrain.evaluation import (
    AdversarialExample,
    RobustnessReport,
    compare_attacks,
    comparison_markdown,
    comparison_rows,
    embedding_robustness_curve,
    evaluate_robustness,
    load_examples,
    mark_changes,
    mcnemar_exact_p,
    paired_bootstrap_interval,
    paired_comparison,
    summarize_attack,
    wilson_interval,
    word_substitutions,
)
from advtrain.evaluation.scoring import predict_logits
from advtrain.lexicon import WordNetSynonymy
from conftest import make_model, read_jsonl


# ----------------------------------------------------------------------------- intervals and tests
def test_wilson_interval_hand_computed():
    # 7/10: centre (0.7 + 1.96²/20) / (1 + 1.96²/10), half-width 1.96 / (1 + 1.96²/10) · sqrt(0.021 + 1.96²/400)
    z = 1.959963984540054
    centre = (0.7 + z * z / 20) / (1 + z * z / 10)
    half = z / (1 + z * z / 10) * math.sqrt(0.7 * 0.3 / 10 + z * z / 400)
    assert wilson_interval(7, 10) == pytest.approx((centre - half, centre + half))
    assert wilson_interval(7, 10) == pytest.approx((0.3968, 0.8922), abs=1e-4)  # the textbook figures
    # At k = 0 the interval is [0, z² / (n + z²)], not a point.
    assert wilson_interval(0, 10) == pytest.approx((0.0, z * z / (10 + z * z)))
    assert wilson_interval(10, 10) == pytest.approx((10 / (10 + z * z), 1.0))
    assert wilson_interval(0, 0) is None
    lo99, hi99 = wilson_interval(7, 10, confidence=0.99)
    assert lo99 < wilson_interval(7, 10)[0] and hi99 > wilson_interval(7, 10)[1]
    with pytest.raises(ValueError):
        wilson_interval(11, 10)


def test_exact_mcnemar_hand_computed():
    # b = 1, c = 7: 2 · (C(8,0) + C(8,1)) / 2⁸ = 18 / 256
    assert mcnemar_exact_p(1, 7) == pytest.approx(18 / 256)
    assert mcnemar_exact_p(7, 1) == mcnemar_exact_p(1, 7)
    assert mcnemar_exact_p(0, 5) == pytest.approx(2 / 32)
    assert mcnemar_exact_p(3, 3) == 1.0 and mcnemar_exact_p(0, 0) == 1.0

    a = [True] * 5 + [True] * 1 + [False] * 7 + [False] * 2
    b = [True] * 5 + [False] * 1 + [True] * 7 + [False] * 2
    result = paired_comparison(a, b)
    assert (result.both_correct, result.only_a_correct, result.only_b_correct, result.both_wrong) == (5, 1, 7, 2)
    assert result.num_pairs == 15 and result.p_value == pytest.approx(18 / 256)
    assert result.accuracy_a == pytest.approx(6 / 15) and result.accuracy_b == pytest.approx(12 / 15)
    assert result.difference == pytest.approx(-6 / 15) and result.difference_interval is None


def test_paired_bootstrap_interval():
    # Every pair differs by +1: every resample's mean difference is 1.
    assert paired_bootstrap_interval([True] * 5, [False] * 5, num_resamples=200) == pytest.approx((1.0, 1.0))
    a = [True, False, True, True, False, True, False, True]
    b = [False, False, True, False, False, True, True, False]
    first = paired_bootstrap_interval(a, b, num_resamples=2000, seed=3)
    assert first == paired_bootstrap_interval(a, b, num_resamples=2000, seed=3)  # seeded
    assert first[0] < 0.25 < first[1]  # the observed difference 4/8 - 2/8
    assert paired_comparison(a, b, bootstrap=2000, seed=3).difference_interval == first


# ----------------------------------------------------------------------------- summaries, examples, Markdown
def _synonyms(word, other):
    return {word, other} in ({"fine", "good"}, {"film", "movie"})


def _results():
    return [
        AttackResult(0, "a fine , dull film", "a good , dull movie", 1, 1, 0, "successful", num_queries=5,
                     words_changed=2, num_words=4),
        AttackResult(1, "the plot is thin", "the story is thin", 0, 0, 1, "successful", num_queries=3,
                     words_changed=1, num_words=4),
        AttackResult(2, "warm and wise", "hot and wise", 1, 1, 1, "failed", num_queries=9, words_changed=1,
                     num_words=3),
        AttackResult(3, "bad", None, 0, 1, None, "skipped", num_queries=1, num_words=1),
        AttackResult(4, "oops", None, 1, -1, None, "error", error="boom"),
    ]


def test_summary_intervals_and_synonym_share():
    s = summarize_attack(_results(), "a2t", is_synonym=_synonyms)
    # known = 4, clean 3/4, under attack 1/4, success 2/3
    assert s.clean_accuracy_interval == pytest.approx(wilson_interval(3, 4))
    assert s.accuracy_under_attack_interval == pytest.approx(wilson_interval(1, 4))
    assert s.attack_success_rate_interval == pytest.approx(wilson_interval(2, 3))
    # The successful attacks swapped fine→good, film→movie (synonyms) and plot→story (not); the failed one is not counted.
    assert (s.num_synonym_substitutions, s.num_substitutions) == (2, 3) and s.synonym_share == pytest.approx(2 / 3)
    assert s.example_indices == [0, 1, 2, 3, 4] and s.example_statuses[-1] == "error"
    plain = summarize_attack(_results(), "a2t")
    assert plain.num_synonym_substitutions is None and plain.synonym_share is None and plain.num_substitutions == 3


def test_word_substitutions_and_marking():
    assert word_substitutions("a fine , dull film", "a good , dull movie") == [(0, 1, "fine", "good"),
                                                                               (0, 3, "film", "movie")]  # "," is a separator
    assert word_substitutions(("p one", "h two"), ("p one", "h three")) == [(1, 1, "two", "three")]
    # A different word count (an insertion) keeps only the one-for-one replacements.
    assert word_substitutions("a b c", "a x y b c") == []
    assert word_substitutions("a b c d", "a x c d e") == [(0, 1, "b", "x")]
    assert mark_changes("a fine , dull film", "a good , dull movie") == "a **~~fine~~ → good** , dull **~~film~~ → movie**"
    assert mark_changes(("p", "h two"), ("p", "h three")) == "p ‖ h **~~two~~ → three**"


def test_report_saves_examples_as_json_lines_and_marks_them(tmp_path):
    from advtrain.evaluation import adversarial_examples

    results = _results()
    examples = adversarial_examples(results, "a2t", _synonyms)
    assert [e.index for e in examples] == [0, 1, 2]  # the texts an attack changed
    assert examples[0].substitutions == [[0, 1, "fine", "good"], [0, 3, "film", "movie"]]
    assert examples[0].synonyms == [True, True] and examples[1].synonyms == [False]
    report = RobustnessReport("tiny", "mr", 10, 0.6, attacks=[summarize_attack(results, "a2t", is_synonym=_synonyms)],
                              examples=examples)
    report.save(tmp_path / "robustness.json")
    lines = (tmp_path / "robustness.examples.jsonl").read_text().splitlines()
    assert len(lines) == 3
    first = json.loads(lines[0])
    assert {k: first[k] for k in ("index", "original", "perturbed", "gold", "original_prediction",
                                  "perturbed_prediction", "queries", "words_changed")} == {
        "index": 0, "original": "a fine , dull film", "perturbed": "a good , dull movie", "gold": 1,
        "original_prediction": 1, "perturbed_prediction": 0, "queries": 5, "words_changed": 2}
    saved = json.loads((tmp_path / "robustness.json").read_text())
    assert "examples" not in saved and saved["examples_file"] == "robustness.examples.jsonl"
    loaded = RobustnessReport.load(tmp_path / "robustness.json")
    assert loaded == report and all(isinstance(e, AdversarialExample) for e in loaded.examples)
    assert load_examples(tmp_path / "robustness.examples.jsonl") == examples
    markdown = report.to_markdown()
    assert "a **~~fine~~ → good** , dull **~~film~~ → movie**" in markdown
    assert "hot and wise" not in markdown  # only successful examples are shown
    row = next(line for line in markdown.splitlines() if line.startswith("| a2t |"))
    assert "| 66.7 (2/3) |" in row and "| 75.0 [30.1, 95.4] |" in row  # synonyms, sample clean accuracy 3/4
    assert report.clean_accuracy_interval == pytest.approx(wilson_interval(6, 10))


def test_wordnet_synonymy_on_local_wordnet():
    synonymy = WordNetSynonymy()  # NLTK_DATA
    assert synonymy("film", "movie") and synonymy("films", "movies")  # morphological reduction
    assert not synonymy("good", "bad") and not synonymy("film", "film") and not synonymy("painfully", "remarkably")


# ----------------------------------------------------------------------------- comparing reports
def _summary(statuses, attack="a2t"):
    results = [AttackResult(i, f"t{i}", None, 1, 0 if s == "skipped" else 1, None, s) for i, s in enumerate(statuses)]
    return summarize_attack(results, attack)


def test_compare_attacks_and_comparison_rows():
    # Model A resists on rows 0-5, B on rows 0 and 6-9 (row 10 is an error for B: left out of the pairs).
    a = _summary(["failed"] * 6 + ["successful"] * 4 + ["failed"])
    b = _summary(["failed"] + ["successful"] * 5 + ["budget"] * 4 + ["error"])
    paired = compare_attacks(a, b)
    assert paired.num_pairs == 10 and (paired.only_a_correct, paired.only_b_correct) == (5, 4)
    assert paired.p_value == pytest.approx(mcnemar_exact_p(5, 4))
    reports = [RobustnessReport("base", "mr", 100, 0.8, attacks=[b]), RobustnessReport("adv", "mr", 100, 0.7,
                                                                                        attacks=[a])]
    rows = comparison_rows(reports)
    assert rows[0]["paired"] is None and rows[1]["paired"]["p_value"] == pytest.approx(paired.p_value)
    assert rows[1]["paired"]["only_a_correct"] == 5 and rows[1]["sample_clean_accuracy"] == 1.0
    assert rows[1]["clean_accuracy_interval"] == pytest.approx(wilson_interval(70, 100))
    markdown = comparison_markdown(reports)
    assert f"| {paired.p_value:.3g} (5/4) |" in markdown and "| 70.0 [60.4, 78.1] |" in markdown
    with pytest.raises(ValueError, match="no attacked example in common"):
        compare_attacks(a, summarize_attack([], "a2t"))
    other = RobustnessReport("x", "mr", 100, 0.5, attacks=[_summary(["failed"], "pwws")])
    assert "has no pwws attack" in comparison_rows([reports[0], other])[1]["paired_note"]


# ----------------------------------------------------------------------------- embedding-space curve
def test_embedding_curve_uses_the_engine_and_decreases(tokenizer, monkeypatch):
    model = make_model("bert", seed=3)
    rows = read_jsonl("mr", "test", 16)
    texts = [r["text"] for r in rows]
    labels = predict_logits(model, tokenizer, texts, max_length=32).argmax(-1).tolist()  # all correct at ε = 0
    calls = []
    engine = embedding_module.find_perturbation

    def counting(*args, **kwargs):
        calls.append(kwargs["epsilon"])
        return engine(*args, **kwargs)

    monkeypatch.setattr(embedding_module, "find_perturbation", counting)
    model.train()
    curve = embedding_robustness_curve(model, tokenizer, texts, labels, (0.0, 0.5, 50.0), steps=5, batch_size=8,
                                       max_length=32)
    assert model.training and all(p.grad is None for p in model.parameters())
    assert curve.accuracy[0] == 1.0 and curve.num_examples == 16
    assert curve.accuracy[2] < 0.5  # a huge ball flips most predictions
    assert curve.accuracy[0] >= curve.accuracy[1] >= curve.accuracy[2]
    assert sorted(set(calls)) == [0.5, 50.0] and len(calls) == 2 * 2  # two batches, the two non-zero radii
    assert curve.intervals[0] == pytest.approx(wilson_interval(16, 16))
    assert "ε = 50" in curve.to_markdown()


def test_evaluate_robustness_records_examples_synonyms_and_curve(tokenizer, tmp_path):
    model = make_model("bert", seed=3)
    rows = read_jsonl("mr", "test", 8)

    class Swap:
        """Replaces the first word with "movie" and claims success."""

        name = "swap"

        def attack_batch(self, model, tokenizer, texts, labels, indices):
            out = []
            for t, y, i in zip(texts, labels, indices):
                first, _, rest = t.partition(" ")
                out.append(AttackResult(i, t, f"movie {rest}", y, y, 1 - y, "successful", words_changed=1,
                                        num_words=len(t.split())))
            return out

    report = evaluate_robustness(model, tokenizer, rows, [Swap()], progress=False, synonyms=lambda a, b: a == "the",
                                 embedding_radii=(0.0, 1.0), embedding_steps=2, max_length=32)
    summary = report.attacks[0]
    starts_with_the = sum(r["text"].split()[0] == "the" for r in rows)
    assert (summary.num_synonym_substitutions, summary.num_substitutions) == (starts_with_the, 8)
    assert len(report.examples) == 8 and report.examples[0].substitutions[0][3] == "movie"
    assert report.embedding_curve.radii == [0.0, 1.0]
    assert report.embedding_curve.accuracy[0] == pytest.approx(report.clean_accuracy)
    report.save(tmp_path / "r.json")
    loaded = RobustnessReport.load(tmp_path / "r.json")
    assert loaded.embedding_curve == report.embedding_curve and loaded.examples == report.examples
    assert "Embedding-space robust accuracy" in loaded.to_markdown()
    assert torch.is_grad_enabled()


def test_missing_wordnet_leaves_the_synonym_share_out_with_a_note(tokenizer, tmp_path):
    model = make_model("bert", seed=3)
    rows = read_jsonl("mr", "test", 4)

    class Nothing:
        name = "nothing"

        def attack_batch(self, model, tokenizer, texts, labels, indices):
            return [AttackResult(i, t, None, y, y, None, "failed") for t, y, i in zip(texts, labels, indices)]

    report = evaluate_robustness(model, tokenizer, rows, [Nothing()], progress=False, max_length=32,
                                 synonyms=str(tmp_path / "no-wordnet"))
    assert report.attacks[0].synonym_share is None and report.attacks[0].num_synonym_substitutions is None
    assert any(n.startswith("WordNet synonym share not measured") for n in report.notes), report.notes
    assert report.embedding_curve is None and report.examples == []


def test_success_rate_difference_interval_pools_strata_and_keeps_pairs():
    from advtrain.evaluation import success_rate_difference_interval

    # Every attacked sentence flips for a and resists for b: the difference is 1 in every resample.
    a = {0: "successful", 1: "successful", 2: "skipped"}
    b = {0: "failed", 1: "budget", 2: "skipped"}
    assert success_rate_difference_interval([(a, b)], num_resamples=200) == (1.0, 1.0)
    # The same outcomes on both sides: 0 whatever is resampled (the pairing is kept).
    same = {i: ("successful" if i % 2 else "failed") for i in range(20)}
    assert success_rate_difference_interval([(same, dict(same))], num_resamples=200) == (0.0, 0.0)
    # Two strata pooled as a ratio of sums: a = 2/2 + 0/2 over 4 attacked, b = 0/4 → 0.5 in every resample only when
    # each stratum keeps its size; rows without a partner are left out (index 9).
    s1 = ({0: "successful", 1: "successful"}, {0: "failed", 1: "failed", 9: "successful"})
    s2 = ({0: "failed", 1: "failed"}, {0: "failed", 1: "failed"})
    low, high = success_rate_difference_interval([s1, s2], num_resamples=500)
    assert low == high == 0.5
    assert success_rate_difference_interval([({0: "failed"}, {1: "failed"})]) is None


def test_mean_interval_hand_computed():
    from advtrain.evaluation import mean_interval

    # [1, 2, 3]: mean 2, s = 1, t_{0.975, 2} = 4.303 → half-width 4.303 / √3 = 2.4843.
    mean, half = mean_interval([1.0, 2.0, 3.0])
    assert mean == 2.0 and half == pytest.approx(4.303 / math.sqrt(3))
    assert mean_interval([5.0]) == (5.0, None)
    # 40 values: past the table, the normal quantile.
    values = [float(i % 2) for i in range(40)]
    assert mean_interval(values)[1] == pytest.approx(1.959964 * 0.506370 / math.sqrt(40), rel=1e-4)
    with pytest.raises(ValueError):
        mean_interval([])


def test_pooled_attack_comparison_hand_computed():
    from advtrain.evaluation import pooled_attack_comparison

    # Seed 1: the baseline flips on rows 0-3 of 5 (row 4 resists), the candidate on rows 0-1 (2-4 resist).
    # Seed 2: the baseline flips on rows 0-1 of 4 (row 3 was wrong before: skipped), the candidate on row 1 and 2.
    base = [_summary(["successful"] * 4 + ["failed"]), _summary(["successful", "successful", "failed", "skipped"])]
    cand = [_summary(["successful"] * 2 + ["failed"] * 3), _summary(["failed", "successful", "successful", "skipped"])]
    out = pooled_attack_comparison(base, cand, bootstrap=300)
    # Baseline 6 of 8 attacked, candidate 4 of 8: drop 0.25; pooled Wilson interval of 4/8.
    assert (out["baseline_successful"], out["baseline_attacked"], out["successful"], out["attacked"]) == (6, 8, 4, 8)
    assert out["asr_drop"] == pytest.approx(0.25) and out["asr"] == 0.5
    assert out["asr_interval"] == pytest.approx(wilson_interval(4, 8))
    # Discordant rows (robust under attack for one only): s1 rows 2, 3 (candidate only); s2 row 0 (candidate only),
    # row 2 (baseline only); skipped rows are wrong for both.
    assert (out["only_baseline_robust"], out["only_candidate_robust"]) == (1, 3)
    assert out["mcnemar_p"] == pytest.approx(mcnemar_exact_p(1, 3))
    low, high = out["asr_drop_interval"]
    assert low <= 0.25 <= high and -1 <= low and high <= 1
    assert pooled_attack_comparison(base, cand, bootstrap=0)["asr_drop_interval"] is None
    with pytest.raises(ValueError, match="one baseline summary per candidate"):
        pooled_attack_comparison(base, cand[:1])
