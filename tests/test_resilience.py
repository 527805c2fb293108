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
    assert "adv/loss" not in trainer._adv_metrics
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
