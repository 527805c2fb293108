"""The correctness matrix: every trainer × every backward path × six model families (encoders with and without
``**kwargs`` in ``forward``, two decoder classifiers), on whichever transformers major this environment has.

For each cell: gradient accumulation 1×4 ≡ 4×1, logits through the perturbation path at δ = 0 equal the model's own
logits with right and left padding, LoRA trains only adapter and head weights, a NaN adversarial term leaves every
weight finite and equal to a plain step, and resuming from a checkpoint is bit-identical.
"""

from __future__ import annotations

import pytest
import torch
from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

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
from conftest import DECODER_FAMILIES, MATRIX_FAMILIES, batch_of, make_model, tokenized

# (trainer, config, fields): every backward path each trainer has.
CELLS = {
    "pgd_at-split": (PGDATTrainer, PGDATConfig, {}),
    "pgd_at-split-fast": (PGDATTrainer, PGDATConfig, {"adv_fast_first_step": True}),
    "pgd_at-joint": (PGDATTrainer, PGDATConfig, {"adv_backward": "joint"}),
    "lds-split": (LDSTrainer, LDSConfig, {}),
    "lds-joint": (LDSTrainer, LDSConfig, {"adv_backward": "joint"}),
    "tat-joint": (TATTrainer, TATConfig, {}),
    "tat-recompute": (TATTrainer, TATConfig, {"adv_backward": "recompute"}),
    "tat-split": (TATTrainer, TATConfig, {"adv_clean_gradient": False}),
    "alum-joint": (ALUMTrainer, ALUMConfig, {}),
    "alum-recompute": (ALUMTrainer, ALUMConfig, {"adv_backward": "recompute"}),
    "alum-split": (ALUMTrainer, ALUMConfig, {"adv_clean_gradient": False}),
    "freelb-joint": (FreeLBTrainer, FreeLBConfig, {"adv_init_mag": 0.0}),  # its own step: K whole backwards
    # R3F draws its noise through `init_delta` with "normal" (made per-token deterministic by `deterministic_delta`).
    "r3f-joint": (R3FTrainer, R3FConfig, {"r3f_noise": "normal"}),
    "r3f-recompute": (R3FTrainer, R3FConfig, {"r3f_noise": "normal", "adv_backward": "recompute"}),
}
EXPECTED_PATH = {"split": "split", "fast": "split", "joint": "joint", "recompute": "recompute"}
# Steps large enough for δ to matter at this scale, the same in every cell (dropout is off unless said).
STEP = dict(adv_step_norm="l2", adv_norm="l2", adv_epsilon=0.5, adv_step_size=0.3)
LORA_TARGETS = {
    "bert": ["query", "value"], "roberta": ["query", "value"], "deberta-v2": ["query_proj", "value_proj"],
    "modernbert": ["Wqkv"], "llama": ["q_proj", "v_proj"], "gpt2": ["c_attn"],
}
TEXTS = ["a gorgeous , witty , seductive movie .", "the film is bad", "it 's a cold , dull , empty story ."]


def deterministic_init(embeds, mask, init_std, generator=None):
    """A per-token initial δ (the same whatever the batch layout), instead of noise drawn in the batch's shape.

    Its size matters for the divergence-based inner objectives (LDS, ALUM): near δ = 0 the KL between two almost equal
    distributions is a difference of almost equal float32 numbers, and its gradient's direction is then rounding,
    which depends on the batch layout (ModernBERT, LDS: 7.7e-5 relative at 0.05·sin, 5.9e-7 at 2·sin)."""
    return 2.0 * torch.sin(7 * embeds.detach().float()) * mask


def _args(cell, tmp_path, **overrides):
    _, config_cls, fields = CELLS[cell]
    values = dict(
        output_dir=str(tmp_path), report_to=[], use_cpu=True, optim="sgd", learning_rate=0.5,
        lr_scheduler_type="constant", max_grad_norm=0.0, save_strategy="no", max_steps=1, disable_tqdm=True,
        adv_init_std=0.0 if "fast" in cell else 0.05, **STEP,
    )
    values.update(fields)
    values.update(overrides)
    return config_cls(**values)


def _train(trainer_cls, args, model, data, tokenizer):
    trainer = trainer_cls(model=model, args=args, train_dataset=data, data_collator=DataCollatorWithPadding(tokenizer))
    trainer.train()
    return trainer


def _relative_difference(a: dict, b: dict, before: dict) -> float:
    """‖Δa − Δb‖ / ‖Δa‖ over all weights, Δ = change from `before`."""
    num = sum(float((a[n] - b[n]).double().pow(2).sum()) for n in a)
    den = sum(float((a[n] - before[n]).double().pow(2).sum()) for n in a)
    return (num / den) ** 0.5


@pytest.fixture
def deterministic_delta(monkeypatch):
    monkeypatch.setattr("advtrain.perturbation.init_delta", deterministic_init)


@pytest.mark.slow  # one Trainer run per cell and layout; the fast tier keeps the zero-δ checks
@pytest.mark.parametrize("family", MATRIX_FAMILIES)
@pytest.mark.parametrize("cell", CELLS)
def test_accumulation_4x1_equals_1x4(tmp_path, tokenizer, family, cell, deterministic_delta, one_thread):
    data = tokenized(tokenizer, "mr", "train", 4, max_length=16)
    trainer_cls = CELLS[cell][0]
    # float64 weights: what is compared is the scaling of the step, not float32 rounding, which depends on the batch
    # layout and which the divergence-based inner objectives amplify (see `deterministic_init`).
    before = make_model(family, 2, seed=4).double().state_dict()
    weights = []
    for batch_size, accumulation in ((4, 1), (1, 4)):
        model = make_model(family, 2, seed=4).double()
        args = _args(cell, tmp_path, per_device_train_batch_size=batch_size, gradient_accumulation_steps=accumulation)
        trainer = _train(trainer_cls, args, model, data, tokenizer)
        assert trainer.backward_path == EXPECTED_PATH[cell.split("-")[-1]]
        weights.append({n: p.detach().clone() for n, p in model.state_dict().items()})
    moved = max(float((weights[0][n] - before[n]).abs().max()) for n in before)
    assert moved > 1e-3
    assert _relative_difference(weights[0], weights[1], before) <= 1e-5


@pytest.mark.parametrize("family", MATRIX_FAMILIES)
@pytest.mark.parametrize("padding_side", ["right", "left"])
@pytest.mark.parametrize("trainer_cls,config_cls", [(PGDATTrainer, PGDATConfig), (LDSTrainer, LDSConfig),
                                                    (TATTrainer, TATConfig), (ALUMTrainer, ALUMConfig)])
def test_perturbation_path_at_zero_delta_gives_the_models_logits(tmp_path, tokenizer, family, padding_side,
                                                                  trainer_cls, config_cls):
    model = make_model(family, 2, seed=3).eval()
    trainer = trainer_cls(model=model, args=config_cls(output_dir=str(tmp_path), report_to=[], use_cpu=True))
    tokenizer.padding_side = padding_side
    try:
        batch = batch_of(tokenizer, TEXTS, [1, 0, 0])
    finally:
        tokenizer.padding_side = "right"
    assert bool((batch["attention_mask"] == 0).any())  # the batch is padded on that side
    with torch.no_grad():
        reference = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
        clean = trainer._clean_forward(model, batch)
        zero = torch.zeros_like(clean.embeds, dtype=torch.float32)
        for live in (False, True):
            perturbed = trainer._perturbed_logits(model, clean, zero, live_embeds=live)
            torch.testing.assert_close(perturbed, reference, rtol=0, atol=1e-6)
    torch.testing.assert_close(clean.logits, reference, rtol=0, atol=1e-6)


@pytest.mark.slow  # one Trainer run per cell and layout; the fast tier keeps the zero-δ checks
@pytest.mark.parametrize("family", MATRIX_FAMILIES)
@pytest.mark.parametrize("cell", CELLS)
def test_lora_trains_only_adapter_and_head_weights(tmp_path, tokenizer, family, cell, one_thread):
    peft = pytest.importorskip("peft")
    model = peft.get_peft_model(
        make_model(family, 2, seed=5),
        peft.LoraConfig(task_type="SEQ_CLS", r=4, lora_alpha=8, target_modules=LORA_TARGETS[family]),
    )
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    data = tokenized(tokenizer, "mr", "train", 4, max_length=16)
    trainer = _train(CELLS[cell][0], _args(cell, tmp_path, per_device_train_batch_size=4), model, data, tokenizer)
    assert trainer.state.global_step == 1
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert any("lora_" in n for n in changed)
    assert any("modules_to_save" in n for n in changed)  # the classification head
    assert all("lora_" in n or "modules_to_save" in n for n in changed), sorted(changed)


def _nan_term(trainer_cls):
    """`trainer_cls` whose adversarial term is NaN (its backward would send NaN into every weight)."""

    def adversarial_loss(self, adv_logits, clean):
        return trainer_cls.adversarial_loss(self, adv_logits, clean) * float("nan")

    return type(f"NaN{trainer_cls.__name__}", (trainer_cls,), {"adversarial_loss": adversarial_loss})


@pytest.mark.slow  # one Trainer run per cell and layout; the fast tier keeps the zero-δ checks
@pytest.mark.parametrize("family", MATRIX_FAMILIES)
@pytest.mark.parametrize("cell", CELLS)
def test_nan_term_never_reaches_a_weight(tmp_path, tokenizer, family, cell, one_thread):
    if CELLS[cell][0] is FreeLBTrainer:
        pytest.skip("FreeLB has no adversarial term beside a clean loss (every ascent step's loss trains the weights), "
                    "so a NaN step leaves the steps before it, not a plain step: tests/test_freelb.py checks that.")
    data = tokenized(tokenizer, "mr", "train", 4, max_length=16)
    args = _args(cell, tmp_path, per_device_train_batch_size=4, logging_steps=1)
    model = make_model(family, 2, seed=6)
    trainer = _train(_nan_term(CELLS[cell][0]), args, model, data, tokenizer)
    plain_model = make_model(family, 2, seed=6)
    plain_args = TrainingArguments(**{k: getattr(args, k) for k in (
        "output_dir", "report_to", "use_cpu", "optim", "learning_rate", "lr_scheduler_type", "max_grad_norm",
        "save_strategy", "max_steps", "per_device_train_batch_size", "disable_tqdm")})
    _train(Trainer, plain_args, plain_model, data, tokenizer)
    for name, value in plain_model.state_dict().items():
        assert torch.isfinite(model.state_dict()[name]).all(), name
        torch.testing.assert_close(model.state_dict()[name], value, rtol=1e-5, atol=1e-6, msg=name)
    log = next(entry for entry in trainer.state.log_history if "loss" in entry)
    assert log["adv/skipped"] == 1
    # (transformers 4 rounds the logged loss to 4 decimals)
    assert log["loss"] == pytest.approx(log["clean/loss"], abs=1e-4) and log["loss"] > 0


@pytest.mark.parametrize("backward", ["joint", "recompute"])
def test_an_overflowing_perturbation_is_skipped(tmp_path, tokenizer, backward, one_thread):
    # The reported case: a TAT step so large that the perturbed forward overflows (every weight became NaN).
    trainer_cls, config_cls = TATTrainer, TATConfig
    data = tokenized(tokenizer, "mr", "train", 4, max_length=16)
    args = config_cls(output_dir=str(tmp_path), report_to=[], use_cpu=True, max_steps=1, save_strategy="no",
                      per_device_train_batch_size=4, logging_steps=1, adv_step_size=1e30, adv_epsilon=1e30,
                      adv_step_norm="none", adv_init_std=0, adv_backward=backward, disable_tqdm=True)
    model = make_model("bert", 2, seed=6)
    trainer = _train(trainer_cls, args, model, data, tokenizer)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    log = next(entry for entry in trainer.state.log_history if "loss" in entry)
    assert log["adv/skipped"] == 1 and log["loss"] == pytest.approx(log["clean/loss"], abs=1e-4)


RESUME_FAMILIES = MATRIX_FAMILIES


@pytest.mark.slow  # one Trainer run per cell and layout; the fast tier keeps the zero-δ checks
@pytest.mark.parametrize("family", RESUME_FAMILIES)
@pytest.mark.parametrize("cell", CELLS)
def test_resume_is_bit_identical(tmp_path, tokenizer, family, cell, one_thread):
    data = tokenized(tokenizer, "mr", "train", 8, max_length=16)
    common = dict(per_device_train_batch_size=2, max_steps=4, save_strategy="steps", save_steps=2, learning_rate=0.05,
                  seed=1, output_dir=str(tmp_path / "run"))
    trainer_cls = CELLS[cell][0]
    dropout = 0.0 if "fast" in cell else 0.1  # the fast first step is exact without dropout only
    full = _train(trainer_cls, _args(cell, tmp_path, **common), make_model(family, 2, dropout=dropout, seed=2),
                  data, tokenizer)
    resumed_model = make_model(family, 2, dropout=dropout, seed=2)
    resumed = trainer_cls(model=resumed_model, args=_args(cell, tmp_path, **common), train_dataset=data,
                          data_collator=DataCollatorWithPadding(tokenizer))
    resumed.train(resume_from_checkpoint=str(tmp_path / "run" / "checkpoint-2"))
    for name, value in full.model.state_dict().items():
        assert torch.equal(resumed_model.state_dict()[name], value), name
    if trainer_cls is TATTrainer:
        assert torch.equal(resumed.confusion_tally, full.confusion_tally)


def test_decoder_families_are_in_the_matrix():
    assert set(DECODER_FAMILIES) <= set(MATRIX_FAMILIES)
