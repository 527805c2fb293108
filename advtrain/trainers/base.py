"""What every embedding-space adversarial trainer shares: the perturbation fields of the config, the clean pass,
the call into the perturbation engine, the backward policy, logging and the adversarial training state.

A method subclasses [`AdversarialTrainer`] and writes only its objective:

- [`AdversarialTrainer.perturbation_objective`]: the scalar the inner loop climbs (or descends, with
  ``descend = True``), summed over examples so that each example's step does not depend on the batch size;
- [`AdversarialTrainer.adversarial_loss`]: the term added to the task loss with weight ``α`` (a batch mean);
- optionally [`AdversarialTrainer.prepare_clean_pass`] to attach per-batch data (e.g. TAT's targets).

How the objective is back-propagated is one validated config field, `adv_backward` (see `BACKWARD_PATHS`); every
path goes through `AdversarialTrainer._backward`, which scales a batch-mean loss as `Trainer.training_step` does.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import torch
import transformers
from accelerate.utils import DistributedType
from torch import nn
from transformers import Trainer, TrainerCallback, TrainingArguments
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
from transformers.training_args import OptimizerNames

from ..checkpoints import checkpoint_at_step, load_state, resolve_resume_checkpoint, save_state
from ..losses import count_predicted, task_loss
from ..perturbation import NORMS, STEP_NORMS, delta_norm, find_perturbation, token_mask_like
from ..validation import check_field, is_int, is_number
from .site import EMBEDDINGS_SITE, check_site, parse_site, perturbed_site

logger = logging.getLogger(__name__)

ADVERSARIAL_STATE_NAME = "advtrain_state.pt"

BACKWARD_PATHS = ("joint", "split", "recompute")
"""How a training step back-propagates ``L_task + α·T``:

- ``"joint"``: one backward of the whole objective (the clean and the perturbed graphs are alive together);
- ``"split"``: the clean loss is back-propagated first and its graph freed before ``δ`` is searched; exact only when
  ``T`` treats the clean pass as a constant (PGD-AT, LDS, TAT/ALUM with ``adv_clean_gradient=False``);
- ``"recompute"``: for a ``T`` that also moves the clean prediction, the clean pass first runs without a graph, ``T``
  is back-propagated, and the clean pass is recomputed with the same dropout masks for its own backward (one more
  forward, one graph alive at a time).
"""

# The smallest L∞ size of δ whose effect on the logits exceeds the rounding of an autocast forward, per dtype,
# measured on all-MiniLM-L6-v2 (benchmarks/mixed_precision.py, benchmarks/results/mixed_precision.md).
AUTOCAST_MIN_DELTA = {torch.bfloat16: 3e-3, torch.float16: 3e-4}


@dataclass
class AdversarialConfig(TrainingArguments):
    r"""
    [`~transformers.TrainingArguments`] plus the fields that control the embedding-space perturbation. Every
    advtrain config subclasses it and overrides the defaults with those of its paper.

    Parameters that control the perturbation (``δ``, added to the word-embedding output ``e``, or to the hidden states
    of a transformer block with `adv_site`):
        adv_site (`str`, defaults to `"embeddings"`):
            Where ``δ`` is added: ``"embeddings"``, the word-embedding output ``e``; or ``"layer:N"``, the hidden
            states output by transformer block ``N`` (0-based; negative counts from the end: ``"layer:-1"`` is the last
            block), latent adversarial training. ``N`` is checked against the model's blocks when training starts.
        adv_steps (`int`, defaults to `1`):
            Number of ascent steps of the inner loop (``K``, or ``S`` in the comparison paper).
        adv_step_size (`float`, defaults to `1e-3`):
            Size of each ascent step (``η``, or ``μ`` in the comparison paper).
        adv_epsilon (`float`, defaults to `1e-5`):
            Radius of the ball ``‖δ‖ ≤ ε`` that ``δ`` is projected onto after every step (``ε``); ``0`` means no
            ball (``δ`` is only zeroed on padding).
        adv_init_std (`float`, defaults to `1e-5`):
            Standard deviation of the Gaussian noise ``δ`` starts from (``σ``); ``0`` starts from ``δ = 0``.
        adv_keep_init (`bool`, defaults to `True`):
            Whether the initial noise stays part of ``δ`` (``δ₁ = Π(noise ± η·dir)``, the papers' text) or only marks
            where the first gradient is taken (``δ₁ = Π(± η·dir)``, the MT-DNN code behind the ALUM and TAT numbers).
        adv_norm (`str`, defaults to `"linf"`):
            The ball: ``"l2"`` (per example, over all its real tokens and hidden units) or ``"linf"`` (per element).
        adv_step_norm (`str`, defaults to `"linf"`):
            How the inner gradient is normalised into a step: ``"l2"`` (per example), ``"linf"`` (per token,
            as in the SMART/ALUM code), ``"sign"`` (FGSM) or ``"none"``.
        adv_weight (`float`, defaults to `1.0`):
            Weight of the adversarial term in the loss (``α``); ``0`` trains plainly.
        adv_start_step (`int`, defaults to `0`):
            Optimizer steps trained with the plain objective before the adversarial term is switched on.
        adv_skip_special_tokens (`bool`, defaults to `False`):
            Leave the tokenizer's special tokens (``[CLS]``, ``[SEP]``, ``<s>``, …) unperturbed: ``δ`` is 0 there, as
            on padding. Word-substitution attacks never change them. The papers' code perturbs them (``False``).
            Needs the tokenizer as the trainer's `processing_class`.

    Parameters that control the backward:
        adv_backward (`str`, *optional*):
            How a step back-propagates the objective: ``"joint"``, ``"split"`` or ``"recompute"`` (see
            `advtrain.trainers.base.BACKWARD_PATHS`). ``None`` picks the method's fastest exact path: ``"split"``
            when its term treats the clean pass as a constant, else ``"joint"``. Under DeepSpeed or a LOMO optimizer
            (whose backward also updates the weights) only ``"joint"`` is possible.
    """

    adv_site: str = field(
        default=EMBEDDINGS_SITE,
        metadata={
            "help": "Where δ is added: 'embeddings' (the word-embedding output e) or 'layer:N' (the hidden states "
            "output by transformer block N, 0-based; negative counts from the end, e.g. 'layer:-1' for the last block: "
            "latent adversarial training)."
        },
    )
    adv_steps: int = field(
        default=1, metadata={"help": "Number of ascent steps of the inner loop (K, or S in the comparison paper)."}
    )
    adv_step_size: float = field(
        default=1e-3, metadata={"help": "Size of each ascent step of the inner loop (η, or μ in the comparison paper)."}
    )
    adv_epsilon: float = field(
        default=1e-5,
        metadata={"help": "Radius ε of the ball ‖δ‖ ≤ ε that the perturbation is projected onto; 0 means no ball."},
    )
    adv_init_std: float = field(
        default=1e-5,
        metadata={"help": "Standard deviation σ of the Gaussian noise the perturbation starts from; 0 starts at δ = 0."},
    )
    adv_keep_init: bool = field(
        default=True,
        metadata={
            "help": "Keep the initial noise in δ (δ₁ = Π(noise ± η·dir), the papers' text); False only takes the first "
            "gradient at the noise and starts δ from 0 (δ₁ = Π(± η·dir), the MT-DNN SmartPerturbation code)."
        },
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
    adv_skip_special_tokens: bool = field(
        default=False,
        metadata={
            "help": "Keep δ at 0 on the tokenizer's special tokens ([CLS], [SEP], <s>, ...), as on padding (word "
            "substitutions never change them); False perturbs them, as the papers' code does. Needs the tokenizer "
            "as processing_class."
        },
    )

    adv_backward: str | None = field(
        default=None,
        metadata={
            "help": "How a step back-propagates the objective: 'joint' (one backward), 'split' (clean backward first; "
            "needs a term that treats the clean pass as constant) or 'recompute' (clean pass recomputed for its "
            "backward). Default: 'split' where exact, else 'joint'.",
            "choices": BACKWARD_PATHS,
        },
    )

    def __post_init__(self):
        self.validate_adversarial()
        super().__post_init__()

    # ----------------------------------------------------------------------------------------------------------
    # What the backward policy reads from a config.

    @property
    def term_reads_clean_graph(self) -> bool:
        """Whether the adversarial term back-propagates into the clean pass (then ``"split"`` would be inexact)."""
        return False

    @property
    def first_step_from_clean_gradient(self) -> bool:
        """Whether the first ascent direction is read off the clean backward (PGD-AT's `adv_fast_first_step`)."""
        return False

    @property
    def backward_path(self) -> str:
        """`adv_backward`, or the method's default when it is ``None``."""
        if self.adv_backward is not None:
            return self.adv_backward
        return "joint" if self.term_reads_clean_graph else "split"

    def validate_adversarial(self) -> None:
        """Checks every ``adv_*`` field and their combinations; raises a `ValueError` that says what to change.

        Runs in `__post_init__` and again when training starts, so values set after construction (e.g. by
        `Trainer.hyperparameter_search`) are checked too. Subclasses extend it."""

        def check(ok: bool, name: str, expected: str) -> None:
            check_field(self, ok, name, expected)

        parse_site(self.adv_site)  # the block index is checked against the model when training starts
        check(is_int(self.adv_steps) and self.adv_steps >= 1, "adv_steps", "an integer ≥ 1")
        check(is_number(self.adv_step_size) and self.adv_step_size > 0, "adv_step_size", "a number > 0")
        check(is_number(self.adv_epsilon) and self.adv_epsilon >= 0, "adv_epsilon",
              "a number ≥ 0 (the ball's radius; 0 for no ball)")
        check(isinstance(self.adv_keep_init, bool), "adv_keep_init", "True or False")
        check(is_number(self.adv_init_std) and self.adv_init_std >= 0, "adv_init_std", "a number ≥ 0")
        check(self.adv_norm in NORMS, "adv_norm", f"one of {NORMS}")
        check(self.adv_step_norm in STEP_NORMS, "adv_step_norm", f"one of {STEP_NORMS}")
        check(is_number(self.adv_weight) and self.adv_weight >= 0, "adv_weight", "a number ≥ 0")
        check(is_int(self.adv_start_step) and self.adv_start_step >= 0, "adv_start_step", "an integer ≥ 0")
        check(self.adv_backward is None or self.adv_backward in BACKWARD_PATHS, "adv_backward",
              f"None or one of {BACKWARD_PATHS}")
        if self.adv_backward == "split" and self.term_reads_clean_graph:
            raise ValueError(
                f"`adv_backward='split'` back-propagates the clean loss before the adversarial term, but "
                f"{type(self).__name__}'s term also moves the clean prediction (adv_clean_gradient=True), so the "
                "gradient would be wrong. Use 'joint' or 'recompute', or set adv_clean_gradient=False."
            )
        if self.adv_backward == "recompute" and not self.term_reads_clean_graph:
            raise ValueError(
                f"`adv_backward='recompute'` recomputes the clean pass for a term that moves it, but "
                f"{type(self).__name__}'s term treats the clean pass as a constant: use 'split' (same memory saving, "
                "one forward fewer) or 'joint'."
            )
        if self.first_step_from_clean_gradient and self.backward_path != "split":
            raise ValueError(
                "`adv_fast_first_step=True` reads the first direction off the clean backward of the 'split' path, but "
                f"adv_backward={self.adv_backward!r}. Leave adv_backward unset (or 'split')."
            )
        if self.label_smoothing_factor:
            raise ValueError(
                f"`label_smoothing_factor` must be 0 with an advtrain config, got {self.label_smoothing_factor}: "
                "the adversarial objective uses plain cross-entropy."
            )
        if self.fsdp and requested_fsdp_version(self) != 2:
            raise ValueError(
                f"advtrain supports FSDP2 only, but this config asks for FSDP{requested_fsdp_version(self)}: FSDP1's "
                "flat parameters are not the modules' own, so the inner loop cannot run through them. Use FSDP2: "
                "`fsdp_config={'version': 2}` on transformers 5; on 4.x `accelerate launch --fsdp_version 2` (or "
                "FSDP_VERSION=2 in the environment). Or use DDP (`accelerate launch --multi_gpu`, `torchrun`)."
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


def requested_fsdp_version(args: TrainingArguments) -> int | None:
    """The FSDP version `args` will run (None without FSDP), read where the installed transformers reads it:
    ``fsdp_config["version"]`` (default 2) on transformers 5, accelerate's ``FSDP_VERSION`` (default 1) on 4.x."""
    if not args.fsdp:
        return None
    if int(transformers.__version__.split(".")[0]) >= 5:
        return int((args.fsdp_config or {}).get("version", 2))
    return int(os.environ.get("FSDP_VERSION", "1"))


def check_model_supports_perturbation(
    model: nn.Module, site: str = EMBEDDINGS_SITE, *, gradient_checkpointing: bool = False
) -> None:
    """Refuses a model that cannot be perturbed at `site` (an `adv_site` value), with a message that says why: its
    word embeddings must be reachable through ``get_input_embeddings()``, and a ``"layer:N"`` site must name one of
    its transformer blocks (and, with `gradient_checkpointing`, a block that is its own checkpoint). ``δ`` is added to
    that module's output by a forward hook (`advtrain.trainers.site`)."""
    check_site(model, site, gradient_checkpointing)


_CAUSAL_LM_CLASSES = frozenset(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values())


def is_causal_lm(model: nn.Module) -> bool:
    """Whether `model` (unwrapped from PEFT) is a causal language model, whose token-level loss shifts its labels: a
    transformers causal-LM class (``MODEL_FOR_CAUSAL_LM_MAPPING_NAMES``: ``LlamaForCausalLM``, ``GPT2LMHeadModel``,
    ``BertLMHeadModel``...), any class whose name ends with ``ForCausalLM`` (remote code), or a model whose config
    says ``is_decoder`` without being an encoder-decoder."""
    get_base_model = getattr(model, "get_base_model", None)  # a PEFT wrapper
    base = get_base_model() if callable(get_base_model) else model
    name = type(base).__name__
    config = getattr(base, "config", None)
    decoder = bool(getattr(config, "is_decoder", False)) and not getattr(config, "is_encoder_decoder", False)
    return name in _CAUSAL_LM_CLASSES or name.endswith("ForCausalLM") or decoder


@dataclass
class CleanPass:
    """The clean forward pass of a batch, shared by the inner loop and the adversarial term.

    Args:
        model_inputs (`dict`): the batch without ``input_ids`` and ``labels`` (attention mask, token type ids...).
        input_ids (`torch.Tensor`): the token ids the word embeddings are looked up from.
        labels (`torch.Tensor`): the labels (``-100`` marks unpredicted masked-LM positions).
        embeds (`torch.Tensor`): the clean output of the perturbation site: ``e``, the word-embedding output, or at
            ``adv_site="layer:N"`` the hidden states of block ``N`` (part of the clean graph).
        mask (`torch.Tensor`): ``(batch, seq_len, 1)`` float mask of real tokens.
        outputs (`ModelOutput`): the model's clean outputs.
        logits (`torch.Tensor`): ``f(e)`` (part of the clean graph; detach it where it is a target).
        loss (`torch.Tensor`): the task loss of the clean pass (batch mean).
        task (`str`): ``"classification"``, ``"regression"``, ``"masked_lm"`` or ``"causal_lm"``.
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
    """Writes the trainer's adversarial state into every checkpoint folder the Trainer has just saved."""

    def __init__(self, trainer: AdversarialTrainer):
        self.trainer = trainer

    def on_save(self, args, state, control, **kwargs):
        folder = checkpoint_at_step(args.output_dir, state.global_step)
        if folder is not None:
            self.trainer.save_adversarial_state(folder)


@contextlib.contextmanager
def _discarded_parameter_gradients(loss: torch.Tensor):
    """Within the block, a backward of `loss` leaves every parameter's ``.grad`` as it was: the gradient flowing into
    each leaf of its graph is replaced by zeros before it is accumulated (and before DDP's or FSDP2's hooks read it, so
    an all-reduce or reduce-scatter still runs, with the gradients accumulated so far).

    The zeros go in as pre-hooks of the graph's gradient accumulators rather than as hooks on `model.parameters()`:
    under FSDP2 the tensors the forward used (and that receive the gradient) are the unsharded parameters, not the
    sharded ones the module lists."""
    accumulators, seen, stack = [], set(), [loss.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        if hasattr(node, "variable"):  # an AccumulateGrad: the gradient's way into a leaf's .grad
            accumulators.append(node)
        stack.extend(child for child, _ in node.next_functions)
    handles = [node.register_prehook(lambda grads: tuple(torch.zeros_like(g) if g is not None else g for g in grads))
               for node in accumulators]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


class AdversarialTrainer(Trainer):
    """A [`~transformers.Trainer`] whose training loss adds an embedding-space adversarial term.

    Drop-in: it takes the same arguments as `Trainer`. A plain `TrainingArguments` is upgraded to the method's
    config (`config_class`) with the paper's defaults for the adversarial fields. Evaluation and prediction use the
    plain model and report the clean loss, so ``eval_loss`` is comparable with a plain `Trainer`'s.

    ``δ`` enters through a forward hook on ``model.get_input_embeddings()``, or on transformer block ``N`` with
    ``adv_site="layer:N"``: the model always receives its ``input_ids`` (see `advtrain.trainers.site`). The step
    back-propagates along the config's `backward_path`
    (`BACKWARD_PATHS`); a non-finite adversarial term is left out of the step on every path (``adv/skipped``).
    """

    config_class: type[AdversarialConfig] = AdversarialConfig
    # `compute_loss` returns a per-batch mean; `_backward` divides it by the accumulation steps (transformers 5 reads
    # this attribute in `Trainer.training_step`, which advtrain's `training_step` does not call).
    loss_is_scaled_for_ga = False
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
        if model is not None and not isinstance(model, str):  # TRL's SFTTrainer also takes a model id
            check_model_supports_perturbation(model, args.adv_site)
        super().__init__(model, args, *extra, **kwargs)
        if self.model is not None:
            check_model_supports_perturbation(self.model, self.args.adv_site)
        self._adv_metrics: dict[str, list[torch.Tensor]] = defaultdict(list)
        self._checked_autocast = False
        # A causal-LM micro-batch's share of its accumulation window's label tokens (see `_token_weighting`).
        self._token_weight: torch.Tensor | float = 1.0
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
        """Training state of the method beyond the model and optimizer, saved with every checkpoint (tensors,
        numbers, strings, lists, dicts and ``None`` only: it is read back with ``weights_only=True``)."""
        return {}

    def load_adversarial_state(self, state: dict[str, Any]) -> None:
        """Restores what `adversarial_state` returned."""

    # ----------------------------------------------------------------------------------------------------------
    # The backward policy.

    @property
    def backward_path(self) -> str:
        """The path a training step takes (`BACKWARD_PATHS`): the config's `backward_path`, or ``"joint"`` under
        DeepSpeed and LOMO, whose backward also updates the weights and so must run once per step."""
        path = self.args.backward_path
        single = self._backward_updates_weights()
        if single and path != "joint":
            if self.args.adv_backward is not None or self.args.first_step_from_clean_gradient:
                raise ValueError(
                    f"adv_backward={path!r} runs several backwards per step, but under {single} the backward also "
                    "updates the weights. Leave adv_backward unset (it becomes 'joint') and adv_fast_first_step off."
                )
            return "joint"
        return path

    def _backward_updates_weights(self) -> str | None:
        if self.accelerator.distributed_type == DistributedType.DEEPSPEED:
            return "DeepSpeed"
        if self.args.optim in (OptimizerNames.LOMO, OptimizerNames.ADALOMO):
            return f"optim={self.args.optim!s}"
        return None

    def _backward(self, loss: torch.Tensor, discard: bool = False) -> torch.Tensor:
        """Back-propagates a batch-mean `loss` scaled exactly as `Trainer.training_step` scales a loss that is not
        normalised for gradient accumulation (mean over `n_gpu`, division by the accumulation steps, DeepSpeed's
        ``scale_wrt_gas=False``, LOMO's learning rate). Every path of every trainer goes through here, so one rule
        holds on transformers 4 and 5 whatever the model's `forward` accepts. With `discard` the backward still runs
        (under several processes it is the one that all-reduces) but adds nothing to the parameters' gradients.

        A causal-LM micro-batch is also weighted by its share of the window's label tokens (`_token_weighting`)."""
        if self.args.n_gpu > 1:
            loss = loss.mean()
        loss = loss * self._token_weight / self.current_gradient_accumulation_steps
        kwargs = {}
        if self.args.optim in (OptimizerNames.LOMO, OptimizerNames.ADALOMO):
            kwargs["learning_rate"] = self._get_learning_rate()
        if self.accelerator.distributed_type == DistributedType.DEEPSPEED:
            kwargs["scale_wrt_gas"] = False
        with _discarded_parameter_gradients(loss) if discard else contextlib.nullcontext():
            self.accelerator.backward(loss, **kwargs)
        return loss.detach()

    def get_batch_samples(self, epoch_iterator, num_batches: int, device: torch.device):
        """`Trainer.get_batch_samples`; for a causal LM, `num_items_in_batch` is always advtrain's own count of the
        accumulation window's label tokens after the shift (summed over processes under
        `average_tokens_across_devices`), whatever the model's `forward` accepts. transformers 4.57 counts the labels
        before the shift (one token more per row) and counts nothing when the model takes no loss kwargs, as under
        TRL's trainers on transformers < 5.19."""
        batch_samples, num_items_in_batch = super().get_batch_samples(epoch_iterator, num_batches, device)
        if batch_samples and is_causal_lm(self.model) and all(b.get("labels") is not None for b in batch_samples):
            count = sum(count_predicted(b["labels"], "causal_lm").to(device) for b in batch_samples)
            if self._tokens_counted_across_processes():
                count = self.accelerator.gather(count.reshape(1)).sum()
            num_items_in_batch = count
        return batch_samples, num_items_in_batch

    def _tokens_counted_across_processes(self) -> bool:
        return bool(self.args.average_tokens_across_devices) and self.accelerator.num_processes > 1

    @contextlib.contextmanager
    def _token_weighting(self, inputs: dict[str, Any], num_items_in_batch: torch.Tensor | int | None):
        """Within the block, `_backward` weights a causal-LM micro-batch by ``w = c · G · P / N``: ``c`` its label
        tokens, ``G`` the accumulation steps, ``N`` the label tokens of the whole window (`get_batch_samples`; of every
        process when ``P`` = the number of processes, under `average_tokens_across_devices`, else ``P = 1``).

        Every causal-LM term is a mean over the micro-batch's ``c`` label positions, so after `_backward`'s ``/ G``
        (and DDP's mean over processes) the step's gradient is that of the token mean over the window: the
        normalisation `Trainer` and TRL's `SFTTrainer` give a causal LM (``num_items_in_batch``), under which 4
        micro-batches × accumulation 1 equal 1 × 4 also when the examples carry different numbers of label tokens.
        Without a count (`training_step` called directly, other tasks, `nn.DataParallel`) ``w = 1``: batch means."""
        labels = inputs.get("labels")
        weight: torch.Tensor | float = 1.0
        if num_items_in_batch is not None and labels is not None and self.args.n_gpu <= 1 and is_causal_lm(self.model):
            processes = self.accelerator.num_processes if self._tokens_counted_across_processes() else 1
            total = torch.as_tensor(num_items_in_batch, device=labels.device).clamp(min=1)
            weight = count_predicted(labels, "causal_lm") * (self.current_gradient_accumulation_steps * processes) / total
        self._token_weight = weight
        try:
            yield
        finally:
            self._token_weight = 1.0

    # ----------------------------------------------------------------------------------------------------------
    # The shared machinery.

    def _adversarial_is_active(self, model: nn.Module) -> bool:
        return (
            model.training
            and torch.is_grad_enabled()
            and self.args.adv_weight > 0
            and self.state.global_step >= self.args.adv_start_step
        )

    def _sharded(self) -> bool:
        """Whether the model is sharded with FSDP2 over several processes: every forward and backward then gathers
        parameters, so all processes must run the same passes (`_on_any_process`)."""
        return bool(getattr(self.accelerator, "is_fsdp2", False)) and self.accelerator.num_processes > 1

    def _on_any_process(self, flag: bool) -> bool:
        """`flag` under DDP or one process; under FSDP2, whether it holds on any process. A term skipped on one
        process is then skipped on all of them, so every process runs the same backward (under DDP the passes that
        differ run outside the wrapper, and a skipped term stays a per-process decision)."""
        if not self._sharded():
            return flag
        value = torch.tensor(float(flag), device=self.args.device)
        return bool(self.accelerator.reduce(value, reduction="sum") > 0)

    def _module(self, model: nn.Module) -> nn.Module:
        """The model without its distributed wrapper: inner-loop passes through it never touch gradient sync."""
        return self.accelerator.unwrap_model(model)

    def _clean_forward(self, model: nn.Module, inputs: dict[str, Any], input_gradient: bool = False) -> CleanPass:
        if inputs.get("labels") is None:
            raise ValueError(
                f"{type(self).__name__} needs `labels` in every training batch; the batch has keys "
                f"{sorted(inputs)}. Keep a 'labels' (or 'label') column of numbers in the training dataset: the data "
                "collator drops columns it cannot turn into tensors (e.g. string labels; map them to class ids)."
            )
        if inputs.get("input_ids") is None:
            raise ValueError(
                f"{type(self).__name__} perturbs the word embeddings of `input_ids`, but the batch has keys "
                f"{sorted(inputs)}."
            )
        labels = inputs["labels"]
        model_inputs = {k: v for k, v in inputs.items() if k not in ("input_ids", "labels")}
        site = self.args.adv_site
        with perturbed_site(self._module(model), site, inputs["input_ids"], input_gradient=input_gradient) as call:
            outputs = model(input_ids=inputs["input_ids"], **model_inputs)
        logits = outputs.logits
        task = self._task(logits)
        if task == "classification":
            self._check_class_labels(labels, logits.shape[-1])
        clean = CleanPass(
            model_inputs=model_inputs,
            input_ids=inputs["input_ids"],
            labels=labels,
            embeds=call.output,
            mask=self._perturbation_mask(call.output, inputs),
            outputs=outputs,
            logits=logits,
            loss=task_loss(logits, labels, task),
            task=task,
        )
        self.prepare_clean_pass(clean)
        return clean

    def _perturbation_mask(self, site_output: torch.Tensor, inputs: dict[str, Any]) -> torch.Tensor:
        """Where ``δ`` may be non-zero, ``(batch, seq_len, 1)`` float32: the real tokens, less the special tokens with
        `adv_skip_special_tokens`."""
        mask = token_mask_like(site_output, inputs.get("attention_mask"))
        if not self.args.adv_skip_special_tokens:
            return mask
        special = torch.as_tensor(self._special_token_ids(), device=site_output.device)
        keep = ~torch.isin(inputs["input_ids"].to(site_output.device), special)
        return mask * keep.unsqueeze(-1).to(mask.dtype)

    def _special_token_ids(self) -> list[int]:
        tokenizer = getattr(self.processing_class, "tokenizer", self.processing_class)  # a processor holds one
        ids = getattr(tokenizer, "all_special_ids", None)
        if not ids:
            raise ValueError(
                f"`adv_skip_special_tokens=True` reads the special tokens' ids off the tokenizer, but "
                f"{type(self).__name__} got processing_class={type(self.processing_class).__name__}. Pass the "
                "tokenizer: `Trainer(..., processing_class=tokenizer)`, or set adv_skip_special_tokens=False."
            )
        return sorted(set(ids))

    @staticmethod
    def _check_class_labels(labels: torch.Tensor, num_labels: int) -> None:
        if labels.is_floating_point() or bool(((labels < 0) | (labels >= num_labels)).any()):
            raise ValueError(
                f"Classification labels must be integers in [0, {num_labels - 1}] for a model with num_labels="
                f"{num_labels}; this batch has {labels.tolist()}. Fix the dataset's labels or the model's num_labels "
                "(num_labels=1 for regression)."
            )

    def _task(self, logits: torch.Tensor) -> str:
        """The task of a batch's logits (`advtrain.losses.TASKS`): per-token logits are a causal LM's (its labels are
        shifted, see `is_causal_lm`) or else a masked LM's; per-example logits a classifier's or regressor's."""
        if logits.dim() == 3:
            return "causal_lm" if is_causal_lm(self._module(self.model)) else "masked_lm"
        problem_type = getattr(getattr(self.model, "config", None), "problem_type", None)
        if problem_type == "multi_label_classification":
            raise ValueError(
                "problem_type='multi_label_classification' is not supported by advtrain trainers; use single-label "
                "classification or regression (num_labels=1)."
            )
        return "regression" if logits.shape[-1] == 1 else "classification"

    def _perturbed_logits(self, model: nn.Module, clean: CleanPass, delta: torch.Tensor | None, live_embeds: bool):
        """``f(e + δ)`` (``f(e)`` when `delta` is None) from the batch's own ``input_ids``, ``δ`` added at `adv_site`;
        with `live_embeds` the site's output is part of the graph (the outer term, or the recomputed clean pass), else
        the gradient w.r.t. ``δ`` flows only through what lies above the site."""
        with perturbed_site(self._module(model), self.args.adv_site, clean.input_ids, delta, detach=not live_embeds):
            return model(input_ids=clean.input_ids, **clean.model_inputs).logits

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
            keep_init=args.adv_keep_init,
            stop_early=not self._sharded(),
        )

    def _adversarial_term(self, model: nn.Module, clean: CleanPass, first_grad: torch.Tensor | None = None):
        """Returns ``(term, skipped)``: the adversarial loss at the found ``δ``, and whether it must be left out of
        the step (a non-finite inner gradient or term). A skipped term is never back-propagated into the weights;
        the callers still run every process's synchronising backward, so no process waits on another."""
        perturbation = self._find_perturbation(model, clean, first_grad)
        self._check_autocast(perturbation.delta)
        adv_logits = self._perturbed_logits(model, clean, perturbation.delta, live_embeds=True)
        term = self.adversarial_loss(adv_logits, clean)
        skipped = self._on_any_process(perturbation.skipped or not bool(torch.isfinite(term.detach())))
        self._record("clean/loss", clean.loss)
        self._record("adv/delta_norm", delta_norm(perturbation.delta, self.args.adv_norm).mean())
        self._record("adv/skipped", torch.tensor(float(skipped)))
        self._record("adv/loss", None if skipped else term)
        return term, skipped

    def _check_autocast(self, delta: torch.Tensor) -> None:
        """Warns once when mixed precision rounds the clean forward by more than this δ moves it."""
        if self._checked_autocast:
            return
        self._checked_autocast = True
        # accelerate applies autocast inside the prepared model's forward, so ask it rather than torch.
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(str(self.accelerator.mixed_precision))
        threshold = AUTOCAST_MIN_DELTA.get(dtype)
        size = float(delta.abs().max()) if delta.numel() else 0.0
        if threshold is not None and size < threshold:
            warnings.warn(
                f"{type(self).__name__}: δ is {size:.2g} in L∞ at the first step, but under {str(dtype)[6:]} autocast "
                f"a forward's rounding moves the logits more than a δ below {threshold:g} does, so the adversarial term "
                "is mostly rounding noise (docs/engine.md, 'Mixed precision'). Raise adv_step_size/adv_epsilon, or "
                "train in float32.",
                stacklevel=2,
            )

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, torch.Tensor | Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ):
        """The method's full objective ``L_task(f(e), y) + α · adversarial_loss`` on a training batch (the clean loss
        alone when the term is skipped).

        Outside training (evaluation, prediction, no grad) and before `adv_start_step` it is the plain loss. With
        `return_outputs=True` it also returns the clean outputs. `num_items_in_batch` is not used: the loss is a
        batch mean, scaled for gradient accumulation by `training_step` (which also weights a causal LM's micro-batch
        by its share of the window's label tokens, see `_token_weighting`).
        """
        if not self._adversarial_is_active(model):
            return super().compute_loss(model, inputs, return_outputs=return_outputs)
        clean = self._clean_forward(model, inputs)
        # The term's forward goes through the unwrapped module: under DDP one wrapped forward per backward.
        term, skipped = self._adversarial_term(self._module(model), clean)
        loss = clean.loss if skipped else clean.loss + self.args.adv_weight * term
        return (loss, clean.outputs) if return_outputs else loss

    def training_step(
        self,
        model: nn.Module,
        inputs: dict[str, torch.Tensor | Any],
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor:
        """One training step along `backward_path`; every path gives the gradient of `compute_loss`'s objective
        and returns the loss the Trainer logs (scaled for accumulation, as `Trainer.training_step` returns it)."""
        model.train()
        if hasattr(self.optimizer, "train") and callable(self.optimizer.train):
            self.optimizer.train()
        inputs = self._prepare_inputs(inputs)
        path = self.backward_path if self._adversarial_is_active(model) else "joint"
        with self._token_weighting(inputs, num_items_in_batch):
            if path == "split":
                loss = self._split_step(model, inputs)
            elif path == "recompute":
                loss = self._recompute_step(model, inputs)
            else:
                with self.compute_loss_context_manager():
                    loss = self.compute_loss(model, inputs)
                loss = self._backward(loss)
        del inputs
        if self.args.torch_empty_cache_steps is not None and self.state.global_step % self.args.torch_empty_cache_steps == 0:
            from accelerate.utils.memory import clear_device_cache

            clear_device_cache()
        return loss

    def _accumulate_locally(self, model: nn.Module):
        """`no_sync` under several processes (the backward inside accumulates without an all-reduce), else nothing."""
        return self.accelerator.no_sync(model) if self.accelerator.num_processes > 1 else contextlib.nullcontext()

    def _backward_term(self, term: torch.Tensor, skipped: bool) -> torch.Tensor:
        """The synchronising backward of ``α·T``. A skipped term adds nothing; under several processes its backward
        still runs (with the parameters' gradients discarded), so every process joins the all-reduce."""
        if not skipped:
            return self._backward(self.args.adv_weight * term)
        if self.accelerator.num_processes > 1:
            self._backward(self.args.adv_weight * term, discard=True)
        return torch.zeros((), device=term.device)

    def _split_step(self, model: nn.Module, inputs: dict[str, Any]) -> torch.Tensor:
        """``"split"``: the clean loss is back-propagated and its graph freed before ``δ`` is searched."""
        fast = self.args.first_step_from_clean_gradient
        # Under DDP the clean backward accumulates locally; the adversarial backward syncs the sum.
        with self._accumulate_locally(model):
            with self.compute_loss_context_manager():
                clean = self._clean_forward(model, inputs, input_gradient=fast)
            clean_loss = self._backward(clean.loss)
            first_grad = self._clean_input_gradient(clean) if fast else None
            clean.logits = clean.logits.detach()
            clean.embeds = clean.embeds.detach()
        with self.compute_loss_context_manager():
            term, skipped = self._adversarial_term(model, clean, first_grad)
        return clean_loss + self._backward_term(term, skipped)

    def _recompute_step(self, model: nn.Module, inputs: dict[str, Any]) -> torch.Tensor:
        """``"recompute"``. With ``z = f(e)`` and ``T`` the adversarial term, the parameters' gradient is ``∇(α·T)``
        through the perturbed pass plus the clean pass's vector-Jacobian product with ``∂L_task/∂z + α·∂T/∂z``; the
        second is taken on the recomputed clean pass, after the first graph is freed."""
        module = self._module(model)
        random_state = _RandomState(inputs["input_ids"].device)
        with torch.no_grad(), self.compute_loss_context_manager():
            clean = self._clean_forward(module, inputs)
        clean.logits = clean.logits.detach().requires_grad_(True)  # a leaf, to read ∂T/∂z off
        # Under DDP the term's backward accumulates locally; the clean backward syncs the sum.
        with self._accumulate_locally(model):
            with self.compute_loss_context_manager():
                term, skipped = self._adversarial_term(module, clean)
            if not skipped:
                (term_logits_grad,) = torch.autograd.grad(term, clean.logits, retain_graph=True)
                self._backward(self.args.adv_weight * term)
        with random_state.replayed(), self.compute_loss_context_manager():
            logits = self._perturbed_logits(model, clean, None, live_embeds=True)
            objective = task_loss(logits, clean.labels, clean.task)
            if not skipped:
                objective = objective + self.args.adv_weight * (logits.float() * term_logits_grad.float()).sum()
        self._backward(objective)
        loss = clean.loss.detach()
        if not skipped:
            loss = loss + self.args.adv_weight * term.detach()
        return loss * self._token_weight / self.current_gradient_accumulation_steps

    def _clean_input_gradient(self, clean: CleanPass) -> torch.Tensor:
        """``∇e`` (``∇h`` at a ``"layer:N"`` site) of the summed task loss, recovered from the clean backward of the
        scaled batch-mean loss (a mean over the examples, or the predicted positions of a masked LM, or the shifted
        label positions of a causal LM, weighted by `_token_weighting`)."""
        terms = count_predicted(clean.labels, clean.task)
        scale = terms * self.current_gradient_accumulation_steps / self._token_weight
        if self.accelerator.scaler is not None:  # fp16: the backward ran on the loss times the scaler's scale
            scale = scale / self.accelerator.scaler.get_scale()
        return clean.embeds.grad.float() * scale

    # ----------------------------------------------------------------------------------------------------------
    # Logging and state.

    def _record(self, name: str, value: torch.Tensor | None) -> None:
        """Adds one value of a logged metric; ``None`` records that the metric had no value this step (a skipped
        term): every process then still logs the same metrics, so their all-reduce lines up."""
        values = self._adv_metrics[name]
        if value is not None:
            values.append(value.detach().float().reshape(()))

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Adds the adversarial metrics to training logs, then logs: each metric's mean over the steps (and
        processes) that had a value; ``adv/skipped`` is a count, summed."""
        if "loss" in logs and self._adv_metrics:
            names = sorted(self._adv_metrics)
            totals = torch.tensor(
                [[float(sum(self._adv_metrics[n], torch.zeros(()))), len(self._adv_metrics[n])] for n in names],
                dtype=torch.float32, device=self.args.device,
            )
            if self.accelerator.num_processes > 1:
                totals = self.accelerator.reduce(totals, reduction="sum")
            for name, (total, count) in zip(names, totals.tolist()):
                if name == "adv/skipped":
                    logs[name] = total
                elif count > 0:
                    logs[name] = total / count
            self._adv_metrics.clear()
        super().log(logs, start_time)

    def save_adversarial_state(self, checkpoint_dir: str) -> None:
        """Writes `adversarial_state()` into `checkpoint_dir` (main process only; the state is identical on all)."""
        state = self.adversarial_state()
        if state and self.args.should_save:
            save_state(checkpoint_dir, ADVERSARIAL_STATE_NAME, state)

    def _check_training_inputs(self) -> None:
        """What a user can get wrong before the first step, checked before the Trainer starts."""
        self.args.validate_adversarial()
        self.backward_path  # noqa: B018 -- raises for a path DeepSpeed/LOMO cannot run
        if self.accelerator.distributed_type == DistributedType.FSDP and not getattr(self.accelerator, "is_fsdp2", False):
            raise ValueError(
                f"{type(self).__name__} runs under FSDP2 only, but accelerate set up FSDP1 (e.g. from an accelerate "
                "config file with fsdp_version: 1). Set fsdp_version: 2 (`accelerate launch --fsdp_version 2`), or use DDP."
            )
        if self.model is not None:  # the site's block index against this model's blocks
            # transformers 5.24 renamed the property (the old name warns); 4.x has only the old one.
            name = "is_activation_checkpointing" if hasattr(type(self.model), "is_activation_checkpointing") else (
                "is_gradient_checkpointing")
            checkpointing = self.args.gradient_checkpointing or getattr(self.model, name, False)
            check_model_supports_perturbation(self.model, self.args.adv_site, gradient_checkpointing=checkpointing)
        if self.args.adv_skip_special_tokens:
            self._special_token_ids()  # refuses a trainer without a tokenizer now, not at the first step
        dataset = self.train_dataset
        if dataset is None:
            return
        if hasattr(dataset, "__len__") and len(dataset) == 0:
            raise ValueError(f"{type(self).__name__}: the training dataset is empty; give it at least one example.")
        features = getattr(dataset, "features", None) or {}
        for name in ("labels", "label"):
            dtype = getattr(features.get(name), "dtype", None)
            if dtype in ("string", "large_string"):
                raise ValueError(
                    f"{type(self).__name__}: the training dataset's '{name}' column holds strings, which the data "
                    "collator drops. Map the labels to class ids first, e.g. `dataset = dataset.class_encode_column"
                    f"('{name}')` (and set the model's num_labels / id2label)."
                )

    def train(self, resume_from_checkpoint: str | bool | None = None, *args, **kwargs):
        """`Trainer.train`, after checking the adversarial fields again (they may have been set after the config was
        built), also restoring the adversarial state saved with the checkpoint it resumes from."""
        self._check_training_inputs()
        checkpoint = resolve_resume_checkpoint(resume_from_checkpoint, self.args.output_dir)
        if checkpoint is not None:
            path = os.path.join(checkpoint, ADVERSARIAL_STATE_NAME)
            if os.path.isfile(path):
                self.load_adversarial_state(load_state(path))
            elif fresh := self.adversarial_state():
                logger.warning(
                    "%s resumes from %s, which holds no %s: the adversarial state (%s) starts afresh.",
                    type(self).__name__, checkpoint, ADVERSARIAL_STATE_NAME, ", ".join(sorted(fresh)),
                )
        return super().train(resume_from_checkpoint, *args, **kwargs)
