"""Bad input gets a clear error that names what to change, never a deep traceback."""

import os

import pytest
import torch

from advtrain import LDSConfig, LDSTrainer, PGDATConfig, PGDATTrainer
from conftest import batch_of, make_model


@pytest.fixture
def trainer(tmp_path):
    model = make_model("bert", 3)
    return PGDATTrainer(model=model, args=PGDATConfig(output_dir=str(tmp_path), report_to=[], use_cpu=True))


def test_missing_labels(trainer, tokenizer):
    batch = batch_of(tokenizer, ["a fine film"], [0])
    del batch["labels"]
    trainer.model.train()
    with pytest.raises(ValueError, match="needs `labels` in every training batch"):
        trainer.compute_loss(trainer.model, batch)


@pytest.mark.parametrize("labels", [[3], [-1], [0.5]])
def test_labels_out_of_range(trainer, tokenizer, labels):
    batch = batch_of(tokenizer, ["a fine film"], labels)
    trainer.model.train()
    with pytest.raises(ValueError, match=r"integers in \[0, 2\] for a model with num_labels=3"):
        trainer.compute_loss(trainer.model, batch)


def _fsdp_fields(version: int, monkeypatch) -> dict:
    """Config fields (and, on transformers 4.x, the environment accelerate reads) that ask for FSDP `version`."""
    import transformers

    if int(transformers.__version__.split(".")[0]) >= 5:
        return {"fsdp": True, "fsdp_config": {"version": version}}
    monkeypatch.setenv("FSDP_VERSION", str(version))
    return {"fsdp": "full_shard auto_wrap"}


def test_fsdp1_refused_fsdp2_accepted(tmp_path, monkeypatch):
    # transformers 4.x writes ACCELERATE_USE_FSDP and FSDP_* into os.environ when the config is built: on a copy here,
    # or every later Trainer of this worker would set up FSDP.
    monkeypatch.setattr(os, "environ", dict(os.environ))
    with pytest.raises(ValueError, match="supports FSDP2 only, but this config asks for FSDP1.*Or use DDP"):
        PGDATConfig(output_dir=str(tmp_path), report_to=[], use_cpu=True, **_fsdp_fields(1, monkeypatch))
    config = PGDATConfig(output_dir=str(tmp_path), report_to=[], use_cpu=True, **_fsdp_fields(2, monkeypatch))
    assert config.fsdp


def test_multi_label_refused(tmp_path, tokenizer):
    model = make_model("bert", 3)
    model.config.problem_type = "multi_label_classification"
    trainer = LDSTrainer(model=model, args=LDSConfig(output_dir=str(tmp_path), report_to=[], use_cpu=True))
    model.train()
    batch = batch_of(tokenizer, ["a fine film"], [1])
    with pytest.raises(ValueError, match="multi_label_classification"):
        trainer.compute_loss(model, batch)


def test_compute_loss_func_refused(tmp_path):
    with pytest.raises(ValueError, match="compute_loss_func"):
        PGDATTrainer(
            model=make_model("bert", 2), args=PGDATConfig(output_dir=str(tmp_path), report_to=[]),
            compute_loss_func=lambda outputs, labels, num_items_in_batch=None: torch.tensor(0.0),
        )


def test_a_bert_decoder_trains_as_a_causal_lm(tmp_path, tokenizer):
    """A BertLMHeadModel with is_decoder=True is a causal LM (not a masked LM): its labels are shifted, so at δ = 0
    the task loss is the model's own loss (tests/test_causal_lm.py covers Llama and Qwen2 in depth)."""
    from transformers import BertConfig, BertLMHeadModel

    from advtrain.losses import task_loss

    config = BertConfig(vocab_size=400, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                        intermediate_size=37, is_decoder=True)
    model = BertLMHeadModel(config).eval()
    trainer = PGDATTrainer(model=model, args=PGDATConfig(output_dir=str(tmp_path), report_to=[], use_cpu=True))
    batch = batch_of(tokenizer, ["a fine film", "the film is bad and dull"], [0, 0])
    batch["labels"] = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    with torch.no_grad():
        outputs = model(**batch)
    assert trainer._task(outputs.logits) == "causal_lm"
    assert torch.allclose(task_loss(outputs.logits, batch["labels"], "causal_lm"), outputs.loss, atol=1e-6)
    model.train()
    assert torch.isfinite(trainer.compute_loss(model, batch))
