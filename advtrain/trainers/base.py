"""What every embedding-space adversarial trainer shares: the perturbation fields of the config, the clean pass,
the call into the perturbation engine, the optimisation step, logging and the adversarial training state.

A method subclasses [`AdversarialTrainer`] and writes only its objective:

- [`AdversarialTrainer.perturbation_objective`]: the scalar the inner loop climbs (or descends, with
  ``descend = True``), summed over examples so that each example's step does not depend on the batch size;
- [`AdversarialTrainer.adversarial_loss`]: the term added to the task loss with weight ``α`` (a batch mean);
- optionally [`AdversarialTrainer.prepare_clean_pass`] to attach per-batch data (e.g. TAT's targets).
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import os
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from transformers import Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_utils import get_last_checkpoint

try:  # transformers >= 4.40
    from accelerate.utils import DistributedType
except ImportError:  # pragma: no cover
    DistributedType = None

from ..losses import task_loss
from ..perturbation import NORMS, STEP_NORMS, delta_norm, find_perturbation, token_mask_like
from ..validation import check_field, is_int, is_number

ADVERSARIAL_STATE_NAME = "advtrain_state.pt"


@dataclass
class AdversarialConfig(TrainingArguments):
    r"""
    [`~transformers.TrainingArguments`] plus the fields that control the embedding-space perturbation. Every
    advtrain config subclasses it and overrides the defaults with those of its paper.

    Parameters that control the perturbation (``δ``, added to the word-embedding output ``e``):
        adv_steps (`int`, defaults to `1`):
            Number of ascent steps of the inner loop (``K``, or ``S`` in the comparison paper).
        adv_step_size (`float`, defaults to `1e-3`):
            Size of each ascent step (``η``, or ``μ`` in the comparison paper).
        adv_epsilon (`float`, defaults to `1e-5`):
            Radius of the ball ``‖δ‖ ≤ ε`` that ``δ`` is projected onto after every step (``ε``).
        adv_init_std (`float`, defaults to `1e-5`):
            Standard deviation of the Gaussian noise ``δ`` starts from (``σ``); ``0`` starts from ``δ = 0``.
        adv_norm (`str`, defaults to `"linf"`):
            The ball: ``"l2"`` (per example, over all its real tokens and hidden units) or ``"linf"`` (per element).
        adv_step_norm (`str`, defaults to `"linf"`):
            How the inner gradient is normalised into a step: ``"l2"`` (per example), ``"linf"`` (per token,
            as in the SMART/ALUM code), ``"sign"`` (FGSM) or ``"none"``.
        adv_weight (`float`, defaults to `1.0`):
            Weight of the adversarial term in the loss (``α``); ``0`` trains plainly.
        adv_start_step (`int`, defaults to `0`):
            Optimizer steps trained with the plain objective before the adversarial term is switched on.
    """

    adv_steps: int = field(
        default=1, metadata={"help": "Number of ascent steps of the inner loop (K, or S in the comparison paper)."}
    )
    adv_step_size: float = field(
        default=1e-3, metadata={"help": "Size of each ascent step of the inner loop (η, or μ in the comparison paper)."}
    )
    adv_epsilon: float = field(
        default=1e-5, metadata={"help": "Radius ε of the ball ‖δ‖ ≤ ε that the perturbation is projected onto."}
    )
    adv_init_std: float = field(
        default=1e-5,
        metadata={"help": "Standard deviation σ of the Gaussian noise the perturbation starts from; 0 starts at δ = 0."},
    )
    adv_norm: str = field(
        default="linf",
        metadata={"help": "The ball: 'l2' (per example, over its real tokens) or 'linf' (per element).", "choices": NORMS},
    )
    adv_step_norm: str = field(
        default="linf",
        metadata={
            "help": "Normalisation of the inner gradient: 'l2' (per example), 'linf' (per token, as SMART/ALUM), "
            "'sign' (FGSM) or 'none'.",
            "choices": STEP_NORMS,
        },
    )
    adv_weight: float = field(
        default=1.0, metadata={"help": "Weight α of the adversarial term in the loss; 0 trains with the plain loss."}
    )
    adv_start_step: int = field(
        default=0,
        metadata={"help": "Optimizer steps trained with the plain loss before the adversarial term is switched on."},
    )

    def __post_init__(self):
        self._validate_adversarial_fields()
        super().__post_init__()

    def _validate_adversarial_fields(self) -> None:
        def check(ok: bool, name: str, expected: str) -> None:
            check_field(self, ok, name, expected)

        check(is_int(self.adv_steps) and self.adv_steps >= 1, "adv_steps", "an integer ≥ 1")
        check(is_number(self.adv_step_size) and self.adv_step_size > 0, "adv_step_size", "a number > 0")
        check(is_number(self.adv_epsilon) and self.adv_epsilon > 0, "adv_epsilon", "a number > 0 (the ball's radius)")
        check(is_number(self.adv_init_std) and self.adv_init_std >= 0, "adv_init_std", "a number ≥ 0")
        check(self.adv_norm in NORMS, "adv_norm", f"one of {NORMS}")
        check(self.adv_step_norm in STEP_NORMS, "adv_step_norm", f"one of {STEP_NORMS}")
        check(is_number(self.adv_weight) and self.adv_weight >= 0, "adv_weight", "a number ≥ 0")
        check(is_int(self.adv_start_step) and self.adv_start_step >= 0, "adv_start_step", "an integer ≥ 0")
        if self.label_smoothing_factor:
            raise ValueError(
                f"`label_smoothing_factor` must be 0 with an advtrain config, got {self.label_smoothing_factor}: "
                "the adversarial objective uses plain cross-entropy."
            )
        if self.fsdp:
            raise ValueError(
                f"`fsdp` must be off with an advtrain config, got {self.fsdp!r}: the inner loop runs forward passes "
                "through the unwrapped model, whose parameters FSDP shards. Use DDP (`accelerate launch --multi_gpu`, "
                "`torchrun`) instead."
            )
        if self.gradient_checkpointing:
            kwargs = dict(self.gradient_checkpointing_kwargs or {})
            if kwargs.get("use_reentrant", False):
                raise ValueError(
                    "`gradient_checkpointing_kwargs` must not set use_reentrant=True: reentrant checkpointing does not "
                    "support the torch.autograd.grad call of the inner loop. Drop the key or set it to False."
                )
            kwargs["use_reentrant"] = False
            self.gradient_checkpointing_kwargs = kwargs


def check_model_supports_perturbation(model: nn.Module) -> None:
    """Refuses a model whose word embeddings cannot be perturbed: they must be reachable through
    ``get_input_embeddings()`` and ``forward`` must accept ``inputs_embeds``."""
    name = type(model).__name__
    try:
        embeddings = model.get_input_embeddings()
    except (AttributeError, NotImplementedError):
        embeddings = None
    if not isinstance(embeddings, nn.Module):
        raise ValueError(
            f"{name} cannot be trained by advtrain: its input embeddings cannot be reached through "
            "`get_input_embeddings()`. Use a transformers model (e.g. AutoModelForSequenceClassification) or "
            "implement `get_input_embeddings()` on it."
        )
    if "inputs_embeds" not in inspect.signature(model.forward).parameters:
        raise ValueError(
            f"{name} cannot be trained by advtrain: its `forward` does not accept `inputs_embeds`, which is how the "
            "perturbed word embeddings are fed back."
        )


@dataclass
class CleanPass:
    """The clean forward pass of a batch, shared by the inner loop and the adversarial term.

    Args:
        model_inputs (`dict`): the batch without ``input_ids`` and ``labels`` (attention mask, token type ids...).
        input_ids (`torch.Tensor`): the token ids the word embeddings are looked up from.
        labels (`torch.Tensor`): the labels (``-100`` marks unpredicted masked-LM positions).
        embeds (`torch.Tensor`): ``e``, the word-embedding output (part of the clean graph).
        mask (`torch.Tensor`): ``(batch, seq_len, 1)`` float mask of real tokens.
        outputs (`ModelOutput`): the model's clean outputs.
        logits (`torch.Tensor`): ``f(e)`` (part of the clean graph; detach it where it is a target).
        loss (`torch.Tensor`): the task loss of the clean pass (batch mean).
        task (`str`): ``"classification"``, ``"regression"`` or ``"masked_lm"``.
        extras (`dict`): per-batch data a method attaches in `prepare_clean_pass` (e.g. TAT's targets).
    """

    model_inputs: dict[str, Any]
    input_ids: torch.Tensor
    labels: torch.Tensor
    embeds: torch.Tensor
    mask: torch.Tensor
    outputs: Any
    logits: torch.Tensor
    loss: torch.Tensor
    task: str
    extras: dict[str, Any] = field(default_factory=dict)


class _RandomState:
    """The CPU (and CUDA) random state at construction, to replay a forward pass with the same dropout masks."""

    def __init__(self, device: torch.device):
        if device.type not in ("cpu", "cuda"):
            raise ValueError(
                f"`adv_recompute_clean=True` replays the clean pass's random state on CPU or CUDA only, but the batch "
                f"is on {device.type}. Set adv_recompute_clean=False."
            )
        self.device = device
        self.cpu = torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None

    @contextlib.contextmanager
    def replayed(self):
        """Runs the block from the captured state; the state in force before the block is restored after it."""
        devices = [self.device] if self.cuda is not None else []
        with torch.random.fork_rng(devices=devices):
            torch.set_rng_state(self.cpu)
            if self.cuda is not None:
                torch.cuda.set_rng_state(self.cuda, self.device)
            yield


class _AdversarialStateCallback(TrainerCallback):
    """Writes the trainer's adversarial state next to every checkpoint the Trainer saves."""

    def __init__(self, trainer: AdversarialTrainer):
        self.trainer = trainer

    def on_save(self, args, state, control, **kwargs):
        checkpoint = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
        self.trainer.save_adversarial_state(checkpoint)


class AdversarialTrainer(Trainer):
    """A [`~transformers.Trainer`] whose training loss adds an embedding-space adversarial term.

    Drop-in: it takes the same arguments as `Trainer`. A plain `TrainingArguments` is upgraded to the method's
    config (`config_class`) with the paper's defaults for the adversarial fields. Evaluation and prediction use the
    plain model and report the clean loss, so ``eval_loss`` is comparable with a plain `Trainer`'s.

    Two execution paths give the same gradients:

    - when the method's adversarial term does not depend on the clean graph (`regulariser_detaches_clean`),
      `training_step` back-propagates the clean loss before the perturbation is searched, so the clean and the
      adversarial graphs are never alive together (about half the activation memory);
    - when the term also moves the clean prediction and the method asks for it (`recompute_clean_pass`), the clean
      pass first runs without a graph, the term is back-propagated on its own, and the clean pass is recomputed
      with the same random state (dropout masks) for its backward: one more forward, one graph alive at a time;
    - otherwise (and under DeepSpeed, whose backward also steps the optimizer) the full objective is built by
      `compute_loss` and back-propagated once by the plain `Trainer.training_step`.
    """

    config_class: type[AdversarialConfig] = AdversarialConfig
    # Our compute_loss returns a per-batch mean, so the Trainer must divide it by the accumulation steps.
    loss_is_scaled_for_ga = False
    # Whether `adversarial_loss` treats the clean logits as a constant (then the clean backward can run first).
    regulariser_detaches_clean: bool = True
    # Whether the inner loop steps against the gradient of `perturbation_objective` (targeted attacks).
    descend: bool = False

    def __init__(self, model: nn.Module | None = None, args: TrainingArguments | None = None, *extra, **kwargs):
        if args is None:
            args = self.config_class(output_dir="trainer_output")
        elif not isinstance(args, self.config_class):
            if isinstance(args, AdversarialConfig) or not isinstance(args, TrainingArguments):
                raise ValueError(
                    f"{type(self).__name__} needs a {self.config_class.__name__} (or a plain TrainingArguments), "
                    f"got {type(args).__name__}."
                )
            values = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainingArguments) if f.init}
            args = self.config_class(**values)
        if kwargs.get("compute_loss_func") is not None:
            raise ValueError(
                f"{type(self).__name__} does not take `compute_loss_func`: its loss is the method's objective."
            )
        if model is not None:
            check_model_supports_perturbation(model)
        super().__init__(model, args, *extra, **kwargs)
        if self.model is not None:
            check_model_supports_perturbation(self.model)
        self._adv_metrics: dict[str, list[torch.Tensor]] = defaultdict(list)
        self.add_callback(_AdversarialStateCallback(self))

    # ----------------------------------------------------------------------------------------------------------
    # What a method defines.

    def perturbation_objective(self, adv_logits: torch.Tensor, clean: CleanPass) -> torch.Tensor:
        """The scalar the inner loop climbs (descends when `descend`), summed over examples."""
        raise NotImplementedError

    def adversarial_loss(self, adv_logits: torch.Tensor, clean: CleanPass) -> torch.Tensor:
        """The term added to the task loss with weight ``α``: a mean over examples."""
        raise NotImplementedError

    def prepare_clean_pass(self, clean: CleanPass) -> None:
        """Attaches per-batch data to `clean.extras` before the inner loop (nothing by default)."""

    def adversarial_state(self) -> dict[str, Any]:
        """Training state of the method beyond the model and optimizer, saved with every checkpoint."""
        return {}

    def load_adversarial_state(self, state: dict[str, Any]) -> None:
        """Restores what `adversarial_state` returned."""

    # ----------------------------------------------------------------------------------------------------------
    # The shared machinery.

    def _adversarial_is_active(self, model: nn.Module) -> bool:
        return (
            model.training
            and torch.is_grad_enabled()
            and self.args.adv_weight > 0
            and self.state.global_step >= self.args.adv_start_step
        )

    def _module(self, model: nn.Module) -> nn.Module:
        """The model without its distributed wrapper: inner-loop passes through it never touch gradient sync."""
        return self.accelerator.unwrap_model(model)

    def _clean_forward(self, model: nn.Module, inputs: dict[str, Any]) -> CleanPass:
        if inputs.get("labels") is None:
            raise ValueError(
                f"{type(self).__name__} needs `labels` in every training batch; the batch has keys "
                f"{sorted(inputs)}. Keep a 'labels' (or 'label') column in the training dataset."
            )
        if inputs.get("input_ids") is None:
            raise ValueError(
                f"{type(self).__name__} perturbs the word embeddings of `input_ids`, but the batch has keys "
                f"{sorted(inputs)}."
            )
        labels = inputs["labels"]
        model_inputs = {k: v for k, v in inputs.items() if k not in ("input_ids", "labels")}
        embeds = self._module(model).get_input_embeddings()(inputs["input_ids"])
        outputs = model(**model_inputs, inputs_embeds=embeds)
        logits = outputs.logits
        task = self._task(logits)
        if task == "classification":
            self._check_class_labels(labels, logits.shape[-1])
        clean = CleanPass(
            model_inputs=model_inputs,
            input_ids=inputs["input_ids"],
            labels=labels,
            embeds=embeds,
            mask=token_mask_like(embeds, inputs.get("attention_mask")),
            outputs=outputs,
            logits=logits,
            loss=task_loss(logits, labels, task),
            task=task,
        )
        self.prepare_clean_pass(clean)
        return clean

    @staticmethod
    def _check_class_labels(labels: torch.Tensor, num_labels: int) -> None:
        if labels.is_floating_point() or bool(((labels < 0) | (labels >= num_labels)).any()):
            raise ValueError(
                f"Classification labels must be integers in [0, {num_labels - 1}] for a model with num_labels="
                f"{num_labels}; this batch has {labels.tolist()}. Fix the dataset's labels or the model's num_labels "
                "(num_labels=1 for regression)."
            )

    def _task(self, logits: torch.Tensor) -> str:
        if logits.dim() == 3:
            name = type(self._module(self.model)).__name__
            if getattr(getattr(self.model, "config", None), "is_decoder", False) or name.endswith("ForCausalLM"):
                raise ValueError(
                    f"{name} is a causal LM; advtrain trains sequence classifiers, regressors and masked LMs (its "
                    "token-level loss does not shift labels)."
                )
            return "masked_lm"
        problem_type = getattr(getattr(self.model, "config", None), "problem_type", None)
        if problem_type == "multi_label_classification":
            raise ValueError(
                "problem_type='multi_label_classification' is not supported by advtrain trainers; use single-label "
                "classification or regression (num_labels=1)."
            )
        return "regression" if logits.shape[-1] == 1 else "classification"

    def _perturbed_logits(self, model: nn.Module, clean: CleanPass, delta: torch.Tensor | None, live_embeds: bool):
        """``f(e + δ)`` (``f(e)`` when `delta` is None); with `live_embeds` the embedding lookup is part of the graph
        (the outer term, or the recomputed clean pass)."""
        if live_embeds:
            embeds = self._module(model).get_input_embeddings()(clean.input_ids)
        else:
            embeds = clean.embeds.detach()
        if delta is not None:
            embeds = embeds + delta.to(embeds.dtype)
        return model(**clean.model_inputs, inputs_embeds=embeds).logits

    def _find_perturbation(self, model: nn.Module, clean: CleanPass, first_grad: torch.Tensor | None = None):
        module = self._module(model)
        args = self.args
        return find_perturbation(
            lambda delta: self.perturbation_objective(self._perturbed_logits(module, clean, delta, False), clean),
            clean.embeds,
            clean.mask,
            steps=args.adv_steps,
            step_size=args.adv_step_size,
            epsilon=args.adv_epsilon,
            init_std=args.adv_init_std,
            norm=args.adv_norm,
            step_norm=args.adv_step_norm,
            descend=self.descend,
            first_grad=first_grad,
        )

    def _adversarial_term(self, model: nn.Module, clean: CleanPass, first_grad: torch.Tensor | None = None):
        """Returns ``(term, weight)``: the adversarial loss at the found ``δ`` and the ``α`` to apply to it.

        A non-finite inner gradient or term gives weight 0 and a zeroed term, so nothing reaches the weights, and
        the forward/backward still runs on every process (no process waits on another that skipped).
        """
        perturbation = self._find_perturbation(model, clean, first_grad)
        adv_logits = self._perturbed_logits(model, clean, perturbation.delta, live_embeds=True)
        term = self.adversarial_loss(adv_logits, clean)
        skipped = perturbation.skipped or not bool(torch.isfinite(term.detach()))
        if skipped:
            term = torch.where(torch.isfinite(term), term, torch.zeros_like(term))
        self._record("clean/loss", clean.loss)
        self._record("adv/delta_norm", delta_norm(perturbation.delta, self.args.adv_norm).mean())
        self._record("adv/skipped", torch.tensor(float(skipped)))
        if not skipped:
            self._record("adv/loss", term)
        return term, (0.0 if skipped else self.args.adv_weight)

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, torch.Tensor | Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ):
        """The method's full objective ``L_task(f(e), y) + α · adversarial_loss`` on a training batch.

        Outside training (evaluation, prediction, no grad) and before `adv_start_step` it is the plain loss. With
        `return_outputs=True` it also returns the clean outputs. `num_items_in_batch` is not used: the loss is a
        batch mean and the Trainer scales it for gradient accumulation.
        """
        if not self._adversarial_is_active(model):
            return super().compute_loss(model, inputs, return_outputs=return_outputs)
        clean = self._clean_forward(model, inputs)
        # The term's forward goes through the unwrapped module: under DDP one wrapped forward per backward.
        term, weight = self._adversarial_term(self._module(model), clean)
        loss = clean.loss + weight * term
        return (loss, clean.outputs) if return_outputs else loss

    def training_step(
        self,
        model: nn.Module,
        inputs: dict[str, torch.Tensor | Any],
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor:
        """One training step. When the adversarial term treats the clean side as a constant, the clean loss is
        back-propagated first and its graph freed before the perturbation is searched; the gradients equal
        those of `compute_loss`'s objective."""
        if not self._adversarial_is_active(model) or self.accelerator.distributed_type == DistributedType.DEEPSPEED:
            return super().training_step(model, inputs, num_items_in_batch)
        if not self.regulariser_detaches_clean:
            if self.recompute_clean_pass():
                return self._training_step_recomputing_clean(model, inputs)
            return super().training_step(model, inputs, num_items_in_batch)
        inputs = self._start_training_step(model, inputs)
        # Under DDP the clean backward accumulates locally; the adversarial backward syncs the sum.
        with self._accumulate_locally(model):
            with self.compute_loss_context_manager():
                clean = self._clean_forward(model, inputs)
            reuse_clean_gradient = self.first_step_from_clean_gradient()
            if reuse_clean_gradient:
                clean.embeds.retain_grad()
            clean_loss = self._scaled_backward(clean.loss)
            first_grad = self._clean_input_gradient(clean) if reuse_clean_gradient else None
            clean.logits = clean.logits.detach()
            clean.embeds = clean.embeds.detach()
        with self.compute_loss_context_manager():
            term, weight = self._adversarial_term(model, clean, first_grad)
        adv_loss = self._scaled_backward(weight * term)
        return clean_loss + adv_loss

    def _start_training_step(self, model: nn.Module, inputs: dict[str, Any]) -> dict[str, Any]:
        """What `Trainer.training_step` does before its forward: train mode (model and optimizer), inputs on device."""
        model.train()
        if hasattr(self.optimizer, "train") and callable(self.optimizer.train):
            self.optimizer.train()
        return self._prepare_inputs(inputs)

    def _accumulate_locally(self, model: nn.Module):
        """`no_sync` under several processes (the backward inside accumulates without an all-reduce), else nothing."""
        return self.accelerator.no_sync(model) if self.accelerator.num_processes > 1 else contextlib.nullcontext()

    def _training_step_recomputing_clean(self, model: nn.Module, inputs: dict[str, Any]) -> torch.Tensor:
        """The step of `recompute_clean_pass`. With ``z = f(e)`` and ``T`` the adversarial term, the parameters'
        gradient is ``∇(α·T)`` through the perturbed pass plus the clean pass's vector-Jacobian product with
        ``∂L_task/∂z + α·∂T/∂z``; the second is taken on the recomputed clean pass, after the first graph is freed."""
        inputs = self._start_training_step(model, inputs)
        module = self._module(model)
        random_state = _RandomState(inputs["input_ids"].device)
        with torch.no_grad(), self.compute_loss_context_manager():
            clean = self._clean_forward(module, inputs)
        clean.logits = clean.logits.detach().requires_grad_(True)  # a leaf, to read ∂T/∂z off
        # Under DDP the term's backward accumulates locally; the clean backward syncs the sum.
        with self._accumulate_locally(model):
            with self.compute_loss_context_manager():
                term, weight = self._adversarial_term(module, clean)
            if weight:
                (term_logits_grad,) = torch.autograd.grad(term, clean.logits, retain_graph=True)
            adv_loss = self._scaled_backward(weight * term)
        with random_state.replayed(), self.compute_loss_context_manager():
            logits = self._perturbed_logits(model, clean, None, live_embeds=True)
            objective = task_loss(logits, clean.labels, clean.task)
            if weight:
                objective = objective + weight * (logits.float() * term_logits_grad.float()).sum()
        self._scaled_backward(objective)
        return clean.loss.detach() / self.current_gradient_accumulation_steps + adv_loss

    def recompute_clean_pass(self) -> bool:
        """Whether a term that moves the clean prediction is trained by recomputing the clean pass instead of keeping
        its graph alive through the perturbation search (see `_training_step_recomputing_clean`)."""
        return False

    def first_step_from_clean_gradient(self) -> bool:
        """Whether the first ascent direction is taken from the clean backward (``δ₀ = 0`` and the inner objective
        at ``δ = 0`` equal to the clean task loss, e.g. PGD-AT with ``σ = 0``). Saves one forward and one input
        backward per step; used by the split-backward path only."""
        return False

    def _clean_input_gradient(self, clean: CleanPass) -> torch.Tensor:
        """``∇e`` of the summed task loss, recovered from the clean backward of the scaled batch-mean loss."""
        if clean.task == "masked_lm":
            terms = int((clean.labels != -100).sum())
        else:
            terms = clean.labels.shape[0]
        scale = terms * self.current_gradient_accumulation_steps
        if self.accelerator.scaler is not None:  # fp16: the backward ran on the loss times the scaler's scale
            scale = scale / self.accelerator.scaler.get_scale()
        return clean.embeds.grad.float() * scale

    def _scaled_backward(self, loss: torch.Tensor) -> torch.Tensor:
        """Back-propagates `loss` scaled for gradient accumulation exactly as `Trainer.training_step` does."""
        if self.args.n_gpu > 1:
            loss = loss.mean()
        loss = loss / self.current_gradient_accumulation_steps
        self.accelerator.backward(loss)
        return loss.detach()

    # ----------------------------------------------------------------------------------------------------------
    # Logging and state.

    def _record(self, name: str, value: torch.Tensor) -> None:
        self._adv_metrics[name].append(value.detach().float().reshape(()))

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Adds the averaged adversarial metrics (``adv/skipped``: the count) to training logs, then logs."""
        if "loss" in logs and self._adv_metrics:
            names = sorted(self._adv_metrics)
            values = torch.stack(
                [
                    torch.stack(self._adv_metrics[n]).sum() if n == "adv/skipped" else torch.stack(self._adv_metrics[n]).mean()
                    for n in names
                ]
            ).to(self.args.device)
            if self.accelerator.num_processes > 1:
                values = self.accelerator.reduce(values, reduction="mean")
                if "adv/skipped" in names:  # a count: summed over processes, not averaged
                    values[names.index("adv/skipped")] *= self.accelerator.num_processes
            logs.update(dict(zip(names, values.tolist())))
            self._adv_metrics.clear()
        super().log(logs, start_time)

    def save_adversarial_state(self, checkpoint_dir: str) -> None:
        """Writes `adversarial_state()` into `checkpoint_dir` (main process only; the state is identical on all)."""
        state = self.adversarial_state()
        if state and self.args.should_save:
            os.makedirs(checkpoint_dir, exist_ok=True)
            torch.save(state, os.path.join(checkpoint_dir, ADVERSARIAL_STATE_NAME))

    def train(self, resume_from_checkpoint: str | bool | None = None, *args, **kwargs):
        """`Trainer.train`, also restoring the adversarial state saved with the checkpoint it resumes from."""
        checkpoint = resume_from_checkpoint
        if checkpoint is True or (isinstance(checkpoint, bool) and checkpoint):
            checkpoint = get_last_checkpoint(self.args.output_dir)
        if isinstance(checkpoint, str):
            path = os.path.join(checkpoint, ADVERSARIAL_STATE_NAME)
            if os.path.isfile(path):
                self.load_adversarial_state(torch.load(path, map_location="cpu", weights_only=False))
        return super().train(resume_from_checkpoint, *args, **kwargs)
