"""`benchmarks/reproduce_comparison.py` resumes without redoing finished work: a reused model's saved report keeps its
attacks and only the missing ones run; the tables render every section. The training and attacks themselves are
covered by test_cli and test_evaluation; here `evaluate_model` is replaced by a recorder."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from advtrain.evaluation import AttackSummary, RobustnessReport

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import reproduce_comparison as rc  # noqa: E402


def _summary(attack: str, successful: int) -> AttackSummary:
    return AttackSummary(
        attack=attack, num_examples=4, num_successful=successful, num_failed=3 - successful, num_skipped=1,
        num_budget=0, num_timeout=0, num_errors=0, clean_accuracy=0.75, accuracy_under_attack=(3 - successful) / 4,
        attack_success_rate=successful / 3, avg_words_perturbed=0.1, avg_queries=20.0, seconds=1.0,
    )


@pytest.fixture
def recorder(monkeypatch):
    calls = []

    def fake_evaluate_model(model_dir, data, *, attacks, seed, model_name, **kwargs):
        calls.append(list(attacks))
        return RobustnessReport(
            model=model_name, dataset="mr (test)", num_examples=10, clean_accuracy=0.8,
            attacks=[_summary(a, 2) for a in attacks], ood_accuracy={"cr": 0.7},
            config={"attacks": list(attacks), "num_attacked_examples": 4, "seed": seed},
        )

    monkeypatch.setattr(rc, "evaluate_model", fake_evaluate_model)
    return calls


def _args(tmp_path, **kw) -> rc.ComparisonArguments:
    return rc.ComparisonArguments(attack_examples=4, seed=7, output_dir=str(tmp_path), **kw)


def _saved_report(path: Path, seed: int = 7) -> None:
    report = RobustnessReport(
        model="plain", dataset="mr (test)", num_examples=10, clean_accuracy=0.8,
        attacks=[_summary("textfooler", 3), _summary("a2t", 1)], ood_accuracy={"cr": 0.7},
        notes=["BAE skipped: no masked LM ships offline (pass --masked_lm <folder>)", "GloVe neighbours"],
        config={"attacks": ["textfooler", "a2t"], "num_attacked_examples": 4, "seed": seed},
    )
    report.save(path)


def test_a_reused_model_runs_only_the_missing_attacks(tmp_path, recorder):
    path = tmp_path / "mr_plain.json"
    _saved_report(path)
    run = {"method": "plain", "model_dir": "unused", "reused": True}
    args = _args(tmp_path, attacks="textfooler,a2t,bae", masked_lm="some/mlm")

    result = rc.evaluate(args, run, str(tmp_path))
    assert recorder == [["bae"]]
    saved = json.loads(path.read_text())
    assert [s["attack"] for s in saved["attacks"]] == ["textfooler", "a2t", "bae"] == saved["config"]["attacks"]
    assert saved["attacks"][0]["num_successful"] == 3 and saved["attacks"][1]["num_successful"] == 1  # kept as saved
    assert saved["notes"] == ["GloVe neighbours"]  # the stale "BAE skipped" note is gone
    assert result["report"] == saved

    again = rc.evaluate(args, run, str(tmp_path))  # everything there: nothing runs
    assert recorder == [["bae"]] and again["report_reused"]


@pytest.mark.parametrize("change", ["other_seed", "not_reused"])
def test_a_report_of_another_sample_or_model_is_redone(tmp_path, recorder, change):
    _saved_report(tmp_path / "mr_plain.json", seed=8 if change == "other_seed" else 7)
    run = {"method": "plain", "model_dir": "unused", "reused": change != "not_reused"}
    rc.evaluate(_args(tmp_path, attacks="textfooler,a2t,bae"), run, str(tmp_path))
    assert recorder == [["textfooler", "a2t"]]  # BAE left out: no masked LM given


def test_markdown_has_every_section(tmp_path, recorder):
    args = _args(tmp_path, attacks="textfooler,a2t,bae", masked_lm="some/mlm")
    report = rc.evaluate(args, {"method": "plain", "model_dir": "unused"}, str(tmp_path))
    results = {
        "arguments": vars(args), "machine": "test machine", "attacks": ["textfooler", "a2t", "bae"],
        "mr": [{"method": "plain", "training": {"train_seconds": 12.0}, **report},
               {"method": "ssmba", "skipped": "no masked LM"}],
        "extra": {"sst5": [{"method": "plain", "training": {"eval_accuracy": 0.41}}]},
        "extra_methods": ["plain", "tat"],
        "masked_lm": {"path": "some/mlm", "max_steps": 300, "dev_perplexity_before": 48000.0,
                      "dev_perplexity_after": 30.5},
    }
    text = rc.markdown(results)
    assert "| plain | 80.0 | 70.0 | 66.7 | 25.0 | 66.7 | 25.0 | 66.7 | 25.0 | 12 |" in text
    assert "| ssmba | skipped: no masked LM |" in text
    assert "| sst5 | 41.0 | – |" in text
    assert "300 steps on MR train, dev perplexity 48000.0 → 30.5" in text


@pytest.mark.slow
def test_train_masked_lm_saves_a_masked_lm_and_its_perplexity(tmp_path, tokenizer):
    import subprocess

    from conftest import make_model

    base = tmp_path / "base"
    make_model("bert", masked_lm=True).save_pretrained(base)
    tokenizer.save_pretrained(base)
    out = tmp_path / "mlm"
    data = Path(__file__).resolve().parents[2] / "shared" / "data" / "mr"
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "train_masked_lm.py"
    subprocess.run(
        [sys.executable, str(script), "--model_path", str(base), "--data_dir", str(data), "--output_dir", str(out),
         "--max_steps", "3", "--eval_size", "16", "--warmup_steps", "0", "--disable_tqdm", "true"],
        check=True, capture_output=True, text=True, timeout=300,
    )
    record = json.loads((out / "advtrain_masked_lm.json").read_text())
    assert record["max_steps"] == 3 and record["dev_perplexity_after"] < record["dev_perplexity_before"]
    from transformers import AutoModelForMaskedLM

    assert AutoModelForMaskedLM.from_pretrained(out).config.vocab_size == len(tokenizer)


def test_masked_positions_loss_equals_the_models_own_loss():
    import torch
    from transformers import BertConfig, BertForMaskedLM

    import train_masked_lm

    torch.manual_seed(0)
    config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37)
    model = BertForMaskedLM(config).eval()
    ids = torch.randint(5, 100, (3, 9))
    labels = torch.full_like(ids, -100)
    labels[:, 2], labels[0, 5] = ids[:, 2], 7
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
    trainer = object.__new__(train_masked_lm.MaskedPositionsTrainer)  # compute_loss needs no Trainer state here
    with torch.no_grad():
        ours = trainer.compute_loss(model, inputs)
        reference = model(**inputs).loss
    torch.testing.assert_close(ours, reference)


def _statuses_summary(attack: str, statuses: list[str]) -> AttackSummary:
    from advtrain.attacks import AttackResult
    from advtrain.evaluation import summarize_attack

    results = [AttackResult(i, f"t{i}", f"p{i}" if s == "successful" else None, 1, 0 if s == "skipped" else 1,
                            None, s) for i, s in enumerate(statuses)]
    return summarize_attack(results, attack)


def _examples(attack: str, statuses: list[str]) -> list:
    from advtrain.evaluation import AdversarialExample

    return [AdversarialExample(attack, i, f"t{i}", f"p{i}", 1, 1, 0, s) for i, s in enumerate(statuses)
            if s == "successful"]


def test_powered_comparison_resumes_merges_and_pairs(tmp_path, monkeypatch):
    """--powered: a run whose model folder holds a trained model is not trained again; a saved report keeps its
    attacks and only the missing attacks and OOD sets are evaluated; a run with its file is skipped; the summary pairs
    each method with plain seed by seed."""
    trained, evaluated = [], []
    # Per (method, attack): the statuses on the seed's 4 attacked rows (plain flips 3 of 4, recipe 1 of 4).
    statuses = {"plain": ["successful", "successful", "successful", "failed"],
                "recipe": ["successful", "failed", "failed", "failed"]}

    def fake_train(script, config, quiet, augment):
        trained.append((script.method, config.seed, config.output_dir))
        os.makedirs(config.output_dir, exist_ok=True)
        record = {"train_seconds": 10.0 if script.method == "plain" else 15.0, "augment_seconds": 0.0,
                  "global_step": 5, "train_size": 8530}
        with open(os.path.join(config.output_dir, rc.TRAINING_RECORD), "w") as f:
            json.dump(record, f)
        return record

    def fake_evaluate_model(model_dir, data, *, attacks, seed, model_name, ood, num_examples, **kwargs):
        evaluated.append((model_name, seed, list(attacks), sorted(ood)))
        return RobustnessReport(
            model=model_name, dataset="mr (test)", num_examples=1066, clean_accuracy=0.8 if model_name == "plain" else 0.79,
            attacks=[_statuses_summary(a, statuses[model_name]) for a in attacks],
            examples=[e for a in attacks for e in _examples(a, statuses[model_name])],
            ood_accuracy={t: 0.7 for t in ood}, config={"num_attacked_examples": num_examples, "seed": seed})

    import os

    monkeypatch.setattr(rc, "train_classifier", fake_train)
    monkeypatch.setattr(rc, "evaluate_model", fake_evaluate_model)
    args = rc.ComparisonArguments(powered=True, seeds="1,2", powered_methods="plain,recipe", attacks="a2t,textfooler",
                                  ood_tasks="cr,sst2", output_dir=str(tmp_path), work_dir=str(tmp_path / "models"),
                                  attack_examples=4, bootstrap=100)
    # Seed 1 of plain was trained and attacked with A2T elsewhere (e.g. by robustness_recipe.py).
    os.makedirs(tmp_path / "models" / "plain_s1")
    (tmp_path / "models" / "plain_s1" / rc.TRAINING_RECORD).write_text(json.dumps(
        {"train_seconds": 10.0, "augment_seconds": 0.0, "global_step": 5, "train_size": 8530}))
    runs = tmp_path / "powered" / "runs"
    runs.mkdir(parents=True)
    RobustnessReport(model="plain", dataset="mr (test)", num_examples=1066, clean_accuracy=0.8,
                     attacks=[_statuses_summary("a2t", statuses["plain"])], examples=_examples("a2t", statuses["plain"]),
                     config={"num_attacked_examples": 4, "seed": 1}).save(runs / "plain_s1.report.json")

    rc.powered_main(args, "unused-encoder")
    assert ("plain", 1) not in {(m, s) for m, s, _ in trained}  # reused
    assert evaluated[0] == ("plain", 1, ["textfooler"], ["cr", "sst2"])  # only what was missing
    assert ("recipe", 2, ["a2t", "textfooler"], ["cr", "sst2"]) in evaluated
    assert [c for c in trained if c[0] == "freelb"][0][1] in (1, 2)
    merged = RobustnessReport.load(runs / "plain_s1.report.json")
    assert [a.attack for a in merged.attacks] == ["a2t", "textfooler"] and set(merged.ood_accuracy) == {"cr", "sst2"}
    assert {e.attack for e in merged.examples} == {"a2t", "textfooler"}  # the saved attack's examples are kept

    summary = json.loads((tmp_path / "powered" / "powered.json").read_text())
    recipe = next(r for r in summary["rows"] if r["method"] == "recipe")
    assert recipe["seeds"] == [1, 2] and recipe["fields"] == {"adv_steps": 2, "adv_step_size": 0.3}
    a2t = recipe["attacks"]["a2t"]
    assert a2t["asr_drop"] == pytest.approx(50.0)  # 6/8 − 2/8
    assert (a2t["only_plain_robust"], a2t["only_method_robust"]) == (0, 4)
    assert recipe["clean_difference"][0] == pytest.approx(-1.0) and recipe["time_ratio"] == pytest.approx(1.5)
    text = (tmp_path / "powered" / "powered.md").read_text()
    assert "| recipe | 1,2 | 25.0 [" in text and "+50.0 [" in text and "Not run yet: none" in text

    count = len(evaluated)
    rc.powered_main(args, "unused-encoder")  # everything there: nothing runs again
    assert len(evaluated) == count
