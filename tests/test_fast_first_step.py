"""PGD-AT's fast first step reuses the clean backward's input gradient; without dropout it is exact."""

import pytest
import torch

from advtrain import PGDATConfig, PGDATTrainer
from conftest import batch_of, make_model

TEXTS = ["a gorgeous , witty , seductive movie .", "the film is bad", "it 's a cold , dull , empty story ."]


def _grads(tmp_path, tokenizer, fast: bool, step_norm: str, steps: int):
    model = make_model("bert", 2, seed=3)
    args = PGDATConfig(
        output_dir=str(tmp_path), report_to=[], use_cpu=True, adv_steps=steps, adv_fast_first_step=fast,
        adv_step_norm=step_norm, adv_norm="l2", adv_epsilon=0.5, adv_step_size=0.2,
    )
    trainer = PGDATTrainer(model=model, args=args)
    trainer.current_gradient_accumulation_steps = 1
    model.train()
    loss = trainer.training_step(model, batch_of(tokenizer, TEXTS, [1, 0, 0]))
    delta_norm = trainer._adv_metrics["adv/delta_norm"][-1]
    return loss, delta_norm, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("step_norm", ["l2", "none"])
@pytest.mark.parametrize("steps", [1, 2])
def test_fast_first_step_equals_exact_without_dropout(tmp_path, tokenizer, step_norm, steps):
    exact_loss, exact_norm, exact = _grads(tmp_path, tokenizer, False, step_norm, steps)
    fast_loss, fast_norm, fast = _grads(tmp_path, tokenizer, True, step_norm, steps)
    assert exact_norm > 0
    torch.testing.assert_close(fast_loss, exact_loss, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(fast_norm, exact_norm, atol=1e-6, rtol=1e-5)
    for name, grad in exact.items():
        torch.testing.assert_close(fast[name], grad, atol=1e-6, rtol=1e-4, msg=name)


def test_fast_first_step_needs_zero_init():
    with pytest.raises(ValueError, match="adv_init_std"):
        PGDATConfig(output_dir="x", adv_fast_first_step=True, adv_init_std=1e-3)


def test_fast_first_step_saves_one_forward(tmp_path, tokenizer):
    """K=1: exact PGD runs three forwards (clean, inner, adversarial), the fast mode two."""
    counts = {}
    for fast in (False, True):
        model = make_model("bert", 2)
        calls = []
        model.bert.register_forward_hook(lambda *a, calls=calls: calls.append(1))
        args = PGDATConfig(output_dir=str(tmp_path), report_to=[], use_cpu=True, adv_steps=1, adv_fast_first_step=fast)
        trainer = PGDATTrainer(model=model, args=args)
        trainer.current_gradient_accumulation_steps = 1
        model.train()
        trainer.training_step(model, batch_of(tokenizer, TEXTS, [1, 0, 0]))
        counts[fast] = len(calls)
    assert counts == {False: 3, True: 2}
