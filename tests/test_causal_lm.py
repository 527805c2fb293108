"""Causal LMs (tiny `LlamaForCausalLM` and `Qwen2ForCausalLM` built from configs): at δ = 0 advtrain's causal-LM loss
is the model's own `outputs.loss`; one step of PGD-AT, LDS, ALUM, FreeLB and R3F equals the objective written by hand
through ``inputs_embeds`` (labels shifted by hand, ``-100`` left out), value and parameter gradients; gradient
accumulation 4×1 ≡ 1×4 when the examples carry different numbers of label tokens (the token mean over the window, as
the plain `Trainer` gives it); LoRA trains only the adapters; gradient checkpointing gives the same step; TAT refuses a
causal LM and says why."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F
import transformers
from datasets import Dataset
from transformers import (
    DataCollatorForLanguageModeling,
    LlamaConfig,
    LlamaForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
    Trainer,
    TrainingArguments,
)

from advtrain import (
    ALUMConfig,
    ALUMTrainer,
    FreeLBConfig,
    FreeLBTrainer,
    LDSConfig,
    LDSTrainer,
    PGDATConfig,
    PGDATTrainer,
    R3FConfig,
    R3FTrainer,
    TATConfig,
    TATTrainer,
)
from advtrain.losses import count_predicted, kl_divergence, task_loss
from advtrain.trainers.base import is_causal_lm
from advtrain.trainers.tat import CAUSAL_LM_REFUSAL
from conftest import VOCAB_SIZE, grads_of, read_jsonl

FAMILIES = ("llama", "qwen2")
TEXTS = [
    "a gorgeous , witty , seductive movie .",
    "the film is bad",
    "it 's a cold , dull , empty story .",
    "a fine film",
]
PROMPT = [2, 1, 4, 0]  # the first tokens of each row are a prompt: labelled -100
TRANSFORMERS_5 = int(transformers.__version__.split(".")[0]) >= 5


def make_causal_lm(family: str = "llama", seed: int = 0, layers: int = 2):
    """A tiny causal LM, seeded, dropout off. ``initializer_range=0.2`` gives logits of about unit scale, so that the
    divergence terms and their gradients are far above float32 rounding."""
    torch.manual_seed(seed)
    common = dict(
        vocab_size=VOCAB_SIZE, hidden_size=32, num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
        intermediate_size=37, max_position_embeddings=64, attention_dropout=0.0, initializer_range=0.2,
        pad_token_id=0, bos_token_id=2, eos_token_id=3, tie_word_embeddings=False,
    )
    if family == "llama":
        return LlamaForCausalLM(LlamaConfig(**common))
    if family == "qwen2":
        return Qwen2ForCausalLM(Qwen2Config(use_sliding_window=False, **common))
    raise ValueError(f"unknown family {family!r}")


def lm_batch(tokenizer, texts=TEXTS, prompt=PROMPT) -> dict[str, torch.Tensor]:
    """A right-padded batch whose labels are its input_ids (as a causal LM's `forward(labels=)` takes them), with
    -100 on the padding and on each row's prompt."""
    encoded = tokenizer(texts, padding=True, truncation=True, max_length=16, return_token_type_ids=False,
                        return_tensors="pt")
    labels = encoded["input_ids"].clone()
    labels[encoded["attention_mask"] == 0] = -100
    for row, k in enumerate(prompt):
        labels[row, :k] = -100
    return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"], "labels": labels}


def _label_counts(labels: torch.Tensor) -> list[int]:
    return (labels[:, 1:] != -100).sum(1).tolist()


# ----------------------------------------------------------------------------------------------------------------
# The objective by hand: the shift, the -100s and the means written out with plain torch.


def _shifted(logits, labels):
    """The logits at t against the label at t + 1, where that label is not -100."""
    keep = labels[:, 1:].reshape(-1) != -100
    return logits[:, :-1].reshape(-1, logits.shape[-1])[keep].float(), labels[:, 1:].reshape(-1)[keep]


def _ce(logits, labels, reduction="mean"):
    x, y = _shifted(logits, labels)
    return F.cross_entropy(x, y, reduction=reduction)


def _kl(p_logits, q_logits, labels, reduction="mean"):
    """KL(p ‖ q) over the predicted positions: summed over the vocabulary, mean (or sum) over the positions."""
    (p, _), (q, _) = _shifted(p_logits, labels), _shifted(q_logits, labels)
    log_p, log_q = F.log_softmax(p, -1), F.log_softmax(q, -1)
    per_position = (log_p.exp() * (log_p - log_q)).sum(-1)
    return per_position.sum() if reduction == "sum" else per_position.mean()


def _forward(model, batch, embeds):
    return model(inputs_embeds=embeds, attention_mask=batch["attention_mask"]).logits


def _mask(batch):
    return batch["attention_mask"].float().unsqueeze(-1)


def _l2_step(grad, mask):
    g = grad * mask
    return g / (g.flatten(1).norm(dim=1).view(-1, 1, 1) + 1e-12)


def _l2_ball(delta, epsilon):
    if epsilon == 0:
        return delta
    return delta * (epsilon / (delta.flatten(1).norm(dim=1).view(-1, 1, 1) + 1e-12)).clamp(max=1)


def fixed_init(embeds, mask, init_std, generator=None):
    """A fixed, per-token δ₀ (the same whatever the batch layout) instead of N(0, σ²) noise; 0 at σ = 0."""
    if init_std == 0:
        return torch.zeros(embeds.shape, dtype=torch.float32, device=embeds.device)
    return 0.3 * torch.sin(7 * embeds.detach().float()) * mask


def fixed_uniform(embeds, mask, magnitude, norm, generator=None):
    """A fixed, per-token start for FreeLB's δ₀ and R3F's z (`uniform_delta`) of the requested magnitude."""
    return magnitude * torch.sin(11 * embeds.detach().float()) * mask


@pytest.fixture
def fixed_noise(monkeypatch):
    monkeypatch.setattr("advtrain.perturbation.init_delta", fixed_init)
    monkeypatch.setattr("advtrain.perturbation.uniform_delta", fixed_uniform)


def _hand_pgd_lds(model, batch, method, h):
    """PGD-AT (``CE + α·CE(e + δ)``, δ ascending the summed CE) or LDS (``CE + α·KL(sg p(e) ‖ p(e + δ))``)."""
    labels, mask = batch["labels"], _mask(batch)
    embeds = model.get_input_embeddings()(batch["input_ids"])
    clean = _forward(model, batch, embeds)
    delta = fixed_init(embeds, mask, h["init_std"])
    for _ in range(h["steps"]):
        delta = delta.detach().requires_grad_()
        adv = _forward(model, batch, embeds.detach() + delta)
        inner = _ce(adv, labels, "sum") if method == "pgd_at" else _kl(clean.detach(), adv, labels, "sum")
        (grad,) = torch.autograd.grad(inner, delta)
        direction = _l2_step(grad, mask) if h["step_norm"] == "l2" else grad * mask
        delta = _l2_ball((delta.detach() + h["step_size"] * direction) * mask, h["epsilon"])
    adv = _forward(model, batch, model.get_input_embeddings()(batch["input_ids"]) + delta)
    term = _ce(adv, labels) if method == "pgd_at" else _kl(clean.detach(), adv, labels)
    return _ce(clean, labels) + h["weight"] * term


def _hand_alum(model, batch, h, clean_gradient=True):
    """ALUM's defaults (MT-DNN code): the gradient of ``SKL(sg f(e), f(e + noise))`` taken at the noise, ``δ = η ·``
    its per-token L∞-normalised direction (noise dropped, no ball); the term ``KL(sg p ‖ q) + KL(sg q ‖ p)`` (or with
    the clean side a constant throughout, ``adv_clean_gradient=False``)."""
    labels, mask = batch["labels"], _mask(batch)
    embeds = model.get_input_embeddings()(batch["input_ids"])
    clean = _forward(model, batch, embeds)
    noise = fixed_init(embeds, mask, h["init_std"]).requires_grad_()
    adv = _forward(model, batch, embeds.detach() + noise)
    inner = _kl(clean.detach(), adv, labels, "sum") + _kl(adv, clean.detach(), labels, "sum")
    (grad,) = torch.autograd.grad(inner, noise)
    grad = grad * mask
    delta = h["step_size"] * grad / (grad.abs().amax(-1, keepdim=True) + 1e-12) * mask
    adv = _forward(model, batch, model.get_input_embeddings()(batch["input_ids"]) + delta)
    if clean_gradient:
        term = _kl(clean.detach(), adv, labels) + _kl(adv.detach(), clean, labels)
    else:
        term = _kl(clean.detach(), adv, labels) + _kl(adv, clean.detach(), labels)
    return _ce(clean, labels) + h["weight"] * term


def _hand_r3f(model, batch, h):
    """``CE + λ·(KL(p ‖ q) + KL(q ‖ p))``, p = f(e), q = f(e + z), both sides live."""
    labels = batch["labels"]
    embeds = model.get_input_embeddings()(batch["input_ids"])
    z = fixed_uniform(embeds, _mask(batch), h["init_std"], "linf")
    clean = _forward(model, batch, embeds)
    noisy = _forward(model, batch, embeds + z)
    return _ce(clean, labels) + h["weight"] * (_kl(clean, noisy, labels) + _kl(noisy, clean, labels))


def _hand_freelb(model, batch, h):
    """FreeLB: K forwards at e + δ_k, each CE / K back-propagated at once, δ moved between them (L2, bounded)."""
    labels, mask = batch["labels"], _mask(batch)
    steps = h["steps"]
    delta = fixed_uniform(model.get_input_embeddings()(batch["input_ids"]), mask, h["init_mag"], "l2")
    total = 0.0
    for k in range(steps):
        delta = delta.detach().requires_grad_()
        loss = _ce(_forward(model, batch, model.get_input_embeddings()(batch["input_ids"]) + delta), labels) / steps
        loss.backward()
        total = total + loss.detach()
        if k == steps - 1:
            break
        delta = _l2_ball((delta.detach() + h["step_size"] * _l2_step(delta.grad, mask)) * mask, h["epsilon"])
    return total


# cell: (trainer, config, config fields, hand-computed objective, hyper-parameters)
PGD = dict(steps=2, step_size=0.3, epsilon=0.5, init_std=0.05, step_norm="l2", weight=0.7)
PGD_FAST = dict(steps=1, step_size=0.3, epsilon=0.0, init_std=0.0, step_norm="none", weight=0.7)
ALUM = dict(init_std=0.05, step_size=0.2, weight=0.7)
FREELB = dict(steps=3, step_size=0.4, epsilon=0.5, init_mag=0.3)
R3F = dict(init_std=0.3, weight=0.7)


def _pgd_fields(h):
    return dict(adv_steps=h["steps"], adv_step_size=h["step_size"], adv_epsilon=h["epsilon"],
                adv_init_std=h["init_std"], adv_norm="l2", adv_step_norm=h["step_norm"], adv_weight=h["weight"])


HAND_CELLS = {
    "pgd_at-split": (PGDATTrainer, PGDATConfig, _pgd_fields(PGD), lambda m, b: _hand_pgd_lds(m, b, "pgd_at", PGD)),
    "pgd_at-joint": (PGDATTrainer, PGDATConfig, {**_pgd_fields(PGD), "adv_backward": "joint"},
                     lambda m, b: _hand_pgd_lds(m, b, "pgd_at", PGD)),
    # The first direction from the clean backward, unnormalised: it must be ∇ of the summed CE whatever the token
    # weight the backward ran under.
    "pgd_at-fast": (PGDATTrainer, PGDATConfig, {**_pgd_fields(PGD_FAST), "adv_fast_first_step": True},
                    lambda m, b: _hand_pgd_lds(m, b, "pgd_at", PGD_FAST)),
    "lds-split": (LDSTrainer, LDSConfig, _pgd_fields(PGD), lambda m, b: _hand_pgd_lds(m, b, "lds", PGD)),
    "alum-joint": (ALUMTrainer, ALUMConfig, dict(adv_init_std=0.05, adv_step_size=0.2, adv_weight=0.7),
                   lambda m, b: _hand_alum(m, b, ALUM)),
    "alum-recompute": (ALUMTrainer, ALUMConfig, dict(adv_init_std=0.05, adv_step_size=0.2, adv_weight=0.7,
                                                     adv_backward="recompute"), lambda m, b: _hand_alum(m, b, ALUM)),
    "alum-split": (ALUMTrainer, ALUMConfig, dict(adv_init_std=0.05, adv_step_size=0.2, adv_weight=0.7,
                                                 adv_clean_gradient=False),
                   lambda m, b: _hand_alum(m, b, ALUM, clean_gradient=False)),
    "freelb": (FreeLBTrainer, FreeLBConfig, dict(adv_steps=3, adv_step_size=0.4, adv_epsilon=0.5, adv_init_mag=0.3,
                                                 adv_norm="l2"), lambda m, b: _hand_freelb(m, b, FREELB)),
    "r3f-joint": (R3FTrainer, R3FConfig, dict(adv_init_std=0.3, adv_weight=0.7), lambda m, b: _hand_r3f(m, b, R3F)),
    "r3f-recompute": (R3FTrainer, R3FConfig, dict(adv_init_std=0.3, adv_weight=0.7, adv_backward="recompute"),
                      lambda m, b: _hand_r3f(m, b, R3F)),
}
EXPECTED_PATH = {"pgd_at-split": "split", "pgd_at-joint": "joint", "pgd_at-fast": "split", "lds-split": "split",
                 "alum-joint": "joint", "alum-recompute": "recompute", "alum-split": "split", "freelb": "joint",
                 "r3f-joint": "joint", "r3f-recompute": "recompute"}


def _trainer(trainer_cls, config_cls, tmp_path, model, **fields):
    args = config_cls(output_dir=str(tmp_path), report_to=[], use_cpu=True, **fields)
    trainer = trainer_cls(model=model, args=args)
    trainer.current_gradient_accumulation_steps = 1  # set by Trainer.train(); training_step divides by it
    return trainer


# ----------------------------------------------------------------------------------------------------------------
# 1. At δ = 0: the model's own loss.


@pytest.mark.parametrize("family", FAMILIES)
def test_causal_lm_loss_at_zero_delta_is_the_models_own_loss(tmp_path, tokenizer, family):
    model = make_causal_lm(family, seed=1).train()  # dropout is off: train mode computes what eval mode does
    assert is_causal_lm(model)
    batch = lm_batch(tokenizer)
    counts = _label_counts(batch["labels"])
    assert bool((batch["attention_mask"] == 0).any()) and len(set(counts)) == len(counts)  # padded, counts differ
    with torch.no_grad():
        outputs = model(**batch)
    assert int(count_predicted(batch["labels"], "causal_lm")) == sum(counts)
    loss = task_loss(outputs.logits, batch["labels"], "causal_lm")
    # to 1e-6 relative (a few float32 ulps of a loss near 6: the model averages over every position, -100s included)
    assert loss.item() == pytest.approx(outputs.loss.item(), rel=1e-6, abs=0)
    assert loss.item() == pytest.approx(_ce(outputs.logits, batch["labels"]).item(), rel=1e-6, abs=0)
    # Without the shift the loss is another number: the comparison above sees a missing or doubled shift.
    assert abs(task_loss(outputs.logits, batch["labels"], "masked_lm").item() - outputs.loss.item()) > 1e-2
    assert kl_divergence(outputs.logits, outputs.logits, "causal_lm", batch["labels"]).abs().item() < 1e-7

    for trainer_cls, config_cls in [(PGDATTrainer, PGDATConfig), (LDSTrainer, LDSConfig), (ALUMTrainer, ALUMConfig),
                                    (FreeLBTrainer, FreeLBConfig), (R3FTrainer, R3FConfig)]:
        # adv_weight = 0 trains plainly: the model's own loss
        trainer = _trainer(trainer_cls, config_cls, tmp_path, model, adv_weight=0.0)
        assert trainer.compute_loss(model, batch).item() == pytest.approx(outputs.loss.item(), rel=1e-6, abs=0)
        # the clean pass of the adversarial step, and the perturbation path at δ = 0
        trainer = _trainer(trainer_cls, config_cls, tmp_path, model)
        with torch.no_grad():
            clean = trainer._clean_forward(model, batch)
            assert clean.task == "causal_lm"
            assert clean.loss.item() == pytest.approx(outputs.loss.item(), rel=1e-6, abs=0)
            zero = torch.zeros_like(clean.embeds, dtype=torch.float32)
            for live in (False, True):
                perturbed = trainer._perturbed_logits(model, clean, zero, live_embeds=live)
                torch.testing.assert_close(perturbed, outputs.logits, rtol=0, atol=1e-6)
            if trainer_cls in (LDSTrainer, ALUMTrainer):  # the divergence of the clean pass from itself
                assert trainer.perturbation_objective(outputs.logits, clean).abs().item() < 1e-5


# ----------------------------------------------------------------------------------------------------------------
# 2. One step of every trainer equals its objective by hand.


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("cell", HAND_CELLS)
def test_step_equals_the_hand_computed_objective(tmp_path, tokenizer, fixed_noise, family, cell, one_thread):
    trainer_cls, config_cls, fields, hand = HAND_CELLS[cell]
    batch = lm_batch(tokenizer)
    model = make_causal_lm(family, seed=3).train()
    expected_loss = hand(model, batch)
    if cell != "freelb":  # FreeLB's reference back-propagates each step itself
        expected_loss.backward()
    expected = grads_of(model)
    # The adversarial term moves the gradient far above the tolerance.
    plain = make_causal_lm(family, seed=3).train()
    _ce(plain(**{k: v for k, v in batch.items() if k != "labels"}).logits, batch["labels"]).backward()
    assert max(float((expected[n] - g).abs().max()) for n, g in grads_of(plain).items()) > 1e-3

    model = make_causal_lm(family, seed=3).train()
    trainer = _trainer(trainer_cls, config_cls, tmp_path, model, **fields)
    assert trainer.backward_path == EXPECTED_PATH[cell]
    # Inside a window of G = 2 micro-batches holding N = 3·c label tokens (c: this batch's), the step is weighted by
    # c·G/N and divided by G: 1/3 of the batch's token-mean objective, on every path (and the fast first step's δ
    # is still that of the unweighted objective).
    trainer.current_gradient_accumulation_steps = 2
    num_items = 3 * count_predicted(batch["labels"], "causal_lm")
    loss = trainer.training_step(model, batch, num_items_in_batch=num_items)
    assert trainer._token_weight == 1.0  # reset after the step
    assert loss.item() == pytest.approx(expected_loss.item() / 3, abs=1e-5)
    grads = grads_of(model)
    assert grads.keys() == expected.keys() and len(grads) > 10
    for name, value in expected.items():
        torch.testing.assert_close(grads[name], value / 3, atol=1e-5, rtol=1e-4, msg=name)

    # Called directly (no count), the step is the batch's token mean.
    model = make_causal_lm(family, seed=3).train()
    trainer = _trainer(trainer_cls, config_cls, tmp_path, model, **fields)
    loss = trainer.training_step(model, batch)
    assert loss.item() == pytest.approx(expected_loss.item(), abs=1e-5)
    for name, value in grads_of(model).items():
        torch.testing.assert_close(value, expected[name], atol=1e-5, rtol=1e-4, msg=name)


# ----------------------------------------------------------------------------------------------------------------
# 3. Gradient accumulation with different numbers of label tokens.


def lm_dataset(tokenizer, n: int = 8, prompt: bool = True) -> Dataset:
    """`n` MR sentences of different lengths as a causal-LM dataset. With `prompt` each carries its labels, -100 on a
    prompt of 1 to 3 tokens (so also at position 0, which the shift never uses); without, no labels (the collator
    makes them)."""
    rows = []
    for i, row in enumerate(read_jsonl("mr", "train", n)):
        ids = tokenizer(row["text"], truncation=True, max_length=6 + 2 * (i % 4), return_token_type_ids=False)
        example = dict(ids)
        if prompt:
            example["labels"] = [-100] * (1 + i % 3) + ids["input_ids"][1 + i % 3:]
        rows.append(example)
    return Dataset.from_list(rows)


def pad_collator(features):
    """Right padding: 0 in input_ids and attention_mask, -100 in labels."""
    length = max(len(f["input_ids"]) for f in features)
    batch = {}
    for key, fill in (("input_ids", 0), ("attention_mask", 0), ("labels", -100)):
        batch[key] = torch.tensor([f[key] + [fill] * (length - len(f[key])) for f in features])
    return batch


# The losses are float32 (the model's own and advtrain's upcast the logits) also for a float64 model: weights agree to
# about float32 rounding, far below what a wrong weighting or count moves them (> 1e-3).
FLOAT32 = 1e-6
TRAIN = dict(report_to=[], use_cpu=True, optim="sgd", learning_rate=0.5, lr_scheduler_type="constant",
             max_grad_norm=0.0, save_strategy="no", max_steps=2, disable_tqdm=True, seed=0)
ACCUMULATION_CELLS = {
    "pgd_at-split": (PGDATTrainer, PGDATConfig, _pgd_fields(PGD)),
    "pgd_at-fast": (PGDATTrainer, PGDATConfig, {**_pgd_fields(PGD_FAST), "adv_fast_first_step": True}),
    "lds-split": (LDSTrainer, LDSConfig, _pgd_fields(PGD)),
    "alum-joint": HAND_CELLS["alum-joint"][:3],
    "alum-recompute": HAND_CELLS["alum-recompute"][:3],
    "freelb": HAND_CELLS["freelb"][:3],
    "r3f-joint": HAND_CELLS["r3f-joint"][:3],
}


def _train(trainer_cls, args, model, data, collator):
    trainer = trainer_cls(model=model, args=args, train_dataset=data, data_collator=collator)
    trainer.train()
    assert trainer.state.global_step == args.max_steps
    return {n: p.detach().clone() for n, p in model.state_dict().items()}


def _relative_difference(a: dict, b: dict, before: dict) -> float:
    """‖Δa − Δb‖ / ‖Δa‖ over all weights, Δ = change from `before`."""
    num = sum(float((a[n] - b[n]).double().pow(2).sum()) for n in a)
    den = sum(float((a[n] - before[n]).double().pow(2).sum()) for n in a)
    return (num / den) ** 0.5


def _layouts(trainer_cls, config_cls, fields, tmp_path, family, data, collator):
    """The weights after training in float64 with 4 examples × accumulation 1, and 1 × 4."""
    weights = []
    for batch_size, accumulation in ((4, 1), (1, 4)):
        model = make_causal_lm(family, seed=4).double()
        args = config_cls(output_dir=str(tmp_path), per_device_train_batch_size=batch_size,
                          gradient_accumulation_steps=accumulation, **TRAIN, **fields)
        weights.append(_train(trainer_cls, args, model, data, collator))
    return weights


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("cell", ACCUMULATION_CELLS)
def test_accumulation_4x1_equals_1x4_with_different_label_counts(tmp_path, tokenizer, fixed_noise, family, cell,
                                                                  one_thread):
    data = lm_dataset(tokenizer)
    counts = [sum(label != -100 for label in row["labels"][1:]) for row in data]
    assert len(set(counts[:4])) > 2 and len(set(counts[4:])) > 2
    before = make_causal_lm(family, seed=4).double().state_dict()
    # float64: what is compared is the weighting of the micro-batches, not float32 rounding, which depends on the
    # batch layout and which the divergence-based inner objectives amplify.
    weights = _layouts(*ACCUMULATION_CELLS[cell], tmp_path, family, data, pad_collator)
    assert max(float((weights[0][n] - before[n]).abs().max()) for n in before) > 1e-3
    assert _relative_difference(weights[0], weights[1], before) <= 1e-5


class ShiftedCountTrainer(Trainer):
    """The plain Trainer with the window's label tokens counted after the shift, on either transformers major."""

    def get_batch_samples(self, epoch_iterator, num_batches, device):
        batches, _ = super().get_batch_samples(epoch_iterator, num_batches, device)
        return batches, sum((b["labels"][:, 1:] != -100).sum() for b in batches).to(device)


def _plain_args(tmp_path, batch_size, accumulation):
    return TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=batch_size,
                             gradient_accumulation_steps=accumulation, **TRAIN)


@pytest.mark.parametrize("family", FAMILIES)
def test_plain_training_is_the_token_mean_of_the_plain_trainer(tmp_path, tokenizer, family, one_thread):
    """advtrain at adv_weight=0 and the plain `Trainer` (which hands the model `num_items_in_batch`) both take the
    mean over the window's label tokens, in either layout. (Position 0 is -100 here, where transformers 4.57, which
    counts the labels before the shift, counts as advtrain does.)"""
    data = lm_dataset(tokenizer)
    before = make_causal_lm(family, seed=4).double().state_dict()
    plain = [_train(Trainer, _plain_args(tmp_path, b, g), make_causal_lm(family, seed=4).double(), data, pad_collator)
             for b, g in ((4, 1), (1, 4))]
    assert _relative_difference(plain[0], plain[1], before) <= FLOAT32
    adv = _layouts(PGDATTrainer, PGDATConfig, {"adv_weight": 0.0}, tmp_path, family, data, pad_collator)
    for weights in adv:
        assert _relative_difference(plain[0], weights, before) <= FLOAT32

    # A batch mean per micro-batch (what advtrain's terms are) is not the token mean: the weighting is what matters.
    class BatchMean(PGDATTrainer):
        def _token_weighting(self, inputs, num_items_in_batch):
            return super()._token_weighting(inputs, None)

    unweighted = _layouts(BatchMean, PGDATConfig, {"adv_weight": 0.0}, tmp_path, family, data, pad_collator)
    assert _relative_difference(unweighted[0], unweighted[1], before) > 1e-2


def test_language_modeling_collator_accumulates_exactly(tmp_path, tokenizer, fixed_noise, one_thread):
    """`DataCollatorForLanguageModeling(mlm=False)` labels every real token (position 0 too) and -100 on padding;
    ALUM accumulates exactly and at adv_weight=0 trains as the plain `Trainer` does."""
    collator = DataCollatorForLanguageModeling(tokenizer, mlm=False)
    data = lm_dataset(tokenizer, prompt=False)
    batch = collator([data[i] for i in range(4)])
    assert bool((batch["labels"] == -100).any()) and bool((batch["labels"][:, 0] != -100).all())
    family = "llama"
    before = make_causal_lm(family, seed=4).double().state_dict()
    alum = _layouts(*ACCUMULATION_CELLS["alum-joint"], tmp_path, family, data, collator)
    assert max(float((alum[0][n] - before[n]).abs().max()) for n in before) > 1e-3
    assert _relative_difference(alum[0], alum[1], before) <= 1e-5

    adv = _layouts(ALUMTrainer, ALUMConfig, {"adv_weight": 0.0}, tmp_path, family, data, collator)
    assert _relative_difference(adv[0], adv[1], before) <= FLOAT32
    # The token mean over the window: the plain Trainer dividing the summed loss by the shifted label count (what
    # transformers 5 counts; 4.57 counts the labels before the shift, one more per row than the loss averages over).
    reference = _train(ShiftedCountTrainer, _plain_args(tmp_path, 4, 1), make_causal_lm(family, seed=4).double(),
                       data, collator)
    assert _relative_difference(reference, adv[0], before) <= FLOAT32
    plain = _train(Trainer, _plain_args(tmp_path, 4, 1), make_causal_lm(family, seed=4).double(), data, collator)
    if TRANSFORMERS_5:
        assert _relative_difference(plain, adv[0], before) <= FLOAT32
    else:
        assert _relative_difference(plain, reference, before) > 1e-3


# ----------------------------------------------------------------------------------------------------------------
# 4.–6. LoRA, gradient checkpointing, TAT.


@pytest.mark.parametrize("family", FAMILIES)
def test_lora_alum_step_changes_only_adapter_weights(tmp_path, tokenizer, family, one_thread):
    peft = pytest.importorskip("peft")
    model = peft.get_peft_model(
        make_causal_lm(family, seed=5),
        peft.LoraConfig(task_type="CAUSAL_LM", r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj"]),
    )
    assert is_causal_lm(model)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    args = ALUMConfig(output_dir=str(tmp_path), per_device_train_batch_size=4, **{**TRAIN, "max_steps": 1},
                      adv_init_std=0.05, adv_step_size=0.2)
    trainer = ALUMTrainer(model=model, args=args, train_dataset=lm_dataset(tokenizer, 4), data_collator=pad_collator)
    seen = []
    adversarial_loss = trainer.adversarial_loss
    trainer.adversarial_loss = lambda adv_logits, clean: seen.append(clean.task) or adversarial_loss(adv_logits, clean)
    trainer.train()
    assert seen == ["causal_lm"]
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert any("lora_B" in n for n in changed)
    assert all("lora_" in n for n in changed), sorted(changed)
    after = dict(model.named_parameters())
    base = [n for n in before if "lora_" not in n]
    assert len(base) > 10 and all(torch.equal(after[n], before[n]) for n in base)  # bit-identical


@pytest.mark.parametrize("family", FAMILIES)
def test_gradient_checkpointing_gives_the_same_pgd_at_step(tmp_path, tokenizer, family):
    batch = lm_batch(tokenizer)
    results = []
    for checkpointing in (False, True):
        model = make_causal_lm(family, seed=8)
        trainer = _trainer(PGDATTrainer, PGDATConfig, tmp_path, model, gradient_checkpointing=checkpointing,
                           gradient_checkpointing_kwargs={"use_reentrant": False}, **_pgd_fields(PGD))
        if checkpointing:  # what Trainer.train() does first
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=trainer.args.gradient_checkpointing_kwargs)
            assert model.is_gradient_checkpointing
        model.train()
        calls = []  # calls of a linear layer inside a checkpointed layer (forward hooks do not see the recompute)
        down_proj = model.model.layers[0].mlp.down_proj
        down_proj.forward = lambda x, forward=down_proj.forward, calls=calls: calls.append(1) or forward(x)
        torch.manual_seed(9)
        loss = trainer.training_step(model, batch)
        results.append((loss, grads_of(model), len(calls)))
    (loss_a, grads_a, calls_a), (loss_b, grads_b, calls_b) = results
    assert calls_b > calls_a  # the checkpointed layers were recomputed in the backward
    assert trainer._adv_metrics["adv/loss"][-1].item() > 0
    torch.testing.assert_close(loss_b, loss_a, atol=1e-6, rtol=1e-5)
    assert grads_a.keys() == grads_b.keys() and len(grads_a) > 10
    for name in grads_a:
        torch.testing.assert_close(grads_b[name], grads_a[name], atol=1e-6, rtol=1e-4, msg=name)


@pytest.mark.parametrize("family", FAMILIES)
def test_tat_refuses_a_causal_lm_and_says_why(tmp_path, family):
    model = make_causal_lm(family, layers=1)
    name = type(model).__name__
    with pytest.raises(ValueError, match=re.escape(CAUSAL_LM_REFUSAL.format(name))) as refused:
        TATTrainer(model=model, args=TATConfig(output_dir=str(tmp_path), report_to=[], use_cpu=True))
    message = str(refused.value)
    assert f"TATTrainer cannot train {name}, a causal LM" in message
    assert "whole vocabulary" in message and "Use ALUMTrainer" in message
