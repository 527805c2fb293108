"""FreeLB: free large-batch adversarial training (Zhu et al., ICLR 2020), and FreeLB++ (Li et al., EMNLP 2021).

FreeLB paper, Algorithm 1, and its reference code::

    δ₀ ~ U(−1, 1)·mag/√(tokens·hidden) (L2) or U(−mag, mag) (L∞), masked          (mag = adv_init_mag)
    repeat K times:  L_k = CE(f(e+δ), y) / K;  backward L_k into the parameters (accumulated: the "free" gradients)
                     (but the last)  g = ∇δ L_k;  δ ← Π_ε(δ + α · g / ‖g‖)        (per example; ε = 0: no bound)
    optimizer step on the accumulated gradient (no separate clean term)

FreeLB++ is the same with more ascent steps and no bound ([`FreeLBConfig.freelb_plus_plus`]).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .. import perturbation as engine
from ..losses import task_loss
from ..perturbation import NORMS, delta_norm
from ..validation import check_field, is_number
from .base import AdversarialConfig, AdversarialTrainer
from .site import perturbed_site


@dataclass
class FreeLBConfig(AdversarialConfig):
    r"""
    Configuration of [`FreeLBTrainer`]: [`AdversarialConfig`] with FreeLB's fields and defaults.

    The FreeLB paper tunes its adversarial hyper-parameters per task; the defaults are those of an SST-2 launch line
    of the FreeLB reference code (3 steps, α = 0.1, init magnitude 1.0, L2 bound 0.6).

    Parameters that control the perturbation:
        adv_steps (`int`, defaults to `3`): ``K``, ascent steps; every step is a forward and backward pass.
        adv_step_size (`float`, defaults to `0.1`): ``α``, the size of each ascent step (reference code: ``adv-lr``).
        adv_epsilon (`float`, defaults to `0.6`): ``ε``, the bound δ is projected onto after each step
            (reference code: ``adv-max-norm``); ``0`` means no bound (FreeLB++).
        adv_init_mag (`float`, defaults to `1.0`): magnitude of the uniform start ``δ₀``: for ``"l2"``,
            ``U(−1, 1)`` scaled per example by ``adv_init_mag / √(tokens × hidden)``; for ``"linf"``,
            ``U(−adv_init_mag, adv_init_mag)``; ``0`` starts at ``δ = 0``.
        adv_norm (`str`, defaults to `"l2"`): the norm of the step and of the bound. ``"l2"``: the gradient is divided
            by its L2 norm per example, the bound rescales each example; ``"linf"``: the gradient is divided by its
            largest absolute value per example (over all tokens and hidden units, as the reference code does; not
            the sign), the bound clamps every element.

    ``adv_init_std`` and ``adv_step_norm`` are not used (FreeLB's start is `adv_init_mag`, its step normalisation
    follows `adv_norm`); ``adv_weight`` only switches training off at ``0`` (FreeLB has no separate clean term), and
    ``adv_backward`` can only be ``"joint"`` (FreeLB runs its own step: ``K`` backwards, each of a whole forward).
    ``adv_site`` works as for every method (``"layer:N"``: ``δ`` on block ``N``'s hidden states, ``δ₀`` drawn in
    their shape during the first forward).
    """

    adv_steps: int = field(default=3, metadata={"help": "K: number of ascent steps, each a forward and a backward."})
    adv_step_size: float = field(
        default=0.1, metadata={"help": "α: size of each ascent step along the per-example normalised gradient."}
    )
    adv_epsilon: float = field(
        default=0.6, metadata={"help": "ε: bound of δ after every step (reference code: adv-max-norm); 0: no bound."}
    )
    adv_init_mag: float = field(
        default=1.0,
        metadata={
            "help": "Magnitude of the uniform start δ₀: l2: U(-1,1)·mag/√(tokens·hidden) per example; linf: "
            "U(-mag, mag); 0 starts at δ = 0."
        },
    )
    adv_norm: str = field(
        default="l2",
        metadata={
            "help": "Norm of the step and the bound: 'l2' (per example) or 'linf' (gradient over its per-example "
            "max, bound per element).",
            "choices": NORMS,
        },
    )
    adv_backward: str | None = field(
        default=None,
        metadata={"help": "Only 'joint' (or None): FreeLB runs its own step of K backwards.", "choices": ("joint",)},
    )

    @classmethod
    def freelb_plus_plus(cls, **kwargs) -> FreeLBConfig:
        """FreeLB++ (Li et al., EMNLP 2021, TextDefender): FreeLB with 10 ascent steps and no bound (``ε = 0``), with
        TextDefender's FreeLB step size 0.03 and start magnitude 0.05 (L2). `kwargs` set any other field."""
        return cls(**{"adv_steps": 10, "adv_step_size": 0.03, "adv_init_mag": 0.05, "adv_epsilon": 0.0,
                      "adv_norm": "l2", **kwargs})

    @property
    def backward_path(self) -> str:
        return "joint"

    def validate_adversarial(self) -> None:
        super().validate_adversarial()
        check_field(self, is_number(self.adv_init_mag) and self.adv_init_mag >= 0, "adv_init_mag", "a number ≥ 0")
        check_field(self, self.adv_backward in (None, "joint"), "adv_backward",
                    "None or 'joint' (FreeLB runs its own step of K backwards)")


class FreeLBTrainer(AdversarialTrainer):
    """Trains with FreeLB: ``K`` ascent steps on ``δ``, each forward's task loss ``/ K`` back-propagated into the
    parameters, so the optimizer steps on the mean of the ``K`` parameter gradients (no separate clean term).
    Sequence classification, regression (MSE) and masked LMs (the MLM loss).

    Every backward goes through `AdversarialTrainer._backward` (gradient accumulation, ``n_gpu``); under several
    processes the first ``K − 1`` accumulate locally and the last one all-reduces. A non-finite loss (or ``δ``
    gradient) at any step ends that step's ascent and never reaches the weights (``adv/skipped``); the gradients of
    the steps before it stay. DeepSpeed and LOMO, whose backward also updates the weights, are refused for ``K > 1``.
    """

    config_class = FreeLBConfig

    def ascent_loss(self, logits: torch.Tensor, labels: torch.Tensor, task: str) -> torch.Tensor:
        """``L_k``: the task loss at ``e + δ_k`` (a batch mean) before the division by ``K``."""
        return task_loss(logits, labels, task)

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, torch.Tensor | Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ):
        """FreeLB's objective ``(1/K) Σ_k L_k`` on a training batch, with every step's graph kept (its backward gives
        the same gradient as `training_step`, which back-propagates each ``L_k`` as soon as it is computed).

        Outside training (evaluation, prediction, no grad) and before `adv_start_step` it is the plain loss. With
        `return_outputs=True` it also returns the outputs of the first forward (at ``δ₀``).
        """
        if not self._adversarial_is_active(model):
            return super().compute_loss(model, inputs, return_outputs=return_outputs)
        loss, outputs = self._ascend(model, inputs, backward=False)
        return (loss, outputs) if return_outputs else loss

    def training_step(
        self,
        model: nn.Module,
        inputs: dict[str, torch.Tensor | Any],
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor:
        """One FreeLB step: ``K`` forwards and ``K`` backwards (see the class docstring); returns the loss the Trainer
        logs, ``Σ_k L_k / K`` scaled for accumulation as `Trainer.training_step` returns it."""
        if not self._adversarial_is_active(model):
            return super().training_step(model, inputs, num_items_in_batch)
        model.train()
        if hasattr(self.optimizer, "train") and callable(self.optimizer.train):
            self.optimizer.train()
        inputs = self._prepare_inputs(inputs)
        with self._token_weighting(inputs, num_items_in_batch):
            loss, _ = self._ascend(model, inputs, backward=True)
        del inputs
        if self.args.torch_empty_cache_steps is not None and self.state.global_step % self.args.torch_empty_cache_steps == 0:
            from accelerate.utils.memory import clear_device_cache

            clear_device_cache()
        return loss

    def _check_training_inputs(self) -> None:
        super()._check_training_inputs()
        single = self._backward_updates_weights()
        if single and self.args.adv_steps > 1:
            raise ValueError(
                f"FreeLB runs adv_steps={self.args.adv_steps} backwards per step, but under {single} every backward "
                "also updates the weights. Use another optimizer / no DeepSpeed, or adv_steps=1."
            )

    def _ascend(self, model: nn.Module, inputs: dict[str, Any], backward: bool):
        """The ``K`` ascent steps. With `backward` each ``L_k / K`` is back-propagated at once (the free gradients)
        and the summed scaled loss is returned; without, the graphs are kept and ``(1/K) Σ L_k`` is returned."""
        for name in ("labels", "input_ids"):
            if inputs.get(name) is None:
                raise ValueError(
                    f"{type(self).__name__} needs `{name}` in every training batch; the batch has keys {sorted(inputs)}."
                )
        args, module = self.args, self._module(model)
        steps = args.adv_steps
        input_ids, labels = inputs["input_ids"], inputs["labels"]
        model_inputs = {k: v for k, v in inputs.items() if k not in ("input_ids", "labels")}
        step_norm = "l2" if args.adv_norm == "l2" else "linf_example"
        distributed = self.accelerator.num_processes > 1

        mask = None

        def start(site_output: torch.Tensor) -> torch.Tensor:
            # δ₀, drawn inside the first forward: only there is the shape of the site's output (e, or block N's) known;
            # the mask made here (padding, and special tokens with adv_skip_special_tokens) serves every later step.
            nonlocal mask
            mask = self._perturbation_mask(site_output, inputs)
            return engine.uniform_delta(site_output, mask, args.adv_init_mag, args.adv_norm).requires_grad_(True)

        def forward(point):
            with self.compute_loss_context_manager():
                with perturbed_site(module, args.adv_site, input_ids, point) as call:
                    outputs = model(input_ids=input_ids, **model_inputs)
                task = self._task(outputs.logits)
                if task == "classification":
                    self._check_class_labels(labels, outputs.logits.shape[-1])
                return outputs, self.ascent_loss(outputs.logits, labels, task), call

        total = torch.zeros((), device=input_ids.device)
        kept, first_outputs, skipped = [], None, False
        delta = start
        for step in range(steps):
            last = step == steps - 1
            if step > 0:
                delta = delta.detach().requires_grad_(True)
            # Under several processes the first K − 1 backwards accumulate locally; the last one all-reduces the sum.
            local = self._accumulate_locally(model) if backward and not last else contextlib.nullcontext()
            with local:
                outputs, loss, call = forward(delta)
                if step == 0:
                    delta = call.delta
                finite = not self._on_any_process(not bool(torch.isfinite(loss.detach())))
                if finite and backward:
                    total = total + self._backward(loss / steps)
            if step == 0:
                first_outputs = outputs
                self._record("clean/loss", loss)
            if not finite:
                skipped = True
                if backward and distributed:
                    if not last:  # that forward ran under no_sync: one synchronising forward for the all-reduce
                        _, loss, _ = forward(delta.detach())
                    self._backward(loss / steps, discard=True)  # adds nothing to the weights' gradients
                break
            if not backward:
                kept.append(loss)
            if last:
                break
            grad = delta.grad if backward else torch.autograd.grad(loss, delta, retain_graph=True)[0]
            if self._on_any_process(grad is None or not bool(torch.isfinite(grad).all())):
                skipped = True  # e.g. an fp16 overflow: the ascent stops, the gradients so far stay
                break
            direction = engine.normalize_direction(grad, mask, step_norm)
            delta = engine.project(delta.detach() + args.adv_step_size * direction, mask, args.adv_norm,
                                   args.adv_epsilon)
        if steps > 1:
            self._check_autocast(delta.detach())
        self._record("adv/delta_norm", delta_norm(delta.detach(), args.adv_norm).mean())
        self._record("adv/skipped", torch.tensor(float(skipped)))
        # `adv/loss` is what the step trained on (the finite steps' Σ L_k / K), recorded on every batch: `log` reduces
        # the metrics by name across processes, so every process must record the same names.
        if backward:
            self._record("adv/loss", total * self.current_gradient_accumulation_steps)
            return total, first_outputs
        if not kept:  # the first loss was not finite: nothing to train on
            objective = torch.zeros((), device=input_ids.device, requires_grad=True)
        else:
            objective = torch.stack(kept).sum() / steps
        self._record("adv/loss", objective)
        return objective, first_outputs
