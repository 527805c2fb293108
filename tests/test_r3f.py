"""R3F: a step equals ``CE(f(e)) + λ·SKL(f(e), f(e + z))`` written by hand (value and parameter gradient, on the
default and the recompute path), the noise is zero on padding and has the configured scale, and the config refuses
what R3F does not do."""

import re

import pytest
import torch
import torch.nn.functional as F

from advtrain import R3FConfig, R3FTrainer
from advtrain.trainers.registry import method_classes
from conftest import batch_of, grads_of, make_model

TEXTS = ["a gorgeous , witty , seductive movie .", "the film is bad", "it 's a cold , dull , empty story ."]
LAMBDA = 3.0


def _trainer(tmp_path, model, **config):
    args = R3FConfig(output_dir=str(tmp_path), report_to=[], use_cpu=True, **config)
    trainer = R3FTrainer(model=model, args=args)
    trainer.current_gradient_accumulation_steps = 1  # set by Trainer.train(); training_step divides by it
    return trainer


def _fixed_noise(batch, hidden=32):
    """A fixed, large-ish z (so that the term's gradient is far above 1e-5), zero on padding."""
    generator = torch.Generator().manual_seed(7)
    z = torch.rand(*batch["input_ids"].shape, hidden, generator=generator) * 2.0 - 1.0
    return z * batch["attention_mask"].unsqueeze(-1).float()


def _hand_loss(model, batch, z, live_targets=True):
    """``CE(f(e), y) + λ·(KL(p‖q) + KL(q‖p))`` through `inputs_embeds`, p = softmax f(e), q = softmax f(e + z). With
    `live_targets` both sides are live (the fairseq reference criterion); without, each KL's first side is a constant
    (MT-DNN's ``SymKlCriterion``, ALUM's and TAT's term): the same value, another gradient."""
    rest = {k: v for k, v in batch.items() if k not in ("input_ids", "labels")}
    embeds = model.get_input_embeddings()(batch["input_ids"])
    clean = model(inputs_embeds=embeds, **rest).logits
    noisy = model(inputs_embeds=embeds + z, **rest).logits
    log_p, log_q = F.log_softmax(clean, -1), F.log_softmax(noisy, -1)
    p, q = (log_p.exp(), log_q.exp()) if live_targets else (log_p.exp().detach(), log_q.exp().detach())
    skl = ((p * (log_p - log_q)).sum(-1) + (q * (log_q - log_p)).sum(-1)).mean()
    return F.cross_entropy(clean, batch["labels"]) + LAMBDA * skl, skl


def _hand_gradient(batch, z, live_targets=True):
    model = make_model("bert", 2, seed=3).train()
    loss, skl = _hand_loss(model, batch, z, live_targets)
    loss.backward()
    return loss.detach(), skl.detach(), grads_of(model)


@pytest.mark.parametrize("backward", [None, "recompute"])
def test_step_equals_the_hand_computed_objective(tmp_path, tokenizer, monkeypatch, backward):
    batch = batch_of(tokenizer, TEXTS, [0, 1, 1])
    assert bool((batch["attention_mask"] == 0).any())
    z = _fixed_noise(batch)
    monkeypatch.setattr(R3FTrainer, "sample_noise", lambda self, embeds, mask: z.clone())
    expected_loss, skl, expected = _hand_gradient(batch, z)
    # At this z the term's gradient is far above the tolerance, and so is the difference a detached side would make.
    _, _, plain = _hand_gradient(batch, z * 0)
    _, _, detached = _hand_gradient(batch, z, live_targets=False)
    assert max(float((expected[n] - plain[n]).abs().max()) for n in expected) > 1e-3
    assert max(float((expected[n] - detached[n]).abs().max()) for n in expected) > 1e-4

    model = make_model("bert", 2, seed=3).train()
    trainer = _trainer(tmp_path, model, adv_weight=LAMBDA, adv_backward=backward)
    assert trainer.backward_path == (backward or "joint")
    loss = trainer.compute_loss(model, batch)
    assert loss.item() == pytest.approx(expected_loss.item(), abs=1e-5)
    model.zero_grad()

    logged = trainer.training_step(model, batch)
    assert logged.item() == pytest.approx(expected_loss.item(), abs=1e-5)
    grads = grads_of(model)
    assert grads.keys() == expected.keys() and len(grads) > 10
    for name, value in expected.items():
        torch.testing.assert_close(grads[name], value, atol=1e-5, rtol=1e-4, msg=name)
    assert trainer._adv_metrics["adv/loss"][-1].item() == pytest.approx(skl.item(), rel=1e-5)
    assert trainer._adv_metrics["adv/delta_norm"][-1].item() == pytest.approx(
        z.flatten(1).abs().amax(1).mean().item(), rel=1e-6)


@pytest.mark.parametrize("noise", ["uniform", "normal"])
def test_noise_is_zero_on_padding_and_has_the_configured_scale(tmp_path, tokenizer, noise):
    sigma = 0.02
    trainer = _trainer(tmp_path, make_model("bert", 2, seed=0), r3f_noise=noise, adv_init_std=sigma)
    embeds = torch.zeros(64, 10, 32)
    mask = torch.ones(64, 10, 1)
    mask[:, 6:] = 0
    torch.manual_seed(0)
    z = trainer.sample_noise(embeds, mask)
    assert z.dtype == torch.float32 and z.shape == embeds.shape
    assert torch.all(z[:, 6:] == 0)
    real = z[:, :6]
    if noise == "uniform":  # U(−σ, σ): bounded by σ, std σ/√3
        assert real.abs().max() <= sigma and real.abs().max() > 0.99 * sigma
        assert real.std().item() == pytest.approx(sigma / 3**0.5, rel=0.03)
    else:
        assert real.std().item() == pytest.approx(sigma, rel=0.03)
        assert real.abs().max() > 2 * sigma  # not clipped
    assert abs(real.mean().item()) < 0.05 * sigma

    # In a step, the z the noisy pass sees is zero on the batch's padding.
    model = make_model("bert", 2, seed=0).train()
    trainer = _trainer(tmp_path, model, r3f_noise=noise, adv_init_std=sigma)
    batch = batch_of(tokenizer, TEXTS, [0, 1, 1])
    seen = []
    perturbed_logits = trainer._perturbed_logits

    def spy(model, clean, delta, live_embeds):
        if delta is not None and live_embeds:
            seen.append(delta)
        return perturbed_logits(model, clean, delta, live_embeds)

    trainer._perturbed_logits = spy
    trainer.compute_loss(model, batch)
    assert len(seen) == 1  # one noisy forward, no ascent
    padding = batch["attention_mask"] == 0
    assert bool(padding.any()) and torch.all(seen[0][padding] == 0)
    assert bool((seen[0][~padding] != 0).all())


def test_defaults_registry_and_validation(tmp_path):
    args = R3FConfig(output_dir=str(tmp_path))
    assert (args.r3f_noise, args.adv_init_std, args.adv_weight) == ("uniform", 1e-5, 1.0)
    assert args.backward_path == "joint" and args.term_reads_clean_graph
    assert method_classes("r3f") == (R3FTrainer, R3FConfig)
    assert R3FConfig(output_dir=str(tmp_path), adv_backward="recompute").backward_path == "recompute"

    cases = {
        "`r3f_noise` must be one of ('uniform', 'normal'), got 'gaussian'": dict(r3f_noise="gaussian"),
        "`adv_init_std` must be a number > 0 (σ, the noise scale; at 0 the term is zero: set adv_weight=0": dict(
            adv_init_std=0.0),
        "`adv_steps` must be 1: R3F adds noise and takes no ascent step": dict(adv_steps=3),
        "`adv_backward` must be None, 'joint' or 'recompute' (R3F's term moves the clean prediction": dict(
            adv_backward="split"),
        "`adv_weight` must be a number ≥ 0": dict(adv_weight=-1.0),
    }
    for message, fields in cases.items():
        with pytest.raises(ValueError, match=re.escape(message)):
            R3FConfig(output_dir=str(tmp_path), **fields)
    # Checked again when training starts (a field set after construction).
    trainer = _trainer(tmp_path, make_model("bert", 2, seed=0))
    trainer.args.adv_steps = 2
    with pytest.raises(ValueError, match="no ascent step"):
        trainer.train()


def test_plain_training_outside_the_term(tmp_path, tokenizer):
    """Evaluation mode and adv_weight=0 give the model's own loss (no noise drawn)."""
    batch = batch_of(tokenizer, TEXTS, [0, 1, 1])
    model = make_model("bert", 2, seed=3)
    reference = model(**batch).loss
    trainer = _trainer(tmp_path, model.eval())
    assert trainer.compute_loss(model, batch).item() == pytest.approx(reference.item(), abs=1e-6)
    trainer = _trainer(tmp_path, model.train(), adv_weight=0.0)
    assert trainer.compute_loss(model, batch).item() == pytest.approx(reference.item(), abs=1e-6)
