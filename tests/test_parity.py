"""advtrain's ALUM and LDS regularisers agree with the reference implementations smart-pytorch and vat-pytorch at the
same δ: the cross-checks of ``benchmarks/bench_trainers.py`` (``benchmarks/trainer_parity.py``) on its tiny BERT.
Skipped when the references are not installed (``pip install --no-deps smart-pytorch vat-pytorch``)."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from advtrain import ALUMConfig, ALUMTrainer, LDSConfig, LDSTrainer

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _parity_and_trainer(monkeypatch, tmp_path, trainer_class, config_class):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    cases = importlib.import_module("trainer_cases")
    parity = importlib.import_module("trainer_parity")
    model = cases.build_model("tiny")
    batch = cases.fixed_batch(model, batch_size=4, seq_len=16)
    trainer = trainer_class(model=model, args=cases.training_args(config_class, str(tmp_path), "cpu", adv_steps=1))
    return parity, model, batch, trainer


def test_alum_term_matches_smart_pytorch(monkeypatch, tmp_path):
    pytest.importorskip("smart_pytorch")
    parity, model, batch, trainer = _parity_and_trainer(monkeypatch, tmp_path, ALUMTrainer, ALUMConfig)
    check = parity.smart_cross_check(model, batch, "cpu", trainer)
    assert check["compared"] == "ALUMTrainer.adversarial_loss"
    assert check["advtrain_alum_adversarial_loss"] > 0
    assert check["relative_difference"] < 1e-3  # float32 rounding of smart-pytorch's batch sum
    # advtrain's value is at least as close to the float64 divergence of the same logits as the reference's.
    assert check["advtrain_abs_error_vs_float64"] <= check["smart_pytorch_abs_error_vs_float64"] + 1e-12


def test_lds_term_and_inner_gradient_match_vat_pytorch(monkeypatch, tmp_path):
    pytest.importorskip("vat_pytorch")
    parity, model, batch, trainer = _parity_and_trainer(monkeypatch, tmp_path, LDSTrainer, LDSConfig)
    check = parity.vat_cross_check(model, batch, "cpu", trainer)
    k0, gradient, k1 = check["k0"], check["inner_gradient_at_delta0"], check["k1"]
    assert k0["delta_reproduction_max_abs_difference"] == 0.0  # the same δ₀ as vat-pytorch's draw
    assert k0["advtrain_lds_adversarial_loss"] > 0 and k0["relative_difference"] < 1e-3
    assert gradient["cosine"] > 1 - 1e-6 and gradient["relative_l2_difference"] < 1e-4
    assert k1["relative_difference"] < 1e-3  # at vat-pytorch's own δ₁ after one ascent step
