"""The parity checks of advtrain's ALUM and LDS terms against the reference implementations smart-pytorch and
vat-pytorch at the same δ: run by `bench_trainers.py` for its report and by ``tests/test_parity.py``."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from advtrain.losses import symmetric_kl
from advtrain.trainers import CleanPass
from trainer_cases import LogitsOfEmbeds, smart_pytorch, vat_pytorch

# ------------------------------------------------------------------------------------------------------------------
# smart-pytorch cross-check.


def smart_cross_check(model, batch, device, alum_trainer) -> dict[str, Any]:
    """The SMART/ALUM regulariser's value at the SAME ``δ`` from both implementations.

    ``δ = σ·N(0, 1)`` drawn under a fixed seed; smart-pytorch's ``SMARTLoss(num_steps=0)`` then returns its final
    symmetric KL at ``e + δ`` with no ascent step, and advtrain's ALUM term is evaluated on the logits of a forward
    at the same ``e + δ`` (dropout off, so both forwards are identical). smart-pytorch's ``sym_kl_loss`` sums
    over the batch; it is compared per example (divided by the batch size).
    """
    model.eval()
    inputs = {k: v.to(device) for k, v in batch.items()}
    rest = {k: v for k, v in inputs.items() if k not in ("input_ids", "labels")}

    def eval_fn(embeds):
        return model(inputs_embeds=embeds, **rest).logits

    sigma, seed = 0.1, 77  # σ large enough that the divergence stands well above float32 rounding
    with torch.no_grad():
        embeds = model.get_input_embeddings()(inputs["input_ids"])
        clean_logits = eval_fn(embeds)
        torch.manual_seed(seed)
        smart = smart_pytorch.SMARTLoss(
            eval_fn=eval_fn, loss_fn=smart_pytorch.kl_loss, loss_last_fn=smart_pytorch.sym_kl_loss, num_steps=0,
            noise_var=sigma,
        )(embeds, clean_logits)
        torch.manual_seed(seed)
        delta = torch.randn_like(embeds) * sigma  # the draw SMARTLoss made: randn_like(embed) * noise_var
        adv_logits = eval_fn(embeds + delta)
        batch_size = adv_logits.shape[0]
        result = {
            "delta": f"sigma * N(0,1) with sigma={sigma}, seed {seed}, no ascent step (SMARTLoss num_steps=0)",
            "smart_pytorch_sym_kl_per_example": float(smart) / batch_size,
            "advtrain_symmetric_kl": float(symmetric_kl(clean_logits, adv_logits, "classification")),
        }
        if alum_trainer is not None:
            clean = CleanPass(
                model_inputs=rest, input_ids=inputs["input_ids"], labels=inputs["labels"], embeds=embeds,
                mask=inputs["attention_mask"].float().unsqueeze(-1), outputs=None, logits=clean_logits,
                loss=F.cross_entropy(clean_logits, inputs["labels"]), task="classification",
            )
            alum_trainer.prepare_clean_pass(clean)
            result["advtrain_alum_adversarial_loss"] = float(alum_trainer.adversarial_loss(adv_logits, clean))
        # The same divergence in float64 from the same logits: how much of the difference is float32 rounding.
        p_log = F.log_softmax(clean_logits.double(), dim=-1)
        q_log = F.log_softmax(adv_logits.double(), dim=-1)
        exact = float(((p_log.exp() * (p_log - q_log)).sum(-1) + (q_log.exp() * (q_log - p_log)).sum(-1)).mean())
        result["float64_reference"] = exact
    advtrain_value = result.get("advtrain_alum_adversarial_loss", result["advtrain_symmetric_kl"])
    result["compared"] = (
        "ALUMTrainer.adversarial_loss" if "advtrain_alum_adversarial_loss" in result else "advtrain.losses.symmetric_kl"
    )
    result["abs_difference"] = abs(result["smart_pytorch_sym_kl_per_example"] - advtrain_value)
    result["relative_difference"] = result["abs_difference"] / max(abs(advtrain_value), 1e-30)
    result["smart_pytorch_abs_error_vs_float64"] = abs(result["smart_pytorch_sym_kl_per_example"] - exact)
    result["advtrain_abs_error_vs_float64"] = abs(advtrain_value - exact)
    model.train()
    return result


# ------------------------------------------------------------------------------------------------------------------
# vat-pytorch cross-check.


class RecordingLogitsOfEmbeds(LogitsOfEmbeds):
    """`LogitsOfEmbeds` that keeps every input it is called on (``e + δ`` of each of vat-pytorch's forwards) and,
    through a tensor hook, the gradient that vat-pytorch's ``torch.autograd.grad`` takes with respect to it, which
    equals its gradient with respect to ``δ``."""

    def __init__(self, model, rest):
        super().__init__(model, rest)
        self.inputs: list[torch.Tensor] = []
        self.input_grads: list[torch.Tensor] = []

    def forward(self, embeds):
        self.inputs.append(embeds.detach().clone())
        if embeds.requires_grad:
            embeds.register_hook(lambda grad: self.input_grads.append(grad.detach().clone()))
        return super().forward(embeds)


def _kl_float64(clean_logits: torch.Tensor, adv_logits: torch.Tensor) -> float:
    p_log = F.log_softmax(clean_logits.double(), dim=-1)
    q_log = F.log_softmax(adv_logits.double(), dim=-1)
    return float((p_log.exp() * (p_log - q_log)).sum(-1).mean())


def vat_cross_check(model, batch, device, lds_trainer) -> dict[str, Any]:
    """vat-pytorch's VAT/LDS regulariser and advtrain's LDS term at the SAME ``δ``, and the inner gradient.

    vat-pytorch has no class named after VAT or LDS: its ``SMARTLoss(model, loss_fn, loss_last_fn)`` with
    ``kl_loss`` as both losses is the VAT/LDS regulariser, ``kl_loss(f(e+δ), f(e)) = KL(p(e) ‖ p(e+δ))``
    (``batchmean``, so already per example). It draws ``δ₀ = noise_var · N(0, 1)`` from torch's global generator,
    so a seed reproduces its ``δ₀``. Its ascent step, ``δ ← (δ + η·g) / (‖δ + η·g‖ + eps)`` (a normalisation to
    the unit sphere of ``norm_fn``, no ball of radius ε), is not advtrain's ``δ ← Π_ε(δ + η·normalize(g))``, so
    after an ascent step the two implementations stand at different ``δ``; the ``δ`` it used is recovered from the
    input of its last forward and advtrain's term is evaluated there. Three comparisons, dropout off:

    - K=0: its final ``KL`` at ``δ₀`` against ``LDSTrainer.adversarial_loss`` at ``δ₀`` (and ``δ₀`` reproduced);
    - the inner gradient at ``δ₀``: its ``∇δ kl_loss`` (batch mean) against ``∇δ LDSTrainer.perturbation_objective``
      (a sum over examples) divided by the batch size;
    - K=1: its final ``KL`` at its own ``δ₁`` against advtrain's term at that ``δ₁``.
    """
    model.eval()
    inputs = {k: v.to(device) for k, v in batch.items()}
    rest = {k: v for k, v in inputs.items() if k not in ("input_ids", "labels")}
    logits_of = LogitsOfEmbeds(model, rest)
    sigma, seed, step_size = 0.1, 77, 1e-3  # σ large enough that the divergence stands well above float32 rounding
    with torch.no_grad():
        embeds = model.get_input_embeddings()(inputs["input_ids"])
        clean_logits = logits_of(embeds)
    clean = CleanPass(
        model_inputs=rest, input_ids=inputs["input_ids"], labels=inputs["labels"], embeds=embeds,
        mask=inputs["attention_mask"].float().unsqueeze(-1), outputs=None, logits=clean_logits,
        loss=F.cross_entropy(clean_logits, inputs["labels"]), task="classification",
    )
    lds_trainer.prepare_clean_pass(clean)
    batch_size = clean_logits.shape[0]

    def reference(steps: int) -> tuple[float, RecordingLogitsOfEmbeds]:
        recorder = RecordingLogitsOfEmbeds(model, rest)
        torch.manual_seed(seed)
        value = vat_pytorch.SMARTLoss(
            model=recorder, loss_fn=vat_pytorch.kl_loss, loss_last_fn=vat_pytorch.kl_loss, num_steps=steps,
            step_size=step_size, epsilon=1e-6, noise_var=sigma,
        )(embeds, clean_logits)
        return float(value), recorder

    def compare(vat_value: float, perturbed: torch.Tensor) -> dict[str, float]:
        with torch.no_grad():
            adv_logits = logits_of(perturbed)  # the very tensor vat-pytorch's last forward took
            advtrain_value = float(lds_trainer.adversarial_loss(adv_logits, clean))
        exact = _kl_float64(clean_logits, adv_logits)
        difference = abs(vat_value - advtrain_value)
        return {
            "vat_pytorch_kl": vat_value, "advtrain_lds_adversarial_loss": advtrain_value,
            "abs_difference": difference, "relative_difference": difference / max(abs(advtrain_value), 1e-30),
            "float64_reference": exact, "vat_pytorch_abs_error_vs_float64": abs(vat_value - exact),
            "advtrain_abs_error_vs_float64": abs(advtrain_value - exact),
        }

    vat0, recorder0 = reference(0)
    torch.manual_seed(seed)
    delta0 = torch.randn_like(embeds) * sigma  # the draw SMARTLoss makes: randn_like(embed) * noise_var
    k0 = compare(vat0, recorder0.inputs[-1])
    k0["delta_reproduction_max_abs_difference"] = float((recorder0.inputs[-1] - (embeds + delta0)).abs().max())

    vat1, recorder1 = reference(1)
    delta = delta0.clone().requires_grad_(True)
    with torch.enable_grad():
        objective = lds_trainer.perturbation_objective(logits_of(embeds + delta), clean)
        (advtrain_grad,) = torch.autograd.grad(objective, delta)
    advtrain_grad = advtrain_grad / batch_size
    vat_grad = recorder1.input_grads[0]
    gradient = {
        "vat_pytorch_grad_norm": float(vat_grad.norm()), "advtrain_grad_norm_per_example": float(advtrain_grad.norm()),
        "relative_l2_difference": float((vat_grad - advtrain_grad).norm() / advtrain_grad.norm().clamp(min=1e-30)),
        "cosine": float(F.cosine_similarity(vat_grad.flatten().double(), advtrain_grad.flatten().double(), dim=0)),
    }
    delta1 = recorder1.inputs[-1] - embeds
    k1 = compare(vat1, recorder1.inputs[-1])
    k1["delta_linf"] = float(delta1.abs().max())
    model.train()
    return {
        "delta0": f"sigma * N(0,1) with sigma={sigma}, seed {seed} (SMARTLoss noise_var={sigma})",
        "k0": k0,
        "inner_gradient_at_delta0": gradient,
        "k1": k1,
        "k1_delta": f"one step from δ₀ with η={step_size} and its default per-token linf norm_fn: "
                    "δ₁ = (δ₀ + η·g) / (‖δ₀ + η·g‖∞ + 1e-6), per token",
    }
