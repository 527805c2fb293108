"""`adv_skip_special_tokens`: δ stays 0 on the tokenizer's special tokens ([CLS], [SEP]) as on padding, for the
shared inner loop and for FreeLB's own; without a tokenizer the trainer refuses at once."""

import pytest
import torch

import advtrain
from advtrain import FreeLBConfig, FreeLBTrainer, PGDATConfig, PGDATTrainer
from conftest import batch_of, make_model

TEXTS = ["a gorgeous , witty , seductive movie .", "the film is bad"]


def _special(batch, tokenizer):
    ids = torch.tensor(tokenizer.all_special_ids)
    return torch.isin(batch["input_ids"], ids) | (batch["attention_mask"] == 0)


@pytest.mark.parametrize("skip", [True, False])
def test_pgd_at_delta_is_zero_on_special_tokens(tmp_path, tokenizer, skip):
    args = PGDATConfig(output_dir=str(tmp_path), report_to=[], use_cpu=True, adv_init_std=0.0, adv_epsilon=0.0,
                       adv_step_size=0.1, adv_skip_special_tokens=skip)
    trainer = PGDATTrainer(model=make_model("bert"), args=args, processing_class=tokenizer)
    batch = batch_of(tokenizer, TEXTS, [1, 0])
    special = _special(batch, tokenizer)
    assert special[:, 0].all() and special.sum() > len(TEXTS)  # [CLS], [SEP] and the padding of the short row
    clean = trainer._clean_forward(trainer.model, batch)
    delta = trainer._find_perturbation(trainer.model, clean).delta
    size = delta.abs().amax(-1)
    assert (size[~special] > 0).all()  # every word token moves (per-token L∞ step of 0.1)
    cls_sep = special & (batch["attention_mask"] == 1)
    assert bool((size[cls_sep] == 0).all()) == skip
    assert (size[batch["attention_mask"] == 0] == 0).all()


def test_freelb_delta_is_zero_on_special_tokens(tmp_path, tokenizer, monkeypatch):
    seen = []
    project = advtrain.perturbation.project

    def recording_project(delta, mask, norm, epsilon):
        out = project(delta, mask, norm, epsilon)
        seen.append(out.detach())
        return out

    monkeypatch.setattr(advtrain.perturbation, "project", recording_project)
    args = FreeLBConfig(output_dir=str(tmp_path), report_to=[], use_cpu=True, adv_steps=3, adv_skip_special_tokens=True)
    trainer = FreeLBTrainer(model=make_model("bert"), args=args, processing_class=tokenizer)
    trainer.current_gradient_accumulation_steps = 1
    batch = batch_of(tokenizer, TEXTS, [1, 0])
    special = _special(batch, tokenizer)
    trainer.compute_loss(trainer.model, batch).backward()
    assert len(seen) == 2  # K − 1 moves of δ
    for delta in seen:
        size = delta.abs().amax(-1)
        assert (size[special] == 0).all() and (size[~special] > 0).all()


def test_without_a_tokenizer_it_is_refused_before_training(tmp_path, tokenizer):
    args = PGDATConfig(output_dir=str(tmp_path), report_to=[], use_cpu=True, adv_skip_special_tokens=True,
                       max_steps=1)
    trainer = PGDATTrainer(model=make_model("bert"), args=args, train_dataset=[{"input_ids": [2, 5, 3], "labels": 0}])
    with pytest.raises(ValueError, match="adv_skip_special_tokens=True.*processing_class=tokenizer"):
        trainer.train()
