"""FreeLB: one step's parameter gradient equals a hand-written K-step reference, accumulation, LoRA, a non-finite loss,
the FreeLB++ preset; and the code-faithful ALUM/TAT perturbation (δ = η · per-token L∞-normalised gradient)."""

import math

import pytest
import torch
import torch.nn.functional as F
from transformers import DataCollatorWithPadding

from advtrain import ALUMConfig, ALUMTrainer, FreeLBConfig, FreeLBTrainer, TATConfig, TATTrainer
from advtrain.losses import symmetric_kl
from advtrain.trainers.registry import method_classes
from conftest import MATRIX_FAMILIES, batch_of, grads_of, make_model, tokenized

TEXTS = ["a gorgeous , witty , seductive movie .", "the film is bad", "it 's a cold , dull , empty story ."]


def fixed_start(embeds, mask, magnitude, norm, generator=None):
    """A per-token δ₀ (the same whatever the batch layout) of the requested magnitude."""
    return magnitude * torch.sin(11 * embeds.detach().float()) * mask


@pytest.fixture
def fixed_delta0(monkeypatch):
    monkeypatch.setattr("advtrain.perturbation.uniform_delta", fixed_start)


def _trainer(tmp_path, model, **config):
    args = FreeLBConfig(output_dir=str(tmp_path), report_to=[], use_cpu=True, **config)
    trainer = FreeLBTrainer(model=model, args=args)
    trainer.current_gradient_accumulation_steps = 1
    return trainer


def _reference_grads(model, batch, steps, step_size, epsilon, init_mag, norm):
    """FreeLB Algorithm 1 by hand: K forwards at e + δ_k, each CE / K back-propagated, δ moved between them."""
    inputs = {k: v for k, v in batch.items() if k not in ("input_ids", "labels")}
    mask = batch["attention_mask"].float().unsqueeze(-1)
    model.zero_grad()
    embeds = model.get_input_embeddings()(batch["input_ids"])
    delta = fixed_start(embeds, mask, init_mag, norm)
    for k in range(steps):
        delta = delta.detach().requires_grad_()
        embeds = model.get_input_embeddings()(batch["input_ids"])
        loss = F.cross_entropy(model(**inputs, inputs_embeds=embeds + delta).logits, batch["labels"]) / steps
        loss.backward()
        if k == steps - 1:
            break
        g = delta.grad * mask
        if norm == "l2":
            size = g.flatten(1).norm(dim=1).view(-1, 1, 1)
        else:  # the reference code: the largest |g| of each example
            size = g.abs().flatten(1).amax(dim=1).view(-1, 1, 1)
        delta = (delta.detach() + step_size * g / size) * mask
        if epsilon > 0 and norm == "l2":
            delta = delta * (epsilon / delta.flatten(1).norm(dim=1)).clamp(max=1).view(-1, 1, 1)
        elif epsilon > 0:
            delta = delta.clamp(-epsilon, epsilon)
    return grads_of(model), delta.detach()


@pytest.mark.parametrize("norm", ["l2", "linf"])
@pytest.mark.parametrize("bounded", [True, False], ids=["bounded", "unbounded"])
def test_one_step_gradient_equals_the_hand_written_k_step_reference(tmp_path, tokenizer, fixed_delta0, norm, bounded):
    steps, step_size, init_mag = 3, 0.4, 0.3 if norm == "l2" else 0.05
    # A binding bound: l2 steps of 0.4 from a start of norm ≈ 0.3 exceed 0.5; linf steps of 0.4 exceed 0.1.
    epsilon = (0.5 if norm == "l2" else 0.1) if bounded else 0.0
    batch = batch_of(tokenizer, TEXTS, [0, 1, 1])
    model = make_model("bert", 2, seed=3).train()
    expected, final_delta = _reference_grads(model, batch, steps, step_size, epsilon, init_mag, norm)
    size = final_delta.flatten(1).norm(dim=1) if norm == "l2" else final_delta.flatten(1).abs().amax(dim=1)
    if bounded:
        assert torch.allclose(size, torch.full_like(size, epsilon), rtol=1e-5)  # the bound was reached
    else:
        assert bool((size > (0.8 if norm == "l2" else 0.4)).all())  # two free steps of 0.4

    model = make_model("bert", 2, seed=3).train()
    trainer = _trainer(tmp_path, model, adv_steps=steps, adv_step_size=step_size, adv_epsilon=epsilon,
                       adv_init_mag=init_mag, adv_norm=norm)
    trainer.training_step(model, batch)
    grads = grads_of(model)
    assert grads.keys() == expected.keys() and len(grads) > 10
    for name, value in expected.items():
        torch.testing.assert_close(grads[name], value, atol=1e-5, rtol=1e-4, msg=name)
    assert trainer._adv_metrics["adv/delta_norm"][-1].item() == pytest.approx(size.mean().item(), rel=1e-4)

    # compute_loss keeps every step's graph: its backward is the same gradient.
    model = make_model("bert", 2, seed=3).train()
    trainer = _trainer(tmp_path, model, adv_steps=steps, adv_step_size=step_size, adv_epsilon=epsilon,
                       adv_init_mag=init_mag, adv_norm=norm)
    trainer.compute_loss(model, batch).backward()
    for name, value in grads_of(model).items():
        torch.testing.assert_close(value, expected[name], atol=1e-5, rtol=1e-4, msg=name)


def test_uniform_start_has_the_reference_scale():
    from advtrain.perturbation import uniform_delta

    embeds = torch.zeros(64, 10, 32)
    mask = torch.ones(64, 10, 1)
    mask[:, 6:] = 0
    generator = torch.Generator().manual_seed(0)
    l2 = uniform_delta(embeds, mask, 0.6, "l2", generator)
    assert torch.all(l2[:, 6:] == 0)
    # U(-1, 1) has variance 1/3, so the per-example norm is about mag / √3.
    assert l2.flatten(1).norm(dim=1).mean().item() == pytest.approx(0.6 / math.sqrt(3), rel=0.02)
    linf = uniform_delta(embeds, mask, 0.05, "linf", generator)
    assert linf.abs().max() <= 0.05 and linf.abs().max() > 0.049
    assert torch.all(uniform_delta(embeds, mask, 0.0, "l2") == 0)


def test_accumulation_1x4_equals_4x1(tmp_path, tokenizer, fixed_delta0, one_thread):
    data = tokenized(tokenizer, "mr", "train", 4, max_length=16)
    before = make_model("bert", 2, seed=4).double().state_dict()
    weights = []
    for batch_size, accumulation in ((4, 1), (1, 4)):
        model = make_model("bert", 2, seed=4).double()
        args = FreeLBConfig(output_dir=str(tmp_path), report_to=[], use_cpu=True, optim="sgd", learning_rate=0.5,
                            lr_scheduler_type="constant", max_grad_norm=0.0, save_strategy="no", max_steps=1,
                            disable_tqdm=True, per_device_train_batch_size=batch_size,
                            gradient_accumulation_steps=accumulation, adv_init_mag=0.2, adv_step_size=0.3)
        FreeLBTrainer(model=model, args=args, train_dataset=data, data_collator=DataCollatorWithPadding(tokenizer)).train()
        weights.append({n: p.detach().clone() for n, p in model.state_dict().items()})
    num = sum(float((weights[0][n] - weights[1][n]).pow(2).sum()) for n in before)
    den = sum(float((weights[0][n] - before[n]).pow(2).sum()) for n in before)
    assert den > 1e-6 and (num / den) ** 0.5 <= 1e-5


def test_lora_trains_only_adapter_and_head(tmp_path, tokenizer, one_thread):
    peft = pytest.importorskip("peft")
    model = peft.get_peft_model(make_model("bert", 2, seed=5),
                                peft.LoraConfig(task_type="SEQ_CLS", r=4, lora_alpha=8, target_modules=["query", "value"]))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    data = tokenized(tokenizer, "mr", "train", 4, max_length=16)
    args = FreeLBConfig(output_dir=str(tmp_path), report_to=[], use_cpu=True, max_steps=1, save_strategy="no",
                        per_device_train_batch_size=4, learning_rate=0.1, disable_tqdm=True)
    FreeLBTrainer(model=model, args=args, train_dataset=data, data_collator=DataCollatorWithPadding(tokenizer)).train()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert any("lora_" in n for n in changed) and any("modules_to_save" in n for n in changed)
    assert all("lora_" in n or "modules_to_save" in n for n in changed), sorted(changed)


class _NaNAtStep(FreeLBTrainer):
    """The loss of ascent step `nan_step` (0-based) is NaN."""

    nan_step = 1

    def ascent_loss(self, logits, labels, task):
        self._calls = getattr(self, "_calls", 0) + 1
        loss = super().ascent_loss(logits, labels, task)
        return loss * float("nan") if self._calls - 1 == self.nan_step else loss


@pytest.mark.parametrize("nan_step", [0, 1, 2])
def test_a_nan_loss_never_reaches_a_weight(tmp_path, tokenizer, fixed_delta0, nan_step, one_thread):
    data = tokenized(tokenizer, "mr", "train", 4, max_length=16)
    common = dict(output_dir=str(tmp_path), report_to=[], use_cpu=True, max_steps=1, save_strategy="no", optim="sgd",
                  learning_rate=0.5, lr_scheduler_type="constant", max_grad_norm=0.0, per_device_train_batch_size=4,
                  logging_steps=1, disable_tqdm=True, adv_steps=3, adv_init_mag=0.2)
    model = make_model("bert", 2, seed=6)
    trainer_cls = type("NaN", (_NaNAtStep,), {"nan_step": nan_step})
    trainer = trainer_cls(model=model, args=FreeLBConfig(**common), train_dataset=data,
                          data_collator=DataCollatorWithPadding(tokenizer))
    trainer.train()
    assert all(torch.isfinite(p).all() for p in model.parameters())
    log = next(entry for entry in trainer.state.log_history if "loss" in entry)
    # adv/loss (like loss) is what the step trained on: the steps before the NaN, each / K
    assert log["adv/skipped"] == 1 and log["adv/loss"] == pytest.approx(log["loss"], abs=1e-4)
    assert (log["adv/loss"] == 0) == (nan_step == 0)

    # The weights took exactly the steps before the NaN: a FreeLB run with `nan_step` steps of its K = 3 weights.
    reference = make_model("bert", 2, seed=6)
    if nan_step:
        batch = next(iter(trainer.get_train_dataloader()))
        ref_trainer = _trainer(tmp_path, reference, adv_steps=nan_step, adv_init_mag=0.2)
        ref_trainer.training_step(reference, batch)
        with torch.no_grad():
            for p in reference.parameters():
                p -= 0.5 * p.grad * nan_step / 3
    for name, value in reference.state_dict().items():
        torch.testing.assert_close(model.state_dict()[name], value, atol=1e-6, rtol=1e-5, msg=name)


def test_logged_metrics_and_plain_evaluation(tmp_path, tokenizer):
    batch = batch_of(tokenizer, TEXTS, [0, 1, 1])
    model = make_model("bert", 2, seed=2)
    trainer = _trainer(tmp_path, model)
    model.train()
    loss = trainer.training_step(model, batch)
    metrics = trainer._adv_metrics
    assert set(metrics) == {"clean/loss", "adv/loss", "adv/delta_norm", "adv/skipped"}
    assert metrics["adv/loss"][-1].item() == pytest.approx(loss.item(), rel=1e-6)
    assert 0 < metrics["adv/delta_norm"][-1].item() <= 0.6 + 1e-6  # the default L2 bound
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(trainer.compute_loss(model, batch), model(**batch).loss)


@pytest.mark.parametrize("family", MATRIX_FAMILIES)
@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_perturbation_path_at_zero_delta_gives_the_models_logits(tmp_path, tokenizer, family, padding_side):
    model = make_model(family, 2, seed=3).eval()
    trainer = FreeLBTrainer(model=model, args=FreeLBConfig(output_dir=str(tmp_path), report_to=[], use_cpu=True))
    tokenizer.padding_side = padding_side
    try:
        batch = batch_of(tokenizer, TEXTS, [1, 0, 0])
    finally:
        tokenizer.padding_side = "right"
    with torch.no_grad():
        reference = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
        clean = trainer._clean_forward(model, batch)
        zero = torch.zeros_like(clean.embeds, dtype=torch.float32)
        torch.testing.assert_close(trainer._perturbed_logits(model, clean, zero, live_embeds=False), reference,
                                   rtol=0, atol=1e-6)


def test_config_fields_presets_and_registry(tmp_path):
    config = FreeLBConfig(output_dir=str(tmp_path))
    assert (config.adv_steps, config.adv_step_size, config.adv_epsilon, config.adv_init_mag, config.adv_norm) == (
        3, 0.1, 0.6, 1.0, "l2")
    plus = FreeLBConfig.freelb_plus_plus(output_dir=str(tmp_path), adv_steps=12)
    assert (plus.adv_steps, plus.adv_epsilon, plus.adv_step_size, plus.adv_init_mag) == (12, 0.0, 0.03, 0.05)
    assert FreeLBConfig.freelb_plus_plus(output_dir=str(tmp_path)).adv_steps == 10
    for name, value in [("adv_init_mag", -0.1), ("adv_init_mag", float("nan")), ("adv_backward", "split"),
                        ("adv_epsilon", -1.0), ("adv_steps", 0)]:
        with pytest.raises(ValueError, match=f"`{name}`"):
            FreeLBConfig(output_dir=str(tmp_path), **{name: value})
    assert method_classes("freelb") == (FreeLBTrainer, FreeLBConfig)
    import dataclasses

    assert all(f.metadata.get("help") for f in dataclasses.fields(FreeLBConfig) if f.name.startswith("adv_"))


# ----------------------------------------------------------------------------------------------------------------
# The MT-DNN semantics of the ALUM and TAT defaults.


NOISE = 0.05


def fixed_noise(embeds, mask, init_std, generator=None):
    """A fixed noise in place of N(0, σ²). Larger than σ = 1e-5: on this tiny random model the divergence between the
    clean logits and those at e + 1e-5 noise is below float32 resolution (its gradient is exactly 0)."""
    return NOISE * torch.cos(5 * embeds.detach().float()) * mask


def _found_delta(trainer_cls, config, model, batch):
    trainer = trainer_cls(model=model, args=config)
    trainer.current_gradient_accumulation_steps = 1
    clean = trainer._clean_forward(model, batch)
    return trainer._find_perturbation(model, clean).delta, clean


def _inner_grad_at(model, batch, clean_logits, point, objective):
    inputs = {k: v for k, v in batch.items() if k not in ("input_ids", "labels")}
    point = point.clone().requires_grad_()
    embeds = model.get_input_embeddings()(batch["input_ids"]).detach()
    logits = model(**inputs, inputs_embeds=embeds + point).logits
    (grad,) = torch.autograd.grad(objective(clean_logits.detach(), logits), point)
    return grad


def _skl_sum(p_logits, q_logits):
    # The divergence itself is tested in test_tat_alum.py; here it is the same function, so that what is compared is
    # the perturbation (a divergence between nearly equal distributions is float32 rounding to ~1e-3 relative).
    return symmetric_kl(p_logits, q_logits, "classification", reduction="sum")


@pytest.mark.parametrize("method", ["alum", "tat"])
@pytest.mark.parametrize("reading", ["code", "paper_text"])
def test_default_delta_is_eta_times_the_per_token_linf_normalised_gradient(tmp_path, tokenizer, monkeypatch, method,
                                                                           reading):
    monkeypatch.setattr("advtrain.perturbation.init_delta", fixed_noise)
    batch = batch_of(tokenizer, TEXTS, [0, 1, 2])
    mask = batch["attention_mask"].float().unsqueeze(-1)
    trainer_cls, config_cls = (ALUMTrainer, ALUMConfig) if method == "alum" else (TATTrainer, TATConfig)
    extra = {} if method == "alum" else {"tat_fixed_tally": [[0, 1, 0], [0, 0, 1], [1, 0, 0]]}
    common = dict(output_dir=str(tmp_path), report_to=[], use_cpu=True, **extra)
    config = config_cls(**common) if reading == "code" else config_cls.paper_text(**common)
    eta, sigma = (1e-3 if method == "alum" else 1e-4), 1e-5
    assert (config.adv_step_size, config.adv_init_std, config.adv_steps) == (eta, sigma, 1)
    model = make_model("bert", 3, seed=8).eval()  # dropout off
    delta, clean = _found_delta(trainer_cls, config, model, batch)

    noise = fixed_noise(clean.embeds, mask, sigma)
    assert float(noise.abs().max()) > 0.04
    if method == "alum":
        grad = _inner_grad_at(model, batch, clean.logits, noise, _skl_sum)
        sign = 1.0
    else:
        targets = (batch["labels"] + 1) % 3
        grad = _inner_grad_at(model, batch, clean.logits, noise,
                              lambda _, logits: F.cross_entropy(logits, targets, reduction="sum"))
        sign = -1.0  # toward the target
    grad = grad * mask
    direction = grad / (grad.abs().amax(dim=-1, keepdim=True) + 1e-12)
    if reading == "code":
        expected = sign * eta * direction
        # every real token moves by exactly η in L∞; padding stays 0
        per_token = delta.abs().amax(dim=-1)
        torch.testing.assert_close(per_token[mask[..., 0] > 0], torch.full_like(per_token[mask[..., 0] > 0], eta))
    else:
        expected = (noise + sign * eta * direction).clamp(-1e-5, 1e-5)
        assert delta.abs().max() <= 1e-5
    # to 1e-5 of the step: δ / η equals the normalised direction to 1e-5
    scale = eta if reading == "code" else 1e-5
    torch.testing.assert_close(delta / scale, expected * mask / scale, atol=1e-5, rtol=0)


# ----------------------------------------------------------------------------------------------------------------
# Two processes (gloo): the first K − 1 backwards under no_sync, the last one synchronised.

DDP_SCRIPT = '''
import os, sys
sys.path.insert(0, {tests!r})
from pathlib import Path
import torch
from transformers import DataCollatorWithPadding
import advtrain
from conftest import build_tokenizer, exit_distributed_script, make_model, tokenized

out, per_device, nan_rank = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
# A per-token start (the same whatever the batch layout), so that one process and two see the same δ₀.
advtrain.perturbation.uniform_delta = lambda e, m, mag, norm, generator=None: mag * torch.sin(11 * e.detach().float()) * m


class Trainer(advtrain.FreeLBTrainer):
    def ascent_loss(self, logits, labels, task):
        loss = super().ascent_loss(logits, labels, task)
        self._n = getattr(self, "_n", 0) + 1
        return loss * float("nan") if self.args.process_index == nan_rank and self._n % 3 == 2 else loss


tokenizer = build_tokenizer(Path(out) / f"tok{{os.environ.get('RANK', '0')}}")
data = tokenized(tokenizer, "mr", "train", 16, max_length=16)
model = make_model("bert", 2, seed=0)
world = int(os.environ.get("WORLD_SIZE", "1"))
args = advtrain.FreeLBConfig(
    output_dir=out, use_cpu=True, report_to=[], save_strategy="no", max_steps=3, learning_rate=1e-2, optim="sgd",
    per_device_train_batch_size=per_device, logging_steps=1, seed=0, dataloader_drop_last=True, adv_steps=3,
    adv_init_mag=0.2, **({{"ddp_backend": "gloo"}} if world > 1 else {{}}))
trainer = Trainer(model=model, args=args, train_dataset=data, data_collator=DataCollatorWithPadding(tokenizer))
trainer.train()
torch.save({{"state": {{k: v.detach().clone() for k, v in model.state_dict().items()}}, "world_size": world,
            "logs": trainer.state.log_history}},
           os.path.join(out, f"freelb_ws{{world}}_nan{{nan_rank}}_rank{{trainer.args.process_index}}.pt"))
exit_distributed_script()
'''


@pytest.mark.slow
def test_two_processes_match_one_and_a_nan_on_one_rank_does_not_hang(tmp_path):
    import sys
    from pathlib import Path

    from conftest import run_checked, two_process_launcher

    script = tmp_path / "ddp_freelb.py"
    script.write_text(DDP_SCRIPT.format(tests=str(Path(__file__).parent)))
    run_checked([sys.executable, str(script), str(tmp_path), "4", "-1"], tmp_path, timeout=240)
    run_checked(two_process_launcher("torchrun") + [str(script), str(tmp_path), "2", "-1"], tmp_path, timeout=240)
    single = torch.load(tmp_path / "freelb_ws1_nan-1_rank0.pt")
    double = torch.load(tmp_path / "freelb_ws2_nan-1_rank0.pt")
    assert double["world_size"] == 2 and any("adv/loss" in log for log in double["logs"])
    for name, value in single["state"].items():
        torch.testing.assert_close(double["state"][name], value, atol=2e-5, rtol=1e-4, msg=name)
    # Rank 0's second ascent step is NaN on every batch: no hang, both ranks finite and equal, the skips counted.
    run_checked(two_process_launcher("torchrun") + [str(script), str(tmp_path), "2", "0"], tmp_path, timeout=240)
    ranks = [torch.load(tmp_path / f"freelb_ws2_nan0_rank{r}.pt") for r in (0, 1)]
    for name, value in ranks[0]["state"].items():
        assert torch.isfinite(value).all(), name
        assert torch.equal(ranks[1]["state"][name], value), name
    logs = [log for log in ranks[0]["logs"] if "adv/skipped" in log]
    assert len(logs) == 3 and all(log["adv/skipped"] == 1 for log in logs)  # rank 0's skip, summed over processes
