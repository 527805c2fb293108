"""advtrain's objectives inside TRL's `SFTTrainer`: a TRL user changes the import and the class names.

```python
from advtrain.integrations.trl import ALUMSFTConfig, ALUMSFTTrainer   # was: from trl import SFTConfig, SFTTrainer

trainer = ALUMSFTTrainer(model=model, args=ALUMSFTConfig(output_dir="out"), train_dataset=dataset)
```

Each trainer here is an advtrain trainer composed with `trl.SFTTrainer`, and each config the advtrain config composed
with `trl.SFTConfig`: TRL prepares the data (tokenisation, EOS, `completion_only_loss` / `assistant_only_loss` labels,
truncation, packing) and collates it; advtrain's `training_step` and `compute_loss` train the method's objective on
the collated batch (the clean term is the shifted token cross-entropy, the token mean over the accumulation window as
`SFTTrainer` takes it). In the MRO the advtrain trainer comes before `SFTTrainer`, so advtrain's `compute_loss`,
`training_step` and `log` run first and call `SFTTrainer`'s where the plain loss is wanted (evaluation, prediction,
before `adv_start_step`, ``adv_weight=0``).

TAT has no SFT trainer: it is refused for causal LMs, the only models `SFTTrainer` trains
(`advtrain.trainers.tat.CAUSAL_LM_REFUSAL`). A combination whose δ would be wrong is refused with a message (see
`AdversarialSFTConfigMixin` and `AdversarialSFTMixin`). `import advtrain` never imports this module or TRL.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from packaging.version import Version
from torch import nn
from transformers import ProcessorMixin

from ..losses import predicted_positions
from ..trainers import (
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
)
from ..trainers.base import AdversarialConfig, CleanPass, is_causal_lm

MIN_TRL_VERSION = "1.14.0"

try:
    import trl
    from trl import SFTConfig, SFTTrainer
except ImportError as error:  # pragma: no cover - exercised only where TRL is missing
    raise ImportError(
        "advtrain.integrations.trl needs TRL, an optional extra of advtrain: pip install 'advtrain[trl]' "
        f"(trl>={MIN_TRL_VERSION})."
    ) from error

if Version(trl.__version__) < Version(MIN_TRL_VERSION):
    raise ImportError(
        f"advtrain.integrations.trl needs trl>={MIN_TRL_VERSION} (the SFTTrainer it was tested with), but trl "
        f"{trl.__version__} is installed: pip install -U 'advtrain[trl]'."
    )

if Version(trl.__version__) == Version("1.15.0"):
    warnings.warn(
        "trl 1.15.0's SFTTrainer.compute_loss needs Triton, so its evaluation (and advtrain's plain-loss steps, which "
        "call it) fail without a GPU; advtrain's extra excludes it: pip install -U 'advtrain[trl]'.",
        stacklevel=2,
    )

if TYPE_CHECKING:
    from datasets import Dataset, DatasetDict, IterableDataset, IterableDatasetDict
    from peft import PeftConfig, PeftModel
    from transformers import (
        BitsAndBytesConfig,
        DataCollator,
        PreTrainedModel,
        PreTrainedTokenizerBase,
        TrainerCallback,
        TrainingArguments,
    )
    from transformers.trainer_utils import EvalPrediction

# The packing strategies under which SFTTrainer flattens each batch into one row (padding-free); "bfd-requeue" is the
# deprecated name of "bfd_split" that SFTConfig renames after advtrain's checks have run.
PADDING_FREE_PACKING = ("bfd", "bfd_split", "bfd-requeue")


class AdversarialSFTConfigMixin:
    """The checks that an advtrain config composed with `trl.SFTConfig` adds to `validate_adversarial` (so they run at
    construction and again when training starts). The bases go in this order,
    ``class MySFTConfig(AdversarialSFTConfigMixin, SFTConfig, MyConfig)``. A dataclass takes each field from the
    first base in its MRO whose fields hold it, and an advtrain config holds every `TrainingArguments` field with
    `TrainingArguments`' default: with `SFTConfig` first, TRL's defaults stay (``learning_rate=2e-5``,
    ``logging_steps=10``, ``gradient_checkpointing=True``, ``bf16=True`` unless ``fp16``) and the method's ``adv_*``
    defaults too. The two bases share no method but `__post_init__`, which each chains.

    Refused, with a message that says what to change:

    - ``loss_type="dft"``: advtrain's clean term is the token cross-entropy (``"nll"``);
    - ``activation_offloading=True``: TRL's hooks expect one forward and one backward per step;
    - a per-example norm of δ with padding-free batches (``padding_free=True``, or ``packing=True`` with the
      ``"bfd"``/``"bfd_split"`` strategies): such a batch is one row holding every example, so an ``"l2"`` ball or
      step would be taken over the whole batch. Per-token norms (``adv_norm="linf"``, ``adv_step_norm`` ``"linf"``,
      ``"sign"`` or ``"none"``) give the same δ as a padded batch and are accepted.
    """

    @property
    def flattens_batches(self) -> bool:
        """Whether `SFTTrainer` collates this config's training batches padding-free (one row, no padding)."""
        return bool(self.padding_free) or (bool(self.packing) and self.packing_strategy in PADDING_FREE_PACKING)

    def per_example_norms(self) -> list[str]:
        """The fields whose value normalises or bounds δ over each row (each example of a padded batch)."""
        names = []
        if self.adv_norm == "l2":
            names.append("adv_norm='l2'")
        if self.adv_step_norm == "l2":
            names.append("adv_step_norm='l2'")
        return names

    def validate_adversarial(self) -> None:
        super().validate_adversarial()
        if self.loss_type == "dft":
            raise ValueError(
                f"`loss_type='dft'` is not supported by {type(self).__name__}: advtrain's clean term is the token "
                "cross-entropy. Use loss_type='nll' (the default)."
            )
        if self.activation_offloading:
            raise ValueError(
                f"`activation_offloading=True` is not supported by {type(self).__name__}: TRL's offloading hooks free "
                "each saved activation when a backward first reads it, for one forward and one backward per step, but "
                "the adversarial step runs several forwards and input-gradient passes (and reads the graph twice on "
                "the 'recompute' path). Set activation_offloading=False; gradient checkpointing (TRL's default) also "
                "saves activation memory."
            )
        per_example = self.per_example_norms()
        if self.flattens_batches and per_example:
            mode = "padding_free=True" if self.padding_free else f"packing=True with packing_strategy={self.packing_strategy!r}"
            raise ValueError(
                f"{type(self).__name__}: {mode} collates each batch into a single row holding all its examples, but "
                f"{' and '.join(per_example)} normalise δ per example, which would then be the whole batch. Use "
                "per-token norms (adv_norm='linf', adv_step_norm='linf' or 'sign'), or padded batches "
                "(padding_free=False and packing=False, or packing_strategy='wrapped')."
            )


class AdversarialSFTMixin:
    """Composes an advtrain trainer with `trl.SFTTrainer`: ``class MySFTTrainer(AdversarialSFTMixin, MyTrainer,
    SFTTrainer)`` with ``config_class`` a config built with [`AdversarialSFTConfigMixin`].

    It keeps `SFTTrainer`'s signature, so a TRL script only changes its class names. `args` may also be the
    `SFTConfig`, the advtrain method's config or the `TrainingArguments` the config extends: it is upgraded to
    ``config_class`` with all its fields kept.

    Besides the config's checks it refuses, with a message, at construction and when training starts: a model that
    is not a causal LM (advtrain would not shift the labels), a vision-language processor (the image features replace
    the perturbed embeddings of the image tokens), a Mixture-of-Experts model with its load-balancing loss
    (``router_aux_loss_coef`` must be 0: advtrain's objective has no auxiliary term), context or sequence parallelism
    (they split the sequences advtrain's terms are taken over), and `compute_loss_func` (as every advtrain trainer).

    Logged metrics: the method's (``clean/loss``, ``adv/loss``, ``adv/delta_norm``, ``adv/skipped``) and
    `SFTTrainer`'s ``entropy``, ``mean_token_accuracy`` and ``num_tokens`` of the clean pass (of the first forward,
    at δ₀, for FreeLB, which has no clean pass), both through `Trainer.log`.
    """

    config_class: type[AdversarialConfig]
    _name = "SFT"

    def __init__(
        self,
        model: str | PreTrainedModel | PeftModel,
        args: SFTConfig | TrainingArguments | None = None,
        data_collator: DataCollator | None = None,
        train_dataset: Dataset | IterableDataset | None = None,
        eval_dataset: Dataset
        | IterableDataset
        | DatasetDict
        | IterableDatasetDict
        | dict[str, Dataset | IterableDataset]
        | None = None,
        processing_class: PreTrainedTokenizerBase | ProcessorMixin | None = None,
        compute_loss_func: Callable | None = None,
        compute_metrics: Callable[[EvalPrediction], dict] | None = None,
        callbacks: list[TrainerCallback] | None = None,
        optimizers: tuple[torch.optim.Optimizer | None, torch.optim.lr_scheduler.LambdaLR | None] = (None, None),
        optimizer_cls_and_kwargs: tuple[type[torch.optim.Optimizer], dict[str, Any]] | None = None,
        preprocess_logits_for_metrics: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        quantization_config: BitsAndBytesConfig | None = None,
        peft_config: PeftConfig | None = None,
        formatting_func: Callable[[dict], str] | None = None,
    ):
        if not isinstance(model, str):
            self._check_causal_lm(model)
        args = self._upgrade_args(model, args)
        super().__init__(
            model=model,
            args=args,
            data_collator=data_collator,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            compute_loss_func=compute_loss_func,
            compute_metrics=compute_metrics,
            callbacks=callbacks,
            optimizers=optimizers,
            optimizer_cls_and_kwargs=optimizer_cls_and_kwargs,
            preprocess_logits_for_metrics=preprocess_logits_for_metrics,
            quantization_config=quantization_config,
            peft_config=peft_config,
            formatting_func=formatting_func,
        )
        self._check_sft_setup()

    def _check_sft_setup(self) -> None:
        """What SFTTrainer accepts but advtrain's step would get wrong; at construction and again when training starts
        (the model and the accelerator are SFTTrainer's by then)."""
        name = type(self).__name__
        self._check_causal_lm(self.model)  # also a model SFTTrainer loaded from a path
        if isinstance(self.processing_class, ProcessorMixin):
            raise ValueError(
                f"{name} does not train vision-language models (a processor was given or loaded): at the word "
                "embeddings δ would be added to the image tokens, whose embeddings the image features then replace. "
                "Fine-tune a text-only causal LM, or use TRL's SFTTrainer."
            )
        if self.aux_loss_enabled:
            raise ValueError(
                f"{name}: {type(self._module(self.model)).__name__} is a Mixture-of-Experts model trained with its "
                f"load-balancing loss (router_aux_loss_coef={self.router_aux_loss_coef}), which advtrain's objective "
                "does not include. Set router_aux_loss_coef=0.0 in the config to train without it."
            )
        parallelism = self.accelerator.parallelism_config
        if parallelism is not None and (parallelism.cp_enabled or parallelism.sp_enabled):
            raise ValueError(
                f"{name} does not support context or sequence parallelism (cp_size/sp_size > 1): they split each "
                "sequence across processes, but advtrain's shifted loss, divergences and δ are taken over whole "
                "sequences. Use data parallelism (DDP) instead."
            )

    def _check_training_inputs(self) -> None:
        super()._check_training_inputs()
        self._check_sft_setup()

    @classmethod
    def _upgrade_args(cls, model: str | nn.Module, args: TrainingArguments | None) -> AdversarialConfig:
        config_class = cls.config_class
        if args is None:
            model_name = model if isinstance(model, str) else model.config.name_or_path
            return config_class(output_dir=f"{model_name.split('/')[-1]}-{cls._name}")
        if isinstance(args, config_class):
            return args
        if not issubclass(config_class, type(args)):
            raise ValueError(
                f"{cls.__name__} needs a {config_class.__name__} (or one of the configs it extends: "
                f"{', '.join(c.__name__ for c in config_class.__mro__[1:] if dataclasses.is_dataclass(c))}), got "
                f"{type(args).__name__}."
            )
        values = {f.name: getattr(args, f.name) for f in dataclasses.fields(args) if f.init}
        return config_class(**values)

    def _check_causal_lm(self, model: nn.Module) -> None:
        if not is_causal_lm(model):
            raise ValueError(
                f"{type(self).__name__} trains causal LMs (as SFTTrainer does), but got {type(model).__name__}: load "
                "the model with AutoModelForCausalLM. For classifiers and masked LMs use advtrain's own trainers "
                "(ALUMTrainer, PGDATTrainer...)."
            )

    # ----------------------------------------------------------------------------------------------------------
    # The step: SFTTrainer's batch settings and metrics around advtrain's step.

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, torch.Tensor | Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ):
        # As in SFTTrainer.compute_loss: no KV cache in training, and without one transformers finds the sequences of
        # a padding-free row from its position_ids (with one it would let them attend to each other).
        inputs["use_cache"] = False
        return super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)

    def training_step(
        self,
        model: nn.Module,
        inputs: dict[str, torch.Tensor | Any],
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor:
        # The split and recompute paths run the clean forward without `compute_loss`: the setting goes in the batch.
        return super().training_step(model, {**inputs, "use_cache": False}, num_items_in_batch)

    def prepare_clean_pass(self, clean: CleanPass) -> None:
        self._record_sft_metrics(clean.logits, clean.labels, clean.model_inputs)
        super().prepare_clean_pass(clean)

    def _record_sft_metrics(self, logits: torch.Tensor, labels: torch.Tensor, batch: dict[str, Any]) -> None:
        """What `SFTTrainer.compute_loss` records for a training batch, from the clean logits: ``entropy`` (nats) of
        the next-token distribution and ``mean_token_accuracy`` (the label is the arg-max), both over the positions
        whose shifted label is not -100 of every process, and the running ``num_tokens`` of the inputs."""
        gather = self.accelerator.gather_for_metrics
        with torch.no_grad():
            logits, labels = predicted_positions(logits.detach(), labels, "causal_lm")
            log_probs = torch.log_softmax(logits.float(), dim=-1)
            num_valid = gather(torch.tensor(labels.numel(), device=labels.device)).sum()
            entropy_sum = gather(-(log_probs.exp() * log_probs).sum()).sum()
            num_correct = gather((logits.argmax(dim=-1) == labels).sum()).sum()
        metrics = self._metrics["train"]
        metrics["entropy"].append((entropy_sum / num_valid).item() if num_valid > 0 else 0.0)
        metrics["mean_token_accuracy"].append((num_correct / num_valid).item() if num_valid > 0 else 0.0)
        if "attention_mask" in batch:
            tokens = batch["attention_mask"].sum()
        elif "position_ids" in batch:  # a padding-free row
            tokens = torch.tensor(batch["position_ids"].size(1), device=batch["position_ids"].device)
        else:
            raise ValueError(f"Expected 'attention_mask' or 'position_ids' in the batch, got {sorted(batch)}.")
        self._total_train_tokens += gather(tokens).sum().item() // self._tp_size
        metrics["num_tokens"] = [self._total_train_tokens]


# --------------------------------------------------------------------------------------------------------------------
# The methods. Each config: SFTConfig's fields and defaults, and the method's (see AdversarialSFTConfigMixin for the
# order of the bases); each trainer: the method's objective (first in the MRO) with SFTTrainer's data handling.


@dataclass
class PGDATSFTConfig(AdversarialSFTConfigMixin, SFTConfig, PGDATConfig):
    r"""
    Configuration of [`PGDATSFTTrainer`]: the fields and defaults of [`PGDATConfig`] (``adv_*``: the perturbation)
    and of `trl.SFTConfig` (data preparation, packing, loss masking, and TRL's defaults for the `TrainingArguments`
    fields: ``learning_rate=2e-5``, ``logging_steps=10``, ``gradient_checkpointing=True``, ``bf16=True`` unless
    ``fp16``).

    PGD-AT's defaults are per-example L2 norms (``adv_norm="l2"``, ``adv_step_norm="l2"``): with padding-free batches
    (``padding_free=True``, ``"bfd"`` packing) set both to ``"linf"``. ``loss_type="dft"`` is refused.
    """


class PGDATSFTTrainer(AdversarialSFTMixin, PGDATTrainer, SFTTrainer):
    """[`PGDATTrainer`]'s objective, ``CE(f(e)) + α · CE(f(e + δ))`` (shifted token cross-entropy), with
    `trl.SFTTrainer`'s data handling and signature (see [`AdversarialSFTMixin`])."""

    config_class = PGDATSFTConfig
    _tag_names = ["trl", "sft", "advtrain", "pgd-at"]
    _name = "PGD-AT-SFT"


@dataclass
class LDSSFTConfig(AdversarialSFTConfigMixin, SFTConfig, LDSConfig):
    r"""
    Configuration of [`LDSSFTTrainer`]: the fields and defaults of [`LDSConfig`] and of `trl.SFTConfig` (see
    [`PGDATSFTConfig`]). LDS's defaults are per-example L2 norms: with padding-free batches set ``adv_norm`` and
    ``adv_step_norm`` to ``"linf"``.
    """


class LDSSFTTrainer(AdversarialSFTMixin, LDSTrainer, SFTTrainer):
    """[`LDSTrainer`]'s objective, ``CE(f(e)) + α · KL(sg p(e) ‖ p(e + δ))`` over the next-token distributions, with
    `trl.SFTTrainer`'s data handling and signature (see [`AdversarialSFTMixin`])."""

    config_class = LDSSFTConfig
    _tag_names = ["trl", "sft", "advtrain", "lds"]
    _name = "LDS-SFT"


@dataclass
class ALUMSFTConfig(AdversarialSFTConfigMixin, SFTConfig, ALUMConfig):
    r"""
    Configuration of [`ALUMSFTTrainer`]: the fields and defaults of [`ALUMConfig`] and of `trl.SFTConfig` (see
    [`PGDATSFTConfig`]). ALUM's per-token L∞ defaults also hold for padding-free batches.

    Under TRL's default ``bf16=True``, ALUM's default step (``adv_step_size=1e-3`` per token) is below what bfloat16
    resolves in the logits, and advtrain warns at the first step: raise ``adv_step_size`` or set ``bf16=False``.
    """


class ALUMSFTTrainer(AdversarialSFTMixin, ALUMTrainer, SFTTrainer):
    """[`ALUMTrainer`]'s objective, ``CE(f(e)) + α · SKL(f(e), f(e + δ))`` over the next-token distributions, with
    `trl.SFTTrainer`'s data handling and signature (see [`AdversarialSFTMixin`])."""

    config_class = ALUMSFTConfig
    _tag_names = ["trl", "sft", "advtrain", "alum"]
    _name = "ALUM-SFT"


@dataclass
class FreeLBSFTConfig(AdversarialSFTConfigMixin, SFTConfig, FreeLBConfig):
    r"""
    Configuration of [`FreeLBSFTTrainer`]: the fields and defaults of [`FreeLBConfig`] and of `trl.SFTConfig` (see
    [`PGDATSFTConfig`]). FreeLB normalises its steps per example in both of its norms, so padding-free batches
    (``padding_free=True``, ``"bfd"`` packing) are refused; ``"wrapped"`` packing gives padded rows and is accepted.
    """

    def per_example_norms(self) -> list[str]:
        return [f"FreeLB's adv_norm={self.adv_norm!r} (its step is normalised per example in both norms)"]


class FreeLBSFTTrainer(AdversarialSFTMixin, FreeLBTrainer, SFTTrainer):
    """[`FreeLBTrainer`]'s objective, ``(1/K) Σ_k CE(f(e + δ_k))``, with `trl.SFTTrainer`'s data handling and
    signature (see [`AdversarialSFTMixin`]). FreeLB has no clean pass: ``entropy`` and ``mean_token_accuracy`` are
    those of its first forward, at δ₀ (as its ``clean/loss``)."""

    config_class = FreeLBSFTConfig
    _tag_names = ["trl", "sft", "advtrain", "freelb"]
    _name = "FreeLB-SFT"

    def _ascend(self, model: nn.Module, inputs: dict[str, Any], backward: bool):
        # FreeLB's step never builds a CleanPass (so `prepare_clean_pass` is not called): record from its first forward.
        loss, first_outputs = super()._ascend(model, inputs, backward)
        self._record_sft_metrics(first_outputs.logits, inputs["labels"], inputs)
        return loss, first_outputs


@dataclass
class R3FSFTConfig(AdversarialSFTConfigMixin, SFTConfig, R3FConfig):
    r"""
    Configuration of [`R3FSFTTrainer`]: the fields and defaults of [`R3FConfig`] and of `trl.SFTConfig` (see
    [`PGDATSFTConfig`]). R3F's noise is per element, so padding-free batches are accepted with the default
    ``adv_norm="linf"`` (the norm its ``adv/delta_norm`` is logged in).
    """


class R3FSFTTrainer(AdversarialSFTMixin, R3FTrainer, SFTTrainer):
    """[`R3FTrainer`]'s objective, ``CE(f(e)) + λ · SKL(f(e), f(e + z))`` over the next-token distributions, with
    `trl.SFTTrainer`'s data handling and signature (see [`AdversarialSFTMixin`])."""

    config_class = R3FSFTConfig
    _tag_names = ["trl", "sft", "advtrain", "r3f"]
    _name = "R3F-SFT"


__all__ = [
    "ALUMSFTConfig",
    "ALUMSFTTrainer",
    "AdversarialSFTConfigMixin",
    "AdversarialSFTMixin",
    "FreeLBSFTConfig",
    "FreeLBSFTTrainer",
    "LDSSFTConfig",
    "LDSSFTTrainer",
    "PGDATSFTConfig",
    "PGDATSFTTrainer",
    "R3FSFTConfig",
    "R3FSFTTrainer",
]
