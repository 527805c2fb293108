"""A non-finite inner gradient or adversarial term skips the adversarial term: it is counted in `adv/skipped`
and nothing non-finite reaches the weights; the step then equals a plain step."""

import pytest
import torch
from transformers import Trainer, TrainingArguments

from advtrain import LDSConfig, LDSTrainer, PGDATConfig, PGDATTrainer
from conftest import batch_of, make_model

TEXTS = ["a gorgeous , witty , seductive movie .", "the film is bad"]


class NaNObjectivePGDAT(PGDATTrainer):
    def perturbation_objective(self, adv_logits, clean):
        return super().perturbation_objective(adv_logits, clean) * float("nan")


class InfTermLDS(LDSTrainer):
    def adversarial_loss(self, adv_logits, clean):
        return super().adversarial_loss(adv_logits, clean) + float("inf")


def _plain_grads(tokenizer, tmp_path):
    model = make_model("bert", 2, seed=1)
    trainer = Trainer(model=model, args=TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True))
    trainer.current_gradient_accumulation_steps = 1
    trainer.training_step(model, batch_of(tokenizer, TEXTS, [1, 0]))
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize(
    "trainer_cls,config_cls", [(NaNObjectivePGDAT, PGDATConfig), (InfTermLDS, LDSConfig)], ids=["nan-grad", "inf-term"]
)
@pytest.mark.parametrize("path", ["split_backward", "compute_loss"])
def test_non_finite_adversarial_term_is_skipped(tokenizer, tmp_path, trainer_cls, config_cls, path):
    model = make_model("bert", 2, seed=1)
    trainer = trainer_cls(model=model, args=config_cls(output_dir=str(tmp_path), report_to=[], use_cpu=True))
    trainer.current_gradient_accumulation_steps = 1
    model.train()
    batch = batch_of(tokenizer, TEXTS, [1, 0])
    if path == "split_backward":
        loss = trainer.training_step(model, batch)
    else:
        loss = trainer.compute_loss(model, batch)
        loss.backward()
    assert torch.isfinite(loss)
    assert [float(v) for v in trainer._adv_metrics["adv/skipped"]] == [1.0]
    assert not trainer._adv_metrics["adv/loss"]
    plain = _plain_grads(tokenizer, tmp_path)
    for name, param in model.named_parameters():
        assert torch.isfinite(param.grad).all(), name
        torch.testing.assert_close(param.grad, plain[name], atol=1e-6, rtol=1e-5, msg=name)


def test_skipped_batches_are_logged_as_a_count(tokenizer, tmp_path, mr_small, collator):
    model = make_model("bert", 2)
    args = PGDATConfig(
        output_dir=str(tmp_path), report_to=[], use_cpu=True, max_steps=3, logging_steps=3,
        per_device_train_batch_size=4, save_strategy="no",
    )
    trainer = NaNObjectivePGDAT(model=model, args=args, train_dataset=mr_small, data_collator=collator)
    trainer.train()
    log = next(entry for entry in trainer.state.log_history if "adv/skipped" in entry)
    assert log["adv/skipped"] == 3.0
    assert all(torch.isfinite(p).all() for p in model.parameters())


# ----------------------------------------------------------------------------------------------------------------
# Checkpoints received from elsewhere, fields changed after construction, data that cannot train.

class _RunsCode:
    """Unpickling this calls `open(marker, "w")`: a stand-in for a state file that runs a shell command."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _tat_checkpoint(tmp_path, tokenizer, collator):
    from advtrain import TATConfig, TATTrainer
    from conftest import tokenized

    data = tokenized(tokenizer, "mr", "train", 8, max_length=16)
    args = TATConfig(output_dir=str(tmp_path / "run"), report_to=[], use_cpu=True, per_device_train_batch_size=4,
                     max_steps=2, save_steps=2, disable_tqdm=True)
    TATTrainer(model=make_model("bert", 2), args=args, train_dataset=data, data_collator=collator).train()
    resumed = TATTrainer(model=make_model("bert", 2), args=args, train_dataset=data, data_collator=collator)
    return resumed, tmp_path / "run" / "checkpoint-2"


def test_a_state_file_that_would_run_code_is_refused(tmp_path, tokenizer, collator):
    resumed, checkpoint = _tat_checkpoint(tmp_path, tokenizer, collator)
    marker = tmp_path / "ran"
    torch.save({"tally_counts": _RunsCode(str(marker))}, checkpoint / "advtrain_state.pt")
    with pytest.raises(ValueError, match="weights_only=True"):
        resumed.train(resume_from_checkpoint=str(checkpoint))
    assert not marker.exists()


def test_a_checkpoint_without_adversarial_state_warns(tmp_path, tokenizer, collator, caplog):
    resumed, checkpoint = _tat_checkpoint(tmp_path, tokenizer, collator)
    (checkpoint / "advtrain_state.pt").unlink()
    with caplog.at_level("WARNING", logger="advtrain"):
        resumed.train(resume_from_checkpoint=str(checkpoint))
    assert "holds no advtrain_state.pt" in caplog.text


def test_the_state_file_is_written_into_the_checkpoint_the_trainer_saved(tmp_path, tokenizer, collator):
    resumed, checkpoint = _tat_checkpoint(tmp_path, tokenizer, collator)
    assert (checkpoint / "advtrain_state.pt").is_file() and (checkpoint / "trainer_state.json").is_file()


@pytest.mark.parametrize("name,value", [("adv_epsilon", -1), ("adv_steps", 0), ("adv_backward", "sideways")])
def test_fields_changed_after_construction_are_checked_when_training_starts(tmp_path, mr_small, collator, name,
                                                                            value):
    args = PGDATConfig(output_dir=str(tmp_path), report_to=[], use_cpu=True, max_steps=1, save_strategy="no")
    trainer = PGDATTrainer(model=make_model("bert", 2), args=args, train_dataset=mr_small, data_collator=collator)
    setattr(trainer.args, name, value)  # as `Trainer.hyperparameter_search` sets trial values
    with pytest.raises(ValueError, match=f"`{name}` must be"):
        trainer.train()


def test_an_empty_training_set_is_named(tmp_path, collator):
    from datasets import Dataset

    empty = Dataset.from_dict({"input_ids": [], "labels": []})
    args = PGDATConfig(output_dir=str(tmp_path), report_to=[], use_cpu=True, max_steps=1, save_strategy="no")
    trainer = PGDATTrainer(model=make_model("bert", 2), args=args, train_dataset=empty, data_collator=collator)
    with pytest.raises(ValueError, match="the training dataset is empty"):
        trainer.train()


def test_string_labels_are_named_with_the_fix(tmp_path, tokenizer, collator):
    from datasets import Dataset

    data = Dataset.from_dict({"text": ["a fine film", "bad"], "label": ["pos", "neg"]})
    data = data.map(lambda b: tokenizer(b["text"]), batched=True).remove_columns(["text"])
    args = PGDATConfig(output_dir=str(tmp_path), report_to=[], use_cpu=True, max_steps=1, save_strategy="no")
    trainer = PGDATTrainer(model=make_model("bert", 2), args=args, train_dataset=data, data_collator=collator)
    with pytest.raises(ValueError, match=r"'label' column holds strings.*class_encode_column"):
        trainer.train()


@pytest.mark.parametrize("bf16,warns", [(True, True), (False, False)])
def test_a_delta_below_bf16_rounding_is_warned_about_once(tmp_path, mr_small, collator, bf16, warns, monkeypatch):
    import warnings

    # transformers 4's TrainingArguments exports bf16 as ACCELERATE_MIXED_PRECISION, and every later Trainer of the
    # process then autocasts: restore the variable (and accelerate's process-wide state) afterwards.
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "no")
    args = PGDATConfig(output_dir=str(tmp_path), report_to=[], use_cpu=True, max_steps=2, save_strategy="no",
                       per_device_train_batch_size=4, bf16=bf16)  # L2 ε = 0.003 over a sentence: ~1e-4 per element
    trainer = PGDATTrainer(model=make_model("bert", 2), args=args, train_dataset=mr_small, data_collator=collator)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            trainer.train()
    finally:
        from accelerate.state import AcceleratorState

        AcceleratorState._reset_state(reset_partial_state=True)
    messages = [str(w.message) for w in caught if "autocast" in str(w.message)]
    assert len(messages) == (1 if warns else 0), messages
