"""PGD-AT and LDS: the objective matches a hand computation, both execution paths give the same gradients, every
model family trains, gradient accumulation is exact, and the Trainer's features behave as with the plain Trainer."""

import copy

import pytest
import torch
import torch.nn.functional as F
from transformers import Trainer, TrainingArguments

from advtrain import LDSConfig, LDSTrainer, PGDATConfig, PGDATTrainer
from conftest import MODEL_FAMILIES, batch_of, grads_of, make_model, step_through, tokenized

TEXTS = ["a gorgeous , witty , seductive movie .", "the film is bad", "it 's a cold , dull , empty story ."]
LABELS = [1, 0, 0]
TRAINERS = {"pgd_at": (PGDATTrainer, PGDATConfig), "lds": (LDSTrainer, LDSConfig)}
NORM_PAIRS = [("l2", "l2"), ("l2", "none"), ("linf", "linf"), ("linf", "sign")]


def _hand_objective(model, batch, method, step_norm, norm, epsilon, step_size, init_std, weight, seed):
    """One inner step and the full loss, written out with plain torch."""
    inputs = {k: v for k, v in batch.items() if k not in ("input_ids", "labels")}
    labels = batch["labels"]
    embeds = model.get_input_embeddings()(batch["input_ids"])
    mask = batch["attention_mask"].float().unsqueeze(-1)
    clean_logits = model(**inputs, inputs_embeds=embeds).logits
    torch.manual_seed(seed)
    delta = (torch.randn(embeds.shape) * init_std * mask if init_std else torch.zeros_like(embeds)).requires_grad_()
    adv_logits = model(**inputs, inputs_embeds=embeds.detach() + delta).logits
    if method == "pgd_at":
        inner = F.cross_entropy(adv_logits, labels, reduction="sum")
    else:
        p = F.softmax(clean_logits.detach(), -1)
        inner = (p * (F.log_softmax(clean_logits.detach(), -1) - F.log_softmax(adv_logits, -1))).sum()
    (g,) = torch.autograd.grad(inner, delta)
    g = g * mask
    if step_norm == "l2":
        direction = g / (g.flatten(1).norm(dim=1).view(-1, 1, 1) + 1e-12)
    elif step_norm == "linf":
        direction = g / (g.abs().amax(-1, keepdim=True) + 1e-12)
    elif step_norm == "sign":
        direction = g.sign()
    else:
        direction = g
    delta = (delta.detach() + step_size * direction) * mask
    if norm == "l2":
        delta = delta * (epsilon / (delta.flatten(1).norm(dim=1).view(-1, 1, 1) + 1e-12)).clamp(max=1)
    else:
        delta = delta.clamp(-epsilon, epsilon)
    adv_logits = model(**inputs, inputs_embeds=model.get_input_embeddings()(batch["input_ids"]) + delta).logits
    if method == "pgd_at":
        term = F.cross_entropy(adv_logits, labels)
    else:
        p = F.softmax(clean_logits.detach(), -1)
        term = (p * (F.log_softmax(clean_logits.detach(), -1) - F.log_softmax(adv_logits, -1))).sum(-1).mean()
    return F.cross_entropy(clean_logits, labels) + weight * term, term, delta


def _trainer(method, tmp_path, model, **config):
    trainer_cls, config_cls = TRAINERS[method]
    args = config_cls(output_dir=str(tmp_path), report_to=[], use_cpu=True, **config)
    trainer = trainer_cls(model=model, args=args)
    trainer.current_gradient_accumulation_steps = 1
    return trainer


# LDS at σ = 0 is left out: the KL's gradient at δ = 0 is zero up to rounding (LDSConfig warns about it).
@pytest.mark.parametrize("method,init_std", [("pgd_at", 0.0), ("pgd_at", 0.05), ("lds", 0.05)])
@pytest.mark.parametrize("norm,step_norm", NORM_PAIRS)
def test_compute_loss_equals_hand_computed_step(tmp_path, tokenizer, method, norm, step_norm, init_std):
    model = make_model("bert", 2, seed=1)
    model.train()
    hyper = dict(epsilon=0.3, step_size=0.2, init_std=init_std, weight=0.7)
    trainer = _trainer(method, tmp_path, model, adv_steps=1, adv_norm=norm, adv_step_norm=step_norm,
                       adv_epsilon=hyper["epsilon"], adv_step_size=hyper["step_size"], adv_init_std=init_std,
                       adv_weight=hyper["weight"])
    batch = batch_of(tokenizer, TEXTS, LABELS)
    expected, term, delta = _hand_objective(model, batch, method, step_norm, norm, seed=11, **hyper)
    torch.manual_seed(11)
    loss = trainer.compute_loss(model, batch)
    torch.testing.assert_close(loss, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(trainer._adv_metrics["adv/loss"][-1], term.detach(), atol=1e-5, rtol=0)
    assert term.item() > 0 and delta.abs().max() > 0


@pytest.mark.parametrize("method", TRAINERS)
def test_return_outputs_and_evaluation_use_the_clean_model(tmp_path, tokenizer, method):
    model = make_model("bert", 2)
    trainer = _trainer(method, tmp_path, model, adv_init_std=0.01)
    batch = batch_of(tokenizer, TEXTS, LABELS)
    model.train()
    loss, outputs = trainer.compute_loss(model, batch, return_outputs=True)
    plain = model(**batch)
    torch.testing.assert_close(outputs.logits, plain.logits)
    assert loss > plain.loss
    model.eval()
    with torch.no_grad():
        eval_loss = trainer.compute_loss(model, batch)
        torch.testing.assert_close(eval_loss, model(**batch).loss)
    assert not trainer._adv_metrics["adv/loss"][1:]  # evaluation recorded nothing


@pytest.mark.parametrize("method", TRAINERS)
@pytest.mark.parametrize("steps", [1, 3])
def test_split_backward_step_equals_compute_loss_backward(tmp_path, tokenizer, method, steps):
    batch = batch_of(tokenizer, TEXTS, LABELS)
    results = []
    for path in ("training_step", "compute_loss"):
        model = make_model("bert", 3, seed=2)
        trainer = _trainer(method, tmp_path, model, adv_steps=steps, adv_epsilon=0.2, adv_step_size=0.1,
                           adv_init_std=0.01)
        results.append(step_through(trainer, model, batch, path))
    (loss_a, grads_a), (loss_b, grads_b) = results
    torch.testing.assert_close(loss_a, loss_b, atol=1e-6, rtol=1e-5)
    assert grads_a.keys() == grads_b.keys() and len(grads_a) > 10
    for name in grads_a:
        torch.testing.assert_close(grads_a[name], grads_b[name], atol=1e-6, rtol=1e-4, msg=name)


def _train(trainer_cls, args, model, data, collator):
    trainer = trainer_cls(model=model, args=args, train_dataset=data, data_collator=collator)
    trainer.train()
    return trainer


@pytest.mark.parametrize("family", MODEL_FAMILIES)
@pytest.mark.parametrize("method", TRAINERS)
@pytest.mark.parametrize("num_labels", [3, 1], ids=["classification", "regression"])
def test_every_family_trains(tmp_path, tokenizer, collator, family, method, num_labels):
    data = tokenized(tokenizer, "mr", "train", 8, max_length=16, regression=num_labels == 1)
    if num_labels == 3:
        data = data.map(lambda row, i: {"labels": i % 3}, with_indices=True)
    model = make_model(family, num_labels)
    before = copy.deepcopy(model.state_dict())
    trainer_cls, config_cls = TRAINERS[method]
    args = config_cls(output_dir=str(tmp_path), report_to=[], use_cpu=True, max_steps=2, logging_steps=1,
                      per_device_train_batch_size=4, save_strategy="no", learning_rate=1e-3)
    trainer = _train(trainer_cls, args, model, data, collator)
    changed = [n for n, v in model.state_dict().items() if not torch.equal(v, before[n])]
    embedding = model.get_input_embeddings().weight
    assert any("classifier" in n or "score" in n for n in changed) and len(changed) > 10
    assert not torch.equal(embedding, before[next(n for n in before if before[n] is not None and
                                                 before[n].shape == embedding.shape)])
    logs = [log for log in trainer.state.log_history if "adv/loss" in log]
    assert len(logs) == 2
    for key in ("clean/loss", "adv/loss", "adv/delta_norm", "adv/skipped"):
        assert key in logs[0] and logs[0][key] == logs[0][key]
    assert 0 < logs[0]["adv/delta_norm"] <= args.adv_epsilon + 1e-6
    assert logs[0]["adv/skipped"] == 0


@pytest.mark.parametrize("method", TRAINERS)
def test_gradient_accumulation_4x1_equals_1x4(tmp_path, tokenizer, collator, method, monkeypatch):
    # Random initial noise is drawn in the batch's shape, so it differs between one batch of 4 and four of 1; the
    # test replaces it with a deterministic per-token function of the embeddings (identical in both layouts).
    monkeypatch.setattr(
        "advtrain.perturbation.init_delta",
        lambda embeds, mask, init_std, generator=None: 0.05 * torch.sin(7 * embeds.detach().float()) * mask,
    )
    data = tokenized(tokenizer, "mr", "train", 4, max_length=16)
    weights = []
    for batch_size, accumulation in ((4, 1), (1, 4)):
        model = make_model("bert", 2, seed=4)
        trainer_cls, config_cls = TRAINERS[method]
        args = config_cls(
            output_dir=str(tmp_path), report_to=[], use_cpu=True, max_steps=1, per_device_train_batch_size=batch_size,
            gradient_accumulation_steps=accumulation, optim="sgd", learning_rate=0.5, save_strategy="no",
            adv_step_norm="l2", adv_epsilon=0.5, adv_step_size=0.3, lr_scheduler_type="constant", max_grad_norm=0.0,
        )
        _train(trainer_cls, args, model, data, collator)
        weights.append(model.state_dict())
    moved = max((weights[0][n] - make_model("bert", 2, seed=4).state_dict()[n]).abs().max() for n in weights[0])
    assert moved > 1e-3
    for name in weights[0]:
        torch.testing.assert_close(weights[0][name], weights[1][name], atol=2e-6, rtol=1e-4, msg=name)


def test_adv_start_step_trains_plainly_before_it(tmp_path, tokenizer, collator):
    data = tokenized(tokenizer, "mr", "train", 8, max_length=16)
    plain_model, adv_model = make_model("bert", 2, seed=6), make_model("bert", 2, seed=6)
    common = dict(output_dir=str(tmp_path), report_to=[], use_cpu=True, per_device_train_batch_size=4, max_steps=2,
                  save_strategy="no", logging_steps=1, seed=3, learning_rate=1e-3)
    _train(Trainer, TrainingArguments(**common), plain_model, data, collator)
    trainer = _train(PGDATTrainer, PGDATConfig(adv_start_step=2, **common), adv_model, data, collator)
    assert not [log for log in trainer.state.log_history if "adv/loss" in log]
    for name, value in plain_model.state_dict().items():
        torch.testing.assert_close(adv_model.state_dict()[name], value, msg=name)
    more = _train(PGDATTrainer, PGDATConfig(adv_start_step=1, **common), make_model("bert", 2, seed=6), data, collator)
    assert [log["step"] for log in more.state.log_history if "adv/loss" in log] == [2]


@pytest.mark.parametrize("method", TRAINERS)
def test_gradient_checkpointing_gives_the_same_gradients(tmp_path, tokenizer, method):
    batch = batch_of(tokenizer, TEXTS, LABELS)
    grads = []
    for checkpointing in (False, True):
        model = make_model("bert", 2, seed=8)
        trainer_cls, config_cls = TRAINERS[method]
        args = config_cls(output_dir=str(tmp_path), report_to=[], use_cpu=True, gradient_checkpointing=checkpointing,
                          adv_init_std=0.01)
        trainer = trainer_cls(model=model, args=args)
        if checkpointing:
            model.gradient_checkpointing_enable(args.gradient_checkpointing_kwargs)
            assert model.is_gradient_checkpointing
        trainer.current_gradient_accumulation_steps = 1
        model.train()
        torch.manual_seed(9)
        trainer.training_step(model, batch)
        grads.append(grads_of(model))
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], atol=1e-6, rtol=1e-4, msg=name)


@pytest.mark.parametrize("method", TRAINERS)
def test_bf16_autocast_trains_with_finite_metrics(tmp_path, tokenizer, collator, method):
    data = tokenized(tokenizer, "mr", "train", 8, max_length=16)
    trainer_cls, config_cls = TRAINERS[method]
    args = config_cls(output_dir=str(tmp_path), report_to=[], use_cpu=True, bf16=True, max_steps=2, logging_steps=1,
                      per_device_train_batch_size=4, save_strategy="no")
    model = make_model("bert", 2)
    trainer = _train(trainer_cls, args, model, data, collator)
    logs = [log for log in trainer.state.log_history if "adv/loss" in log]
    assert len(logs) == 2
    for log in logs:
        for key in ("loss", "clean/loss", "adv/loss", "adv/delta_norm"):
            assert torch.isfinite(torch.tensor(log[key])), (key, log)
        assert log["adv/skipped"] == 0
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_checkpoint_resume_continues_identically(tmp_path, tokenizer, collator):
    data = tokenized(tokenizer, "mr", "train", 16, max_length=16)
    common = dict(report_to=[], use_cpu=True, per_device_train_batch_size=4, max_steps=4, save_steps=2,
                  logging_steps=1, learning_rate=1e-3, seed=1, adv_init_std=0.01)
    full = _train(LDSTrainer, LDSConfig(output_dir=str(tmp_path / "full"), **common), make_model("bert", 2, dropout=0.1),
                  data, collator)
    resumed = LDSTrainer(model=make_model("bert", 2, dropout=0.1), args=LDSConfig(output_dir=str(tmp_path / "full"),
                         **common), train_dataset=data, data_collator=collator)
    resumed.train(resume_from_checkpoint=str(tmp_path / "full" / "checkpoint-2"))
    for name, value in full.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[name], value, atol=1e-6, rtol=1e-5, msg=name)
